"""Experiment configs and their grids (`blt experiment`): an experiment is corpora × byte models × segmenters ×
parameter grids, read from YAML (configs/experiments/*.yaml), validated like every other config (every unknown key
and bad value reported in one error), and expanded into cells — one measurement each.

A segmenter entry names a `kind` (as in `blt compare`) and lists values for the parameters that kind takes; the
cells of an entry are the product of its lists. Parameters: trained tokenisers `vocab_size`; `fixed` `patch_size`;
entropy patchers `target_bytes_per_patch` (calibrated on the corpus) or `threshold` (nats; for `entropy-monotonic`
the relative threshold; for `entropy-budget` a `budget`, the summed entropy a patch may hold), and
`max_patch_length`. One kind exists only here: `surprisal-budget`, an oracle that runs the budget rule on each
byte's realised surprisal instead of its predicted entropy (it looks at the byte it cuts before, so no real patcher
can: an upper bound on what equal-information patches could reach). Execution lives in `blt.experiments.run`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from blt.compare.config import ENTROPY, PRETRAINED, RULE_BASED, SEGMENTERS, TRAINED
from blt.config import ConfigError, _coerce, _type_name

# Kinds only experiments run: oracles that read the realised surprisal of the bytes they cut (upper bounds).
ORACLES = ("surprisal-budget",)
# Kinds that cut by a byte model's scores: a target calibrates their value on the corpus, as in `blt compare`.
SCORED = (*ENTROPY, *ORACLES)
KINDS = (*SEGMENTERS, *ORACLES)  # plus hf:NAME_OR_PATH
# Which parameters each kind takes (hf:NAME takes none, like the pretrained tokenisers).
PARAMS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(TRAINED, ("vocab_size",)),
    **dict.fromkeys(PRETRAINED, ()),
    **dict.fromkeys(RULE_BASED, ()),
    "fixed": ("patch_size",),
    **dict.fromkeys(ENTROPY, ("target_bytes_per_patch", "threshold", "max_patch_length")),
    **dict.fromkeys(("entropy-budget", *ORACLES), ("target_bytes_per_patch", "budget", "max_patch_length")),
}
PARAM_TYPES = {"vocab_size": int, "patch_size": int, "target_bytes_per_patch": float, "threshold": float}
PARAM_TYPES["budget"] = float  # nats a budget patch may hold
PARAM_TYPES["max_patch_length"] = int | None  # type: ignore[assignment]
# Every metric a cell can report (SegmentationStats.summary, the model's bits/byte, timings).
METRICS = (
    *("documents", "bytes", "units", "words", "types", "bytes_per_unit", "fertility", "continued_word_rate"),
    *("shannon_efficiency_vocab", "shannon_efficiency_types", "renyi_efficiency_vocab", "renyi_efficiency_types"),
    "vocabulary_use",
    *("length_mean", "length_median", "length_p90", "length_max"),
    *("word_boundary_precision", "word_boundary_recall", "word_boundary_f1"),
    *("bits_per_unit_mean", "bits_per_unit_std", "bits_per_unit_cv", "bits_per_unit_p90"),
    *("bits_per_unit_mean_grader", "bits_per_unit_cv_grader"),  # graded by the experiment's `grader` (else None)
    *("model_bits_per_byte", "encode_mb_per_s", "train_seconds"),
)
# The parameter columns of every row (None where a cell has no such parameter); a budget cell's value is a budget
# (budget_nats), never a threshold.
PARAM_COLUMNS = (
    *("vocab_size", "target_bytes_per_patch", "threshold_nats", "budget_nats", "max_patch_length", "patch_size"),
)
TIMINGS = ("encode_mb_per_s", "train_seconds")  # the only columns allowed to differ between identical runs


@dataclass
class CorpusSpec:
    name: str  # the corpus's label in the results
    sources: list[str]  # as for `blt train --data`: files, dirs, globs, udhr, stdlib, HF names
    eval_sources: list[str] | None = None  # measure on these documents; None -> hold out eval_fraction of sources
    max_bytes: int | None = None  # read at most this many bytes of `sources`


@dataclass
class SegmenterSpec:
    kind: str  # a `blt compare` segmenter name, or hf:NAME_OR_PATH
    params: dict[str, list[Any]] = field(default_factory=dict)  # parameter -> values; cells are their product


@dataclass
class ExperimentConfig:
    name: str  # short name, used in the report
    corpora: list[CorpusSpec]
    segmenters: list[SegmenterSpec]
    description: str = ""  # the question the experiment answers
    models: list[str] = field(default_factory=lambda: ["default"])  # byte models: names, directories, runs
    grader: str | None = None  # a second byte model that also grades every cell (…_grader metrics); None: none
    metrics: list[str] | None = None  # report only these metrics (see METRICS); None -> all
    eval_fraction: float = 0.1  # documents held out for measuring when a corpus has no eval_sources
    max_eval_bytes: int | None = 1_000_000  # measure at most this many held-out bytes per corpus
    split_seed: int = 0  # seed of the train/evaluation split
    by_language: bool = True  # per-language rows for labelled corpora (udhr)
    precision: str = "32"  # byte-model scoring precision: 32, bf16, auto

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """SHA-256 of the resolved config: what decides whether an output directory holds this experiment."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Cell:
    """One measurement: a segmenter with one value per parameter, on one corpus, with one byte model (or None)."""

    corpus: str
    model: str | None
    kind: str
    params: tuple[tuple[str, Any], ...]  # sorted (name, value) pairs

    @property
    def param(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def id(self) -> str:
        blob = json.dumps([self.corpus, self.model, self.kind, self.params])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return segmenter_label(self.kind, self.param)


def segmenter_label(kind: str, p: dict[str, Any]) -> str:
    """`bpe-8192`, `fixed-4`, `entropy-global@4` (target), `entropy-monotonic θ0.5/max16`, `entropy-budget B6`,
    `space`: a segmenter kind with one value per parameter."""
    if p.get("vocab_size") is not None:
        return f"{kind}-{p['vocab_size']}"
    if p.get("patch_size") is not None:
        return f"{kind}-{p['patch_size']}"
    label = kind
    if p.get("target_bytes_per_patch") is not None:
        label += f"@{p['target_bytes_per_patch']:g}"
    elif p.get("threshold") is not None:
        label += f" θ{p['threshold']:g}"
    elif p.get("budget") is not None:
        label += f" B{p['budget']:g}"
    if p.get("max_patch_length") is not None:
        label += f"/max{p['max_patch_length']}"
    return label


def _fields(cls: type, raw: dict[str, Any], where: str, errors: list[str], skip: tuple[str, ...] = ()) -> dict:
    """Coerce `raw` to `cls`'s field types; unknown keys and type errors go to `errors`."""
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    out = {}
    for key, value in raw.items():
        if key not in valid:
            errors.append(f"unknown key {where}{key} (valid: {', '.join(valid)})")
            continue
        try:
            out[key] = _coerce(value, hints[key])
        except TypeError:
            errors.append(f"{where}{key} must be {_type_name(hints[key])}, got {value!r}")
    return out


def _corpus(raw: Any, i: int, errors: list[str]) -> CorpusSpec | None:
    if isinstance(raw, str):  # shorthand: `- udhr`
        raw = {"name": raw, "sources": [raw]}
    if not isinstance(raw, dict):
        errors.append(f"corpora[{i}] must be a name or a mapping with name and sources, got {raw!r}")
        return None
    kw = _fields(CorpusSpec, raw, f"corpora[{i}].", errors)
    if "sources" not in kw or not kw["sources"]:
        errors.append(f"corpora[{i}] needs sources (files, dirs, globs, udhr, stdlib, HF names)")
        return None
    kw.setdefault("name", kw["sources"][0])
    return CorpusSpec(**kw)


def _segmenter(raw: Any, i: int, errors: list[str]) -> SegmenterSpec | None:
    if isinstance(raw, str):  # shorthand: `- space`
        raw = {"kind": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("kind"), str):
        errors.append(f"segmenters[{i}] must be a kind or a mapping with kind and parameters, got {raw!r}")
        return None
    kind = raw["kind"]
    if kind not in KINDS and not kind.startswith("hf:"):
        errors.append(f"segmenters[{i}]: unknown segmenter {kind!r} (valid: {', '.join(KINDS)}, hf:NAME_OR_PATH)")
        return None
    takes = PARAMS.get(kind, ())
    params: dict[str, list[Any]] = {}
    for key, value in raw.items():
        if key == "kind":
            continue
        if key not in takes:
            valid = ", ".join(takes) or "no parameters"
            errors.append(f"segmenters[{i}] ({kind}): unknown parameter {key!r} (it takes {valid})")
            continue
        values = value if isinstance(value, list) else [value]
        try:
            params[key] = [_coerce(v, PARAM_TYPES[key]) for v in values]
        except TypeError:
            errors.append(f"segmenters[{i}].{key} must be {_type_name(PARAM_TYPES[key])} or a list, got {value!r}")
            continue
        if not params[key]:
            errors.append(f"empty grid: segmenters[{i}].{key} lists no values")
        bad = [v for v in params[key] if v is not None and v <= (259 if key == "vocab_size" else 0)]
        if bad:
            floor = "≥ 260 (256 bytes + specials)" if key == "vocab_size" else "> 0"
            errors.append(f"segmenters[{i}].{key} must be {floor}, got {bad[0]!r}")
    for value in ("threshold", "budget"):
        if "target_bytes_per_patch" in params and value in params:
            errors.append(
                f"segmenters[{i}] ({kind}): {value} and target_bytes_per_patch conflict in one cell; give one "
                f"(a target is calibrated to a {value}), or two entries"
            )
    if any(t is not None and t < 1 for t in params.get("target_bytes_per_patch", [])):
        errors.append(f"segmenters[{i}].target_bytes_per_patch must be ≥ 1 byte")
    return SegmenterSpec(kind, params)


def _listed(raw: dict[str, Any], key: str, errors: list[str]) -> list[Any]:
    """raw[key] as a list: one name (`segmenters: space`) is a list of one, not its letters; other types are an
    error."""
    value = raw.get(key) or []
    if isinstance(value, (str, dict)):
        return [value]
    if not isinstance(value, list):
        errors.append(f"{key} must be a list, got {value!r}")
        return []
    return value


def experiment_from_dict(raw: Any, *, source: str = "experiment") -> ExperimentConfig:
    """Build and validate an `ExperimentConfig`; every problem goes into one `ConfigError`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with name, corpora and segmenters, got {type(raw).__name__}")
    errors: list[str] = []
    kw = _fields(ExperimentConfig, {k: v for k, v in raw.items() if k not in ("corpora", "segmenters")}, "", errors)
    corpora = [_corpus(c, i, errors) for i, c in enumerate(_listed(raw, "corpora", errors))]
    segmenters = [_segmenter(s, i, errors) for i, s in enumerate(_listed(raw, "segmenters", errors))]
    kw["corpora"] = [c for c in corpora if c is not None]
    kw["segmenters"] = [s for s in segmenters if s is not None]
    kw.setdefault("name", Path(source).stem)
    cfg = ExperimentConfig(**kw)
    if not raw.get("corpora"):
        errors.append("empty grid: no corpora (add corpora: [udhr] or paths)")
    if not raw.get("segmenters"):
        errors.append("empty grid: no segmenters (add e.g. segmenters: [bpe, space, entropy-global])")
    names = [c.name for c in cfg.corpora]
    if len(set(names)) < len(names):
        errors.append(f"corpus names must be unique, got {names}")
    if cfg.metrics is not None:
        unknown = [m for m in cfg.metrics if m not in METRICS]
        if unknown:
            errors.append(f"unknown metric {unknown[0]!r} (valid: {', '.join(METRICS)})")
    if not 0 < cfg.eval_fraction < 1:
        errors.append(f"eval_fraction must be in (0, 1), got {cfg.eval_fraction}")
    if cfg.precision not in ("32", "bf16", "auto"):
        errors.append(f"precision must be 32, bf16 or auto, got {cfg.precision!r}")
    if not cfg.models and any(s.kind in SCORED for s in cfg.segmenters):
        errors.append("entropy segmenters need a byte model: list one under models (e.g. [default])")
    if cfg.grader is not None and not cfg.grader.strip():
        errors.append("grader must name a byte model (a name, directory or run), or be null for none")
    if errors:
        raise ConfigError(f"{source}: " + "; ".join(errors))
    return cfg


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`key=value` / `a.b.0.c=value` (values as YAML) into a copy of `raw`; list items by index."""
    raw = json.loads(json.dumps(raw))  # a deep copy of plain YAML data
    errors = []
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            errors.append(f"bad --set {item!r}: expected key=value, e.g. max_eval_bytes=200000")
            continue
        node: Any = raw
        try:
            for part in parts[:-1]:
                node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
            last = parts[-1]
            try:
                parsed = yaml.safe_load(value.strip()) if value.strip() else None
            except yaml.YAMLError as exc:
                problem = getattr(exc, "problem", None) or type(exc).__name__
                errors.append(f"bad --set {item!r}: the value is not valid YAML ({problem}); quote it or fix it")
                continue
            if isinstance(node, list):
                node[int(last)] = parsed
            else:
                node[last] = parsed
        except (ValueError, IndexError, TypeError, AttributeError):
            errors.append(f"bad --set {item!r}: {key} does not address a value of this experiment")
    if errors:
        raise ConfigError("; ".join(errors))
    return raw


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read an experiment YAML (a path, or the name of a shipped one: see `shipped_experiments`)."""
    path = resolve_experiment(path)
    return experiment_from_dict(read_yaml(path, overrides), source=str(path))


def read_yaml(path: Path, overrides: list[str] | None = None) -> Any:
    """A config file's YAML with `--set` overrides applied (`blt experiment` and `blt downstream`)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if overrides:
        raw = apply_overrides(raw if isinstance(raw, dict) else {}, overrides)
    return raw


def experiments_dir() -> Path:
    """configs/experiments of this source tree (the package sits next to configs/ in a checkout)."""
    return Path(__file__).resolve().parents[2] / "configs" / "experiments"


def shipped_experiments() -> dict[str, Path]:
    return {p.stem: p for p in sorted(experiments_dir().glob("*.yaml"))}


def resolve_experiment(spec: str | Path) -> Path:
    path = Path(spec)
    if path.is_file():
        return path
    shipped = shipped_experiments()
    if str(spec) in shipped:
        return shipped[str(spec)]
    names = ", ".join(shipped) or "none found"
    if path.is_dir():
        raise ConfigError(f"experiment config {spec} is a directory; pass a YAML file or a shipped name ({names})")
    raise ConfigError(f"experiment config {spec} does not exist; pass a YAML path or a shipped name ({names})")


def expand(cfg: ExperimentConfig) -> list[Cell]:
    """Every cell, in a stable order: corpus, then model, then segmenter entry, then the parameter product."""
    cells = []
    for corpus in cfg.corpora:
        for model in cfg.models or [None]:
            for seg in cfg.segmenters:
                names = sorted(seg.params)
                for values in itertools.product(*(seg.params[n] for n in names)):
                    cells.append(Cell(corpus.name, model, seg.kind, tuple(zip(names, values, strict=True))))
    seen: dict[str, Cell] = {}
    for c in cells:
        if c.id in seen:
            raise ConfigError(f"cell {c.label} on {c.corpus} appears twice in the grid; remove the duplicate")
        seen[c.id] = c
    return cells
