"""Documents to training data: a deterministic train/validation split by document content, `uint8` memmap caches,
and the Lightning data module that serves random training windows (documents come from `blt.bytelm.sources`).

The model sees every document as `BOS bytes EOS`. The cache stores only the raw bytes (`uint8`) plus the document
start offsets, and windows are cut from that virtual id stream on the fly, so corpora larger than RAM train
without being loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from blt.bytelm.sources import iter_documents, resolve_source
from blt.cache import cache_root, open_entry, publish
from blt.config import BOS_ID, EOS_ID, PAD_ID, DataConfig
from blt.errors import BltError

CACHE_FORMAT = 3  # bump when the cache layout changes (2: sealed entries, `blt.cache.publish`; 3: 64 KiB documents)
IGNORE_INDEX = -100  # targets that carry no loss (BOS after a document end, padding)


def _fingerprint(cfg: DataConfig) -> str:
    """Cache key: what was read (paths with size and mtime, bundled versions, HF names) and how it was split."""
    parts: list[object] = [CACHE_FORMAT, cfg.val_fraction, cfg.split_seed, cfg.text_field, cfg.hf_split, cfg.max_bytes]
    for source in cfg.sources:
        resolved = resolve_source(source)
        if resolved == "udhr":
            import gflanguages

            parts.append(("udhr", getattr(gflanguages, "__version__", "?")))
        elif resolved == "stdlib":
            parts.append(("stdlib", sys.version))
        elif isinstance(resolved, str):
            parts.append(("hf", resolved))
        else:
            parts.extend((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in resolved)
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:20]


def is_validation(data: bytes, seed: int, fraction: float) -> bool:
    """Deterministic split by content: a document is held out when the hash of (seed, its bytes) falls below
    `fraction`. Reordering or adding sources leaves other documents where they were, and duplicates of a
    document always land on the same side (no train/validation leakage)."""
    digest = hashlib.blake2b(data, digest_size=8, key=seed.to_bytes(8, "little", signed=True)).digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction


# ---------------------------------------------------------------------------------------------- byte streams


class ByteStream:
    """A split's bytes (`uint8`, possibly a memmap) and document starts; the model's view is
    `BOS doc_0 EOS BOS doc_1 EOS ...`, whose ids are cut out on demand by `window`."""

    def __init__(self, data: np.ndarray, doc_starts: np.ndarray) -> None:
        self.data = data  # [N] uint8
        self.doc_starts = np.asarray(doc_starts, dtype=np.int64)  # [D + 1], last entry = N
        n_docs = len(self.doc_starts) - 1
        # Each document occupies (length + 2) ids in the virtual stream: BOS, its bytes, EOS.
        self.virtual_starts = self.doc_starts[:-1] + 2 * np.arange(n_docs, dtype=np.int64)  # [D]
        self.n_ids = int(self.doc_starts[-1] + 2 * n_docs)

    @property
    def n_bytes(self) -> int:
        return int(self.doc_starts[-1])

    @property
    def n_docs(self) -> int:
        return len(self.doc_starts) - 1

    def window(self, start: int, length: int) -> np.ndarray:
        """Ids [length] int64 of the virtual stream from `start`; past the end: PAD."""
        pos = np.arange(start, start + length, dtype=np.int64)  # [L]
        doc = np.searchsorted(self.virtual_starts, pos, side="right") - 1  # [L]
        local = pos - self.virtual_starts[doc]  # 0 -> BOS, 1..n -> bytes, n + 1 -> EOS
        n = self.doc_starts[doc + 1] - self.doc_starts[doc]
        byte_index = np.clip(self.doc_starts[doc] + local - 1, 0, max(self.n_bytes - 1, 0))
        out = self.data[byte_index].astype(np.int64)
        out[local == 0] = BOS_ID
        out[local == n + 1] = EOS_ID
        out[pos >= self.n_ids] = PAD_ID
        return out

    def doc_length(self, i: int) -> int:
        return int(self.doc_starts[i + 1] - self.doc_starts[i])

    def document(self, i: int) -> bytes:
        return bytes(self.data[self.doc_starts[i] : self.doc_starts[i + 1]])


@dataclass
class CorpusCache:
    train: ByteStream
    val: ByteStream
    path: Path
    labels: list[str | None]  # label of each document, train then val order as stored in meta.json


def _open_split(directory: Path, name: str) -> ByteStream:
    starts = np.load(directory / f"{name}_starts.npy")
    size = int(starts[-1])
    data = np.memmap(directory / f"{name}.bin", dtype=np.uint8, mode="r") if size else np.zeros(0, dtype=np.uint8)
    return ByteStream(data, starts)


def build_cache(cfg: DataConfig) -> CorpusCache:
    """Read the sources once into `train.bin`/`val.bin` memmaps, or reuse the cache. The entry is published and
    verified by `blt.cache` (sizes and SHA-256 of every file, hashed once per process): a damaged entry is rebuilt,
    and of two processes building one entry, the second uses the first's."""
    final = cache_root(cfg) / "data" / _fingerprint(cfg)
    if open_entry(final, "data cache entry") is None:
        publish(final, lambda tmp: _fill_cache(cfg, tmp), "data cache entry")
    meta = json.loads((final / "meta.json").read_text())
    return CorpusCache(_open_split(final, "train"), _open_split(final, "val"), final, meta["labels"])


def _fill_cache(cfg: DataConfig, directory: Path) -> None:
    # Documents are streamed to disk; only the split decision and lengths are kept in memory.
    files = {s: open(directory / f"{s}.bin", "wb") for s in ("train", "val")}
    lengths: dict[str, list[int]] = {"train": [], "val": []}
    labels: dict[str, list[str | None]] = {"train": [], "val": []}
    total = 0
    try:
        for doc in iter_documents(cfg):
            data = doc.data
            if cfg.max_bytes is not None:
                data = data[: max(cfg.max_bytes - total, 0)]
                if not data:
                    break
            split = "val" if is_validation(data, cfg.split_seed, cfg.val_fraction) else "train"
            files[split].write(data)
            lengths[split].append(len(data))
            labels[split].append(doc.label)
            total += len(data)
    finally:
        for f in files.values():
            f.close()
    if total == 0:
        raise BltError(f"data sources {cfg.sources} contain no text")
    if cfg.val_fraction > 0 and not lengths["train"]:  # everything hashed to validation: train on it instead
        os.replace(directory / "val.bin", directory / "train.bin")
        (directory / "val.bin").write_bytes(b"")
        lengths = {"train": lengths["val"], "val": []}
        labels = {"train": labels["val"], "val": []}
    if cfg.val_fraction > 0 and not lengths["val"]:
        _move_tail_to_val(directory, lengths, labels, cfg.val_fraction)
    share, n_docs = sum(lengths["val"]) / total, len(lengths["train"]) + len(lengths["val"])
    if cfg.val_fraction > 0 and share > cfg.val_fraction + max(cfg.val_fraction, 0.1):  # a few big documents
        print(
            f"warning: {share:.0%} of the bytes are held out, not {cfg.val_fraction:.0%}: documents are held out "
            f"whole and this corpus has {n_docs}; more text (or another split seed) evens the split out",
            file=sys.stderr,
        )
    for split in ("train", "val"):
        starts = np.zeros(len(lengths[split]) + 1, dtype=np.int64)
        np.cumsum(lengths[split], out=starts[1:])
        np.save(directory / f"{split}_starts.npy", starts)
    meta = {
        "sources": cfg.sources,
        "config": asdict(cfg),
        "labels": labels["train"] + labels["val"],
        "train_bytes": sum(lengths["train"]),
        "val_bytes": sum(lengths["val"]),
    }
    (directory / "meta.json").write_text(json.dumps(meta))


def _move_tail_to_val(directory: Path, lengths: dict, labels: dict, fraction: float) -> None:
    """No document hashed to validation (few documents, or one big file): hold out the last whole documents
    that make up ≥ `fraction` of the bytes (keeping ≥ 1 for training), or, for a single document, its tail cut
    at a newline as a document of its own."""
    sizes = lengths["train"]
    total = sum(sizes)
    if len(sizes) > 1:
        k, tail_bytes = 0, 0
        while k < len(sizes) - 1 and tail_bytes < fraction * total:
            k += 1
            tail_bytes += sizes[-k]
        cut = total - tail_bytes
        lengths["val"], lengths["train"] = sizes[-k:], sizes[:-k]
        labels["val"], labels["train"] = labels["train"][-k:], labels["train"][:-k]
    else:
        with open(directory / "train.bin", "rb") as f:
            f.seek(int(total * (1 - fraction)))
            newline = f.read(4096).find(b"\n")
        cut = int(total * (1 - fraction)) + (newline + 1 if newline >= 0 else 0)
        cut = min(max(cut, 1), total - 1)
        if total < 2:
            return
        lengths["train"], lengths["val"] = [cut], [total - cut]
        labels["val"] = list(labels["train"])
    with open(directory / "train.bin", "r+b") as f:
        f.seek(cut)
        tail = f.read()
        f.truncate(cut)
    (directory / "val.bin").write_bytes(tail)


# ---------------------------------------------------------------------------------------------- Lightning


def split_head(docs: list[bytes], fraction: float) -> tuple[list[bytes], list[bytes]]:
    """The first `fraction` of the documents' bytes (in order) and the rest; the document that straddles the cut is
    cut at the line break nearest to it (at the exact byte when it has none), so both parts stay whole lines
    (scripts/bench_bpb.py's adaptation head, and `blt downstream`'s calibration text when one document is held out)."""
    cut = int(fraction * sum(map(len, docs)))
    head: list[bytes] = []
    for i, doc in enumerate(docs):
        if cut == 0:
            return head, docs[i:]
        if cut >= len(doc):
            head.append(doc)
            cut -= len(doc)
            continue
        before, after = doc.rfind(b"\n", 0, cut), doc.find(b"\n", cut)
        breaks = [b + 1 for b in (before, after) if b >= 0]
        at = min(breaks, key=lambda b: abs(b - cut)) if breaks else cut
        head += [doc[:at]] if at else []
        return head, ([doc[at:]] if at < len(doc) else []) + docs[i + 1 :]
    return head, []


def split_window(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ids [B, T + 1] -> inputs [B, T], targets [B, T] with BOS and PAD targets ignored."""
    x, y = ids[:, :-1], ids[:, 1:].clone()
    y[(y == BOS_ID) | (y == PAD_ID)] = IGNORE_INDEX
    return x, y


class RandomWindows(IterableDataset):
    """Batches [B, T + 1] of random windows; batch `k` depends only on (seed, rank, k), so a resumed run
    continues with exactly the batches an uninterrupted one would have seen."""

    def __init__(
        self, stream: ByteStream, batch_size: int, length: int, seed: int, start_batch: int = 0, rank: int = 0
    ) -> None:
        self.stream, self.batch_size, self.length = stream, batch_size, length
        self.seed, self.start_batch, self.rank = seed, start_batch, rank

    def batch(self, k: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.rank, k])
        starts = rng.integers(0, self.stream.n_ids - self.length + 1, size=self.batch_size)
        return torch.from_numpy(np.stack([self.stream.window(int(s), self.length) for s in starts]))

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        k = self.start_batch + (info.id if info else 0)
        step = info.num_workers if info else 1
        while True:  # the Trainer's max_steps ends the run
            yield self.batch(k)
            k += step


def validation_windows(stream: ByteStream, n_windows: int, length: int) -> torch.Tensor:
    """Fixed, evenly spaced windows [n, min(length, stream)] so every validation pass measures the same bytes."""
    length = min(length, stream.n_ids)
    starts = np.linspace(0, stream.n_ids - length, num=max(n_windows, 1)).astype(np.int64)
    starts = np.unique(starts)
    return torch.from_numpy(np.stack([stream.window(int(s), length) for s in starts]))


class ByteDataModule(L.LightningDataModule):
    def __init__(
        self, cfg: DataConfig, *, context: int, batch_size: int, seed: int, val_batches: int, num_workers: int = 0
    ) -> None:
        super().__init__()
        self.cfg, self.context, self.batch_size = cfg, context, batch_size
        self.seed, self.val_batches, self.num_workers = seed, val_batches, num_workers
        self.cache: CorpusCache | None = None

    def prepare_data(self) -> None:
        build_cache(self.cfg)  # one process builds the cache; setup() on every rank opens it

    def setup(self, stage: str | None = None) -> None:
        self.cache = build_cache(self.cfg)
        window = self.context + 1
        train = self.cache.train
        if train.n_ids < window:
            raise BltError(
                f"the training split has {train.n_bytes} bytes, fewer than one training window "
                f"({window} ids); add text or lower model.context (--set model.context=...)"
            )
        if self.cache.val.n_ids == 0:
            raise BltError("the validation split is empty; raise data.val_fraction or add documents")

    def train_dataloader(self) -> DataLoader:
        assert self.cache is not None
        trainer = self.trainer
        start, rank = 0, 0
        if trainer is not None:  # resume: skip the batches the restored optimizer steps already consumed
            start = trainer.global_step * trainer.accumulate_grad_batches
            rank = trainer.global_rank
        ds = RandomWindows(self.cache.train, self.batch_size, self.context + 1, self.seed, start, rank)
        return DataLoader(ds, batch_size=None, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        assert self.cache is not None
        windows = validation_windows(self.cache.val, self.val_batches * self.batch_size, self.context + 1)
        return DataLoader(windows, batch_size=self.batch_size, shuffle=False)
