"""Content-keyed caches on disk, the generic part: entries stored under `$BLT_CACHE` (default ~/.cache/blt) by a key
made of what determines them (model weights, corpus bytes, settings), so `blt compare` and `blt experiment` never
score or train the same thing twice. What is cached lives with what it caches: byte-model scores in
`blt.bytelm.score_cache`, corpus memmaps in `blt.bytelm.data`, trained tokenisers in `blt.segment.tokenizers`.

Keys are SHA-256 digests of the inputs themselves, not of paths or names: a changed byte or weight is a new key.

Every entry is a directory, verified on every read. `publish` fills a fresh hidden directory, seals it with
`MANIFEST.json` (the size and SHA-256 of each file, written last) and renames it into place, so readers see a whole
entry or none; when two processes build one entry, the loser keeps the winner's (they are equal: same key).
`open_entry` checks the sizes and the hashes before an entry is used; a damaged entry (a file cut short, overwritten,
missing, a directory from an older layout) is a miss: one warning line, the entry moved aside, rebuilt by the caller,
never used and never a crash. Hashing costs about 1 s/GB, so a file's digest is computed once per process and
remembered by its (device, inode, size, mtime, ctime): a file changed later, even with its mtime put back, has a new
ctime and is hashed again.

A top-level module: imports `blt.errors` and `blt.config` only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from blt._moved import moved_names
from blt.config import DataConfig
from blt.errors import BltError

FORMAT = 2  # bump when the stored layout changes: old entries then miss instead of loading wrongly (2: sealed dirs)
MANIFEST = "MANIFEST.json"  # in every entry: {"format": ..., "files": {name: {"size": bytes, "sha256": hex}}}
MANIFEST_FORMAT = "blt-cache-entry/1"


class _WarningLine(logging.Handler):
    """`warning: <message>` on whatever `sys.stderr` is at the time (the CLI's test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"warning: {record.getMessage()}\n")


log = logging.getLogger("blt.cache")  # damaged entries are news for the user, not failures
if not log.handlers:
    log.addHandler(_WarningLine())
    log.propagate = False


def cache_root(cfg: DataConfig | None = None) -> Path:
    """`cfg.cache_dir` when set, else $BLT_CACHE, else ~/.cache/blt."""
    if cfg is not None and cfg.cache_dir:
        return Path(cfg.cache_dir)
    return Path(os.environ.get("BLT_CACHE", Path.home() / ".cache" / "blt"))


def make_cache_dir(path: Path) -> Path:
    """`path` created on demand; a file in the way or no permission is a user-facing error that names the fix."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BltError(_unwritable(path, e)) from None
    return path


def _unwritable(path: Path, e: OSError) -> str:
    return (
        f"cannot write the blt cache at {path} ({e.strerror or e}); set BLT_CACHE (or data.cache_dir in a training "
        f"config) to a writable directory"
    )


# ---------------------------------------------------------------------------------------------- sealed entries
_DIGESTS: dict[tuple[int, int, int, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, computed once per process per version of the file (see the module docstring)."""
    st = path.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)  # the file itself: survives a rename
    if (digest := _DIGESTS.get(key)) is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        digest = _DIGESTS[key] = h.hexdigest()
    return digest


def seal(directory: Path) -> None:
    """Write `directory/MANIFEST.json`: the size and SHA-256 of every other file in it. Last, once they are whole."""
    files = {
        p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)}
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    (directory / MANIFEST).write_text(json.dumps({"format": MANIFEST_FORMAT, "files": files}, indent=1) + "\n")


def check_entry(directory: Path) -> str | None:
    """None when `directory` is a sealed entry whose files all have their recorded sizes and hashes; else what is
    wrong, in a few words. Sizes are compared first (free), hashes after."""
    if not directory.is_dir():
        return "not a directory"
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        files = manifest["files"]
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict) or not files:
            return f"{MANIFEST} of another format"
        wanted = {str(name): (int(w["size"]), str(w["sha256"])) for name, w in files.items()}
    except FileNotFoundError:
        return f"no {MANIFEST}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{MANIFEST} is unreadable"
    for name, (size, _) in wanted.items():
        path = directory / name
        if path.parent != directory:
            return f"{MANIFEST} names a file outside the entry"
        try:
            actual = path.stat().st_size
        except OSError:
            return f"{name} is missing"
        if actual != size:
            return f"{name} has {actual} bytes, {size} when written"
    for name, (_, digest) in wanted.items():
        try:
            if file_sha256(directory / name) != digest:
                return f"{name} does not match its SHA-256"
        except OSError as e:
            return f"{name} is unreadable ({e.strerror or e})"
    return None


def open_entry(final: Path, what: str) -> Path | None:
    """`final` when it holds a sound entry; None when there is none. A damaged one is a miss: a warning, and it is
    moved out of the way so the caller's rebuild can take its place."""
    if not os.path.lexists(final):
        return None
    problem = check_entry(final)
    if problem is None:
        return final
    discard_entry(final, f"the {what} {final} is damaged ({problem}); rebuilding it")
    return None


def discard_entry(final: Path, message: str) -> None:
    """Warn with `message`, then move `final` aside (an atomic rename to a hidden name) and delete it."""
    log.warning(message)
    trash = final.with_name(f".{final.name}.{_owner()}.{uuid.uuid4().hex[:8]}.trash")
    try:
        os.rename(final, trash)
    except FileNotFoundError:  # another process moved it first
        return
    except OSError as e:
        raise BltError(_unwritable(final.parent, e)) from None
    if trash.is_dir() and not trash.is_symlink():
        shutil.rmtree(trash, ignore_errors=True)
    else:
        trash.unlink(missing_ok=True)


def publish(final: Path, fill: Callable[[Path], None], what: str = "cache entry") -> Path:
    """Build an entry with `fill(tmp)` in a fresh hidden directory beside `final`, `seal` it and rename it into
    place; returns `final`. When another process published first (a concurrent `blt compare` on one cache), its
    sound entry is kept and ours dropped; a damaged one in the way is discarded and ours takes its place."""
    make_cache_dir(final.parent)
    _sweep(final)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{_owner()}.", suffix=".tmp", dir=final.parent))
    except OSError as e:
        raise BltError(_unwritable(final.parent, e)) from None
    try:
        fill(tmp)
        seal(tmp)
        for _ in range(5):
            try:
                os.rename(tmp, final)  # atomic; fails when a (non-empty) entry is already there
                return final
            except OSError as e:
                if not os.path.lexists(final):
                    raise BltError(_unwritable(final.parent, e)) from None
            if (problem := check_entry(final)) is None:
                return final  # another process won the race: its entry equals ours
            discard_entry(final, f"the {what} {final} is damaged ({problem}); replacing it")
        raise BltError(f"could not publish the {what} {final}: other processes keep replacing it; run again")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _owner() -> str:
    """`host-pid` of this process, in the names of its temp and trash directories (see `_sweep`)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _sweep(final: Path) -> None:
    """Delete the temp and trash directories of `final` that processes of this host left when killed (`kill -9`
    mid-build): a dead owner's directory is garbage; a live one's (a concurrent build), or another host's, stays."""
    pattern = re.compile(rf"\.{re.escape(final.name)}\.(.+)-(\d+)\.\w+\.(tmp|trash)")
    for path in final.parent.glob(f".{final.name}.*"):
        m = pattern.fullmatch(path.name)
        if m and m[1] == socket.gethostname() and not _alive(int(m[2])):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def documents_hash(docs: Iterable[bytes]) -> str:
    """SHA-256 over the documents in order, each prefixed by its length (so ["ab", "c"] ≠ ["a", "bc"])."""
    h = hashlib.sha256()
    for d in docs:
        h.update(len(d).to_bytes(8, "little"))
        h.update(d)
    return h.hexdigest()


def model_hash(model: torch.nn.Module) -> str:
    """SHA-256 over the model's config (context, sliding window, ...: they change its outputs, not its weights) and
    every tensor of the state dict (name, dtype, shape, bytes): identical model, identical hash."""
    h = hashlib.sha256()
    cfg = getattr(model, "cfg", None)
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        h.update(json.dumps(dataclasses.asdict(cfg), sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def cache_key(namespace: str, **parts: Any) -> str:
    """A short stable key for `parts` (JSON-serialisable), namespaced (scores, tokenizer, ...)."""
    blob = json.dumps({"namespace": namespace, "format": FORMAT, "parts": parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def cache_dir(kind: str, root: str | Path | None = None) -> Path:
    """`root/kind` (root: $BLT_CACHE or ~/.cache/blt), created on demand."""
    return make_cache_dir((Path(root) if root is not None else cache_root()) / kind)


# names of the old blt.cache module that now live with what they cache: resolved on use, with a warning
_MOVED = {
    **dict.fromkeys(
        ("SCORES_FILE", "load_scores", "read_score_arrays", "save_scores", "scores_path", "write_score_arrays"),
        "blt.bytelm.score_cache",
    ),
    "cached_tokenizer": "blt.segment.tokenizers",
}


# Deprecated: score and tokeniser cache functions moved next to what they cache (removed from here in 0.3).
__getattr__ = moved_names("blt.cache", _MOVED)
