"""Fine-tuning a byte model on a user's corpus (`blt compare --adapt / --adapt-minutes`): the same Lightning
training as `blt train`, on a time budget or a step count, with early stopping on a held-out slice of the corpus.

The slice (ADAPT_VAL_FRACTION of the documents, chosen by content hash like `blt train`'s validation split) is
scored before the first step and at every validation; the weights with the lowest held-out bits/byte are the ones
returned — the starting weights included, so adapting never returns a model worse on the slice than it started.
Training stops early after PATIENCE validations without a gain of MIN_GAIN bits/byte. The card of the returned
model records the slice's bits/byte before and after, the step of the weights kept and whether it stopped early.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.warnings import PossibleUserWarning
from lightning.pytorch.callbacks import Callback

import blt.bytelm.train as training
from blt.errors import BltError

ADAPT_VAL_FRACTION = 0.05  # share of the corpus's documents held out for early stopping
VAL_EVERY_STEPS = 50  # validation interval on a time budget (a step budget validates ten times)
PATIENCE = 3  # validations without a gain before stopping
MIN_GAIN = 1e-3  # bits/byte a validation must gain over the best so far to count as one


class KeepBest(Callback):
    """Held-out bits/byte before training and at every validation; keeps a copy of the best weights (the starting
    ones count) and stops the run after `patience` validations in a row without a gain of `min_gain`."""

    def __init__(self, patience: int = PATIENCE, min_gain: float = MIN_GAIN) -> None:
        self.patience, self.min_gain = patience, min_gain
        self.before = self.best = float("inf")
        self.best_step = 0
        self.best_state: dict[str, torch.Tensor] = {}
        self.history: list[tuple[int, float]] = []  # (step, held-out bits/byte)
        self.misses = 0
        self.stopped_early = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.before = self._validate(trainer, pl_module)
        self._record(trainer, pl_module, self.before)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        fitting = getattr(trainer.state.fn, "value", None) == "fit"  # not train()'s final validate for the card
        if trainer.sanity_checking or not fitting or "val_bpb" not in trainer.callback_metrics:
            return
        self._record(trainer, pl_module, float(trainer.callback_metrics["val_bpb"]))

    def _record(self, trainer: L.Trainer, pl_module: Any, bpb: float) -> None:
        self.history.append((trainer.global_step, bpb))
        if bpb < self.best - self.min_gain or not self.best_state:
            self.best, self.best_step, self.misses = bpb, trainer.global_step, 0
            self.best_state = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}
            return
        self.misses += 1
        if self.misses >= self.patience:
            trainer.should_stop = True
            self.stopped_early = True

    @staticmethod
    def _validate(trainer: L.Trainer, pl_module: Any) -> float:
        """The validation step over the held-out windows, run by hand before the first training step (Lightning
        validates only after steps), with the trainer's precision context: the same number `val_bpb` would be."""
        loader = trainer.datamodule.val_dataloader()  # type: ignore[attr-defined]
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad(), trainer.precision_plugin.val_step_context():
            for i, batch in enumerate(loader):
                if i >= trainer.limit_val_batches:
                    break
                pl_module.validation_step(batch.to(pl_module.device), i)
        pl_module.train(was_training)
        return float(pl_module.take_val_bpb())


def adapt(
    lm: Any,
    train_docs: Sequence[bytes],
    steps: int,
    *,
    minutes: float | None = None,
    progress: Callable[[str], None] | None = None,
    patience: int = PATIENCE,
    heldout: list[bytes] | None = None,
) -> Any:
    """Fine-tune the byte model on `train_docs` with the same training code as `blt train`, for `steps` (cosine
    schedule) and/or `minutes` of wall time (a time budget alone keeps the rate constant after warmup, since the
    number of steps is not known in advance), stopping early when the held-out slice stops improving; returns the
    best weights on that slice (see the module docstring). `progress` receives "step i/N, x steps/s, ETA" about once
    a second; Lightning's own banner, summary and bar stay silent so a caller's spinner is not broken. A list passed
    as `heldout` receives the held-out slice's documents (never trained on: fit a temperature on them)."""
    from blt.bytelm.checkpoint import load_model
    from blt.bytelm.corpus import quiet_lightning
    from blt.bytelm.data import build_cache
    from blt.bytelm.hf_blt import BltEntropyModel

    if isinstance(lm, BltEntropyModel):  # no blt training config to continue from
        raise BltError(
            "--adapt fine-tunes blt's own byte models; an hf: model is used as released (--online adapts it as it "
            "scores): drop --adapt / --adapt-minutes"
        )
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        for i, d in enumerate(train_docs):
            (corpus / f"{i:07d}.txt").write_bytes(d)
        data = replace(
            lm.full_config.data, sources=[str(corpus)], cache_dir=tmp, val_fraction=ADAPT_VAL_FRACTION, max_bytes=None
        )
        max_steps = steps or 10**9  # time budget only: the clock ends the run, the schedule stays flat
        max_time = None
        if minutes is not None:
            seconds = max(int(minutes * 60), 1)
            max_time = f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
        val_every = max(steps // 10, 1) if steps else VAL_EVERY_STEPS
        cfg = replace(
            lm.full_config,
            model=replace(lm.full_config.model, temperature=1.0),  # train the weights, not a calibrated copy
            data=data,
            train=replace(
                lm.full_config.train,
                max_steps=max_steps,
                warmup_steps=min(max_steps // 10, 100),
                max_time=max_time,
                lr=lm.full_config.train.lr * 0.3,
                precision="auto",  # this machine's best, not the trainer's: bf16 is emulated (slow) on most CPUs
                val_every_steps=val_every,
                ckpt_every_steps=max_steps,
                progress_bar=False,
            ),
        )
        budget = minutes * 60 if minutes else None
        keep = KeepBest(patience)
        callbacks: list[Callback] = [keep]
        if progress:
            callbacks.append(
                training.ReportProgress(
                    progress, "adapting the byte model", steps or None, budget, training.PROGRESS_EVERY_S
                )
            )
        try:
            with quiet_lightning(), warnings.catch_warnings():
                warnings.simplefilter("ignore", PossibleUserWarning)  # hints ("few workers") would break a spinner
                model_dir = training.train(cfg, Path(tmp) / "run", init_model=lm, extra_callbacks=callbacks)
        except training.TrainingInterrupted as exc:  # the run directory is temporary: nothing to resume
            raise KeyboardInterrupt(f"interrupted while adapting the byte model, at step {exc.step}") from None
        tuned = load_model(model_dir, device=next(lm.parameters()).device)
        if heldout is not None:
            val = build_cache(data).val  # the run's own cache entry, reused
            heldout.extend(val.document(i) for i in range(val.n_docs))
    ran = tuned.card.get("steps")
    tuned.load_state_dict(keep.best_state)
    tuned.card.update(
        steps=keep.best_step,
        val_bits_per_byte=round(keep.best, 4),
        adapt={
            "steps_run": ran,
            "best_step": keep.best_step,
            "stopped_early": keep.stopped_early,
            "heldout_bits_per_byte_before": round(keep.before, 4),
            "heldout_bits_per_byte_after": round(keep.best, 4),
            "heldout_bytes": tuned.card.get("val_bytes"),
            "validations": len(keep.history),
            "seconds": round(time.monotonic() - t0, 1),
        },
    )
    if lm.cfg.temperature != 1.0:  # a calibrated model stays calibrated the same way (refit it if it matters)
        from blt.bytelm.temperature import with_temperature

        tuned = with_temperature(tuned, lm.cfg.temperature)
    return tuned.eval()
