"""Configuration as data: dataclasses for the model, data and training, YAML loading, `--set` overrides and
validation that reports every problem at once.

A YAML file mirrors `Config` one to one (`model:`, `data:`, `train:` sections). Unknown keys and wrongly typed
values are collected into a single `ConfigError` that lists the valid keys, so a user fixes a file in one pass.
"""

from __future__ import annotations

import dataclasses
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
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


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


def _check_values(cfg: Config) -> list[str]:
    """Semantic checks beyond types; every problem is returned, none raised."""
    m, d, t = cfg.model, cfg.data, cfg.train
    errors = []
    if m.vocab_size < N_BYTE_VALUES + 3:
        errors.append(f"model.vocab_size must be ≥ 259 (256 bytes + BOS, EOS, PAD), got {m.vocab_size}")
    for name in ("n_layers", "d_model", "n_heads", "context"):
        if getattr(m, name) < 1:
            errors.append(f"model.{name} must be ≥ 1, got {getattr(m, name)}")
    if m.n_heads >= 1 and m.d_model % m.n_heads:
        errors.append(f"model.d_model ({m.d_model}) must be divisible by model.n_heads ({m.n_heads})")
    elif m.n_heads >= 1 and (m.d_model // m.n_heads) % 2:
        errors.append(f"model head size d_model/n_heads = {m.d_model // m.n_heads} must be even for rotary")
    if m.sliding_window is not None and m.sliding_window < 1:
        errors.append(f"model.sliding_window must be ≥ 1 or null, got {m.sliding_window}")
    if not 0.0 <= m.dropout < 1.0:
        errors.append(f"model.dropout must be in [0, 1), got {m.dropout}")
    if not 0.0 <= d.val_fraction < 1.0:
        errors.append(f"data.val_fraction must be in [0, 1), got {d.val_fraction}")
    if d.hf_num_proc is not None and d.hf_num_proc < 1:
        errors.append(f"data.hf_num_proc must be ≥ 1 or null (stream), got {d.hf_num_proc}")
    if not d.sources:
        errors.append("data.sources is empty; give files, directories, globs, 'udhr', 'stdlib' or HF names")
    for name in ("batch_size", "max_steps", "val_every_steps", "val_batches", "ckpt_every_steps"):
        if getattr(t, name) < 1:
            errors.append(f"train.{name} must be ≥ 1, got {getattr(t, name)}")
    if t.lr <= 0:
        errors.append(f"train.lr must be > 0, got {t.lr}")
    if t.warmup_steps < 0 or t.grad_clip < 0 or t.weight_decay < 0:
        errors.append("train.warmup_steps, train.grad_clip and train.weight_decay must be ≥ 0")
    if isinstance(t.devices, str) and t.devices != "auto":
        errors.append(f"train.devices must be a number or 'auto', got {t.devices!r}")
    if isinstance(t.devices, int) and t.devices < 1:
        errors.append(f"train.devices must be ≥ 1, got {t.devices}")
    if not 0.0 <= t.min_lr_ratio <= 1.0:
        errors.append(f"train.min_lr_ratio must be in [0, 1], got {t.min_lr_ratio}")
    if not (0.0 <= t.beta1 < 1.0 and 0.0 <= t.beta2 < 1.0):
        errors.append(f"train.beta1 and train.beta2 must be in [0, 1), got {t.beta1}, {t.beta2}")
    if t.num_workers < 0 or t.num_nodes < 1 or t.log_every_steps < 1:
        errors.append("train.num_workers must be ≥ 0, train.num_nodes and train.log_every_steps ≥ 1")
    return errors


def config_from_dict(raw: Any, *, source: str = "config") -> Config:
    """Build and validate a `Config` from nested dicts; every problem goes into one `ConfigError`."""
    errors: list[str] = []
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with sections {sorted(SECTIONS)}, got {type(raw).__name__}")
    sections: dict[str, Any] = {}
    for key in raw:
        if key not in SECTIONS:
            errors.append(f"unknown section {key!r} (valid: {', '.join(SECTIONS)})")
    for name, cls in SECTIONS.items():
        values = raw.get(name) or {}
        if not isinstance(values, dict):
            errors.append(f"section {name!r} must be a mapping, got {type(values).__name__}")
            sections[name] = cls()
            continue
        hints = typing.get_type_hints(cls)
        valid = [f.name for f in dataclasses.fields(cls)]
        kwargs = {}
        for key, value in values.items():
            if key not in hints:
                errors.append(f"unknown key {name}.{key} (valid {name} keys: {', '.join(valid)})")
                continue
            try:
                kwargs[key] = _coerce(value, hints[key])
            except TypeError:
                hint = " (quote it in YAML)" if isinstance(value, int) and "str" in _type_name(hints[key]) else ""
                errors.append(f"{name}.{key} must be {_type_name(hints[key])}, got {value!r}{hint}")
        sections[name] = cls(**kwargs)
    cfg = Config(**sections)
    errors += _check_values(cfg)  # fields with key or type errors hold defaults, so these checks stay valid
    if errors:
        raise ConfigError(f"{source}: " + "; ".join(errors))
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
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; see configs/ for examples")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if raw is None:
            raw = {}
    if overrides:
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a mapping with sections {sorted(SECTIONS)}")
        raw = _merge(raw, parse_overrides(overrides))
    return config_from_dict(raw, source=source)
