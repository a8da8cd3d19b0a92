"""Content-keyed caches on disk: byte-model scores (per-byte entropy and surprisal) and trained tokenisers are stored
under `$BLT_CACHE` (default ~/.cache/blt) by a key made of what determines them (model weights, corpus bytes,
settings), so `blt compare` and `blt experiment` never score or train the same thing twice.

Keys are SHA-256 digests of the inputs themselves, not of paths or names: a changed byte or weight is a new key.
Files are written to a temporary name and renamed, so an interrupted run never leaves a half-written entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blt.data import cache_root
from blt.entropy import ByteScores

FORMAT = 1  # bump when the stored layout changes: old entries then miss instead of loading wrongly


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
    path = Path(root) if root is not None else cache_root()
    path = path / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_scores(path: Path, scores: Sequence[ByteScores]) -> None:
    """Entropy and surprisal of every document, concatenated, with the document lengths (float32, nats)."""
    from blt.report import write_atomic

    arrays = {
        "lengths": np.array([len(s) for s in scores], dtype=np.int64),
        "entropy_nats": np.concatenate([s.entropy_nats for s in scores]) if scores else np.zeros(0, np.float32),
        "surprisal_nats": np.concatenate([s.surprisal_nats for s in scores]) if scores else np.zeros(0, np.float32),
    }

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez(f, **arrays)

    write_atomic(path, write)


def load_scores(path: Path, docs: Sequence[bytes]) -> list[ByteScores] | None:
    """The stored scores of `docs`, or None when the entry is missing or does not fit them."""
    try:
        with np.load(path) as z:
            lengths, ent, sur = z["lengths"], z["entropy_nats"], z["surprisal_nats"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # missing, foreign or truncated
        return None
    if lengths.tolist() != [len(d) for d in docs]:
        return None
    bounds = np.concatenate(([0], np.cumsum(lengths)))
    return [ByteScores(d, ent[a:b], sur[a:b]) for d, a, b in zip(docs, bounds[:-1], bounds[1:], strict=True)]


def cached_tokenizer(
    kind: str, vocab: int, train_docs: Sequence[bytes], *, train_sha: str | None = None, cache: bool = True
) -> tuple[Any, Path | None, float]:
    """A trained tokeniser — `bpe` (byte-level BPE), `sp-unigram` or `sp-bpe` (SentencePiece) — of `vocab` on
    `train_docs`, trained once per (kind, vocab, training bytes) and then loaded from `<cache>/tokenizers/<key>.tok`.
    Returns (tokeniser, its file or None when `cache` is off, training seconds of the run that trained it)."""
    from blt import tokenizers as tk
    from blt.report import write_atomic

    cls = tk.ByteBPE if kind == "bpe" else tk.SentencePieceSegmenter
    key = cache_key("tokenizer", kind=kind, vocab=vocab, train=train_sha or documents_hash(train_docs))
    path = cache_dir("tokenizers") / f"{key}.tok"
    meta = path.with_suffix(".json")
    if cache and path.is_file() and meta.is_file():
        return cls.load(path), path, json.loads(meta.read_text())["train_seconds"]
    t = time.perf_counter()
    if kind == "bpe":
        seg: Any = tk.ByteBPE.train(train_docs, vocab)
    else:
        seg = tk.SentencePieceSegmenter.train(train_docs, vocab, model_type=kind.removeprefix("sp-"))
    seconds = time.perf_counter() - t
    if not cache:
        return seg, None, seconds
    write_atomic(path, seg.save)  # the tokeniser first: an entry counts only once its .json exists
    write_atomic(meta, lambda p: p.write_text(json.dumps({"train_seconds": seconds, "kind": kind, "vocab": vocab})))
    return seg, path, seconds
