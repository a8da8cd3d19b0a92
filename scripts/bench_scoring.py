"""Entropy-scoring throughput of a byte model: `blt.bytelm.entropy.score` (windowing, batching, entropy and surprisal)
against a bare forward pass over the same windows, in one run, at fp32 and bf16 autocast; and end-to-end patching
(`Patcher.patch`: scoring + boundaries) on the same text.

    python scripts/bench_scoring.py [--model default] [--mb 1] [--threads 2] [--repeats 3]

The text is the stdlib's own sources cut into 8 kB documents (on every machine, no download). Prints a markdown
table of kB/s (best of `--repeats`) and the ratio of `score` to the bare forward.
"""

from __future__ import annotations

import argparse
import os
import sysconfig
import time
from pathlib import Path

import numpy as np
import torch

from blt.bytelm.checkpoint import load_model
from blt.bytelm.entropy import autocast_for, plan_windows, score
from blt.config import BOS_ID
from blt.segment.patcher import Patcher


def sample_text(megabytes: float, doc_bytes: int = 8192) -> list[bytes]:
    root = Path(sysconfig.get_paths()["stdlib"])
    blob = b"".join(p.read_bytes() for p in sorted(root.glob("*.py")))[: int(megabytes * 1e6)]
    return [blob[i : i + doc_bytes] for i in range(0, len(blob), doc_bytes)]


@torch.inference_mode()
def bare_forward(model: torch.nn.Module, docs: list[bytes], batch_size: int, precision: str) -> None:
    """The model alone on the windows `score` feeds it: the floor that `score` is measured against."""
    context = model.cfg.context
    rows = []
    for d in docs:
        arr = np.concatenate(([BOS_ID], np.frombuffer(d, dtype=np.uint8)[:-1])).astype(np.int64)
        for start, _, end in plan_windows(len(d), context, (3 * context) // 4):
            rows.append(arr[start:end])
    rows.sort(key=len, reverse=True)
    for b in range(0, len(rows), batch_size):
        chunk = rows[b : b + batch_size]
        ids = torch.from_numpy(np.stack([np.pad(r, (0, len(chunk[0]) - len(r))) for r in chunk]))
        with autocast_for(torch.device("cpu"), precision):
            model(ids)


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--mb", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(args.model)
    docs = sample_text(args.mb)
    n = sum(map(len, docs))
    score(lm, docs[:4], batch_size=args.batch_size)  # warm-up (allocator, kernels)
    print(
        f"model {args.model} ({lm.num_params():,} params, context {lm.cfg.context}), {n / 1e6:.2f} MB of stdlib "
        f"sources in 8 kB documents, {args.threads} threads, batch {args.batch_size}, best of {args.repeats}, "
        f"cpu bf16 native: {'yes' if 'avx512_bf16' in open('/proc/cpuinfo').read() else 'no'} "
        f"(os.cpu_count {os.cpu_count()})\n"
    )
    print("| precision | score() kB/s | bare forward kB/s | score / bare | Patcher.patch kB/s (score + patch) |")
    print("|---|---|---|---|---|")
    for precision in ("32", "bf16"):
        t_score = best_of(lambda p=precision: score(lm, docs, batch_size=args.batch_size, precision=p), args.repeats)
        t_bare = best_of(lambda p=precision: bare_forward(lm, docs, args.batch_size, p), args.repeats)
        patcher = Patcher(lm, rule="global", threshold=1.5, precision=precision, batch_size=args.batch_size)
        t_patch = best_of(lambda pt=patcher: pt.patch(docs), args.repeats)
        print(
            f"| {precision} | {n / t_score / 1e3:.0f} | {n / t_bare / 1e3:.0f} | {t_bare / t_score:.2f} | "
            f"{n / t_patch / 1e3:.0f} |"
        )


if __name__ == "__main__":
    main()
