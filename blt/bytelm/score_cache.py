"""The cache of byte-model scores: per-byte entropy and surprisal of a corpus, keyed by the model's weights and the
corpus bytes (`scores_path`), stored as one verified cache entry (`blt.cache`).
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from blt.bytelm.entropy import ByteScores
from blt.cache import cache_dir, cache_key, discard_entry, documents_hash, model_hash, open_entry, publish

# ---------------------------------------------------------------------------------------------- scores
SCORES_FILE = "scores.npz"


def write_score_arrays(file: Path, scores: Sequence[ByteScores]) -> None:
    """Entropy and surprisal of every document, concatenated, with the document lengths (float32, nats), in one
    `.npz` written atomically (also the per-rank shards of `blt.bytelm.corpus.score_corpus`)."""
    from blt.files import write_atomic

    arrays = {
        "lengths": np.array([len(s) for s in scores], dtype=np.int64),
        "entropy_nats": np.concatenate([s.entropy_nats for s in scores]) if scores else np.zeros(0, np.float32),
        "surprisal_nats": np.concatenate([s.surprisal_nats for s in scores]) if scores else np.zeros(0, np.float32),
    }

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez(f, **arrays)

    write_atomic(file, write)


def _score_arrays(file: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(lengths [D] int64, entropy_nats [N], surprisal_nats [N]) when `file` is whole and consistent (N = the sum of
    the lengths, no NaN); else None (missing, foreign, truncated, inconsistent)."""
    try:
        with np.load(file) as z:
            lengths, ent, sur = z["lengths"], z["entropy_nats"], z["surprisal_nats"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    if lengths.ndim != 1 or lengths.dtype.kind not in "iu" or (lengths < 0).any():
        return None
    n = int(lengths.sum())
    if ent.shape != (n,) or sur.shape != (n,) or np.isnan(ent).any() or np.isnan(sur).any():
        return None
    return lengths, ent, sur


def _split(arrays: tuple[np.ndarray, np.ndarray, np.ndarray], docs: Sequence[bytes]) -> list[ByteScores] | None:
    lengths, ent, sur = arrays
    if lengths.tolist() != [len(d) for d in docs]:
        return None  # another set of documents
    bounds = np.concatenate(([0], np.cumsum(lengths)))
    return [ByteScores(d, ent[a:b], sur[a:b]) for d, a, b in zip(docs, bounds[:-1], bounds[1:], strict=True)]


def read_score_arrays(file: Path, docs: Sequence[bytes]) -> list[ByteScores] | None:
    """The scores in `file` when it is whole, consistent and fits `docs` (one length per document); else None."""
    arrays = _score_arrays(file)
    return None if arrays is None else _split(arrays, docs)


def scores_path(
    model: torch.nn.Module,
    docs: Sequence[bytes],
    *,
    precision: str = "32",
    batch_size: int = 16,
    cache_root: str | Path | None = None,
    model_sha: str | None = None,
) -> Path:
    """Where the byte model's scores of `docs` are cached (by `blt.bytelm.corpus.score_corpus` and
    `blt.bytelm.entropy.score_cached`): the entry (a directory, see `publish`) `<cache>/scores/<key>`. `model_sha`: the
    model's `model_hash`, when the caller has it (hashing a large model's weights is not free)."""
    model_sha = model_sha or model_hash(model)
    key = cache_key("scores", model=model_sha, docs=documents_hash(docs), precision=precision, batch_size=batch_size)
    return cache_dir("scores", cache_root) / key


def save_scores(path: Path, scores: Sequence[ByteScores]) -> Path:
    """Store `scores` as the sealed entry `path` (a directory holding `scores.npz`); see `publish`."""
    return publish(path, lambda tmp: write_score_arrays(tmp / SCORES_FILE, scores), "score cache entry")


def load_scores(path: Path, docs: Sequence[bytes]) -> list[ByteScores] | None:
    """The stored scores of `docs`, or None when the entry is missing, damaged (then discarded, with a warning) or
    holds other documents' scores."""
    if open_entry(path, "score cache entry") is None:
        return None
    arrays = _score_arrays(path / SCORES_FILE)
    if arrays is None:  # sealed, yet inconsistent: a broken writer; never use it
        discard_entry(path, f"the score cache entry {path} is inconsistent; rescoring")
        return None
    return _split(arrays, docs)
