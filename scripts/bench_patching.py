"""Benchmark entropies → patch lengths: blt's vectorised numpy path vs the BLT reference code's torch method vs the
memory floor (`np.copy` of the entropies), plus threshold calibration on 10 M entropies; and the budget rule (a
compiled numba loop) on the same 10 M row beside the global rule, the reference and the floor, with its calibration
and its first-call (compile) time. Prints markdown tables.

    OMP_NUM_THREADS=1 python scripts/bench_patching.py      # about 70 s on one core

The reference method is reimplemented here from its description (BLT's `patch_start_ids_from_patch_start_mask` +
`patch_lengths_from_start_ids`): per row an int64 `arange` and an int64 filler of the row's size are concatenated and
gathered with the boolean mask concatenated with its negation, giving start ids right-padded with the length; lengths
are next start - start, with zero-length padding. Both sides use the same boundary rule (byte 0, then
entropy > threshold) and their lengths are checked equal before timing. Entropies are synthetic (gamma-distributed,
float32); torch runs on one thread and numpy is single-threaded for these operations; each time is the best of N.

The budget rule's times are warm: numba compiles the kernel once per machine and caches it beside the module, so the
first call of a process only loads it. The first call in this process is reported apart, and so is a cold compile
(a fresh process with an empty `NUMBA_CACHE_DIR`). The kernel is serial (`njit`, no `prange`): one thread.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np
import torch

from blt.patching.budget import _budget_mask_loop, budget_scan
from blt.patching.calibration import calibrate_threshold
from blt.patching.rules import patch_lengths

THREADS = 1


def best_ms(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of `repeats` calls, in milliseconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


def reference_patch_lengths(entropies: torch.Tensor, threshold: float, *, checks: bool = True) -> torch.Tensor:
    """entropies [B, T] float -> lengths [B, max_patches] int64, right-padded with 0, the reference code's way."""
    mask = entropies > threshold  # [B, T] bool
    mask[:, 0] = True
    bs, seq_len = mask.shape
    max_patches = mask.sum(dim=1).max()
    seq_ids = torch.arange(seq_len).unsqueeze(0).repeat(bs, 1)  # [B, T] int64
    filler = torch.full((bs, seq_len), seq_len, dtype=torch.long)  # [B, T] int64
    all_ids = torch.cat((seq_ids, filler), dim=1)  # [B, 2T]
    start_ids = all_ids[torch.cat((mask, ~mask), dim=1)].reshape(bs, seq_len)[:, :max_patches]  # [B, P]
    last = torch.full_like(start_ids[:, :1], seq_len - 1)
    end_ids = torch.cat((start_ids[:, 1:] - 1, last), dim=1)  # [B, P] inclusive ends
    lengths = end_ids - start_ids + 1
    if checks:  # the reference's own asserts: no negative length, no non-zero length after a zero
        assert torch.all(lengths >= 0)
        zero = lengths == 0
        after_zero = torch.cat((torch.zeros_like(zero[:, :1]), zero[:, :-1]), dim=1)
        assert not ((lengths != 0) & after_zero).any()
    return lengths


def bench_lengths(name: str, entropies: np.ndarray, threshold: float, repeats: int) -> dict[str, object]:
    batch = entropies.reshape(1, -1) if entropies.ndim == 1 else entropies  # the reference wants [B, T]
    tensor = torch.from_numpy(batch)
    ours = patch_lengths(entropies, threshold=threshold)
    ours_rows = [ours] if entropies.ndim == 1 else ours
    ref = reference_patch_lengths(tensor, threshold)
    for row, ref_row in zip(ours_rows, ref, strict=True):  # same lengths, the reference's 0 padding removed
        assert np.array_equal(row, ref_row[ref_row > 0].numpy()), name
    t_ours = best_ms(lambda: patch_lengths(entropies, threshold=threshold), repeats)
    t_ref = best_ms(lambda: reference_patch_lengths(tensor, threshold), repeats)
    t_ref_bare = best_ms(lambda: reference_patch_lengths(tensor, threshold, checks=False), repeats)
    t_copy = best_ms(lambda: np.copy(entropies), repeats)
    patches = sum(len(r) for r in ours_rows)
    return {
        "name": name,
        "n": entropies.size,
        "patches": patches,
        "ours": t_ours,
        "ref": t_ref,
        "ref_bare": t_ref_bare,
        "copy": t_copy,
    }


def first_call_ms() -> float:
    """This process's first call of the budget kernel (loads numba's cached machine code, or compiles it)."""
    e, t0 = np.ones(4, dtype=np.float32), time.perf_counter()
    budget_scan(e, np.zeros(1, dtype=np.int64), np.full(1, 4, dtype=np.int64), 1.0)
    return 1e3 * (time.perf_counter() - t0)


def cold_compile_ms() -> float:
    """The first call in a fresh process with an empty numba cache: numba's one-time compile of the kernel."""
    here = str(Path(__file__).resolve().parent)
    code = f"import sys; sys.path[:0] = [{here!r}]; from bench_patching import first_call_ms; print(first_call_ms())"
    with tempfile.TemporaryDirectory() as cache:
        env = os.environ | {"NUMBA_CACHE_DIR": cache}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def bench_budget(row: np.ndarray, budget: float, theta: float, repeats: int) -> list[tuple[str, int, float]]:
    """(name, patches, best ms) on one row: the budget rule (blt's public path, and the bare kernel counting
    starts), the global rule, the reference method (global) and the memory floor."""
    one, n = np.zeros(1, dtype=np.int64), np.full(1, row.size, dtype=np.int64)
    lengths, global_lengths = patch_lengths(row, rule="budget", budget=budget), patch_lengths(row, threshold=theta)
    prefix = row[:200_000]  # the loop twin is plain Python: check a prefix
    twin = np.diff(np.append(np.flatnonzero(_budget_mask_loop(prefix, budget, None, None)), prefix.size))
    assert np.array_equal(patch_lengths(prefix, rule="budget", budget=budget), twin)
    tensor = torch.from_numpy(row.reshape(1, -1))
    cases: list[tuple[str, Callable[[], object], int]] = [
        ("budget (patch_lengths)", lambda: patch_lengths(row, rule="budget", budget=budget), len(lengths)),
        ("budget kernel, count only (budget_scan)", lambda: budget_scan(row, one, n, budget), len(lengths)),
        ("global (patch_lengths)", lambda: patch_lengths(row, threshold=theta), len(global_lengths)),
        ("reference torch, global", lambda: reference_patch_lengths(tensor, theta), 0),
        ("np.copy (memory floor)", lambda: np.copy(row), 0),
    ]
    return [(name, patches, best_ms(fn, repeats)) for name, fn, patches in cases]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="best of N timings (default 7)")
    parser.add_argument("--big", type=int, default=10_000_000, help="length of the single-row case")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-compile subprocess")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    first = first_call_ms()  # before anything else runs the kernel in this process
    cold = None if args.no_cold else cold_compile_ms()
    rng = np.random.default_rng(0)
    batch = rng.gamma(2.0, 0.6, size=(64, 8192)).astype(np.float32)  # [64, 8192] nats
    row = rng.gamma(2.0, 0.6, size=args.big).astype(np.float32)  # [10 M] nats
    theta = calibrate_threshold(row, 4.5)  # about 4.5 bytes/patch, BLT-Entropy's ratio
    rows = [
        bench_lengths("[64, 8192]", batch, theta, args.repeats),
        bench_lengths(f"[{args.big:,}]", row, theta, args.repeats),
    ]
    print(
        f"torch {torch.__version__}, numpy {np.__version__}, torch threads {THREADS}, best of {args.repeats}; "
        f"threshold {theta:.4f} nats\n"
    )
    print(
        "| entropies → lengths | patches | blt (ms) | reference torch (ms) | reference w/o asserts (ms) "
        "| np.copy (ms) | reference / blt | np.copy / blt |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['name']} | {r['patches']:,} | {r['ours']:.2f} | {r['ref']:.2f} | {r['ref_bare']:.2f} | "
            f"{r['copy']:.2f} | {r['ref'] / r['ours']:.1f}× ({r['ref_bare'] / r['ours']:.1f}× w/o asserts) | "
            f"{r['copy'] / r['ours']:.0%} |"
        )
    print("\n| calibrate_threshold on 10 M entropies | target bytes/patch | achieved | time (ms) |")
    print("|---|---:|---:|---:|")
    for rule, max_len in (("global", None), ("monotonic", None), ("global", 16), ("monotonic", 16)):
        t = best_ms(lambda r=rule, m=max_len: calibrate_threshold(row, 4.5, rule=r, max_patch_length=m), 3)
        th = calibrate_threshold(row, 4.5, rule=rule, max_patch_length=max_len)
        key = "threshold" if rule == "global" else "relative_threshold"
        achieved = row.size / len(patch_lengths(row, rule=rule, max_patch_length=max_len, **{key: th}))
        label = rule + ("" if max_len is None else f", max_patch_length={max_len}")
        print(f"| {label} | 4.5 | {achieved:.4f} | {t:.0f} |")
    t_cal = best_ms(lambda: calibrate_threshold(row, 4.5, rule="budget"), 3)
    budget = calibrate_threshold(row, 4.5, rule="budget")
    achieved = row.size / len(patch_lengths(row, rule="budget", budget=budget))
    print(f"| budget (returns the budget B) | 4.5 | {achieved:.4f} | {t_cal:.0f} |")

    timed = bench_budget(row, budget, theta, args.repeats)
    ref_ms = {name: ms for name, _, ms in timed}["reference torch, global"]
    print(
        f"\nbudget rule on [{args.big:,}]: budget {budget:.4f} nats (4.5 bytes/patch); numba {numba.__version__}, "
        f"kernel serial (1 thread), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, torch threads "
        f"{torch.get_num_threads()}, {len(os.sched_getaffinity(0))} CPUs usable; best of {args.repeats}, warm\n"
    )
    print("| entropies → lengths, one row | patches | time (ms) | M entropies/s | reference / this |")
    print("|---|---:|---:|---:|---:|")
    for name, patches, ms in timed:
        shown = f"{patches:,}" if patches else "—"
        print(f"| {name} | {shown} | {ms:.2f} | {row.size / ms / 1e3:.0f} | {ref_ms / ms:.1f}× |")
    cold_text = "skipped" if cold is None else f"{cold:.0f} ms"
    print(f"\nfirst call of the kernel in this process: {first:.0f} ms; cold compile (empty numba cache): {cold_text}")


if __name__ == "__main__":
    main()
