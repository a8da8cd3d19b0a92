"""Calibration: the entropy threshold that gives a target mean bytes/patch, exactly (a search over the thresholds where
the patch count changes), with its loop twin.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from blt.errors import BltError
from blt.patching.rules import _patch_lengths_loop, _patch_start_mask_loop, _real, _rows, _Spec


def calibrate_threshold(
    entropies_list: Any,
    target_bytes_per_patch: float,
    *,
    rule: str = "global",
    max_patch_length: int | None = None,
    min_patch_length: int | None = None,
) -> float:
    """The threshold (nats; the relative threshold for `monotonic`) whose bytes/patch over all rows (total bytes /
    total patches) is closest to the target. A patch starts where a value exceeds θ, so the count is a step function
    of θ with steps at the values: without `max_patch_length` the answer is an order statistic (np.partition); with
    it, a search over the sorted values (raising θ only merges patches, and a merge never needs more cut pieces, so
    the count stays monotone). Returns the smallest θ ≥ 0 giving the chosen count: the largest value not starting a
    patch. Rows are given as for `patch_lengths` (one row, a list of rows, or [B, T]).

    `rule="budget"` returns the budget B (nats) instead (`blt.patching.budget.calibrate_budget`), honouring
    `min_patch_length` too."""
    if rule not in ("global", "monotonic", "budget"):
        raise BltError(f"calibrate_threshold supports rule 'global', 'monotonic' or 'budget', got {rule!r}")
    if rule == "budget":
        from blt.patching.budget import calibrate_budget

        spec = _Spec(rule, max_patch_length=max_patch_length, budget=0.0, min_patch_length=min_patch_length)
        rows, target = _rows(entropies_list, None, None, spec), _real(target_bytes_per_patch)
        if target is None:
            raise BltError(f"calibrate_threshold needs a target ≥ 1 bytes/patch, got {target_bytes_per_patch!r}")
        assert rows.entropies is not None
        keep = rows.lengths > 0
        return calibrate_budget(
            rows.entropies,
            rows.starts[keep],
            rows.lengths[keep],
            target,
            min_patch_length=spec.min_patch_length,
            max_patch_length=spec.max_patch_length,
        )
    spec = _Spec(rule, 0.0, 0.0, max_patch_length)
    rows, target = _rows(entropies_list, None, None, spec), _real(target_bytes_per_patch)
    total, n_rows, max_len = int(rows.lengths.sum()), int((rows.lengths > 0).sum()), spec.max_patch_length
    if target is None or not math.isfinite(target) or total == 0:
        raise BltError(f"calibrate_threshold needs entropies and a target ≥ 1, got {total} bytes and {target!r}")
    e, first = rows.entropies, rows.starts[rows.lengths > 0]
    assert e is not None  # an entropy rule: _rows checked entropies are given
    v = e if rule == "global" else np.concatenate((e[:1], e[1:] - e[:-1]))  # [N] the value deciding each start
    keep = np.ones(total, dtype=bool)
    keep[first] = False
    x = v[keep]  # [N - rows] the values that can start a patch (a row's first byte always does)
    if max_len is None:

        def count(theta: float) -> int:
            return n_rows + int(np.count_nonzero(x > theta))

        k_min = n_rows
    else:  # rows are contiguous and begin with an always-start (inf), so the gaps between starts are the patches
        v = v.copy()
        v[first] = np.inf

        def count(theta: float) -> int:  # Σ ceil(gap / M) = #starts + Σ (gap - 1) // M
            m = v > theta
            starts = int(np.count_nonzero(m))
            if 2 * starts < total:
                gaps = np.diff(np.flatnonzero(m), append=total)
                return starts + int(((gaps[gaps > max_len] - 1) // max_len).sum())
            non = np.flatnonzero(~m)  # mostly starts: walk the runs of non-starts instead (r of them: a patch r + 1)
            run_ends = np.flatnonzero(np.diff(non, append=total + 1) != 1)
            return starts + int((np.diff(run_ends, prepend=-1) // max_len).sum())

        k_min = int(((rows.lengths + max_len - 1) // max_len).sum())
    k_max = count(0.0)
    if not total / k_max <= target <= total / k_min:
        raise BltError(
            f"target_bytes_per_patch={target:g} is out of reach: rule {rule!r} on these {total} bytes in {n_rows} "
            f"row(s) gives {total / k_max:.4g} to {total / k_min:.4g} bytes/patch (θ ≥ 0, max_patch_length={max_len})"
        )
    want = total / target  # patches, real-valued, in [k_min, k_max] up to rounding:
    if abs(want - round(want)) <= 1e-9 * want:  # 18 / (18 / 7) is 6.999…: snap, or floor() lands below k_min
        want = float(round(want))
    want = min(max(want, k_min), k_max)
    if max_len is None:
        p, q, m = math.floor(want) - n_rows, math.ceil(want) - n_rows, x.size  # 0 ≤ p ≤ q ≤ #(x > 0) ≤ m
        part = np.partition(x, sorted({i for i in (m - q, m - p - 1) if 0 <= i < m})) if m else x
        # most patches ≤ want: θ = the (p+1)-th largest value; fewest ≥ want: the largest value below the q-th largest
        theta_lo = float(part[m - p - 1]) if p < m else 0.0
        theta_hi = float(np.max(x, where=x < part[m - q], initial=0.0)) if q > 0 else theta_lo
        options = [max(theta_lo, 0.0), max(theta_hi, 0.0)]
    else:  # candidates 0 and the positive values, sorted: the count falls about one per step, with plateaus at ties
        cands = np.concatenate((np.zeros(1, x.dtype), np.sort(x[x > 0])))
        cache = {0: k_max, cands.size - 1: k_min}

        def count_at(i: int) -> int:
            return cache[i] if i in cache else cache.setdefault(i, count(float(cands[i])))

        def first_at_most(k: int, hi: int) -> int:
            # smallest i ≤ hi with count_at(i) ≤ k (true at hi): Illinois regula falsi from the tightest cached
            # bracket, bisecting when the bracket fails to halve twice running
            a = max((j for j, c in cache.items() if c > k and j < hi), default=None)
            if a is None:
                return 0
            b = min(j for j, c in cache.items() if c <= k and a < j <= hi)
            fa, fb, moved, stalls = count_at(a) - k - 0.5, count_at(b) - k - 0.5, "", 0
            while b - a > 1:
                width = b - a
                g = min(max(a + round(fa / (fa - fb) * width) if stalls < 2 else (a + b) // 2, a + 1), b - 1)
                fg = count_at(g) - k - 0.5
                if fg < 0:
                    fa, (b, fb, moved) = fa / 2 if moved == "b" else fa, (g, fg, "b")
                else:
                    fb, (a, fa, moved) = fb / 2 if moved == "a" else fb, (g, fg, "a")
                stalls = 0 if 2 * (b - a) <= width else stalls + 1
            return b

        k, u = math.floor(want), n_rows + cands.size - 1 - math.floor(want)  # without cuts, about k patches at u
        for _ in range(3):  # step up while above k: the cuts add patches, each step removes about one
            u = min(max(u, 1), cands.size - 1)
            if count_at(u) <= k:
                break
            u += count_at(u) - k
        i = first_at_most(k, cands.size - 1)
        options = [float(cands[j]) for j in {i, first_at_most(count_at(i - 1), i - 1) if i else i}]
    return min(options, key=lambda th: (abs(total / count(th) - target), count(th), th))


def _calibrate_threshold_loop(rows: list[Any], target: float, rule: str, max_patch_length: int | None) -> float:
    rows = [np.asarray(r) for r in rows]
    values = [r[t] if rule == "global" else r[t] - r[t - 1] for r in rows for t in range(1, len(r))]
    total, best = sum(len(r) for r in rows), None
    for theta in sorted({0.0} | {float(v) for v in values if v > 0}):
        spec = _Spec(rule, theta, theta, max_patch_length)
        k = sum(len(_patch_lengths_loop(_patch_start_mask_loop(r, None, spec))) for r in rows)
        best = min(best or (math.inf,), (abs(total / k - target), k, theta))
    assert best is not None  # the loop runs at least once (θ = 0)
    return best[2]
