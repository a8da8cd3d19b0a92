"""Training and scoring one patch-level LM on one segmentation: unit-start masks over a split, random training
windows, the Lightning module (AdamW, warmup + cosine, as the byte model), and held-out bits per byte.

The loss of a window, in nats: Σ over its bytes of −log p(byte t | bytes < t, boundaries before t) and, for a
segmentation that `pays_boundaries`, Σ of −log p(a unit ends after byte t or not | bytes ≤ t, boundaries ≤ t) over
the boundaries the model cannot know in advance (not after a window's or a document's last byte, which are fixed).
Together they are a code length of the bytes and their segmentation: an upper bound on the bytes' own, so a row that
needs its boundaries announced cannot look better for it. Bits per byte divide by the bytes scored, every byte of the
held-out documents (a window's first byte is predicted from nothing, as after a context reset).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch.utils.data import IterableDataset

from blt.bytelm.train import LrSchedule, lightning_call, resolve_precision
from blt.config import Config, TrainConfig
from blt.downstream.model import PatchLM, PatchLMConfig

# Under bf16 autocast torch's RMSNorm takes its unfused path and says so once per process: noise in a user's terminal.
warnings.filterwarnings("ignore", message=r"Mismatch dtype between input and weight")


@dataclass
class DownstreamTrainConfig:
    batch_size: int = 16  # windows per optimizer step (per device)
    max_steps: int = 600  # optimizer steps: the same for every segmentation, so every row sees the same bytes
    budget_minutes: float | None = None  # wall-clock cap per run (Lightning max_time); rows may then see fewer bytes
    lr: float = 3e-3  # peak AdamW learning rate
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 50  # linear warmup steps
    weight_decay: float = 0.1  # AdamW weight decay on matrices
    grad_clip: float = 1.0  # gradient norm clip; 0 disables
    accelerator: str = "auto"  # Lightning accelerator: auto, cpu, gpu, cuda, mps
    devices: int | str = 1  # devices per run ("auto" or a number; > 1 trains with the strategy below)
    strategy: str = "auto"  # Lightning strategy: auto, ddp, ...
    precision: str = "auto"  # auto -> bf16-mixed on GPU (or a CPU with native bf16), else 32-true
    eval_batch_size: int = 32  # windows per scoring batch


@dataclass
class Split:
    """A split's documents as one byte array with unit starts: `data` [N] uint8, `starts` [N] bool (every document's
    first byte starts a unit), `doc_starts` [D + 1] int64 offsets of the documents (and N)."""

    data: np.ndarray
    starts: np.ndarray
    doc_starts: np.ndarray

    @property
    def n_bytes(self) -> int:
        return int(self.data.size)

    @property
    def bytes_per_unit(self) -> float:
        return self.n_bytes / max(int(self.starts.sum()), 1)


def build_split(docs: Sequence[bytes], starts_of: Callable[[bytes], np.ndarray]) -> Split:
    """Concatenate non-empty `docs`, marking the unit starts `starts_of(doc)` (offsets) gives for each."""
    kept = [d for d in docs if d]
    lengths = np.array([len(d) for d in kept], dtype=np.int64)
    doc_starts = np.concatenate(([0], np.cumsum(lengths)))
    data = np.frombuffer(b"".join(kept), dtype=np.uint8).copy()
    starts = np.zeros(data.size, dtype=bool)
    for d, offset in zip(kept, doc_starts[:-1], strict=True):
        s = np.asarray(starts_of(d), dtype=np.int64)
        starts[offset + s] = True
        starts[offset] = True
    return Split(data, starts, doc_starts)


def end_targets(window_starts: np.ndarray, next_fixed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a window of unit starts [.., T] and `next_fixed` [.., T] (True where byte t + 1 is fixed to start: a
    document or window begins there): end-of-unit targets (byte t + 1 starts a unit) and where they are scored."""
    ends = np.zeros_like(window_starts)
    ends[..., :-1] = window_starts[..., 1:]
    scored = ~next_fixed
    scored[..., -1] = False
    return ends, scored


class RandomUnitWindows(IterableDataset[tuple[torch.Tensor, ...]]):
    """Batches of random windows of a training split: (ids [B, T], starts [B, T], ends [B, T], end_scored [B, T]).
    Batch k depends only on (seed, k) and, under several devices, the rank. A window's first byte starts a unit (a
    fragment of the unit it cuts)."""

    def __init__(self, split: Split, batch_size: int, length: int, seed: int) -> None:
        self.split, self.batch_size, self.length, self.seed = split, batch_size, length, seed
        is_doc_start = np.zeros(split.n_bytes + 1, dtype=bool)
        is_doc_start[split.doc_starts] = True
        self.next_fixed = is_doc_start[1:]  # byte t + 1 begins a document (or the data ends)

    def batch(self, k: int, rank: int = 0) -> tuple[torch.Tensor, ...]:
        rng = np.random.default_rng([self.seed, k] if rank == 0 else [self.seed, k, rank])  # a rank's own windows
        T = min(self.length, self.split.n_bytes)
        offsets = rng.integers(0, self.split.n_bytes - T + 1, size=self.batch_size)
        rows = offsets[:, None] + np.arange(T)  # [B, T]
        ids = self.split.data[rows].astype(np.int64)
        starts = self.split.starts[rows].copy()
        starts[:, 0] = True
        ends, scored = end_targets(starts, self.next_fixed[rows])
        return tuple(torch.from_numpy(a) for a in (ids, starts, ends, scored))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        dist = torch.distributed
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        k = 0
        while True:  # max_steps (or max_time) ends the run
            yield self.batch(k, rank)
            k += 1


def eval_windows(split: Split, length: int) -> tuple[np.ndarray, ...]:
    """Every byte of every document in windows of `length` (a document's last window padded): ids, starts, ends,
    end_scored, valid, each [W, length]."""
    rows: list[tuple[int, int]] = []  # (offset, bytes) of each window
    for a, b in zip(split.doc_starts[:-1], split.doc_starts[1:], strict=True):
        rows += [(int(o), int(min(length, b - o))) for o in range(int(a), int(b), length)]
    W = len(rows)
    ids = np.zeros((W, length), dtype=np.int64)
    starts = np.ones((W, length), dtype=bool)  # padding: one-byte units after the real ones (causal: no effect)
    valid = np.zeros((W, length), dtype=bool)
    next_fixed = np.ones((W, length), dtype=bool)
    is_doc_start = np.zeros(split.n_bytes + 1, dtype=bool)
    is_doc_start[split.doc_starts] = True
    for i, (o, n) in enumerate(rows):
        ids[i, :n] = split.data[o : o + n]
        starts[i, :n] = split.starts[o : o + n]
        starts[i, 0] = True
        valid[i, :n] = True
        next_fixed[i, : n - 1] = is_doc_start[o + 1 : o + n]
    ends, scored = end_targets(starts, next_fixed)
    return ids, starts, ends, scored, valid


def window_nll(
    model: PatchLM,
    ids: torch.Tensor,
    starts: torch.Tensor,
    ends: torch.Tensor,
    end_scored: torch.Tensor,
    valid: torch.Tensor | None,
    pays_boundaries: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(byte nll, boundary nll, bytes scored), sums in nats over a batch of windows."""
    byte_logits, end_logits = model(ids, starts)
    nll = F.cross_entropy(byte_logits.float().flatten(0, 1), ids.flatten(), reduction="none").view_as(ids)
    mask = torch.ones_like(starts) if valid is None else valid
    byte_nll = (nll * mask).sum()
    if pays_boundaries:
        bce = F.binary_cross_entropy_with_logits(end_logits.float(), ends.float(), reduction="none")
        end_nll = (bce * end_scored).sum()
    else:
        end_nll = byte_nll.new_zeros(())
    return byte_nll, end_nll, mask.sum()


class PatchLMModule(L.LightningModule):
    """`PatchLM` trained on nats per byte (bytes plus, where paid, boundaries); AdamW with warmup + cosine."""

    def __init__(self, cfg: PatchLMConfig, train: DownstreamTrainConfig, pays_boundaries: bool) -> None:
        super().__init__()
        self.cfg, self.train_cfg, self.pays_boundaries = cfg, train, pays_boundaries
        self.model = PatchLM(cfg)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        ids, starts, ends, scored = batch
        byte_nll, end_nll, n = window_nll(self.model, ids, starts, ends, scored, None, self.pays_boundaries)
        loss = (byte_nll + end_nll) / n
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> Any:
        t = self.train_cfg
        named = list(self.model.named_parameters())
        decay = [p for n, p in named if p.dim() >= 2 and "embed" not in n]
        rest = [p for n, p in named if not (p.dim() >= 2 and "embed" not in n)]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": t.weight_decay}, {"params": rest, "weight_decay": 0.0}],
            lr=t.lr,
            betas=(0.9, 0.95),
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, LrSchedule(t.warmup_steps, t.max_steps, t.min_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class _Clock(Callback):
    """Wall seconds of the fit loop alone (no start-up or scoring)."""

    def __init__(self) -> None:
        self.start = self.seconds = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds = time.perf_counter() - self.start


def precision_of(train: DownstreamTrainConfig) -> str:
    """The Lightning precision the byte model's rule would pick for these settings."""
    probe = Config(train=TrainConfig(accelerator=train.accelerator, precision=train.precision))
    return resolve_precision(probe)


def fit(
    cfg: PatchLMConfig,
    train: DownstreamTrainConfig,
    split: Split,
    *,
    seed: int,
    pays_boundaries: bool,
    callbacks: Sequence[Callback] = (),
) -> tuple[PatchLMModule, dict[str, Any]]:
    """Train a fresh `PatchLM` on `split` (seeded weights and windows); returns it and facts of the run."""
    from blt.bytelm.corpus import quiet_lightning

    L.seed_everything(seed, workers=True, verbose=False)
    module = PatchLMModule(cfg, train, pays_boundaries)
    loader = torch.utils.data.DataLoader(
        RandomUnitWindows(split, train.batch_size, cfg.context, seed), batch_size=None, num_workers=0
    )
    clock = _Clock()
    max_time = None
    if train.budget_minutes is not None:
        minutes = max(train.budget_minutes, 1 / 60)
        max_time = {"seconds": int(round(minutes * 60))}
    with quiet_lightning():
        trainer = L.Trainer(
            accelerator=train.accelerator,
            devices=train.devices,
            strategy=train.strategy,
            precision=precision_of(train),  # type: ignore[arg-type]
            max_steps=train.max_steps,
            max_time=max_time,
            gradient_clip_val=train.grad_clip or None,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[clock, *callbacks],
        )
        lightning_call(trainer, trainer.fit, module, train_dataloaders=loader)
    steps = trainer.global_step
    facts = {
        "steps": steps,
        "train_seconds": round(clock.seconds, 2),
        "train_bytes": steps * train.batch_size * cfg.context * trainer.world_size,
        "params": module.model.num_params(),
        "precision": precision_of(train),
    }
    return module, facts


@torch.inference_mode()
def evaluate(
    model: PatchLM, split: Split, *, pays_boundaries: bool, batch_size: int = 32, precision: str = "32-true"
) -> dict[str, float]:
    """Held-out bits per byte of `model` on every byte of `split`: total, bytes alone and boundaries alone."""
    model.eval()
    device = next(model.parameters()).device
    arrays = eval_windows(split, model.cfg.context)
    byte_nll = end_nll = 0.0
    n = 0
    autocast = precision.startswith("bf16")
    for i in range(0, arrays[0].shape[0], batch_size):
        ids, starts, ends, scored, valid = (torch.from_numpy(a[i : i + batch_size]).to(device) for a in arrays)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            b, e, k = window_nll(model, ids, starts, ends, scored & valid, valid, pays_boundaries)
        byte_nll, end_nll, n = byte_nll + float(b), end_nll + float(e), n + int(k)
    scale = 1 / (math.log(2) * max(n, 1))
    return {
        "bits_per_byte": (byte_nll + end_nll) * scale,
        "byte_bits_per_byte": byte_nll * scale,
        "boundary_bits_per_byte": end_nll * scale,
        "eval_bytes": n,
    }
