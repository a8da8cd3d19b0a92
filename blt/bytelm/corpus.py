"""Corpus-scale scoring through Lightning's predict loop: documents go in groups to whatever devices the Trainer
has (`--devices N` shards them over GPUs), and results are written to disk as they arrive.

`score_corpus`: per-byte entropy and surprisal of a list of documents (what `blt compare` and `blt experiment`
measure), cached on disk by model weights and corpus content (`blt.bytelm.score_cache`), so no corpus is scored
twice. Corpus-scale patching (`segment_corpus`) builds on this module in `blt.segment.corpus`.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, RichProgressBar
from torch.utils.data import DataLoader, IterableDataset

from blt.bytelm.entropy import ByteScores, score
from blt.bytelm.score_cache import load_scores, read_score_arrays, save_scores, scores_path, write_score_arrays
from blt.bytelm.train import lightning_call
from blt.errors import BltError

# Documents are batched by bytes, not by index; Lightning cannot (and need not) infer batch indices.
warnings.filterwarnings("ignore", message=r".*Couldn't infer the batch indices.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")  # inside Lightning itself


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Scoring is one step of a command: Lightning's banner (devices found, tips) would be noise there."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _rank() -> tuple[int, int]:
    """(rank, world size) of this process, read inside the predict loop so spawned strategies shard correctly."""
    dist = torch.distributed
    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)


class IndexedGroups(IterableDataset):
    """Groups of (index, document) of about `group_bytes`; with several ranks, group k goes to rank k % world_size
    (the rank is read when iterating, inside the worker process, so spawned strategies shard correctly too)."""

    def __init__(self, docs: Sequence[bytes], group_bytes: int) -> None:
        self.docs, self.group_bytes = docs, group_bytes

    def __iter__(self) -> Iterator[list[tuple[int, bytes]]]:
        rank, world_size = _rank()
        groups, group, size = [], [], 0
        for i, d in enumerate(self.docs):
            group.append(i)
            size += len(d)
            if size >= self.group_bytes:
                groups.append(group)
                group, size = [], 0
        if group:
            groups.append(group)
        for g in groups[rank::world_size]:
            yield [(i, self.docs[i]) for i in g]


class ScoringModule(L.LightningModule):
    """`predict_step([(index, document)]) -> [(index, ByteScores)]` with `entropy.score` on the Trainer's device."""

    def __init__(self, model: torch.nn.Module, precision: str, batch_size: int) -> None:
        super().__init__()
        self.model, self.precision, self.batch_size = model, precision, batch_size

    def transfer_batch_to_device(self, batch: Any, device: Any, dataloader_idx: int) -> Any:
        return batch  # bytes stay bytes; `score` builds the ids on the model's device

    def predict_step(self, batch: list[tuple[int, bytes]], batch_idx: int) -> list[tuple[int, ByteScores]]:
        scores = score(self.model, [d for _, d in batch], precision=self.precision, batch_size=self.batch_size)
        return [(i, s) for (i, _), s in zip(batch, scores, strict=True)]


class ShardWriter(BasePredictionWriter):
    """Collects this rank's scores; at the end writes them as one shard `<stem>.<run>.rank<r>.npz` (+ `.idx.npy`, the
    document indices). `<run>` is drawn once per run (rank 0's, broadcast), so two runs scoring the same documents
    on one cache at the same time never read or delete each other's shards."""

    def __init__(self, stem: Path) -> None:
        super().__init__(write_interval="batch")
        self.stem, self.run = stem, uuid.uuid4().hex[:12]  # pickled to spawned ranks, broadcast to launched ones
        self.rows: list[tuple[int, ByteScores]] = []

    def shard(self, rank: int) -> Path:
        return self.stem.with_name(f"{self.stem.name}.{self.run}.rank{rank}.npz")

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: Any, prediction: Any, *args: Any) -> None:
        self.rows.extend(prediction)

    def on_predict_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.run = trainer.strategy.broadcast(self.run)
        path = self.shard(trainer.global_rank)
        write_score_arrays(path, [s for _, s in self.rows])
        np.save(path.with_suffix(".idx.npy"), np.array([i for i, _ in self.rows], dtype=np.int64))


def score_corpus(
    model: torch.nn.Module,
    docs: Sequence[bytes],
    *,
    precision: str = "32",
    batch_size: int = 16,
    accelerator: str = "auto",
    devices: int | str = 1,
    strategy: str = "auto",
    group_bytes: int = 1 << 18,
    cache: bool = True,
    cache_root: str | Path | None = None,
    progress: bool = False,
    model_sha: str | None = None,
) -> list[ByteScores] | None:
    """Per-byte entropy and surprisal (nats) of every document, through Lightning's predict loop.

    Cached under `<cache>/scores/<key>`, the key made of the model's weights, the documents' bytes, precision and
    batch size; a hit (verified: sizes and SHA-256) returns without touching the model, a damaged entry is rescored.
    With several devices every rank scores its share of the groups and writes a shard; rank 0 merges them and
    returns the scores, other ranks return None."""
    path = scores_path(
        model, docs, precision=precision, batch_size=batch_size, cache_root=cache_root, model_sha=model_sha
    )
    if cache and (hit := load_scores(path, docs)) is not None:
        return hit
    if isinstance(devices, int) and devices > 1 and accelerator != "cpu" and torch.cuda.device_count() < devices:
        raise BltError(f"--devices {devices} but {torch.cuda.device_count()} GPU(s) are visible; use --devices 1")
    with quiet_lightning():
        trainer = L.Trainer(
            accelerator=accelerator,
            devices=devices,
            strategy=strategy,
            precision="32-true",  # `score` applies its own autocast from `precision`
            logger=False,
            callbacks=[writer := ShardWriter(path), *([RichProgressBar()] if progress else [])],
            enable_progress_bar=progress,
            enable_model_summary=False,
            use_distributed_sampler=False,
        )
        data = IndexedGroups(docs, group_bytes)
        module, loader = ScoringModule(model, precision, batch_size), DataLoader(data, batch_size=None)
        lightning_call(trainer, trainer.predict, module, loader, return_predictions=False)  # Ctrl-C: exit 130
    trainer.strategy.barrier()  # every rank's shard is on disk
    if trainer.global_rank != 0:
        return None
    merged: list[ByteScores | None] = [None] * len(docs)
    for rank in range(trainer.world_size):
        shard = writer.shard(rank)
        index = np.load(shard.with_suffix(".idx.npy"))
        parts = read_score_arrays(shard, [docs[i] for i in index])
        assert parts is not None, f"the shard {shard} of this run does not fit its documents"
        for i, s in zip(index.tolist(), parts, strict=True):
            merged[i] = s
        shard.unlink()
        shard.with_suffix(".idx.npy").unlink()
    assert all(s is not None for s in merged), "a document was scored by no rank"
    scores = [s for s in merged if s is not None]
    if cache:
        save_scores(path, scores)
    return scores
