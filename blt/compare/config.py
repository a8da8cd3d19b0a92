"""What a comparison runs: the segmenter names (trained, pretrained, rule-based, entropy), the value each entropy rule
cuts at, `CompareConfig` and its validation (every problem in one error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from blt.errors import BltError

TRAINED = ("bpe", "sp-unigram", "sp-bpe")


MAX_VOCAB = 32768  # default vocabulary cap of trained tokenisers (the largest the training split supports below it)


PRETRAINED = ("tiktoken-cl100k", "tiktoken-o200k")


RULE_BASED = ("space", "fixed", "byte")


ENTROPY = ("entropy-global", "entropy-monotonic", "entropy-budget")


# The `patch_starts` keyword each entropy rule's value (nats) sets; the budget rule's is a budget (the summed entropy
# a patch may hold), not a threshold, so its rows report `budget_nats` where the others report `threshold_nats`.
RULE_VALUE = {"global": "threshold", "monotonic": "relative_threshold", "budget": "budget"}


SEGMENTERS = (*TRAINED, *PRETRAINED, *RULE_BASED, *ENTROPY)  # plus hf:NAME_OR_PATH[#gguf_file]


DEFAULT_SEGMENTERS = (
    "bpe",
    "sp-unigram",
    "sp-bpe",
    "tiktoken-cl100k",
    "tiktoken-o200k",
    "space",
    "fixed",
    "entropy-global",
    "entropy-monotonic",
    "entropy-budget",
)


@dataclass
class CompareConfig:
    sources: list[str] = field(default_factory=lambda: ["udhr"])  # corpora, as for `blt train --data`
    segmenters: list[str] = field(default_factory=lambda: list(DEFAULT_SEGMENTERS))  # see SEGMENTERS, hf:NAME
    model: str = "default"  # byte model for entropy segmenters and evenness
    grader: str | None = None  # byte model that grades bits/unit (evenness); None -> `model` (circular for entropy)
    curves: bool = False  # evenness curves over rates (trains each tokeniser at several vocabularies)
    vocab_size: int | None = None  # trained tokenisers' size; None -> the largest the training split supports ≤ 32k
    match: str | None = "auto"  # the reference rate: this segmenter's bytes/unit; auto -> REFERENCE_ORDER; None: none
    threshold: float | None = None  # global threshold (nats) when match is None; None -> the model card's
    relative_threshold: float | None = None  # monotonic threshold (nats) when match is None
    budget: float | None = None  # entropy-budget's budget (nats a patch may hold) when match is None; None -> card's
    patchers: list[str] = field(default_factory=list)  # saved patcher directories: a row each, values as saved
    fixed_size: float | None = None  # fixed patch size (bytes); None -> the reference bytes/unit, exactly
    eval_fraction: float = 0.1  # documents held out for evaluation (tokenisers train on the rest)
    eval_sources: list[str] | None = None  # measure on these documents instead (tokenisers train on all `sources`)
    max_eval_bytes: int | None = 4_000_000  # measure at most this many held-out bytes (flat memory); None: all
    split_seed: int = 0  # seed of the train/evaluation split
    max_bytes: int | None = None  # read at most this many bytes of the corpus
    by_language: bool = False  # per-label metrics (labelled corpora such as udhr)
    adapt_steps: int = 0  # fine-tune the byte model this many steps on the training split first
    adapt_minutes: float | None = None  # ... or for this long (with steps too: whichever ends first)
    fit_temperature: bool = False  # divide the byte model's logits by a temperature fitted on the training split
    online_lr: float | None = None  # score the held-out text online at this Adam step size (after any adaptation)
    precision: str = "32"  # byte-model scoring precision: 32, bf16, auto
    devices: int | str = 1  # devices for byte-model scoring (Lightning predict loop); >1 shards over GPUs
    cache: bool = True  # reuse scores and trained tokenisers cached on disk (keyed by model weights, corpus bytes)


def validate(cfg: CompareConfig) -> None:
    problems = []
    for name in cfg.segmenters:
        if name not in SEGMENTERS and not name.startswith("hf:"):
            problems.append(f"unknown segmenter {name!r} (valid: {', '.join(SEGMENTERS)}, hf:NAME_OR_PATH)")
    if cfg.match not in (None, "auto") and cfg.match not in cfg.segmenters:
        problems.append(f"--match {cfg.match} is not in this run's segmenters ({', '.join(cfg.segmenters)})")
    if cfg.match is not None and cfg.match in ENTROPY:
        problems.append("--match must name a tokeniser or rule-based segmenter, not an entropy one")
    if cfg.adapt_steps < 0:
        problems.append(f"--adapt must be ≥ 0 steps (0: no adaptation), got {cfg.adapt_steps}")
    if cfg.adapt_minutes is not None and not (cfg.adapt_minutes > 0 and math.isfinite(cfg.adapt_minutes)):
        problems.append(f"--adapt-minutes must be a time > 0, got {cfg.adapt_minutes}")
    if cfg.online_lr is not None and not 0 < cfg.online_lr < 1:  # NaN too; 0 would be the static scores again
        problems.append(f"--online-lr must be in (0, 1), got {cfg.online_lr}")
    if cfg.online_lr is not None and cfg.devices not in (1, "1"):
        problems.append("--online reads the held-out documents in order on one device; drop --devices")
    if not 0 < cfg.eval_fraction < 1:
        problems.append(f"--eval-fraction must be in (0, 1), got {cfg.eval_fraction}")
    # sizes: None means "all" (the CLI turns --max-eval-bytes 0 into None); a negative size is a typo, never "all"
    for flag, value, least in (
        ("--max-eval-bytes", cfg.max_eval_bytes, "≥ 0 (0: all held-out bytes)"),
        ("--max-bytes", cfg.max_bytes, "≥ 1"),
        ("--patch-size", cfg.fixed_size, "≥ 1 (bytes; 2.75 starts unit i at byte floor(i·2.75))"),
    ):
        if value is not None and not value >= 1:  # NaN too
            problems.append(f"{flag} must be {least}, got {value}")
    if not (cfg.devices == "auto" or (isinstance(cfg.devices, int) and cfg.devices >= 1)):
        problems.append(f"--devices must be a number of devices ≥ 1 or 'auto', got {cfg.devices!r}")
    if (cfg.adapt_steps or cfg.adapt_minutes) and cfg.devices not in (1, "1"):
        problems.append(
            "--adapt runs on one device; drop --devices, or train on the corpus with `blt train` and pass --model RUN"
        )
    if cfg.fit_temperature and cfg.devices not in (1, "1"):
        problems.append("--fit-temperature runs on one device; drop --devices")
    for flag, value in (
        ("--threshold", cfg.threshold),
        ("--relative-threshold", cfg.relative_threshold),
        ("--budget", cfg.budget),
    ):
        if value is not None and not (value >= 0 and math.isfinite(value)):
            problems.append(f"{flag} must be ≥ 0 nats, got {value}; or drop it and let --match calibrate one")
    if cfg.curves and not cfg.grader and not any(s in ENTROPY for s in cfg.segmenters):
        problems.append("--curves grades units with a byte model: add an entropy segmenter or --grader MODEL")
    twice = sorted({p for p in cfg.patchers if cfg.patchers.count(p) > 1})
    if twice:
        problems.append(f"--patcher {twice[0]} is given twice; give each saved patcher once")
    if cfg.vocab_size is not None and cfg.vocab_size < 260:
        problems.append(f"--vocab-size must be ≥ 260 (256 bytes + specials), got {cfg.vocab_size}")
    if problems:
        raise BltError("; ".join(problems))
