"""Lightning's training overhead: `blt train`'s Trainer (as `build_trainer` makes it) against a plain torch loop
on the same model, the same batches, the same optimizer, schedule, clipping and precision, in one run.

    python scripts/bench_train_overhead.py [--config configs/small.yaml] [--data udhr] [--steps 150] [--rounds 3]

Each round times `--steps` optimizer steps after `--warmup` untimed ones, Lightning and plain alternating so that
machine noise hits both; the best round of each is compared. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from blt.bytelm.data import IGNORE_INDEX, RandomWindows, build_cache, split_window
from blt.bytelm.train import ByteLMModule, build_trainer, resolve_precision
from blt.config import load_config

REPO = Path(__file__).resolve().parents[1]


class StepTimer(L.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.t0, self.t1 = warmup, 0.0, 0.0

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.warmup:
            self.t0 = time.perf_counter()
        self.t1 = time.perf_counter()


def run_lightning(cfg, steps: int, warmup: int) -> float:
    cfg.train.max_steps = warmup + steps
    timer = StepTimer(warmup)
    with tempfile.TemporaryDirectory() as out:
        trainer = build_trainer(cfg, Path(out), [timer])
        module = ByteLMModule(cfg)
        cache = build_cache(cfg.data)
        loader = torch.utils.data.DataLoader(
            RandomWindows(cache.train, cfg.train.batch_size, cfg.model.context + 1, cfg.train.seed), batch_size=None
        )
        trainer.fit(module, train_dataloaders=loader)
    return timer.t1 - timer.t0


def run_plain(cfg, steps: int, warmup: int) -> float:
    torch.manual_seed(cfg.train.seed)
    module = ByteLMModule(cfg)  # same model and optimizer construction as the Lightning run
    opt_cfg = module.configure_optimizers()
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    cache = build_cache(cfg.data)
    windows = RandomWindows(cache.train, cfg.train.batch_size, cfg.model.context + 1, cfg.train.seed)
    bf16 = resolve_precision(cfg).startswith("bf16")
    model = module.model.train()
    t0 = 0.0
    for step, batch in zip(range(warmup + steps), windows, strict=False):
        if step == warmup:
            t0 = time.perf_counter()
        x, y = split_window(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            logits = model(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()
        sched.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "small.yaml")
    ap.add_argument("--data", default="udhr")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(
        args.config,
        [
            f"data.sources=[{args.data}]",
            "train.progress_bar=false",
            "train.val_every_steps=100000",
            "train.ckpt_every_steps=100000",
            "train.max_time=null",
        ],
    )
    bytes_per_step = cfg.train.batch_size * cfg.model.context
    best = {"lightning": math.inf, "plain torch": math.inf}
    for _ in range(args.rounds):
        best["plain torch"] = min(best["plain torch"], run_plain(cfg, args.steps, args.warmup))
        best["lightning"] = min(best["lightning"], run_lightning(cfg, args.steps, args.warmup))
    print(
        f"model {args.config.name}, precision {resolve_precision(cfg)}, {args.threads} threads, "
        f"{args.steps} timed steps x {args.rounds} rounds (best), batch {cfg.train.batch_size} x "
        f"{cfg.model.context} bytes\n"
    )
    print("| loop | s / step | kB/s | vs plain |\n|---|---|---|---|")
    for name, seconds in best.items():
        print(
            f"| {name} | {seconds / args.steps:.4f} | {bytes_per_step * args.steps / seconds / 1e3:.1f} | "
            f"{seconds / best['plain torch']:.3f} |"
        )
    overhead = best["lightning"] / best["plain torch"] - 1
    print(f"\nLightning overhead: {100 * overhead:+.1f} % (target < 10 %)")


if __name__ == "__main__":
    main()
