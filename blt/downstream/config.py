"""Downstream experiment configs (`blt downstream`, configs/downstream/*.yaml): corpora × segmentations × seeds, one
patch-level LM each, validated like every other config (every unknown key and bad value in one error).

Segmenters are written as in experiment configs (`- space`, `- kind: bpe` with `vocab_size: 4096`, `- kind:
entropy-budget` with `target_bytes_per_patch: 4`); one value per parameter here, not grids. An entropy or fixed
segmenter without a value matches the `rate` segmenter's bytes/unit: on the training split for training, on the
calibration share of the held-out documents (never scored) for scoring.
The surprisal-budget oracle reads the byte it cuts before, so it cannot drive a language model and is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blt.compare.config import ENTROPY
from blt.config import ConfigError
from blt.downstream.model import PatchLMConfig
from blt.downstream.train import DownstreamTrainConfig
from blt.experiments.config import (
    ORACLES,
    CorpusSpec,
    SegmenterSpec,
    _corpus,
    _fields,
    _listed,
    _segmenter,
    read_yaml,
    segmenter_label,
)

# Segmenters whose unit starts are a function of the bytes before them: their boundaries come free. Entropy rules
# cut where the byte model's entropy of the *next* byte (a function of the bytes before it) crosses a value; fixed
# and byte cut by position. Every other kind announces its boundaries through the model's end-of-unit head.
CAUSAL = ("byte", "fixed", *ENTROPY)


@dataclass
class DownstreamConfig:
    name: str  # short name, used in the report
    corpora: list[CorpusSpec]  # as in experiment configs; eval_sources give the held-out text
    segmenters: list[SegmenterSpec]
    description: str = ""  # the question the experiment answers
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # one run per segmenter and seed
    entropy_model: str = "default"  # byte model that places the entropy patches (scored causally)
    rate: str | None = "bpe"  # entropy and fixed segmenters without a value match this one's bytes/unit; None: off
    match_flops: bool = True  # size each latent model to the same training FLOPs/byte (longer units: wider latent)
    reference_bytes_per_unit: float = 4.0  # `model` as written is the model for units of this mean length
    model: PatchLMConfig = field(default_factory=PatchLMConfig)
    train: DownstreamTrainConfig = field(default_factory=DownstreamTrainConfig)
    eval_fraction: float = 0.1  # documents held out when a corpus has no eval_sources
    max_eval_bytes: int | None = 300_000  # read at most this many held-out bytes per corpus (calibration + scored)
    split_seed: int = 0  # seed of the train/evaluation split
    calibration_fraction: float = 0.25  # held-out share (bytes) that only calibrates rate-matched values; not scored

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def label(spec: SegmenterSpec) -> str:
    """`bpe-4096`, `fixed`, `fixed-4`, `entropy-budget@4`, `entropy-global θ1.2`, `space` (as experiment cells)."""
    return segmenter_label(spec.kind, {k: v[0] for k, v in spec.params.items()})


def downstream_from_dict(raw: Any, *, source: str = "downstream") -> DownstreamConfig:
    """Build and validate a `DownstreamConfig`; every problem goes into one `ConfigError`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with name, corpora and segmenters, got {type(raw).__name__}")
    errors: list[str] = []
    nested = ("corpora", "segmenters", "model", "train")
    kw = _fields(DownstreamConfig, {k: v for k, v in raw.items() if k not in nested}, "", errors)
    corpora = [_corpus(c, i, errors) for i, c in enumerate(_listed(raw, "corpora", errors))]
    segmenters = [_segmenter(s, i, errors) for i, s in enumerate(_listed(raw, "segmenters", errors))]
    kw["corpora"] = [c for c in corpora if c is not None]
    kw["segmenters"] = [s for s in segmenters if s is not None]
    for key, cls in (("model", PatchLMConfig), ("train", DownstreamTrainConfig)):
        section = raw.get(key) or {}
        if not isinstance(section, dict):
            errors.append(f"{key} must be a mapping, got {section!r}")
            section = {}
        kw[key] = cls(**_fields(cls, section, f"{key}.", errors))
    kw.setdefault("name", Path(source).stem)
    cfg = DownstreamConfig(**kw)
    if not cfg.corpora:
        errors.append("no corpora (add corpora: [udhr] or paths)")
    if not cfg.segmenters:
        errors.append("no segmenters (add e.g. segmenters: [byte, space, bpe, entropy-global])")
    for i, spec in enumerate(cfg.segmenters):
        if spec.kind in ORACLES:
            errors.append(
                f"segmenters[{i}]: {spec.kind} reads the byte it cuts before, so no language model can use it; "
                "remove it"
            )
        if any(len(v) != 1 for v in spec.params.values()):
            errors.append(f"segmenters[{i}] ({spec.kind}): give one value per parameter here (a run each), not a list")
    labels = [label(s) for s in cfg.segmenters]
    if len(set(labels)) < len(labels):
        errors.append(f"segmenters appear twice: {sorted({x for x in labels if labels.count(x) > 1})}")
    if len({c.name for c in cfg.corpora}) < len(cfg.corpora):
        errors.append(f"corpus names must be unique, got {[c.name for c in cfg.corpora]}")
    if not cfg.seeds or len(set(cfg.seeds)) < len(cfg.seeds):
        errors.append(f"seeds must be a non-empty list of distinct integers, got {cfg.seeds}")
    matched = [label(s) for s in cfg.segmenters if s.kind in (*ENTROPY, "fixed") and not _valued(s)]
    if matched and cfg.rate is None:
        errors.append(f"with rate: null, give {', '.join(matched)} a value (target_bytes_per_patch, patch_size, ...)")
    elif matched and cfg.rate not in [s.kind for s in cfg.segmenters] + labels:
        errors.append(
            f"rate {cfg.rate!r} names no segmenter of this config ({', '.join(labels)}), so {', '.join(matched)} "
            "cannot be rate-matched: add it, or give a value (target_bytes_per_patch, patch_size, ...)"
        )
    if cfg.reference_bytes_per_unit < 1:
        errors.append(f"reference_bytes_per_unit must be ≥ 1, got {cfg.reference_bytes_per_unit}")
    m, t = cfg.model, cfg.train
    for name, value in (("model.d_local", m.d_local), ("model.d_latent", m.d_latent), ("model.context", m.context)):
        if value < 1:
            errors.append(f"{name} must be ≥ 1, got {value}")
    for width, heads, key in ((m.d_local, m.local_heads, "local"), (m.d_latent, m.latent_heads, "latent")):
        if heads < 1 or width % (2 * heads):
            errors.append(f"model.d_{key} ({width}) must be a multiple of 2 × model.{key}_heads ({heads})")
    if m.latent_layers < 1 or m.encoder_layers < 0 or m.decoder_layers < 0:
        errors.append("model.latent_layers must be ≥ 1 and the local layer counts ≥ 0")
    if t.max_steps < 1 or t.batch_size < 1:
        errors.append(f"train.max_steps and train.batch_size must be ≥ 1, got {t.max_steps} and {t.batch_size}")
    if t.budget_minutes is not None and t.budget_minutes <= 0:
        errors.append(f"train.budget_minutes must be > 0 minutes (or null for none), got {t.budget_minutes}")
    if not 0 <= cfg.calibration_fraction < 1:
        errors.append(f"calibration_fraction must be in [0, 1), got {cfg.calibration_fraction}")
    if not 0 < cfg.eval_fraction < 1:
        errors.append(f"eval_fraction must be in (0, 1), got {cfg.eval_fraction}")
    if errors:
        raise ConfigError(f"{source}: " + "; ".join(errors))
    return cfg


def _valued(spec: SegmenterSpec) -> bool:
    """Has the segmenter a value of its own (not only a max_patch_length)?"""
    return any(k != "max_patch_length" for k in spec.params)


def downstream_dir() -> Path:
    """configs/downstream of this source tree."""
    return Path(__file__).resolve().parents[2] / "configs" / "downstream"


def shipped_downstream() -> dict[str, Path]:
    return {p.stem: p for p in sorted(downstream_dir().glob("*.yaml"))}


def load_downstream(spec: str | Path, overrides: list[str] | None = None) -> DownstreamConfig:
    """Read a downstream YAML (a path, or a shipped name: cpu, gpu), with `--set` overrides."""
    path = Path(spec)
    if not path.is_file():
        shipped = shipped_downstream()
        if str(spec) not in shipped:
            names = ", ".join(shipped) or "none found"
            raise ConfigError(f"downstream config {spec} does not exist; pass a YAML path or a shipped name ({names})")
        path = shipped[str(spec)]
    return downstream_from_dict(read_yaml(path, overrides), source=str(path))


def is_causal(kind: str) -> bool:
    return kind in CAUSAL
