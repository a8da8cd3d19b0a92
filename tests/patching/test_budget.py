"""The entropy-budget rule: hand-derived golden cases, the laws it promises, kernel = pure-Python kernel = loop twin,
exact calibration against brute force. (Streaming and ragged batches are covered with every rule in test_patching.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from blt.errors import BltError
from blt.patching import StreamingPatcher, calibrate_threshold, patch_lengths, patch_starts
from blt.patching.budget import _budget_kernel, _budget_mask_loop, _calibrate_budget_loop, _kernel, budget_scan

SETTINGS = settings(max_examples=80, deadline=None)
NATS = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0]
nats = st.sampled_from(NATS) | st.floats(0, 6, width=32)


def test_budget_golden() -> None:
    """H = [1, 1, 1, 5, 1, 1, 1, 1], B = 2.5. Byte 0 opens a patch (acc 1); byte 1: 1 + 1 = 2 ≤ 2.5, joins (acc 2);
    byte 2: 2 + 1 = 3 > 2.5, starts (acc 1); byte 3: 1 + 5 > 2.5, starts (acc 5); byte 4: 5 + 1 > 2.5, starts
    (acc 1); byte 5 joins (2); byte 6 starts (1); byte 7 joins (2). Lengths [2, 1, 1, 2, 2]: the 5-nat byte, above
    the budget on its own, is a patch of its own."""
    e = np.array([1, 1, 1, 5, 1, 1, 1, 1], dtype=np.float32)
    assert patch_lengths(e, rule="budget", budget=2.5).tolist() == [2, 1, 1, 2, 2]
    assert patch_starts(e, rule="budget", budget=2.5).tolist() == [0, 2, 3, 4, 6]


def test_budget_golden_with_min_and_max_length() -> None:
    """Same H and B. min_patch_length 2: byte 1 joins (run 1 < 2; acc 2); byte 2 starts (3 > 2.5; acc 1); byte 3
    joins because the patch holds 1 byte (acc 6); byte 4 starts (7 > 2.5; acc 1); byte 5 joins (run 1; acc 2);
    byte 6 starts (3 > 2.5); byte 7 joins (run 1) -> [2, 2, 2, 2]. max_patch_length 1: every byte alone. With
    B = 100 and max 3: only the length cuts, [3, 3, 2]; with B = 0 every positive byte starts -> [1] * 8."""
    e = np.array([1, 1, 1, 5, 1, 1, 1, 1], dtype=np.float32)
    assert patch_lengths(e, rule="budget", budget=2.5, min_patch_length=2).tolist() == [2, 2, 2, 2]
    assert patch_lengths(e, rule="budget", budget=2.5, max_patch_length=1).tolist() == [1] * 8
    assert patch_lengths(e, rule="budget", budget=100, max_patch_length=3).tolist() == [3, 3, 2]
    assert patch_lengths(e, rule="budget", budget=0).tolist() == [1] * 8


def test_zero_entropy_bytes_never_end_a_patch_at_budget_zero() -> None:
    """B = 0, H = [2, 0, 0, 3, 0]: byte 1: 2 + 0 > 0 starts (acc 0); byte 2: 0 + 0 = 0, not > 0, joins; byte 3:
    0 + 3 > 0 starts (acc 3); byte 4: 3 + 0 > 0 starts -> starts [0, 1, 3, 4], lengths [1, 2, 1, 1]."""
    assert patch_lengths([2.0, 0, 0, 3, 0], rule="budget", budget=0).tolist() == [1, 2, 1, 1]


@st.composite
def budget_rows(draw: st.DrawFn) -> tuple[list[np.ndarray], float, int | None, int | None]:
    rows = draw(st.lists(st.lists(nats, max_size=30), min_size=1, max_size=4))
    max_len = draw(st.none() | st.integers(1, 6))
    min_len = draw(st.none() | st.integers(1, max_len or 6))
    return (
        [np.array(r, dtype=np.float32) for r in rows],
        draw(st.sampled_from(NATS) | st.floats(0, 12)),
        min_len,
        max_len,
    )


@SETTINGS
@given(budget_rows(), st.floats(0, 3), st.integers(0, 4))
def test_compiled_kernel_equals_the_python_kernel(case: tuple, acc: float, run: int) -> None:
    """The numba-compiled kernel and the same function run by Python agree, carried state included."""
    rows, budget, min_len, max_len = case
    flat = np.concatenate(rows)
    lengths = np.array([r.size for r in rows], dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    args = (budget, min_len or 1, max_len or np.iinfo(np.int64).max, math.inf, 0.0, acc, run)
    out_c, out_p = np.zeros(flat.size, bool), np.zeros(flat.size, bool)
    got_c = _kernel(flat, starts, lengths, *args, out_c)
    got_p = _budget_kernel(flat, starts, lengths, *args, out_p)
    assert out_c.tolist() == out_p.tolist() and got_c[1:] == got_p[1:] and got_c[0] == pytest.approx(got_p[0])


@SETTINGS
@given(budget_rows())
def test_every_patch_holds_at_most_the_budget_and_ends_only_when_full(case: tuple) -> None:
    """The rule's promise, checked from the outside on each patch [s, e): if it has ≥ 2 bytes, its summed entropy
    (as the rule sums it, from s) is ≤ B beyond its minimum length; and it ended for a reason: the row ended, it hit
    max_patch_length, or adding byte e would have exceeded B."""
    rows, budget, min_len, max_len = case
    for e in rows:
        starts = patch_starts(e, rule="budget", budget=budget, min_patch_length=min_len, max_patch_length=max_len)
        ends = [*starts[1:].tolist(), e.size][: starts.size]
        for s, end in zip(starts.tolist(), ends, strict=True):
            sums = np.add.accumulate(e[s:end].astype(np.float64))  # sums[k] = H_s + ... + H_{s+k}
            free = max(min_len or 1, 1)  # bytes s .. s + free - 1 join whatever their entropy
            assert (sums[free:] <= budget).all()  # every byte after the free ones joined by fitting
            if end < e.size and end - s != max_len and end - s >= (min_len or 1):
                assert sums[-1] + float(e[end]) > budget


@SETTINGS
@given(budget_rows())
def test_vectorised_equals_loop_twin(case: tuple) -> None:
    rows, budget, min_len, max_len = case
    kw = {"rule": "budget", "budget": budget, "min_patch_length": min_len, "max_patch_length": max_len}
    got = patch_lengths(rows, **kw)
    for e, lengths in zip(rows, got, strict=True):
        mask = _budget_mask_loop(e, budget, min_len, max_len)
        assert np.flatnonzero(mask).tolist() == (np.cumsum(lengths) - lengths).tolist()


@SETTINGS
@given(st.lists(nats, max_size=40), nats, nats, st.none() | st.integers(1, 5))
def test_raising_the_budget_never_adds_patches(e: list, a: float, b: float, max_len: int | None) -> None:
    """Greedy packing under a capacity: a larger budget gives at most as many patches (non-negative entropies)."""
    lo, hi = sorted((a, b))
    n_lo = len(patch_lengths(e, rule="budget", budget=lo, max_patch_length=max_len))
    n_hi = len(patch_lengths(e, rule="budget", budget=hi, max_patch_length=max_len))
    assert n_hi <= n_lo


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(NATS), max_size=10), min_size=1, max_size=3),
    st.floats(0, 1),
    st.none() | st.integers(1, 4),
)
def test_calibration_equals_brute_force(rows: list, where: float, max_len: int | None) -> None:
    """Exact: the same budget as trying every value the rule can compare with (0 and every float64 run sum) with
    the loop patcher, ties included; the target lies between B = 0 and B = ∞, so it is reachable."""
    rows = [np.array(r, dtype=np.float32) for r in rows]
    total = sum(r.size for r in rows)
    assume(total > 0)
    k = [sum(map(len, patch_lengths(rows, rule="budget", budget=b, max_patch_length=max_len))) for b in (0, 1e9)]
    target = total / (k[1] + where * (k[0] - k[1]))
    budget = calibrate_threshold(rows, target, rule="budget", max_patch_length=max_len)
    assert budget == _calibrate_budget_loop(rows, target, None, max_len)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(50, 3000), st.floats(1.2, 12))
def test_calibration_lands_within_one_patch(seed: int, n: int, target: float) -> None:
    """Continuous random entropies (no ties): every count between the extremes is reachable, so the calibrated
    budget gives N / target patches within one."""
    e = np.random.default_rng(seed).gamma(2.0, 0.8, n).astype(np.float32)
    assume(1 <= target <= n)
    budget = calibrate_threshold(e, target, rule="budget")
    patches = len(patch_lengths(e, rule="budget", budget=budget))
    assert abs(patches - n / target) <= 1
    if budget > 0:  # the smallest budget giving that count: one double less gives more patches
        assert len(patch_lengths(e, rule="budget", budget=float(np.nextafter(budget, 0.0)))) > patches


def test_calibration_with_a_minimum_length_and_out_of_reach_targets() -> None:
    """min_patch_length 2 on 100 bytes allows at most 50 patches (2 bytes/patch); 1.5 is out of reach, and the
    message gives the reachable range. A reachable target lands within a patch on random data."""
    e = np.random.default_rng(0).gamma(2.0, 0.8, 100).astype(np.float32)
    with pytest.raises(BltError, match=r"out of reach.*gives 2 to 100 bytes/patch"):
        calibrate_threshold(e, 1.5, rule="budget", min_patch_length=2)
    budget = calibrate_threshold(e, 4.0, rule="budget", min_patch_length=2)
    assert abs(len(patch_lengths(e, rule="budget", budget=budget, min_patch_length=2)) - 25) <= 1


def test_streaming_carries_the_open_patch_across_chunks() -> None:
    """H = [1, 1, 1, 5, 1, 1, 1, 1], B = 2.5 pushed as [1, 1] [1] [5, 1, 1] [] [1, 1]: starts 0; 2; 3, 4; 6 — the
    same as the batch golden case, though no chunk sees the patch's start."""
    sp = StreamingPatcher("budget", budget=2.5)
    chunks = [[1.0, 1.0], [1.0], [5.0, 1.0, 1.0], [], [1.0, 1.0]]
    assert [sp.push(c) for c in chunks] == [[0], [2], [3, 4], [], [6]]
    assert sp.finish() == [] and sp.push([1.0]) == [0]  # a new stream after finish()


def test_budget_scan_counts_without_writing() -> None:
    e = np.array([1, 1, 1, 5, 1, 1, 1, 1], dtype=np.float32)
    acc, run, count = budget_scan(e, np.array([0]), np.array([8]), 2.5)
    assert (acc, run, count) == (2.0, 2, 5)
