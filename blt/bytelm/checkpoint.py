"""Model directories and checkpoints on disk: saving a trained `ByteLM` as safetensors + resolved config + card,
and loading a model by name (`"default"`, the bundled model), model directory, run directory or `.ckpt`, or BLT's
released entropy model as `"hf:NAME_OR_DIR"` (`blt.bytelm.hf_blt`).

Nothing here unpickles arbitrary objects: weights come from safetensors or `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model

from blt.bytelm import hf_blt
from blt.bytelm.model import ByteLM
from blt.config import Config, ConfigError, config_from_dict
from blt.errors import BltError, brief

MODEL_FORMAT = "blt-byte-lm"
MODEL_FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
CARD = "card.json"


BUNDLED_MODELS = ("default", "quality")  # --model NAME; each lives in blt/assets/NAME_model/


def bundled_model_dir(name: str = "default") -> Path:
    return Path(str(resources.files("blt") / "assets" / f"{name}_model"))


def save_model_dir(model: ByteLM, cfg: Config, card: dict[str, Any], path: str | Path) -> Path:
    """Write `path/{model.safetensors, config.yaml, card.json}` atomically (a temp dir renamed into place)."""
    from blt._version import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        save_model(model, str(tmp / WEIGHTS))  # tied weights are stored once
        (tmp / CONFIG).write_text(cfg.to_yaml())
        full_card = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "blt_version": __version__,
            "torch_version": torch.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **card,
        }
        (tmp / CARD).write_text(json.dumps(full_card, indent=2) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes a 0700 directory; a model directory is for everyone
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def read_card(path: str | Path) -> dict[str, Any]:
    """A model directory's card.json ({} when there is none); a damaged one is an error that says how to mend it."""
    card_path = Path(path) / CARD
    if not card_path.is_file():
        return {}
    fix = "restore it from the run directory, or delete it (it only describes the model)"
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BltError(f"{card_path} is not valid JSON (line {exc.lineno}: {exc.msg}); {fix}") from None
    except UnicodeDecodeError:
        raise BltError(f"{card_path} is not UTF-8 text; {fix}") from None
    if not isinstance(card, dict):
        raise BltError(f"{card_path} holds a JSON {type(card).__name__}, not an object; {fix}")
    return card


def update_card(path: str | Path, **fields: Any) -> dict[str, Any]:
    """Add or replace fields of a model directory's card.json (written atomically); returns the new card."""
    card_path = Path(path) / CARD
    card = read_card(path)
    card.update(fields)
    tmp = card_path.with_name(f".{CARD}.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, card_path)
    return card


def read_lightning_checkpoint(path: Path, map_location: Any = None) -> dict[str, Any]:
    """`torch.load(weights_only=True)` with a clear error for truncated or foreign files."""
    if not path.is_file():
        raise BltError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4": a foreign pickle gets its one error below
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle with foreign objects, ...
        raise BltError(
            f"{path} is not a readable checkpoint ({_load_error(exc)}); it may be truncated or corrupted"
        ) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise BltError(f"{path} is not a Lightning checkpoint written by blt train")
    return ckpt


def _load_error(exc: Exception) -> str:
    """What went wrong in `torch.load`, in a few words: torch's weights-only refusal puts the reason after its
    advice ("WeightsUnpickler error: Unsupported operand 186"); an empty file gives a bare EOFError."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    detail = brief(text, 120)
    return f"{type(exc).__name__}: {detail}" if detail else f"{type(exc).__name__}, an empty or cut-off file"


def _resolve(name_or_path: str | Path) -> Path:
    if str(name_or_path) in BUNDLED_MODELS:
        path = bundled_model_dir(str(name_or_path))
        if not (path / WEIGHTS).is_file():
            raise BltError(
                f"the bundled {name_or_path} model is missing from this installation; reinstall blt-patcher "
                "or pass --model PATH"
            )
        return path
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise BltError(
            f"model {name_or_path} not found; pass 'default' or 'quality' (bundled), a model directory "
            "(model.safetensors + config.yaml), a training run directory or a .ckpt file"
        )
    if path.is_dir() and not (path / WEIGHTS).is_file() and (path / "model" / WEIGHTS).is_file():
        return path / "model"  # a run directory
    return path


def _config_of(raw: Any, where: Path) -> Config:
    try:
        return config_from_dict(raw, source=str(where))
    except ConfigError as exc:
        raise BltError(f"{where} does not hold a valid blt config: {exc}") from None


def load_model(name_or_path: str | Path = "default", *, device: str | torch.device = "cpu") -> ByteLM:
    """A `ByteLM` in eval mode, with `.card` (dict) and `.full_config` (Config) set from its directory; `"hf:NAME"`
    (a hub name or directory) gives BLT's entropy model (`blt.bytelm.hf_blt`). `device="auto"` picks the GPU when
    one is visible."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if str(name_or_path).startswith(hf_blt.PREFIX):
        return hf_blt.load(str(name_or_path).removeprefix(hf_blt.PREFIX)).to(device).eval()
    path = _resolve(name_or_path)
    card: dict[str, Any] = {}
    if path.is_file() and path.suffix == ".ckpt":
        ckpt = read_lightning_checkpoint(path)
        if "blt_config" not in ckpt:
            raise BltError(f"{path} has no blt config; it was not written by blt train")
        cfg = _config_of(ckpt["blt_config"], path)
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        card = {"checkpoint": str(path), "steps": ckpt.get("global_step")}
    else:
        if path.is_file() and path.suffix == ".safetensors":
            raise BltError(f"pass the model directory that holds {path.name} ({path.parent}), not the file itself")
        if missing := [f for f in (WEIGHTS, CONFIG) if not (path / f).is_file()]:
            lacks = f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing"
            raise BltError(
                f"{path} is not a blt model: {lacks} (a model directory holds {WEIGHTS} and {CONFIG}; "
                "or pass a .ckpt file)"
            )
        if (card := read_card(path)).get("kind") == hf_blt.KIND:  # BLT's entropy model saved by blt (a patcher's)
            return hf_blt.load_saved(path, card).to(device).eval()
        try:
            raw = yaml.safe_load((path / CONFIG).read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            raise BltError(f"{path / CONFIG} is not valid YAML") from None
        cfg = _config_of(raw, path / CONFIG)
        try:
            state = load_file(str(path / WEIGHTS))
        except (SafetensorError, OSError) as exc:
            raise BltError(
                f"{path / WEIGHTS} is not readable safetensors ({brief(str(exc)) or type(exc).__name__}); it may be "
                "truncated: copy or save the model again"
            ) from None
    model = ByteLM(cfg.model)
    if cfg.model.tie_embeddings and "head.weight" not in state and "embed.weight" in state:
        state["head.weight"] = state["embed.weight"]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # "Error(s) in loading state_dict for ByteLM:" then one line per problem
        problems = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()] or [str(exc)]
        more = f"; {len(problems) - 1} more" if len(problems) > 1 else ""
        raise BltError(f"{path}: weights do not match its config ({brief(problems[0], 200)}{more})") from None
    model.card = card
    model.full_config = cfg
    return model.to(device).eval()
