"""Training with Lightning: the `LightningModule` around `ByteLM`, Trainer construction (accelerator, devices,
strategy and precision from the config), atomic checkpoints, exact resume, bits-per-byte validation, the
export of a model directory at the end of a run (fine-tuning a model on a corpus, `adapt`, is in blt.bytelm.adapt).

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
import shlex
import shutil
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torchmetrics import SumMetric

from blt.bytelm.checkpoint import read_lightning_checkpoint, save_model_dir
from blt.bytelm.data import IGNORE_INDEX, ByteDataModule, split_window
from blt.bytelm.entropy import cpu_has_bf16
from blt.bytelm.model import ByteLM
from blt.config import N_BYTE_VALUES, Config
from blt.errors import BltError, brief

# Lightning's advertising and a deprecation inside Lightning itself are noise in a user's terminal.
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: "litlogger" not in r.getMessage())
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


class ByteLMModule(L.LightningModule):
    """Wraps `ByteLM`: next-byte cross-entropy, AdamW with warmup + cosine, validation bits per byte."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = ByteLM(cfg.model)
        # A diverged model's NaN losses must give a NaN score, not be dropped (the default) and read as 0 bits/byte.
        self.val_nll_nats = SumMetric(nan_strategy="disable")
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

    def take_val_bpb(self) -> torch.Tensor:
        """Bits/byte of the validation steps since the last call, then the sums start again. Ratio of sums over all
        ranks (lm-eval convention), not a mean of per-batch ratios."""
        nll, n = self.val_nll_nats.compute(), self.val_bytes.compute()
        self.val_nll_nats.reset()
        self.val_bytes.reset()
        return nll / (math.log(2) * n.clamp(min=1))

    def on_validation_epoch_end(self) -> None:
        self.log("val_bpb", self.take_val_bpb(), prog_bar=True, sync_dist=False)

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
    # bf16 autocast on a CPU without native bf16 (avx512_bf16/amx) is emulated: 7x slower than fp32 on a 2-core VM
    return "bf16-mixed" if on_gpu or (t.accelerator != "mps" and cpu_has_bf16()) else "32-true"


def check_devices(cfg: Config) -> None:
    """The hardware `cfg.train` asks for is there (config validation checks the spelling; this, the machine)."""
    t = cfg.train
    if t.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise BltError(
            f"train.accelerator={t.accelerator} but no CUDA GPU is visible; use train.accelerator=auto or cpu"
        )
    if t.accelerator == "mps" and not torch.backends.mps.is_available():
        raise BltError("train.accelerator=mps but MPS (Apple GPU) is not available; use train.accelerator=auto or cpu")
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
    try:
        return _trainer(cfg, out, callbacks)
    except (MisconfigurationException, ValueError, ImportError, RuntimeError) as exc:  # e.g. deepspeed missing
        raise BltError(f"Lightning cannot run these train.* settings here: {brief(str(exc))}") from None


def _trainer(cfg: Config, out: Path, callbacks: list[Callback]) -> L.Trainer:
    t = cfg.train
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


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run. The message says the step reached, what was saved and the command that continues;
    the CLI prints it and exits 130."""

    def __init__(self, message: str, step: int, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


def lightning_call(trainer: L.Trainer, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)` (a Trainer entry point: fit, validate, predict), with Ctrl-C raised as
    `KeyboardInterrupt`. Lightning catches the interrupt itself, sets `trainer.interrupted`, ignores SIGINT from
    then on and calls `sys.exit(1)`; this turns that back into an interrupt and restores the SIGINT handler."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        return fn(*args, **kwargs)
    except SystemExit as exc:
        if trainer.interrupted and isinstance(exc.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        raise
    finally:
        if handler is not None and signal.getsignal(signal.SIGINT) is not handler:
            signal.signal(signal.SIGINT, handler)


class StopOnInterrupt(Callback):
    """The first Ctrl-C during training lets the current step finish, saves `last.ckpt` (a resume point exactly like
    the periodic ones) and stops the run; a second Ctrl-C interrupts at once. Single-process runs only: with
    several ranks a signal reaches them at different steps, and a checkpoint save is collective."""

    def __init__(self, last: Path) -> None:
        self.last = last
        self.requested = False
        self.saved_step: int | None = None
        self.previous: Any = None

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self.previous)  # a second Ctrl-C raises KeyboardInterrupt

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size == 1 and threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            self.previous = previous if previous is not None else signal.default_int_handler
            signal.signal(signal.SIGINT, self._on_sigint)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.requested and self.saved_step is None:
            trainer.save_checkpoint(self.last, weights_only=False)
            self.saved_step = trainer.global_step
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.restore()

    def restore(self) -> None:
        if self.previous is not None and signal.getsignal(signal.SIGINT) == self._on_sigint:
            signal.signal(signal.SIGINT, self.previous)
        self.previous = None


def _checkpoint_step(path: Path) -> int | None:
    if not path.is_file():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])


def _interrupted(out: Path, step: int, max_steps: int, saved: bool) -> TrainingInterrupted:
    last = out / "checkpoints" / "last.ckpt"
    resume = f"continue with: blt train --out {shlex.quote(str(out))} --resume"
    if saved:
        return TrainingInterrupted(f"interrupted at step {step}/{max_steps}; saved {last}; {resume}", step, last)
    at = _checkpoint_step(last)
    if at is None:
        return TrainingInterrupted(
            f"interrupted at step {step}/{max_steps}, before the first checkpoint; nothing was saved", step, None
        )
    return TrainingInterrupted(
        f"interrupted at step {step}/{max_steps}, which was not saved; {last} holds step {at}; {resume}",
        step,
        last,
    )


def _discard_new(out: Path, created: list[Path]) -> None:
    """Remove what a failed fresh run made in `out` (its paths that did not exist before), unless a checkpoint
    was written: a failed `blt train` leaves no config.yaml or empty run directory behind."""
    if any((out / "checkpoints").glob("*.ckpt")):
        return
    for path in reversed(created):  # children before `out` itself
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()


def train(
    cfg: Config,
    out: str | Path,
    *,
    resume: bool = False,
    extra_callbacks: list[Callback] | None = None,
    init_model: ByteLM | None = None,
) -> Path:
    """Train a byte model as `cfg` says, write checkpoints under `out`, export `out/model`; returns that path.
    `init_model` starts from existing weights (fine-tuning) instead of a fresh initialisation.

    Everything that can reject the run (hardware, Trainer settings, the corpus) is checked before `out` is
    touched, and a fresh run that fails before its first checkpoint removes what it wrote. Ctrl-C saves
    `last.ckpt` after the current step and raises `TrainingInterrupted` (a `KeyboardInterrupt`)."""
    out = Path(out)
    last = out / "checkpoints" / "last.ckpt"
    if out.exists() and not out.is_dir():
        raise BltError(f"--out {out} is a file; give a directory for the run")
    if resume and not last.is_file():
        raise BltError(f"nothing to resume in {out}: no checkpoints/last.ckpt; start the run without --resume")
    if (out / "model.safetensors").exists():  # a saved model, whose config.yaml the run would overwrite
        raise BltError(f"--out {out} is a saved model directory, not a run; choose another --out for the run")
    if not resume and (out / "checkpoints").exists() and any((out / "checkpoints").iterdir()):
        raise BltError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")
    t = cfg.train
    data = ByteDataModule(
        cfg.data,
        context=cfg.model.context,
        batch_size=t.batch_size,
        seed=t.seed,
        val_batches=t.val_batches,
        num_workers=t.num_workers,
    )
    data.setup("fit")  # reads (or reuses) the corpus cache and checks its size before anything is written
    L.seed_everything(t.seed, workers=True, verbose=False)
    module = ByteLMModule(cfg)
    if init_model is not None:
        module.model.load_state_dict(init_model.state_dict())
    stop = StopOnInterrupt(last)
    trainer = build_trainer(cfg, out, [stop, *(extra_callbacks or [])])
    created = [p for p in (out, out / "config.yaml", out / "logs", out / "checkpoints") if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(cfg.to_yaml())
    try:
        lightning_call(trainer, trainer.fit, module, datamodule=data, ckpt_path=str(last) if resume else None)
    except KeyboardInterrupt:
        if not resume:
            _discard_new(out, created)
        raise _interrupted(out, trainer.global_step, t.max_steps, saved=False) from None
    except BaseException:
        if not resume:
            _discard_new(out, created)
        raise
    finally:
        stop.restore()
    if stop.saved_step is not None:
        raise _interrupted(out, stop.saved_step, t.max_steps, saved=True)
    trainer.save_checkpoint(last, weights_only=False)  # the final full state, whatever the checkpoint interval
    try:
        metrics = lightning_call(trainer, trainer.validate, module, datamodule=data, verbose=False)
    except KeyboardInterrupt:
        raise _interrupted(out, trainer.global_step, t.max_steps, saved=True) from None
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


PROGRESS_EVERY_S = 1.0  # adapt's progress line: at most one update a second (a rich spinner redraws 12.5/s)


def _duration(seconds: float) -> str:
    """12s, 3m05s, 2h04m."""
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ReportProgress(Callback):
    """Calls `progress("<label>: step i/N, x steps/s, ETA ...")` at most every `every` seconds during training.
    The ETA is the sooner of the steps left at the measured rate and the time budget left (`seconds`)."""

    def __init__(
        self, progress: Callable[[str], None], label: str, steps: int | None, seconds: float | None, every: float = 1.0
    ) -> None:
        self.progress, self.label, self.steps, self.seconds, self.every = progress, label, steps, seconds, every
        self.start = self.last = 0.0
        self.first_step = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = self.last = time.monotonic()
        self.first_step = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        self.progress(self.message(trainer.global_step, now - self.start))

    def message(self, step: int, elapsed: float) -> str:
        rate = (step - self.first_step) / max(elapsed, 1e-9)  # steps per second
        left = []
        if self.steps is not None and rate > 0:
            left.append((self.steps - step) / rate)
        if self.seconds is not None:
            left.append(self.seconds - elapsed)
        speed = f"{rate:.1f}" if rate < 10 else f"{rate:.0f}"
        parts = [f"step {step}/{self.steps}" if self.steps is not None else f"step {step}", f"{speed} steps/s"]
        if left:
            parts.append(f"ETA {_duration(min(left))}")
        return f"{self.label}: " + ", ".join(parts)
