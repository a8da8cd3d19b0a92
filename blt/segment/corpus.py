"""Corpus-scale patching through Lightning's predict loop: `segment_corpus` patches every document of a corpus into
`patches-<rank>.parquet` (one row per document: name, label, bytes, patches, bytes_per_patch, patch_lengths) and
`summary.json`, streaming, so memory stays flat. The Parquet files stay hidden temp files until the end, when
`summary.json` (naming them) is written and they are renamed into place: a run killed at any point leaves no output
or an incomplete one that the next run replaces.
"""

from __future__ import annotations

import json
import re
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

from blt.bytelm.corpus import _rank, quiet_lightning
from blt.bytelm.entropy import LN2
from blt.bytelm.sources import Document, iter_documents
from blt.bytelm.train import lightning_call
from blt.config import DataConfig
from blt.errors import BltError
from blt.files import write_atomic
from blt.segment.patcher import Patcher

# Documents are batched by bytes, not by index; Lightning cannot (and need not) infer batch indices.
warnings.filterwarnings("ignore", message=r".*Couldn't infer the batch indices.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")  # inside Lightning itself


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

    def __init__(self, cfg: DataConfig, group_bytes: int) -> None:
        self.cfg, self.group_bytes = cfg, group_bytes

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
        rank, world_size = _rank()
        info = get_worker_info()
        shards = world_size * (info.num_workers if info else 1)
        shard = rank * (info.num_workers if info else 1) + (info.id if info else 0)
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
    """Writes each predicted batch to this rank's hidden Parquet file as it arrives (renamed by `segment_corpus` once
    every rank is done); at the end, this rank's totals go to `.totals-<rank>.json` for rank 0."""

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
        if self.writer is not None:
            self.writer.close()
        # this rank's share, summed by rank 0 into summary.json, and whether it wrote a file
        totals = json.dumps({**self.totals, "wrote": self.writer is not None})
        write_atomic(self.out / f".totals-{trainer.global_rank}.json", lambda p: p.write_text(totals))

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
    strategy: str = "auto",
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
    _clear_interrupted(out)
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
    with quiet_lightning():
        trainer = L.Trainer(
            accelerator=accelerator,
            devices=devices,
            strategy=strategy,
            precision="32-true",
            logger=False,
            callbacks=[writer := ParquetWriter(out), *([RichProgressBar()] if progress else [])],
            enable_progress_bar=progress,
            enable_model_summary=False,
            use_distributed_sampler=False,
        )
        data = DocumentGroups(cfg, group_bytes)
        module, loader = PatchingModule(patcher), DataLoader(data, batch_size=None)
        lightning_call(trainer, trainer.predict, module, loader, return_predictions=False)  # Ctrl-C: exit 130
    trainer.strategy.barrier()  # every rank's totals are on disk
    if trainer.global_rank != 0:
        return writer.totals  # rank 0 writes the summary of all ranks
    totals, wrote = dict.fromkeys(writer.totals, 0), []
    for rank in range(trainer.world_size):
        part = out / f".totals-{rank}.json"
        share = json.loads(part.read_text())
        if share.pop("wrote"):
            wrote.append(rank)
        for key, value in share.items():
            totals[key] += value
        part.unlink()
    if totals["documents"] == 0:
        raise BltError(f"data sources {cfg.sources} contain no text")
    threshold, what = patcher.rule_threshold, "budget" if patcher.rule == "budget" else "threshold"
    summary = {
        **totals,
        "rule": patcher.rule,
        f"{what}_nats": threshold,  # the budget rule's value is a budget
        f"{what}_bits": threshold / LN2 if threshold is not None else None,
        "calibrated_on_bytes": calibrated_on or None,
        "bytes_per_patch": totals["bytes"] / max(totals["patches"], 1),
        "max_patch_length": patcher.max_patch_length,
        "sources": cfg.sources,
        "files": [f"patches-{rank}.parquet" for rank in wrote],
    }
    # The summary first: it names the files of the complete output, so a run killed before they are all renamed
    # into place is recognised as unfinished (`_clear_interrupted`) and redone by the next run.
    write_atomic(out / "summary.json", lambda p: p.write_text(json.dumps(summary, indent=2) + "\n"))
    for rank in wrote:
        (out / f".patches-{rank}.parquet.tmp").replace(out / f"patches-{rank}.parquet")
    return summary


def _clear_interrupted(out: Path) -> None:
    """Remove what a killed `segment_corpus` left in `out`: its hidden temp files, and an output whose summary.json
    names Parquet files that are not all there (killed while renaming them into place). A complete output, or
    files that no run of ours wrote, stay."""
    if not out.is_dir():
        return
    for tmp in [*out.glob(".patches-*.parquet.tmp"), *out.glob(".totals-*.json")]:
        tmp.unlink(missing_ok=True)
    try:
        named = json.loads((out / "summary.json").read_text())["files"]
        names = [n for n in named if re.fullmatch(r"patches-\d+\.parquet", n)]
    except (OSError, ValueError, KeyError, TypeError):
        return
    if len(names) == len(named) and not all((out / n).is_file() for n in names):
        for n in names:
            (out / n).unlink(missing_ok=True)
        (out / "summary.json").unlink()
