"""A patcher you can keep: `Patcher.save(dir)` writes the rule, its calibrated values, what it was calibrated on
(by hash) and the byte model's weights into one directory; `load_patcher(dir)` (`Patcher.load`) rebuilds it, so a
calibrated patcher is shared the way a trained tokeniser is.

    DIR/patcher.json   format, blt version, rule and values (nats), lengths, calibration record, model hash
    DIR/model/         the byte model (safetensors + config + card), for entropy rules only

The model is copied, never referenced by path, so the directory stands alone; its hash is checked on load (a
model that changed is an error, not different patches). The directory is written beside its target and renamed
into place: an interrupted save leaves the old patcher (or nothing), never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blt.errors import BltError

if TYPE_CHECKING:
    from blt.segment.patcher import Patcher

PATCHER_FORMAT = "blt-patcher"
PATCHER_FORMAT_VERSION = 1
PATCHER_FILE = "patcher.json"
MODEL_DIR = "model"
_VALUES = ("threshold", "relative_threshold", "budget")  # Patcher attribute -> "<name>_nats" in the file
_CARD_OWN = ("format", "format_version", "blt_version", "torch_version", "created")  # save_model_dir writes these
_SETTINGS = ("max_patch_length", "min_patch_length", "patch_size", "reset_at_newlines", "precision", "online_lr")


def save_patcher(patcher: Patcher, path: str | Path) -> Path:
    """Write `patcher` to the directory `path` (replacing a saved patcher there; any other existing directory that
    is not empty is refused). A patcher with a target but no calibrated value yet is refused: fit it first."""
    from blt._version import __version__
    from blt.bytelm.checkpoint import save_model_dir
    from blt.cache import model_hash
    from blt.config import Config

    path = Path(path)
    if patcher.target_bytes_per_patch is not None:
        raise BltError(
            "this patcher is not calibrated yet (it has a target, no value): call fit(texts) first, or use "
            "blt calibrate --save DIR"
        )
    check_save_target(path)
    record: dict[str, Any] = {
        "format": PATCHER_FORMAT,
        "format_version": PATCHER_FORMAT_VERSION,
        "blt_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rule": patcher.rule,
        **{f"{name}_nats": getattr(patcher, name) for name in _VALUES},
        **{name: getattr(patcher, name) for name in _SETTINGS},
        "calibration": patcher.calibration,
        "model": None,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        if patcher.model is not None:
            lm = patcher.model
            cfg = getattr(lm, "full_config", None) or Config(model=lm.cfg)
            save_model_dir(
                lm, cfg, {k: v for k, v in getattr(lm, "card", {}).items() if k not in _CARD_OWN}, tmp / MODEL_DIR
            )
            record["model"] = {"dir": MODEL_DIR, "sha256": model_hash(lm), "source": patcher.model_source}
        (tmp / PATCHER_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes a 0700 directory
        os.chmod(tmp / PATCHER_FILE, 0o666 & ~umask)
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        raise BltError(f"cannot write the patcher to {path} ({e.strerror or e}); choose a writable directory") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def check_save_target(path: str | Path) -> None:
    """Fail before any work when `path` cannot take a saved patcher: a file, or a directory holding anything but a
    saved patcher (which a save replaces)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BltError(f"{path} is a file; give a directory for the saved patcher")
    if path.is_dir() and any(path.iterdir()) and not (path / PATCHER_FILE).is_file():
        raise BltError(f"{path} exists and is not a saved patcher (nor empty); choose a new or empty directory")


def read_patcher_record(path: str | Path) -> dict[str, Any]:
    """`path/patcher.json`, checked: every problem says what is wrong and how to get a good one."""
    path = Path(path)
    fix = "write one with: blt calibrate --data CORPUS --target-bytes-per-patch X --save DIR"
    if not path.is_dir():
        raise BltError(f"no saved patcher at {path} (not a directory); {fix}")
    file = path / PATCHER_FILE
    if not file.is_file():
        raise BltError(f"{path} is not a saved patcher: it has no {PATCHER_FILE}; {fix}")
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BltError(f"{file} is damaged ({type(e).__name__}); save the patcher again ({fix})") from None
    if not isinstance(record, dict) or record.get("format") != PATCHER_FORMAT:
        raise BltError(f"{file} is not a blt patcher file (format {PATCHER_FORMAT!r} expected); {fix}")
    version = record.get("format_version")
    if not isinstance(version, int) or version > PATCHER_FORMAT_VERSION:
        raise BltError(
            f"{file} has format_version {version!r}, newer than this blt reads ({PATCHER_FORMAT_VERSION}); "
            f"upgrade: pip install -U blt-patcher"
        )
    return record


def load_patcher(path: str | Path, **overrides: Any) -> Patcher:
    """The patcher saved in `path`, with its rule and values as saved (no recalibration). `overrides` set
    run-time options that do not change the patches' definition (precision, batch_size, cache, progress)."""
    from blt.bytelm.checkpoint import load_model
    from blt.cache import model_hash
    from blt.segment.patcher import Patcher

    path = Path(path)
    record = read_patcher_record(path)
    bad = set(overrides) - {"precision", "batch_size", "cache", "progress"}
    if bad:
        raise BltError(f"a saved patcher's rule and values are fixed; cannot override {sorted(bad)}")
    model: Any = "default"
    if record.get("model"):
        model_dir = path / str(record["model"].get("dir", MODEL_DIR))
        model = load_model(model_dir)
        if model_hash(model) != record["model"].get("sha256"):
            raise BltError(
                f"the model in {model_dir} is not the one this patcher was calibrated with (hash mismatch); "
                f"save the patcher again"
            )
    try:
        values: dict[str, Any] = {name: record.get(f"{name}_nats") for name in _VALUES}
        values |= {name: record.get(name) for name in _SETTINGS if name != "precision"}
        values["reset_at_newlines"] = bool(values["reset_at_newlines"])
        patcher = Patcher(
            model,
            rule=record["rule"],
            precision=overrides.pop("precision", record.get("precision") or "32"),
            **values,
            **overrides,
        )
    except KeyError as e:
        raise BltError(f"{path / PATCHER_FILE} lacks {e}; save the patcher again") from None
    patcher.calibration = record.get("calibration")
    patcher.model_source = str(path)
    return patcher
