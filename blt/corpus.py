"""Corpus-scale scoring and patching through Lightning's predict loop: documents are streamed in groups, scored
on whatever devices the Trainer has (`--devices N` shards the documents over GPUs), patched, and written batch by
batch to Parquet, so memory stays flat however large the corpus is.

Output directory: `patches-<rank>.parquet` (one row per document: name, label, bytes, patches, bytes_per_patch,
patch_lengths) and `summary.json` (totals and the threshold used).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, RichProgressBar
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from blt.config import DataConfig
from blt.entropy import LN2
from blt.errors import BltError
from blt.report import write_atomic
from blt.segmenters import Patcher
from blt.sources import Document, iter_documents

# Documents are batched by bytes, not by index; Lightning cannot (and need not) infer batch indices.
warnings.filterwarnings("ignore", message=r".*Couldn't infer the batch indices.*")

SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("label", pa.string()),
        ("bytes", pa.int64()),
        ("patches", pa.int64()),
        ("bytes_per_patch", pa.float64()),
        ("patch_lengths", pa.list_(pa.int32())),
    ]
)


class DocumentGroups(IterableDataset):
    """Groups of up to `group_bytes` of documents; with several ranks, group k goes to rank k % world_size."""

    def __init__(self, cfg: DataConfig, group_bytes: int, rank: int = 0, world_size: int = 1) -> None:
        self.cfg, self.group_bytes, self.rank, self.world_size = cfg, group_bytes, rank, world_size

    def _groups(self) -> Iterator[list[Document]]:
        group: list[Document] = []
        size = 0
        for doc in iter_documents(self.cfg):
            group.append(doc)
            size += len(doc.data)
            if size >= self.group_bytes:
                yield group
                group, size = [], 0
        if group:
            yield group

    def __iter__(self) -> Iterator[list[Document]]:
        info = get_worker_info()
        shards = self.world_size * (info.num_workers if info else 1)
        shard = self.rank * (info.num_workers if info else 1) + (info.id if info else 0)
        return islice(self._groups(), shard, None, shards)


class PatchingModule(L.LightningModule):
    """`predict_step(documents) -> rows`: the patcher's model moves to the Trainer's device."""

    def __init__(self, patcher: Patcher) -> None:
        super().__init__()
        self.patcher = patcher
        self.model = patcher.model  # registered, so Lightning places it on the device

    def transfer_batch_to_device(self, batch: Any, device: Any, dataloader_idx: int) -> Any:
        return batch  # documents stay bytes; `score` moves the ids it builds to the model's device

    def predict_step(self, batch: list[Document], batch_idx: int) -> list[dict[str, Any]]:
        rows = []
        for doc, p in zip(batch, self.patcher.patch([d.data for d in batch]), strict=True):
            lengths = p.lengths.astype(np.int32)
            rows.append(
                {
                    "name": doc.name,
                    "label": doc.label,
                    "bytes": len(doc.data),
                    "patches": len(lengths),
                    "bytes_per_patch": p.bytes_per_patch,
                    "patch_lengths": lengths.tolist(),
                }
            )
        return rows


class ParquetWriter(BasePredictionWriter):
    """Writes each predicted batch to this rank's Parquet file as it arrives (a temp file renamed at the end)."""

    def __init__(self, out: Path) -> None:
        super().__init__(write_interval="batch")
        self.out = out
        self.writer: pq.ParquetWriter | None = None
        self.tmp: Path | None = None
        self.totals = {"documents": 0, "bytes": 0, "patches": 0}

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: Any, prediction: Any, *args: Any) -> None:
        if self.writer is None:
            self.tmp = self.out / f".patches-{trainer.global_rank}.parquet.tmp"
            self.writer = pq.ParquetWriter(self.tmp, SCHEMA)
        self.writer.write_table(pa.Table.from_pylist(prediction, schema=SCHEMA))
        self.totals["documents"] += len(prediction)
        self.totals["bytes"] += sum(r["bytes"] for r in prediction)
        self.totals["patches"] += sum(r["patches"] for r in prediction)

    def on_predict_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self.writer is not None and self.tmp is not None:
            self.writer.close()
            self.tmp.replace(self.out / f"patches-{trainer.global_rank}.parquet")

    def on_exception(self, trainer: L.Trainer, pl_module: Any, exception: BaseException) -> None:
        if self.writer is not None and self.tmp is not None:  # never leave a half-written file behind
            self.writer.close()
            self.tmp.unlink(missing_ok=True)


def segment_corpus(
    patcher: Patcher,
    cfg: DataConfig,
    out: str | Path,
    *,
    devices: int | str = "auto",
    accelerator: str = "auto",
    group_bytes: int = 1 << 18,
    calibration_bytes: int = 1 << 20,
    progress: bool = True,
) -> dict[str, Any]:
    """Patch every document of `cfg.sources` into `out/patches-*.parquet`; returns the summary.

    With a target bytes/patch the threshold is calibrated once, on the first `calibration_bytes` of the corpus,
    and then held fixed (so every document is cut by the same rule)."""
    if isinstance(devices, int) and devices > 1 and accelerator != "cpu" and torch.cuda.device_count() < devices:
        raise BltError(f"--devices {devices} but {torch.cuda.device_count()} GPU(s) are visible; use --devices 1")
    out = Path(out)
    if out.exists() and any(out.glob("patches-*.parquet")):
        raise BltError(f"{out} already holds patches; choose another --out or delete it")
    out.mkdir(parents=True, exist_ok=True)
    calibrated_on = 0
    if patcher.target_bytes_per_patch is not None:  # calibrate on the corpus's first calibration_bytes
        sample: list[bytes] = []
        for doc in iter_documents(cfg):
            sample.append(doc.data)
            calibrated_on += len(doc.data)
            if calibrated_on >= calibration_bytes:
                break
        if not sample:
            raise BltError(f"data sources {cfg.sources} contain no text")
        patcher.fit(sample)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=devices,
        precision="32-true",
        logger=False,
        callbacks=[writer := ParquetWriter(out), *([RichProgressBar()] if progress else [])],
        enable_progress_bar=progress,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    data = DocumentGroups(cfg, group_bytes, trainer.global_rank, trainer.world_size)
    trainer.predict(PatchingModule(patcher), DataLoader(data, batch_size=None), return_predictions=False)
    if writer.totals["documents"] == 0 and trainer.world_size == 1:
        raise BltError(f"data sources {cfg.sources} contain no text")
    threshold = patcher.rule_threshold
    summary = {
        **writer.totals,
        "rule": patcher.rule,
        "threshold_nats": threshold,
        "threshold_bits": threshold / LN2 if threshold is not None else None,
        "calibrated_on_bytes": calibrated_on or None,
        "bytes_per_patch": writer.totals["bytes"] / max(writer.totals["patches"], 1),
        "max_patch_length": patcher.max_patch_length,
        "sources": cfg.sources,
    }
    if trainer.is_global_zero and trainer.world_size == 1:
        write_atomic(out / "summary.json", lambda p: p.write_text(json.dumps(summary, indent=2) + "\n"))
    return summary
