"""Training with Lightning: the `LightningModule` around `ByteLM`, Trainer construction (accelerator, devices,
strategy and precision from the config), atomic checkpoints, exact resume, bits-per-byte validation, the
export of a model directory at the end of a run, and `adapt` (fine-tuning a model on a corpus, for `blt compare`).

Run directory layout (`blt train --out DIR`):
    DIR/config.yaml            resolved config of the run
    DIR/checkpoints/last.ckpt  resume point (written every `train.ckpt_every_steps`, atomically)
    DIR/checkpoints/best.ckpt  lowest validation bits per byte
    DIR/logs/version_N/        CSV metrics, one version per (re)start
    DIR/model/                 exported model: safetensors + config.yaml + card.json (`blt.load_model(DIR)`)
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torchmetrics import SumMetric

from blt.checkpoint import read_lightning_checkpoint, save_model_dir
from blt.config import N_BYTE_VALUES, Config
from blt.data import IGNORE_INDEX, ByteDataModule, split_window
from blt.errors import BltError
from blt.model import ByteLM

# Lightning's advertising and a deprecation inside Lightning itself are noise in a user's terminal.
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: "litlogger" not in r.getMessage())
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


class ByteLMModule(L.LightningModule):
    """Wraps `ByteLM`: next-byte cross-entropy, AdamW with warmup + cosine, validation bits per byte."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = ByteLM(cfg.model)
        self.val_nll_nats = SumMetric()
        self.val_bytes = SumMetric()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        x, y = split_window(batch)  # [B, T] each
        logits = self.model(x)  # [B, T, V]
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX)
        self.log("train_loss", loss, prog_bar=True)
        self.log("bytes_seen", float((self.global_step + 1) * x.numel() * self.trainer.world_size), reduce_fx="max")
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        x, y = split_window(batch)
        logits = self.model(x).float()  # [B, T, V]
        nll = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
        is_byte = ((y >= 0) & (y < N_BYTE_VALUES)).flatten()  # EOS targets train the model but are not bytes
        self.val_nll_nats.update(nll[is_byte].sum())
        self.val_bytes.update(is_byte.sum())

    def on_validation_epoch_end(self) -> None:
        # Ratio of sums over all ranks (lm-eval convention), not a mean of per-batch ratios.
        nll, n = self.val_nll_nats.compute(), self.val_bytes.compute()
        self.log("val_bpb", nll / (math.log(2) * n.clamp(min=1)), prog_bar=True, sync_dist=False)
        self.val_nll_nats.reset()
        self.val_bytes.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        t = self.cfg.train
        decay = [p for n, p in self.model.named_parameters() if p.dim() >= 2 and "embed" not in n]
        no_decay = [p for n, p in self.model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=t.lr,
            betas=(t.beta1, t.beta2),
            fused=False,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, LrSchedule(t.warmup_steps, t.max_steps, t.min_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["blt_config"] = self.cfg.to_dict()  # a checkpoint rebuilds itself


class LrSchedule:
    """Linear warmup to 1, then cosine decay to `min_ratio` at `total` steps (a multiplier of the peak lr)."""

    def __init__(self, warmup: int, total: int, min_ratio: float) -> None:
        self.warmup, self.total, self.min_ratio = warmup, total, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min((step - self.warmup) / max(self.total - self.warmup, 1), 1.0)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temp file and renamed, so a kill -9 never leaves a truncated `last.ckpt`;
    loaded with `weights_only=True`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        try:
            torch.save(checkpoint, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return read_lightning_checkpoint(Path(path), map_location=map_location)


def resolve_precision(cfg: Config) -> str:
    t = cfg.train
    if t.precision != "auto":
        return t.precision
    on_gpu = t.accelerator in ("gpu", "cuda") or (t.accelerator == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if on_gpu else "32-true"


def check_devices(cfg: Config) -> None:
    t = cfg.train
    if not isinstance(t.devices, int) or t.devices <= 1 or t.accelerator == "cpu":
        return
    n_gpus = torch.cuda.device_count()
    if n_gpus < t.devices:
        raise BltError(
            f"train.devices={t.devices} but {n_gpus} GPU(s) are visible; set train.devices to at most "
            f"{max(n_gpus, 1)}, or train.accelerator=cpu to run {t.devices} CPU processes"
        )


def build_trainer(cfg: Config, out: Path, extra_callbacks: list[Callback] | None = None) -> L.Trainer:
    """A Trainer whose accelerator, devices, strategy and precision all come from `cfg.train`."""
    t = cfg.train
    check_devices(cfg)
    ckpt_dir = out / "checkpoints"
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=ckpt_dir, filename="best", monitor="val_bpb", mode="min", save_top_k=1, enable_version_counter=False
        ),
        ModelCheckpoint(
            dirpath=ckpt_dir,
            every_n_train_steps=t.ckpt_every_steps,
            save_top_k=0,
            save_last=True,
            enable_version_counter=False,
        ),
    ]
    if t.progress_bar:
        callbacks.append(RichProgressBar())
    callbacks.extend(extra_callbacks or [])
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=resolve_precision(cfg),  # type: ignore[arg-type]
        max_steps=t.max_steps,
        max_time=t.max_time,
        val_check_interval=t.val_every_steps,
        check_val_every_n_epoch=None,
        limit_val_batches=t.val_batches,
        num_sanity_val_steps=0,
        gradient_clip_val=t.grad_clip or None,
        log_every_n_steps=t.log_every_steps,
        logger=CSVLogger(out, name="logs"),  # logs/version_N: a resumed run never overwrites
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()] if t.strategy in ("auto", "ddp", "ddp_spawn", "single_device") else None,
        enable_progress_bar=t.progress_bar,
        enable_model_summary=False,
        deterministic=False,
        default_root_dir=out,
    )


def train(
    cfg: Config,
    out: str | Path,
    *,
    resume: bool = False,
    extra_callbacks: list[Callback] | None = None,
    init_model: ByteLM | None = None,
) -> Path:
    """Train a byte model as `cfg` says, write checkpoints under `out`, export `out/model`; returns that path.
    `init_model` starts from existing weights (fine-tuning) instead of a fresh initialisation."""
    out = Path(out)
    last = out / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise BltError(f"nothing to resume: {last} does not exist; run without --resume to start")
    if not resume and (out / "checkpoints").exists() and any((out / "checkpoints").iterdir()):
        raise BltError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(cfg.to_yaml())
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    t = cfg.train
    data = ByteDataModule(
        cfg.data,
        context=cfg.model.context,
        batch_size=t.batch_size,
        seed=t.seed,
        val_batches=t.val_batches,
        num_workers=t.num_workers,
    )
    module = ByteLMModule(cfg)
    if init_model is not None:
        module.model.load_state_dict(init_model.state_dict())
    trainer = build_trainer(cfg, out, extra_callbacks)
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None)
    if trainer.interrupted:
        raise BltError(f"training interrupted at step {trainer.global_step}; continue with --resume")
    trainer.save_checkpoint(last, weights_only=False)  # the final full state, whatever the checkpoint interval
    metrics = trainer.validate(module, datamodule=data, verbose=False)
    val_bpb = float(metrics[0]["val_bpb"]) if metrics else float("nan")
    assert data.cache is not None
    card = {
        "data": cfg.data.sources,
        "train_bytes": data.cache.train.n_bytes,
        "val_bytes": data.cache.val.n_bytes,
        "steps": trainer.global_step,
        "bytes_seen": trainer.global_step * t.batch_size * cfg.model.context * trainer.world_size,
        "val_bits_per_byte": round(val_bpb, 4),
        "precision": resolve_precision(cfg),
        "params": module.model.num_params(),
    }
    if trainer.is_global_zero:
        save_model_dir(module.model, cfg, card, out / "model")
    return out / "model"


def adapt(lm: Any, train_docs: Sequence[bytes], steps: int, *, minutes: float | None = None) -> Any:
    """Fine-tune the byte model on the corpus's training split with the same training code as `blt train`, for
    `steps` (cosine schedule) and/or `minutes` of wall time (a time budget alone keeps the rate constant after
    warmup, since the number of steps is not known in advance)."""
    from blt.checkpoint import load_model

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        for i, d in enumerate(train_docs):
            (corpus / f"{i:07d}.txt").write_bytes(d)
        cfg = replace(
            lm.full_config,
            data=replace(lm.full_config.data, sources=[str(corpus)], cache_dir=tmp, val_fraction=0.02, max_bytes=None),
        )
        steps = steps or 10**9  # time budget only: the clock ends the run, the schedule stays flat
        warm = min(steps // 10, 100)
        max_time = None
        if minutes is not None:
            seconds = max(int(minutes * 60), 1)
            max_time = f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
        cfg = replace(
            cfg,
            train=replace(
                cfg.train,
                max_steps=steps,
                warmup_steps=warm,
                max_time=max_time,
                lr=cfg.train.lr * 0.3,
                val_every_steps=steps,
                ckpt_every_steps=steps,
                progress_bar=False,
            ),
        )
        model_dir = train(cfg, Path(tmp) / "run", init_model=lm)
        return load_model(model_dir, device=next(lm.parameters()).device)
