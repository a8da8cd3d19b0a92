"""The entropy-budget rule: equal-information patches.

A patch holds bytes while their summed predicted entropy stays within a budget B (nats): byte t starts a new patch
when `acc + H_t > B`, where `acc` is the open patch's summed entropy and `H_t = entropies[t]` the entropy of the
prediction for byte t. Both are known before byte t is generated, so the rule streams (one carried float) and works
during generation. Where a threshold rule decides where a patch *starts* (a spike byte plus any run of easy bytes),
this one decides how much a patch *holds*, so the information per patch is even.

Decisions, in the order the kernel applies them at byte t of a row:
- byte 0 of a row starts a patch (acc = H_0);
- a patch that already holds `max_patch_length` bytes ends: t starts the next one (acc resets to H_t);
- a patch shorter than `min_patch_length` never ends by budget (min 1: no effect);
- otherwise t starts a patch iff acc + H_t > B. A byte whose entropy alone exceeds B therefore forms its own
  patch (unless `min_patch_length` > 1 makes it take followers; the next byte then starts, since acc > B).
Arithmetic is float64 from the patch start (acc = H_s, then + H_{s+1}, ...), the same in the kernel, the streaming
patcher and the loop twin, so all three agree exactly. `calibrate_budget` searches B over the doubles: the patch
count is a non-increasing step function of B (greedy packing under a capacity; with `min_patch_length` > 1 this
can fail, and the search is then a close bisection rather than exact).

The kernel is one compiled loop (numba): 137 M entropies/s through `patch_lengths` on one core of the 2-core CI
machine, 170 M for the bare kernel (docs/benchmarks.md, scripts/bench_patching.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from blt.errors import BltError

_NO_LIMIT = np.iinfo(np.int64).max


def _budget_kernel(
    e: np.ndarray,  # [N] float32/64, nats
    row_starts: np.ndarray,  # [R] int64
    row_lengths: np.ndarray,  # [R] int64
    budget: float,  # nats
    min_len: int,  # bytes, ≥ 1
    max_len: int,  # bytes, _NO_LIMIT for none
    spike: float,  # hybrid: also start at a byte with H_t > spike ...
    spike_min: float,  # ... once the open patch holds ≥ spike_min nats (spike = inf: the plain budget rule)
    acc: float,  # the open patch's summed entropy, carried in from a previous chunk (streaming)
    run: int,  # the open patch's length in bytes; 0: none open, the next byte starts one
    out: np.ndarray,  # [N] bool, written where a patch starts (length 0: count only)
) -> tuple[float, int, int, float]:
    """Patch starts of each row (rows restart acc and run; the first row continues from `acc`, `run`).
    Returns the final (acc, run), the number of starts, and the smallest sum `acc + H_t` that exceeded the budget
    (inf if none did): raising the budget to it is the first change that can alter any decision (calibration)."""
    count = 0
    smallest_over = math.inf
    write = out.shape[0] > 0
    for r in range(row_starts.shape[0]):
        if r > 0:
            acc, run = 0.0, 0
        for t in range(row_starts[r], row_starts[r] + row_lengths[r]):
            h = float(e[t])
            if run == 0 or run >= max_len:
                start = True
            elif run < min_len:
                start = False
            else:
                start = acc + h > budget or (h > spike and acc >= spike_min)
                if acc + h > budget and acc + h < smallest_over:
                    smallest_over = acc + h
            if start:
                acc, run = h, 1
                count += 1
                if write:
                    out[t] = True
            else:
                acc += h
                run += 1
    return acc, run, count, smallest_over


_kernel: Callable[..., tuple[float, int, int, float]]
try:  # compiled once per machine (cached beside this file, or in numba's user-wide cache when that is read-only)
    from numba import njit

    try:
        _kernel = njit(cache=True, nogil=True)(_budget_kernel)
    except RuntimeError:  # no writable cache location: compile per process (about a second)
        _kernel = njit(nogil=True)(_budget_kernel)
except ImportError:  # pragma: no cover - numba is a dependency; the plain loop is correct, about 100x slower
    _kernel = _budget_kernel


def _kernel_arrays(entropies: np.ndarray, row_starts: Any, row_lengths: Any) -> tuple[np.ndarray, ...]:
    """The kernel's inputs: entropies as float32/64 (others widened to float64), row bounds as contiguous int64."""
    e = entropies if entropies.dtype in (np.float32, np.float64) else entropies.astype(np.float64)
    return e, np.ascontiguousarray(row_starts, dtype=np.int64), np.ascontiguousarray(row_lengths, dtype=np.int64)


def budget_scan(
    entropies: np.ndarray,
    row_starts: np.ndarray,
    row_lengths: np.ndarray,
    budget: float,
    *,
    min_patch_length: int | None = None,
    max_patch_length: int | None = None,
    out: np.ndarray | None = None,
    state: tuple[float, int] = (0.0, 0),
    spike: float = math.inf,
    spike_min: float = 0.0,
) -> tuple[float, int, int]:
    """Run the kernel over rows of a flat array (see `_budget_kernel`); `out` [N] bool receives the starts (None:
    count only). Returns (acc, run, starts)."""
    sink = np.zeros(0, dtype=bool) if out is None else out
    acc, run, count, _ = _kernel(
        *_kernel_arrays(entropies, row_starts, row_lengths),
        float(budget),
        int(min_patch_length or 1),
        int(max_patch_length or _NO_LIMIT),
        float(spike),
        float(spike_min),
        float(state[0]),
        int(state[1]),
        sink,
    )
    return float(acc), int(run), int(count)


def calibrate_budget(
    entropies: np.ndarray,
    row_starts: np.ndarray,
    row_lengths: np.ndarray,
    target: float,
    *,
    min_patch_length: int | None = None,
    max_patch_length: int | None = None,
) -> float:
    """The budget B ≥ 0 (nats) whose bytes/patch over all rows is closest to `target`: the smallest B giving the
    chosen patch count (ties: fewer patches). Rows as in `budget_scan` (non-empty ones).

    Exact, in two stages. The patches at B stay the same up to the smallest sum `acc + H_t` that exceeded B (the
    kernel returns it): below it no decision can change, at it one does. So after a bisection in B has brought the
    counts on either side close (about 25 kernel passes on 10 M bytes), a walk from the lower side through these
    change points meets the first B with the wanted count exactly (a few passes). Done twice: for the most patches
    ≤ N / target and for the fewest above it."""
    total, rows = int(row_lengths.sum()), int((row_lengths > 0).sum())
    if total == 0 or not math.isfinite(target):
        raise BltError(f"calibration needs entropies and a finite target ≥ 1, got {total} bytes and {target!r}")
    e, starts, lengths = _kernel_arrays(entropies, row_starts, row_lengths)  # once, not once per pass
    min_len, max_len, sink = int(min_patch_length or 1), int(max_patch_length or _NO_LIMIT), np.zeros(0, dtype=bool)
    seen: dict[float, tuple[int, float]] = {}  # B -> (patches, the next change point above B)

    def scan(b: float) -> tuple[int, float]:
        if b not in seen:
            seen[b] = _kernel(e, starts, lengths, b, min_len, max_len, math.inf, 0.0, 0.0, 0, sink)[2:]
        return seen[b]

    # No cut by budget at B = the largest row sum (computed the kernel's way: each row's sum, sequential in float64)
    sums = [
        float(np.add.accumulate(e[s : s + n], dtype=np.float64)[-1]) for s, n in zip(starts, lengths, strict=True) if n
    ]
    ceiling = max(max(sums), 0.0)
    k_max, k_min = scan(0.0)[0], scan(ceiling)[0]
    if not total / k_max <= target <= total / k_min:
        raise BltError(
            f"target_bytes_per_patch={target:g} is out of reach: rule 'budget' on these {total} bytes in {rows} "
            f"row(s) gives {total / k_max:.4g} to {total / k_min:.4g} bytes/patch (budget ≥ 0, "
            f"min_patch_length={min_patch_length}, max_patch_length={max_patch_length})"
        )
    want = total / target
    if abs(want - round(want)) <= 1e-9 * want:  # 18 / (18 / 7) is 6.999…
        want = float(round(want))

    def smallest_at_most(k: float) -> float:
        """The smallest B ≥ 0 with at most k patches (the count falls as B rises; with min_patch_length > 1 it
        may not, and this is then the first such B found above the bisection's lower end)."""
        if scan(0.0)[0] <= k:
            return 0.0
        lo = max(b for b, (c, _) in seen.items() if c > k)
        hi = min((b for b, (c, _) in seen.items() if c <= k and b > lo), default=ceiling)
        while scan(lo)[0] - scan(hi)[0] > 2 and hi - lo > 1e-12 * hi:  # bisect until the counts are close
            mid = lo + (hi - lo) / 2
            if scan(mid)[0] <= k:
                hi = mid
            else:
                lo = mid
        b = lo
        while scan(b)[0] > k:  # walk the change points: the count is constant in between
            nxt = scan(b)[1]
            if not math.isfinite(nxt) or nxt > hi:
                return hi
            b = nxt
        return b

    b = smallest_at_most(want)  # the most patches ≤ want
    options = [b]
    if b > 0:  # the fewest patches > want: the count just below b, reached first at ...
        options.append(smallest_at_most(scan(float(np.nextafter(b, 0.0)))[0]))
    return min(options, key=lambda x: (abs(total / scan(x)[0] - target), scan(x)[0], x))


def _budget_mask_loop(entropies: Any, budget: float, min_len: int | None, max_len: int | None) -> list[bool]:
    """The rule in words, one row: byte 0 starts; a full patch (max_len) ends; a short one (min_len) goes on;
    else byte t starts iff the patch's entropy plus H_t exceeds the budget."""
    out: list[bool] = []
    acc, last = 0.0, 0
    for t, h in enumerate(float(x) for x in entropies):
        if t == 0 or (max_len is not None and t - last == max_len):
            start = True
        elif min_len is not None and t - last < min_len:
            start = False
        else:
            start = acc + h > budget
        if start:
            acc, last = h, t
        else:
            acc = acc + h
        out.append(start)
    return out


def _calibrate_budget_loop(rows: list[Any], target: float, min_len: int | None, max_len: int | None) -> float:
    """Every candidate B (0 and each float64 sum H_s + ... + H_t the rule can compare with), each patched by the
    loop: the best (|bytes/patch - target|, patches, B)."""
    rows = [[float(x) for x in r] for r in rows]
    candidates = {0.0}
    for r in rows:
        for s in range(len(r)):
            acc = r[s]
            for t in range(s + 1, len(r)):
                acc = acc + r[t]
                candidates.add(max(acc, 0.0))
    total, best = sum(map(len, rows)), None
    for b in sorted(candidates):
        k = sum(sum(_budget_mask_loop(r, b, min_len, max_len)) for r in rows)
        best = min(best or (math.inf,), (abs(total / k - target), k, b))
    assert best is not None
    return best[2]
