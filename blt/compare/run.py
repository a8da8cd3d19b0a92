"""The comparison: entropy patches next to BPE, SentencePiece, tiktoken, HF tokenisers and rule-based segmenters,
on one corpus, with the same metrics for all (`blt compare`).

Flow: the corpus is split by document (`blt.data`); trainable tokenisers learn on the training split (by default
at the largest vocabulary it supports, up to 32k); the byte model (optionally adapted to the training split first)
scores the evaluation split once, and every entropy segmenter reuses those scores; a reference segmenter's
bytes/unit on the evaluation text (by default a pretrained tokeniser's, `blt.compare_rates`) is the rate entropy
thresholds are calibrated to and fixed patches are cut at (compression-matched); metrics accumulate document by
document, bits/unit graded by the byte model's surprisal or, with `grader`, by a second model's.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from blt.baselines import fit_facts
from blt.cache import cached_tokenizer, documents_hash
from blt.compare_rates import choose_reference, evenness_curves, is_matched
from blt.config import DataConfig
from blt.data import ByteStream, build_cache
from blt.entropy import LN2, ByteScores, corpus_bits_per_byte
from blt.errors import BltError
from blt.metrics import BoundaryCounts, SegmentationStats, boundary_counts, unit_information
from blt.patching import calibrate_threshold, patch_starts
from blt.sources import iter_documents

TRAINED = ("bpe", "sp-unigram", "sp-bpe")
MAX_VOCAB = 32768  # default vocabulary cap of trained tokenisers (the largest the training split supports below it)
PRETRAINED = ("tiktoken-cl100k", "tiktoken-o200k")
RULE_BASED = ("space", "fixed", "byte")
ENTROPY = ("entropy-global", "entropy-monotonic")
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
    fixed_size: float | None = None  # fixed patch size (bytes); None -> the reference bytes/unit, exactly
    eval_fraction: float = 0.1  # documents held out for evaluation (tokenisers train on the rest)
    eval_sources: list[str] | None = None  # measure on these documents instead (tokenisers train on all `sources`)
    max_eval_bytes: int | None = 4_000_000  # measure at most this many held-out bytes (flat memory); None: all
    split_seed: int = 0  # seed of the train/evaluation split
    max_bytes: int | None = None  # read at most this many bytes of the corpus
    by_language: bool = False  # per-label metrics (labelled corpora such as udhr)
    adapt_steps: int = 0  # fine-tune the byte model this many steps on the training split first
    adapt_minutes: float | None = None  # ... or for this long (with steps too: whichever ends first)
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
    for flag, value in (("--threshold", cfg.threshold), ("--relative-threshold", cfg.relative_threshold)):
        if value is not None and not (value >= 0 and math.isfinite(value)):
            problems.append(f"{flag} must be ≥ 0 nats, got {value}; or drop it and let --match calibrate one")
    if cfg.curves and not cfg.grader and not any(s in ENTROPY for s in cfg.segmenters):
        problems.append("--curves grades units with a byte model: add an entropy segmenter or --grader MODEL")
    if cfg.vocab_size is not None and cfg.vocab_size < 260:
        problems.append(f"--vocab-size must be ≥ 260 (256 bytes + specials), got {cfg.vocab_size}")
    if problems:
        raise BltError("; ".join(problems))


@dataclass
class Segmenter:
    """What the comparison needs of any segmenter: a name, a vocabulary size (None: open) and bytes -> starts."""

    name: str
    vocab_size: int | None
    starts: Callable[[bytes], np.ndarray]
    train_seconds: float = 0.0
    threshold_nats: float | None = None  # entropy segmenters: the threshold they cut at
    patch_size: float | None = None  # fixed: the patch length L (unit i at byte ⌊i·L⌋)
    matched: bool | None = None  # False: calibrated to the reference rate and could not reach it (else measured)
    match_note: str | None = None  # why it did not, and the rates it can reach


def choose_vocab_size(cfg: CompareConfig, train_docs: Sequence[bytes]) -> int:
    """The default vocabulary size: `default_vocab_size` of the training bytes, raised to the next power of two
    that lossless SentencePiece (character_coverage=1.0) can reach: one piece per distinct character + 259."""
    from blt.tokenizers import default_vocab_size

    vocab = default_vocab_size(sum(map(len, train_docs)))
    if any(s.startswith("sp-") for s in cfg.segmenters):
        chars = set()
        for d in train_docs:
            chars.update(d.decode("utf-8", errors="surrogateescape"))
        vocab = max(vocab, 2 ** math.ceil(math.log2(len(chars) + 259 + 64)))
    return vocab


def vocab_cap(cfg: CompareConfig, train_docs: Sequence[bytes]) -> int:
    """The default vocabulary cap: `MAX_VOCAB`, raised to the next power of two that lossless SentencePiece
    (character_coverage=1.0) needs when the training text has more distinct characters than that allows."""
    if not any(s.startswith("sp-") for s in cfg.segmenters):
        return MAX_VOCAB
    chars = set()
    for d in train_docs:
        chars.update(d.decode("utf-8", errors="surrogateescape"))
    return max(MAX_VOCAB, 2 ** math.ceil(math.log2(len(chars) + 259 + 64)))


def build_tokenisers(
    cfg: CompareConfig, train_docs: Sequence[bytes], warn: Callable[[str], None]
) -> tuple[list[Segmenter], int]:
    """Train (or load) every tokeniser of the run; unavailable pretrained ones are skipped with a warning. Without
    a given vocabulary size each trainer goes as far as the training split supports, up to `vocab_cap`."""
    from blt import pretrained

    at_most = cfg.vocab_size is None
    vocab = cfg.vocab_size or vocab_cap(cfg, train_docs)
    out, failures = [], []
    train_sha = documents_hash(train_docs) if any(n in TRAINED for n in cfg.segmenters) else None
    for name in cfg.segmenters:
        t, seconds = time.perf_counter(), None
        try:
            if name in TRAINED:  # trained once per (kind, vocab, training bytes); later runs load it
                seg, _, seconds = cached_tokenizer(
                    name, vocab, train_docs, train_sha=train_sha, cache=cfg.cache, at_most=at_most
                )
            elif name in PRETRAINED:
                seg = pretrained.TiktokenSegmenter(name.removeprefix("tiktoken-") + "_base", name=name)
            elif name.startswith("hf:"):
                spec, _, gguf = name.removeprefix("hf:").partition("#")
                seg = pretrained.HFTokenizerSegmenter(spec, gguf_file=gguf or None)
            else:
                continue
        except BltError as exc:
            if name in TRAINED:  # every trainer's complaint in one error: the sizes they accept differ
                failures.append(f"{name}: {exc}")
            else:
                warn(f"{name} skipped: {exc}")
            continue
        seconds = seconds if seconds is not None else time.perf_counter() - t
        out.append(Segmenter(name, seg.vocab_size, seg.starts, seconds))
    if failures:
        sizes = [int(x) for f in failures for x in re.findall(r"--vocab-size (\d+)", f)]
        if sizes and all("too large" in f for f in failures):  # one size that every trainer accepts
            failures.insert(
                0, f"vocab_size {vocab} is too large for this corpus; --vocab-size {min(sizes)} works for every trainer"
            )
        raise BltError("; ".join(failures))
    return out, vocab


def rule_segmenter(name: str, size: float, rate: float | None = None) -> Segmenter:
    """A rule-based segmenter; `fixed` at `size` bytes (non-integer: unit i starts at byte floor(i·size)), named
    after the `rate` (bytes/unit) it was sized to give, if any, else after its size."""

    def starts(data: bytes) -> np.ndarray:
        arr = np.frombuffer(data, dtype=np.uint8)
        return patch_starts(np.zeros(len(data), np.float32), rule=name, patch_size=size, data=arr)

    shown = rate if rate is not None else size
    label = f"fixed-{int(shown)}" if shown == int(shown) else f"fixed-{shown:.2f}"
    return Segmenter(name if name != "fixed" else label, None, starts, patch_size=size if name == "fixed" else None)


def fixed_size_for(docs: Sequence[bytes], bytes_per_unit: float) -> float:
    """The fixed patch size L whose patches (unit i of a document at ⌊i·L⌋) give `bytes_per_unit` over `docs`:
    each document's last patch is short, so L is a little above the rate. The smallest L whose Σ ⌈n/L⌉ reaches
    the nearest achievable count; golden: documents of 10 and 5 bytes at 3 bytes/unit (5 units) give L = 10/3
    (⌈10/L⌉ + ⌈5/L⌉ = 4 + 2 = 6 at L = 3, and 3 + 2 = 5 from L = 10/3)."""
    n = np.array([len(d) for d in docs if len(d)], dtype=np.float64)
    if not n.size:
        return bytes_per_unit
    want = max(n.size, round(n.sum() / bytes_per_unit))

    def count(size: float) -> int:  # units = #{i ≥ 0 : ⌊i·size⌋ < n}, in the float arithmetic the rule uses
        k = np.ceil(n / size)
        return int((k + (np.floor(k * size) < n) - (np.floor((k - 1) * size) >= n)).sum())

    lo, hi = 1.0, float(n.max())  # count(lo) = N ≥ want ≥ count(hi) = documents
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if count(mid) > want else (lo, mid)
    return hi


class StreamDocuments(Sequence[bytes]):
    """A split's documents read from the memmap cache on demand: tokenisers train from it without the corpus
    being held in memory."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream

    def __len__(self) -> int:
        return self.stream.n_docs

    def __getitem__(self, i: int) -> bytes:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self.stream.document(i % len(self))


def split_corpus(cfg: CompareConfig) -> tuple[Sequence[bytes], list[bytes], list[str | None]]:
    """Training documents (streamed from the cache) and the held-out documents to measure (at most
    `max_eval_bytes` of them, in corpus order, so memory stays flat however large the corpus): a content-hash
    split of `sources`, or, with `eval_sources`, all of `sources` to train on and those documents to measure."""
    if cfg.eval_sources:
        train = build_cache(DataConfig(sources=cfg.sources, val_fraction=0, max_bytes=cfg.max_bytes)).train
        evaluation, labels, size = [], [], 0
        for doc in iter_documents(DataConfig(sources=cfg.eval_sources)):
            if evaluation and cfg.max_eval_bytes is not None and size + len(doc.data) > cfg.max_eval_bytes:
                break
            evaluation.append(doc.data)
            labels.append(doc.label)
            size += len(doc.data)
        if not evaluation:
            raise BltError(f"--eval-data {cfg.eval_sources} holds no text")
        return StreamDocuments(train), evaluation, labels
    data_cfg = DataConfig(
        sources=cfg.sources, val_fraction=cfg.eval_fraction, split_seed=cfg.split_seed, max_bytes=cfg.max_bytes
    )
    cache = build_cache(data_cfg)
    evaluation = []
    size = 0
    for i in range(cache.val.n_docs):
        if evaluation and cfg.max_eval_bytes is not None and size + cache.val.doc_length(i) > cfg.max_eval_bytes:
            break
        evaluation.append(cache.val.document(i))
        size += len(evaluation[-1])
    labels = cache.labels[cache.train.n_docs : cache.train.n_docs + len(evaluation)]
    if not evaluation or cache.train.n_docs == 0:
        raise BltError(f"{cfg.sources} is too small to hold out documents for evaluation; add documents")
    return StreamDocuments(cache.train), evaluation, labels


def run_compare(
    cfg: CompareConfig, *, warn: Callable[[str], None] = print, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any] | None:
    """The whole comparison; returns results (per segmenter, per language, agreement, byte-model facts).

    With `devices` > 1 the byte-model scoring runs on every rank; ranks other than 0 return None after it."""
    from blt.checkpoint import load_model

    validate(cfg)
    progress("reading and splitting the corpus")
    train_docs, eval_docs, labels = split_corpus(cfg)
    binary = sum(b"\0" in d for d in train_docs) + sum(b"\0" in d for d in eval_docs)
    if binary:
        warn(f"{binary} documents contain NUL bytes (binary files?); every segmenter sees them as raw bytes")
    model_info: dict[str, Any] = {}
    scores: list[ByteScores] | None = None
    wants_model = any(s in ENTROPY for s in cfg.segmenters)
    adapting = bool(cfg.adapt_steps or cfg.adapt_minutes)
    lm = load_model(cfg.model, device="auto") if wants_model or adapting else None
    grader = _load_grader(cfg.grader) if cfg.grader else None  # a bad name fails before any work
    for name in ENTROPY:  # before any scoring or training: a missing threshold is known now
        if name in cfg.segmenters and cfg.match is None:
            _given_threshold(name, cfg, lm)
    if lm is not None:
        progress("scoring the evaluation split with the byte model")
        scores, model_info = _score(lm, eval_docs, cfg)
        if scores is None:
            return None  # a rank other than 0 of a multi-device run: its share is on disk for rank 0
        if adapting:
            progress("adapting the byte model on the training split")
            from blt.train import adapt

            lm = adapt(lm, train_docs, cfg.adapt_steps, minutes=cfg.adapt_minutes, progress=progress)
            scores, after = _score(lm, eval_docs, cfg)
            assert scores is not None
            model_info.update(
                after, bits_per_byte_before_adapt=model_info["bits_per_byte"], adapt_steps=lm.card.get("steps")
            )
    grading, grader_info = scores, None
    if grader is not None:
        progress("scoring the evaluation split with the grading model")
        grading, grader_info = _score(grader, eval_docs, cfg, name=cfg.grader)
        if grading is None:
            return None
        from blt.cache import model_hash

        grader_info["same_weights"] = lm is not None and model_hash(grader) == model_hash(lm)
    progress("training tokenisers")
    segmenters, vocab = build_tokenisers(cfg, train_docs, warn)
    # Compression matching: entropy thresholds and the fixed size follow the reference segmenter's bytes/unit.
    by_name = {s.name: s for s in segmenters}
    by_name.update({n: rule_segmenter(n, 1) for n in ("space", "byte") if n in cfg.segmenters})
    reference = choose_reference(cfg.match, list(by_name))
    match_bpu = _bytes_per_unit(by_name[reference], eval_docs) if reference in by_name else None
    if cfg.match not in (None, "auto") and match_bpu is None:
        raise BltError(f"--match {cfg.match} is unavailable in this run (skipped above); choose another")
    # fixed patches at exactly the reference rate over these documents (any rate ≥ 1, not a rounded size)
    if cfg.fixed_size or not match_bpu:
        by_name["fixed"] = rule_segmenter("fixed", cfg.fixed_size or 4)
    else:
        by_name["fixed"] = rule_segmenter("fixed", fixed_size_for(eval_docs, match_bpu), rate=match_bpu)
    segmenters += [by_name[n] for n in RULE_BASED if n in cfg.segmenters]
    for name in ENTROPY:
        if name in cfg.segmenters:
            assert scores is not None
            segmenters.append(_entropy_segmenter(name, scores, reference, match_bpu, cfg, lm))
    if cfg.by_language and not any(lab is not None for lab in labels):
        warn("--by-language: this corpus has no language labels (only udhr has them); per-language tables skipped")
    if not segmenters:
        raise BltError(
            f"no segmenter could run ({', '.join(cfg.segmenters)}: all skipped above); "
            "add one that works offline, e.g. --segmenters bpe,space"
        )
    progress("measuring")
    surprisal = [g.surprisal_nats for g in grading] if grading is not None else None
    own = [s.surprisal_nats for s in scores] if grader is not None and scores is not None else None
    results = measure(segmenters, eval_docs, labels, surprisal, cfg, model_info, match_bpu, len(train_docs), own)
    results["vocab_size"] = vocab
    results["reference"] = _reference_facts(cfg, reference, match_bpu)
    results["grading"] = _grading_facts(cfg, model_info, grader_info)
    for row in results["segmenters"]:
        if row["matched"] is not False:  # False: a calibration that could not reach the rate (its note says why)
            row["matched"] = is_matched(row["bytes_per_unit"], match_bpu)
    if cfg.curves and surprisal is not None:
        entropies = [s.entropy_nats for s in scores] if scores is not None else None
        results["curves"] = evenness_curves(
            results["segmenters"], eval_docs, surprisal, entropies, train_docs,
            reference_bpu=match_bpu, cache=cfg.cache, progress=progress,
        )  # fmt: skip
    return results


def _load_grader(name: str) -> Any:
    from blt.checkpoint import load_model

    try:
        return load_model(name, device="auto")
    except BltError as e:
        raise BltError(f"--grader: {e}") from None


def _reference_facts(cfg: CompareConfig, reference: str | None, bpu: float | None) -> dict[str, Any] | None:
    if reference is None or bpu is None:
        return None
    return {"segmenter": reference, "bytes_per_unit": bpu, "chosen": "auto" if cfg.match == "auto" else "given"}


def _grading_facts(cfg: CompareConfig, placer: dict[str, Any], grader: dict[str, Any] | None) -> dict[str, Any]:
    """Which model's surprisal grades bits/unit, and whether it is the one that placed the entropy boundaries."""
    if grader is None:
        return {"model": cfg.model, "independent": False, "bits_per_byte": placer.get("bits_per_byte")}
    independent = not grader.get("same_weights")
    return {"model": cfg.grader, "independent": independent, "bits_per_byte": grader["bits_per_byte"]}


def _score(
    lm: Any, docs: list[bytes], cfg: CompareConfig, name: str | None = None
) -> tuple[list[ByteScores] | None, dict[str, Any]]:
    """The byte model's scores of `docs` (Lightning predict loop, disk cache) and what the report says of them."""
    from blt.cache import load_scores, model_hash, save_scores, scores_path
    from blt.corpus import score_corpus

    sha = model_hash(lm)  # once, for the cache check and the scoring
    path = scores_path(lm, docs, precision=cfg.precision, model_sha=sha)
    # only a verified hit counts as cached (load_scores discards a damaged entry): results.json says which it was
    scores = load_scores(path, docs) if cfg.cache else None
    cached = scores is not None
    t = time.perf_counter()
    if scores is None:
        scores = score_corpus(lm, docs, precision=cfg.precision, devices=cfg.devices, cache=False, model_sha=sha)
        if scores is None:
            return None, {}  # a rank other than 0 of a multi-device run
        if cfg.cache:
            save_scores(path, scores)
    seconds = time.perf_counter() - t
    return scores, {
        "model": name or cfg.model,
        "params": lm.num_params(),
        "bits_per_byte": corpus_bits_per_byte(scores),
        "scores_cached": cached,
        "scoring_mb_per_s": None if cached else sum(map(len, docs)) / 1e6 / seconds,
        "scoring_seconds": None if cached else seconds,  # entropy rows' end-to-end speed includes it
        "scoring_device": str(next(lm.parameters()).device),
        **fit_facts(docs, [s.surprisal_nats for s in scores], [s.entropy_nats for s in scores]),
    }


def _bytes_per_unit(seg: Segmenter, docs: Sequence[bytes]) -> float:
    return sum(map(len, docs)) / sum(len(seg.starts(d)) for d in docs)


def _entropy_segmenter(
    name: str, scores: Sequence[ByteScores], reference: str | None, match_bpu: float | None, cfg: CompareConfig, lm: Any
) -> Segmenter:
    """Entropy patches over the scored evaluation documents, at a calibrated or given threshold. A matched rate
    the rule cannot reach gives the nearest reachable one, flagged (`matched` False and a `match_note`)."""
    rule = name.removeprefix("entropy-")
    ents = [s.entropy_nats for s in scores]
    matched, note = None, None
    if match_bpu is not None:
        rows = [e for e in ents if len(e)]
        lo, hi = reachable_bytes_per_patch(rows, rule)
        target = min(max(match_bpu, lo), hi)
        matched = target == match_bpu
        if not matched:
            note = (
                f"{name} cannot reach {reference}'s {match_bpu:.3f} bytes/unit on this text (it reaches "
                f"{lo:.3f}–{hi:.3f}); shown at the nearest, {target:.3f}"
            )
        threshold = calibrate_threshold(rows, target, rule=rule)
    else:
        threshold = _given_threshold(name, cfg, lm)
    by_data = {s.data: e for s, e in zip(scores, ents, strict=True)}
    key = "threshold" if rule == "global" else "relative_threshold"

    def starts(data: bytes) -> np.ndarray:
        return patch_starts(by_data[data], rule=rule, **{key: threshold})

    return Segmenter(name, None, starts, threshold_nats=threshold, matched=matched, match_note=note)


def reachable_bytes_per_patch(entropies: Sequence[np.ndarray], rule: str) -> tuple[float, float]:
    """The bytes/patch an entropy rule can give over these (non-empty) rows for thresholds θ ≥ 0: from θ = 0
    (every rise, or every positive entropy, starts) to θ = ∞ (only each row's first byte)."""
    total = sum(map(len, entropies))
    key = "threshold" if rule == "global" else "relative_threshold"
    most = sum(map(len, patch_starts(list(entropies), rule=rule, **{key: 0.0})))  # one batched call
    return total / most, total / len(entropies)


def _given_threshold(name: str, cfg: CompareConfig, lm: Any) -> float:
    """An unmatched entropy segmenter's threshold: given, else the model card's; none is an error."""
    rule = name.removeprefix("entropy-")
    given = cfg.threshold if rule == "global" else cfg.relative_threshold
    card = lm.card.get("patch_thresholds_nats", {}) if lm is not None else {}
    threshold = given if given is not None else card.get(rule)
    if threshold is None:
        raise BltError(f"{name} needs --match or a threshold (--threshold / --relative-threshold)")
    return threshold


def measure(
    segmenters: list[Segmenter],
    docs: Sequence[bytes],
    labels: Sequence[str | None],
    surprisal: Sequence[np.ndarray] | None,
    cfg: CompareConfig,
    model_info: dict[str, Any],
    match_bpu: float | None,
    n_train_docs: int,
    placer_surprisal: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Every metric for every segmenter over the evaluation documents (streamed one document at a time); bits/unit
    graded by `surprisal` [n] nats per document, and with `placer_surprisal` (a separate grader's run) the entropy
    rows' CV also as graded by the model that placed their boundaries (`bits_per_unit_cv_self`)."""
    names = [s.name for s in segmenters]
    stats = {n: SegmentationStats() for n in names}
    per_label: dict[str, dict[str, SegmentationStats]] = {}
    agreement = {(a, b): BoundaryCounts() for a in names for b in names}
    bits: dict[str, list[np.ndarray]] = {n: [] for n in names}
    self_graded = {n: SegmentationStats() for n in names if n in ENTROPY and placer_surprisal is not None}
    lengths: dict[str, list[np.ndarray]] = {n: [] for n in names}
    seconds = dict.fromkeys(names, 0.0)
    for i, data in enumerate(docs):
        sur = surprisal[i] if surprisal is not None else None
        doc_starts = {}
        for seg in segmenters:
            t = time.perf_counter()
            starts = np.asarray(seg.starts(data), dtype=np.int64)
            seconds[seg.name] += time.perf_counter() - t
            check_lossless(seg.name, data, starts)
            doc_starts[seg.name] = starts
            stats[seg.name].add(data, starts, sur)
            if seg.name in self_graded:
                self_graded[seg.name].add(data, starts, placer_surprisal[i])  # type: ignore[index]
            if cfg.by_language and labels[i] is not None:
                per_label.setdefault(labels[i], {}).setdefault(seg.name, SegmentationStats()).add(data, starts)
            lengths[seg.name].append(np.diff(np.append(starts, len(data))))
            if sur is not None:
                bits[seg.name].append(unit_information(sur, starts))
        for a in names:
            for b in names:
                agreement[a, b] = agreement[a, b] + boundary_counts(doc_starts[a], doc_starts[b][1:], len(data))
    n_bytes = sum(map(len, docs))
    rows = []
    for seg in segmenters:
        row = {
            "segmenter": seg.name,
            "vocab_size": seg.vocab_size,
            **stats[seg.name].summary(vocab_size=seg.vocab_size),
            "encode_mb_per_s": n_bytes / 1e6 / max(seconds[seg.name], 1e-9),
            "train_seconds": seg.train_seconds,
        }
        if seg.name in ENTROPY:  # end to end, as a user pays it: the byte model's scoring of these bytes + patching
            scoring, patching = model_info.get("scoring_seconds"), seconds[seg.name]
            row["patching_mb_per_s"] = row["encode_mb_per_s"]
            row["encode_mb_per_s"] = n_bytes / 1e6 / (scoring + patching) if scoring is not None else None
            row["scoring_share"] = scoring / (scoring + patching) if scoring is not None else None
        if seg.patch_size is not None:
            row["patch_size"] = seg.patch_size
        if seg.threshold_nats is not None:
            row["threshold_nats"] = seg.threshold_nats
            row["threshold_bits"] = seg.threshold_nats / LN2
        if seg.name in self_graded:
            row["bits_per_unit_cv_self"] = self_graded[seg.name].summary()["bits_per_unit_cv"]
        row["matched"] = seg.matched
        row["match_note"] = seg.match_note
        rows.append(row)
    return {
        "config": asdict(cfg),
        "eval_documents": len(docs),
        "eval_bytes": n_bytes,
        "train_documents": n_train_docs,
        "match_bytes_per_unit": match_bpu,
        "byte_model": model_info,
        "segmenters": rows,
        "agreement_f1": {a: {b: agreement[a, b].prf()[2] for b in names} for a in names},
        "by_language": {lab: {n: s.summary()["bytes_per_unit"] for n, s in d.items()} for lab, d in per_label.items()},
        "_bits_per_unit": {n: np.concatenate(v) if v else np.zeros(0) for n, v in bits.items()},
        "_lengths": {n: np.concatenate(v) if v else np.zeros(0, np.int64) for n, v in lengths.items()},
    }


def check_lossless(name: str, data: bytes, starts: np.ndarray) -> None:
    """Units must tile the document exactly: start at 0, strictly increase, stay inside it."""
    n = len(data)
    if n == 0:
        ok = len(starts) == 0
    else:
        ok = len(starts) > 0 and starts[0] == 0 and starts[-1] < n and bool(np.all(np.diff(starts) > 0))
    if not ok:
        raise BltError(f"segmenter {name} is not lossless on a {n}-byte document (starts {starts[:8].tolist()}...)")


def finite(x: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, recursively, so results are strict JSON (and the same values
    after a round trip through it)."""
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    return x
