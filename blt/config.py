"""Configuration as data: dataclasses for the model, data and training, YAML loading, `--set` overrides and
validation that reports every problem at once.

A YAML file mirrors `Config` one to one (`model:`, `data:`, `train:` sections). Unknown keys and wrongly typed
values are collected into a single `ConfigError` that lists the valid keys, so a user fixes a file in one pass.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from blt.errors import BltError


class ConfigError(BltError):
    """A configuration file or override is invalid; the message lists every problem found."""


# Ids 0..255 are the byte values; the specials follow. One spare id keeps the vocabulary a multiple of 4.
BOS_ID = 256
EOS_ID = 257
PAD_ID = 258
N_BYTE_VALUES = 256


@dataclass
class ModelConfig:
    vocab_size: int = 260  # 256 byte values + BOS, EOS, PAD and one spare id
    n_layers: int = 2  # transformer blocks
    d_model: int = 128  # residual stream width
    n_heads: int = 4  # attention heads; d_model must divide evenly
    ffn_hidden: int | None = None  # SwiGLU hidden width; None -> 8/3 * d_model rounded up to a multiple of 32
    context: int = 512  # longest input the model is trained on (bytes, BOS included)
    sliding_window: int | None = None  # attend to at most this many previous positions; None -> full causal
    tie_embeddings: bool = True  # share the input embedding with the output projection
    rope_base: float = 10000.0  # rotary position base frequency
    norm_eps: float = 1e-5  # RMSNorm epsilon
    dropout: float = 0.0  # dropout on attention output and MLP output during training
    temperature: float = (
        1.0  # logits are divided by it; 1 as trained, else fitted after (blt compare --fit-temperature)
    )


@dataclass
class DataConfig:
    sources: list[str] = field(default_factory=lambda: ["udhr"])  # files, dirs, globs, bundled or HF names
    val_fraction: float = 0.05  # share of documents held out for validation (chosen by a hash of the content)
    split_seed: int = 0  # seed of the deterministic train/validation split
    text_field: str = "text"  # field holding the text in .jsonl/.json/.parquet files and HF datasets
    hf_split: str = "train"  # split name passed to datasets.load_dataset
    hf_num_proc: int | None = None  # HF datasets: prepare with N processes into memory-mapped Arrow; None -> stream
    max_bytes: int | None = None  # stop reading sources after this many bytes (None: read everything)
    cache_dir: str | None = None  # where the byte memmaps live; None -> $BLT_CACHE or ~/.cache/blt


@dataclass
class TrainConfig:
    seed: int = 0  # seeds weights, data windows and dropout
    batch_size: int = 32  # windows per optimizer step (per device)
    max_steps: int = 1000  # optimizer steps
    max_time: str | None = None  # wall-clock cap "DD:HH:MM:SS"; the run stops cleanly and exports
    lr: float = 3e-3  # peak AdamW learning rate
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100  # linear warmup steps
    weight_decay: float = 0.1  # AdamW weight decay on matrices (not on norms or embeddings)
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.95  # AdamW beta2
    grad_clip: float = 1.0  # gradient norm clip; 0 disables
    accelerator: str = "auto"  # Lightning accelerator: auto, cpu, gpu, cuda, mps
    devices: int | str = "auto"  # number of devices or "auto"
    strategy: str = "auto"  # Lightning strategy: auto, ddp, fsdp, ...
    num_nodes: int = 1  # machines for multi-node training
    precision: str = "auto"  # auto -> bf16-mixed on GPU, 32-true on CPU; any Lightning precision string
    val_every_steps: int = 200  # validation (bits per byte) every this many steps
    val_batches: int = 16  # batches per validation pass (fixed windows, so passes are comparable)
    ckpt_every_steps: int = 200  # write checkpoints/last.ckpt this often (resume point after a crash)
    log_every_steps: int = 10  # CSV logging interval
    num_workers: int = 0  # DataLoader worker processes
    progress_bar: bool = True  # rich progress bar


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self) -> str:
        text: str = yaml.safe_dump(self.to_dict(), sort_keys=False)
        return text


SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


class _Raw(str):
    """An override value as typed on the command line; parsed according to the field it targets."""


_NULLS = {"null", "none", "~", ""}


def _coerce(value: Any, tp: Any) -> Any:
    """Return `value` as type `tp`, or raise TypeError. Ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and (value is None or (isinstance(value, _Raw) and value.lower() in _NULLS)):
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except TypeError:
                pass
        raise TypeError
    if isinstance(value, _Raw):
        if tp is str:
            return str(value)
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise TypeError from None
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):  # a single source given where a list is expected
            value = [value]
        if not isinstance(value, list):
            raise TypeError
        return [_coerce(v, item_tp) for v in value]
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    if tp is str and isinstance(value, str):
        return value
    raise TypeError


# What Lightning accepts, kept here so a typo fails in validation, before a run directory or a Trainer exists
# (tests/test_config.py checks these against Lightning's own lists).
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = (
    "auto",
    *("32-true", "32", "bf16-mixed", "bf16", "bf16-true", "16-mixed", "16", "16-true", "64-true", "64"),
    *("transformer-engine", "transformer-engine-float16"),
)
STRATEGIES = (
    "auto",
    *("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_find_unused_parameters_true", "single_device"),
    *("fsdp", "fsdp_cpu_offload", "deepspeed", "deepspeed_stage_1", "deepspeed_stage_2", "deepspeed_stage_3"),
)
MAX_TIME = re.compile(r"(\d+):([0-5]\d):([0-5]\d):([0-5]\d)")  # Lightning's Timer: DD:HH:MM:SS
MAX_SEED = 2**32 - 1  # numpy's seed range, which Lightning's seed_everything enforces


def _check_values(cfg: Config) -> list[tuple[tuple[str, ...], str]]:
    """Semantic checks beyond types: every problem as (the fields it involves, message), none raised.

    Each check states what must hold, so a NaN (false in every comparison) fails it."""
    m, d, t = cfg.model, cfg.data, cfg.train
    errors: list[tuple[tuple[str, ...], str]] = []

    def need(ok: bool, fields: str, message: str) -> None:
        if not ok:
            errors.append((tuple(fields.split()), message))

    need(
        m.vocab_size >= N_BYTE_VALUES + 3,
        "model.vocab_size",
        f"model.vocab_size must be ≥ 259 (256 bytes + BOS, EOS, PAD), got {m.vocab_size}",
    )
    for name in ("n_layers", "d_model", "n_heads", "context"):
        need(getattr(m, name) >= 1, f"model.{name}", f"model.{name} must be ≥ 1, got {getattr(m, name)}")
    if m.n_heads >= 1 and m.d_model >= 1:
        need(
            m.d_model % m.n_heads == 0,
            "model.d_model model.n_heads",
            f"model.d_model ({m.d_model}) must be divisible by model.n_heads ({m.n_heads})",
        )
        need(
            m.d_model % m.n_heads != 0 or (m.d_model // m.n_heads) % 2 == 0,
            "model.d_model model.n_heads",
            f"model head size d_model/n_heads = {m.d_model // m.n_heads} must be even for rotary positions",
        )
    need(
        m.ffn_hidden is None or m.ffn_hidden >= 1,
        "model.ffn_hidden",
        f"model.ffn_hidden must be ≥ 1 or null (auto), got {m.ffn_hidden}",
    )
    need(
        m.sliding_window is None or m.sliding_window >= 1,
        "model.sliding_window",
        f"model.sliding_window must be ≥ 1 or null, got {m.sliding_window}",
    )
    need(
        m.rope_base > 0 and math.isfinite(m.rope_base),
        "model.rope_base",
        f"model.rope_base must be > 0, got {m.rope_base}",
    )
    need(
        m.norm_eps > 0 and math.isfinite(m.norm_eps), "model.norm_eps", f"model.norm_eps must be > 0, got {m.norm_eps}"
    )
    need(0.0 <= m.dropout < 1.0, "model.dropout", f"model.dropout must be in [0, 1), got {m.dropout}")
    need(
        0.0 < m.temperature <= 100.0, "model.temperature", f"model.temperature must be in (0, 100], got {m.temperature}"
    )
    need(0.0 <= d.val_fraction < 1.0, "data.val_fraction", f"data.val_fraction must be in [0, 1), got {d.val_fraction}")
    need(
        d.hf_num_proc is None or d.hf_num_proc >= 1,
        "data.hf_num_proc",
        f"data.hf_num_proc must be ≥ 1 or null (stream), got {d.hf_num_proc}",
    )
    need(
        d.max_bytes is None or d.max_bytes >= 1,
        "data.max_bytes",
        f"data.max_bytes must be ≥ 1 or null (all), got {d.max_bytes}",
    )
    sources = "files, directories, globs, 'udhr', 'stdlib' or HF names"
    need(bool(d.sources), "data.sources", f"data.sources is empty; give {sources}")
    need(all(s.strip() for s in d.sources), "data.sources", f"data.sources has an empty name; give {sources}")
    need(bool(d.text_field), "data.text_field", "data.text_field must name a field, got ''")
    need(bool(d.hf_split), "data.hf_split", "data.hf_split must name a split, got ''")
    need(0 <= t.seed <= MAX_SEED, "train.seed", f"train.seed must be in [0, 2**32 - 1], got {t.seed}")
    for name in ("batch_size", "max_steps", "val_every_steps", "val_batches", "ckpt_every_steps", "log_every_steps"):
        need(getattr(t, name) >= 1, f"train.{name}", f"train.{name} must be ≥ 1, got {getattr(t, name)}")
    need(t.lr > 0 and math.isfinite(t.lr), "train.lr", f"train.lr must be > 0, got {t.lr}")
    need(t.warmup_steps >= 0, "train.warmup_steps", f"train.warmup_steps must be ≥ 0, got {t.warmup_steps}")
    for name in ("grad_clip", "weight_decay"):
        value = getattr(t, name)
        need(value >= 0 and math.isfinite(value), f"train.{name}", f"train.{name} must be ≥ 0, got {value}")
    need(
        0.0 <= t.min_lr_ratio <= 1.0,
        "train.min_lr_ratio",
        f"train.min_lr_ratio must be in [0, 1], got {t.min_lr_ratio}",
    )
    for name in ("beta1", "beta2"):
        value = getattr(t, name)
        need(0.0 <= value < 1.0, f"train.{name}", f"train.{name} must be in [0, 1), got {value}")
    need(
        t.max_time is None or MAX_TIME.fullmatch(t.max_time.strip()) is not None,
        "train.max_time",
        f"train.max_time must be DD:HH:MM:SS (e.g. 00:02:30:00 for two and a half hours) or null, got {t.max_time!r}",
    )
    need(
        t.max_time is None or not MAX_TIME.fullmatch(t.max_time.strip()) or any(map(int, t.max_time.split(":"))),
        "train.max_time",
        f"train.max_time must be longer than zero, got {t.max_time!r}",
    )
    need(
        t.accelerator in ACCELERATORS,
        "train.accelerator",
        f"train.accelerator must be one of {', '.join(ACCELERATORS)}, got {t.accelerator!r}",
    )
    need(
        t.precision in PRECISIONS,
        "train.precision",
        f"train.precision must be one of {', '.join(PRECISIONS)}, got {t.precision!r}",
    )
    need(
        t.strategy in STRATEGIES,
        "train.strategy",
        f"train.strategy must be one of {', '.join(STRATEGIES)}, got {t.strategy!r}",
    )
    need(
        t.devices == "auto" or (isinstance(t.devices, int) and t.devices >= 1),
        "train.devices",
        f"train.devices must be a number or 'auto' (a count ≥ 1), got {t.devices!r}",
    )
    need(t.num_nodes >= 1, "train.num_nodes", f"train.num_nodes must be ≥ 1, got {t.num_nodes}")
    need(t.num_workers >= 0, "train.num_workers", f"train.num_workers must be ≥ 0, got {t.num_workers}")
    return errors


def _origin(section: str, key: str, value: Any) -> str | None:
    """Where a value came from: `--set section.key=value` for an override, None for the config file."""
    return f"--set {section}.{key}={value}" if isinstance(value, _Raw) else None


def _message(source: str, problems: list[tuple[str | None, str]]) -> str:
    """The file's problems under its name, then each `--set` problem under the override that caused it."""
    in_file = [text for origin, text in problems if origin is None]
    parts = [f"{source}: " + "; ".join(in_file)] if in_file else []
    return "; ".join(parts + [f"{origin}: {text}" for origin, text in problems if origin is not None])


def config_from_dict(raw: Any, *, source: str = "config") -> Config:
    """Build and validate a `Config` from nested dicts; every problem goes into one `ConfigError`. Values that came
    from `--set` (see `parse_overrides`) are blamed on the override, the rest on `source`."""
    problems: list[tuple[str | None, str]] = []
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with sections {', '.join(SECTIONS)}, got {type(raw).__name__}")
    sections: dict[str, Any] = {}
    overridden: dict[str, str] = {}  # "section.key" -> "--set section.key=value"
    for key, values in raw.items():
        if key not in SECTIONS:
            items = values.items() if isinstance(values, dict) else []
            origin = next((o for k, v in items if (o := _origin(key, k, v))), None)
            problems.append((origin, f"unknown section {key!r} (valid: {', '.join(SECTIONS)})"))
    for name, cls in SECTIONS.items():
        values = raw.get(name) or {}
        if not isinstance(values, dict):
            problems.append((None, f"section {name!r} must be a mapping, got {type(values).__name__}"))
            sections[name] = cls()
            continue
        hints = typing.get_type_hints(cls)
        valid = [f.name for f in dataclasses.fields(cls)]
        kwargs = {}
        for key, value in values.items():
            origin = _origin(name, key, value)
            if key not in hints:
                problems.append((origin, f"unknown key {name}.{key} (valid {name} keys: {', '.join(valid)})"))
                continue
            if origin is not None:
                overridden[f"{name}.{key}"] = origin
            try:
                kwargs[key] = _coerce(value, hints[key])
            except TypeError:
                hint = " (quote it in YAML)" if isinstance(value, int) and "str" in _type_name(hints[key]) else ""
                problems.append((origin, f"{name}.{key} must be {_type_name(hints[key])}, got {value!r}{hint}"))
        sections[name] = cls(**kwargs)
    cfg = Config(**sections)
    # Fields with key or type errors hold defaults, so these checks stay valid.
    for fields, text in _check_values(cfg):
        problems.append((next((overridden[f] for f in fields if f in overridden), None), text))
    if problems:
        raise ConfigError(_message(source, problems))
    return cfg


def parse_overrides(overrides: list[str]) -> dict[str, dict[str, Any]]:
    """Turn `["train.lr=1e-3", "data.sources=[a.txt, b.txt]"]` into nested dicts (values parsed as YAML)."""
    nested: dict[str, dict[str, Any]] = {}
    errors = []
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            errors.append(f"bad --set {item!r}: expected section.key=value, e.g. train.lr=1e-3")
            continue
        parsed = _Raw(value.strip())
        nested.setdefault(parts[0], {})[parts[1]] = parsed
    if errors:
        raise ConfigError("; ".join(errors))
    return nested


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or the defaults when `path` is None) and apply `section.key=value` overrides."""
    raw: Any = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if path.is_dir():
            raise ConfigError(f"config {path} is a directory; pass a YAML file such as configs/tiny.yaml")
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; see configs/ for examples")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(exc)}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{path} is not valid YAML: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
            ) from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(
                f"{path}: expected a mapping with sections {', '.join(SECTIONS)}, got {type(raw).__name__}"
            )
    if overrides:
        raw = _merge(raw, parse_overrides(overrides))
    return config_from_dict(raw, source=source)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's problem and where it is ("line 3, column 7: mapping values are not allowed here"), whole."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem
