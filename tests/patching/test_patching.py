"""Patch boundaries: hand-derived golden cases, the reference code's conventions, hypothesis laws, loop parity, errors.

Every vectorised kernel of `blt.patching` is compared with its plain-Python loop twin on random inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from blt.errors import BltError
from blt.patching.calibration import _calibrate_threshold_loop, calibrate_threshold
from blt.patching.rules import (
    RULES,
    _patch_lengths_loop,
    _patch_start_mask_loop,
    _Spec,
    patch_lengths,
    patch_start_mask,
    patch_starts,
)
from blt.patching.streaming import StreamingPatcher

SETTINGS = settings(max_examples=80, deadline=None)
NATS = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0]  # a few values, so that ties and equal-to-threshold cases happen


def segments(data: bytes, lengths: np.ndarray) -> list[bytes]:
    offsets = np.concatenate(([0], np.cumsum(lengths))).tolist()
    return [data[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def spans(lengths: list[int]) -> list[int]:
    return np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(int).tolist() if lengths else []


# ---------------------------------------------------------------- golden cases


def test_global_golden() -> None:
    """entropies [0.2, 2.0, 0.5, 0.3, 1.5, 0.1], θ = 1: byte 0 starts (always), byte 1 (2.0 > 1) and byte 4
    (1.5 > 1) start, the rest do not -> starts [0, 1, 4], lengths [1, 3, 2]."""
    e = [0.2, 2.0, 0.5, 0.3, 1.5, 0.1]
    assert patch_start_mask(e, threshold=1).tolist() == [True, True, False, False, True, False]
    assert patch_lengths(e, threshold=1).tolist() == [1, 3, 2]
    assert patch_starts(e, threshold=1).tolist() == [0, 1, 4]


def test_first_byte_starts_once_whatever_its_entropy() -> None:
    """Byte 0 starts a patch whether its entropy is low or high, and only one patch: [5, .1, .1] -> [3];
    [0] -> [1]; a threshold exactly equal to an entropy does not start (the test is strict '>')."""
    assert patch_lengths([5.0, 0.1, 0.1], threshold=1).tolist() == [3]
    assert patch_lengths([0.0], threshold=1).tolist() == [1]
    assert patch_lengths([0.5, 1.0, 1.0], threshold=1).tolist() == [3]


def test_global_monotonic_and_combined_disagree() -> None:
    """entropies [1.0, 3.0, 2.9, 2.8, 0.2, 1.4, 0.1, 0.9], θ = 1, θ_r = 0.5.
    global (value > 1): bytes 1, 2, 3, 5 -> starts [0, 1, 2, 3, 5] -> [1, 1, 1, 2, 3].
    monotonic (rise > 0.5): rises +2.0, -0.1, -0.1, -2.6, +1.2, -1.3, +0.8 -> bytes 1, 5, 7 -> [1, 4, 2, 1]: the
    high plateau 3.0, 2.9, 2.8 starts once, and 0.9 starts although it is below θ.
    combined (both): bytes 1 and 5 (byte 7 rises but is below θ) -> [1, 4, 3]."""
    e = [1.0, 3.0, 2.9, 2.8, 0.2, 1.4, 0.1, 0.9]
    assert patch_lengths(e, threshold=1).tolist() == [1, 1, 1, 2, 3]
    assert patch_lengths(e, rule="monotonic", relative_threshold=0.5).tolist() == [1, 4, 2, 1]
    assert patch_lengths(e, rule="combined", threshold=1, relative_threshold=0.5).tolist() == [1, 4, 3]


def test_max_length_cuts_golden() -> None:
    """Ten bytes, one spike at byte 7, θ = 1: patches [7, 3]; with max length 3 the 7 becomes [3, 3, 1] from its
    start and the 3 stays -> [3, 3, 1, 3], starts [0, 3, 6, 7]."""
    e = [0.0] * 10
    e[7] = 2.0
    assert patch_lengths(e, threshold=1).tolist() == [7, 3]
    assert patch_lengths(e, threshold=1, max_patch_length=3).tolist() == [3, 3, 1, 3]
    assert np.flatnonzero(patch_start_mask(e, threshold=1, max_patch_length=3)).tolist() == [0, 3, 6, 7]


H = [3, 0.5, 2, 0.1, 0.1, 2.5, 0.2, 0.2, 0.2, 0.2, 0.2, 2]


def test_blt_compat_golden() -> None:
    """The reference code's facts, in its convention. Its input has a BOS at position 0 and its H[i] is the entropy
    of the prediction for position i + 1. `find_entropy_patch_start_ids` forces starts at positions 0 and 1, drops
    H[0], and tests mask index j of H[1:] for position j + 2, so position p reads H[p - 1]; with
    include_next_token=False (the default of `Patcher.patch`) the last mask entry is dropped, so H[11] (about
    position 12, after the sequence) is never read. The lengths cover the 12 positions, BOS included.

    global, θ = 1: forced 0, 1; p ≥ 2 starts iff H[p-1] > 1: H[2] = 2 -> 3, H[5] = 2.5 -> 6 -> starts
    [0, 1, 3, 6] -> lengths [1, 2, 3, 6].
    monotonic, θ_r = 1: its mask puts True at mask index 0, forcing position 2 too; p ≥ 3 starts iff
    H[p-1] - H[p-2] > 1: p = 3 (2 - .5 = 1.5), p = 6 (2.5 - .1 = 2.4), every other rise ≤ 0 -> starts
    [0, 1, 2, 3, 6] -> [1, 1, 1, 3, 6].
    global, θ = 1, max length 3: [1, 2, 3, 6] with the 6 split into [3, 3] -> [1, 2, 3, 3, 3].
    """
    assert patch_lengths(H, threshold=1, blt_compat=True).tolist() == [1, 2, 3, 6]
    assert patch_lengths(H, rule="monotonic", relative_threshold=1, blt_compat=True).tolist() == [1, 1, 1, 3, 6]
    assert patch_lengths(H, threshold=1, max_patch_length=3, blt_compat=True).tolist() == [1, 2, 3, 3, 3]
    # blt's own convention on the same numbers: byte t reads H[t], so H[11] = 2 starts a last patch of 1
    assert patch_lengths(H, threshold=1).tolist() == [2, 3, 6, 1]


def test_blt_compat_combined_never_starts_position_3() -> None:
    """The reference's combined test carries a `~mask[:, :-1]` term evaluated while only mask index 0 is set, so
    position 3 never starts. H = [0, 0, 3, 0, 3, 0], θ = θ_r = 1: forced 0, 1, 2; p = 3 would read H[2] = 3 (a rise
    of 3) but is dropped; p = 5 reads H[4] = 3, a rise of 3 -> starts [0, 1, 2, 5] -> [1, 1, 3, 1]. Compat monotonic
    does start at 3 -> [1, 1, 1, 2, 1]."""
    h = [0, 0, 3, 0, 3, 0]
    assert patch_lengths(h, rule="combined", threshold=1, relative_threshold=1, blt_compat=True).tolist() == [
        1,
        1,
        3,
        1,
    ]
    assert patch_lengths(h, rule="monotonic", relative_threshold=1, blt_compat=True).tolist() == [1, 1, 1, 2, 1]


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        # 'hello world': the space is the first spacelike byte of its run; the next patch starts after it
        ("hello world", ["hello ", "world"]),
        # two spaces: only the first of the run ends a patch, so the second leads the next word
        ("a  b", ["a ", " b"]),
        # 'é' = C3 A9: C3 is spacelike (≥ 0xC0), A9 a continuation byte; the reference would start at A9 and split
        # the character; here the start moves to just after it, then ' ' is a new run: 'café', ' ', 'au'
        ("café au", ["café", " ", "au"]),
        # every CJK character is one lead byte and two continuation bytes: one patch per character
        ("日本", ["日", "本"]),
        ("", []),
    ],
)
def test_space_golden(text: str, pieces: list[str]) -> None:
    data = text.encode()
    lengths = patch_lengths(None, rule="space", data=data)
    assert [s.decode() for s in segments(data, lengths)] == pieces


def test_rows_never_see_each_other() -> None:
    """BLT issue #123: the reference flattens a batch into one stream. Here each row patches as if alone.
    monotonic, θ_r = 1, max length 2: rows [0, 0, 5] and [3, 3.5]. Row 1: the rise of 5 starts byte 2 -> [2, 1].
    Row 2 read as a continuation would not start at its byte 0 (3 - 5 < 1) and would be cut 2 bytes after byte 2;
    alone, it starts at 0 and stays whole -> [2].
    space: [b"a ", b" b"]: row 2 starts after its own leading space (the first of its run, whatever row 1 ended
    with) -> [1, 1]; [b"a ", b"\x80\x80b"]: row 1's space must not push a start into row 2 past its continuation
    bytes -> [3]. The same holds for a padded [B, T] array. fixed, size 3, rows of 5 and 7: each counts from its
    own byte 0 -> [3, 2] and [3, 3, 1]."""
    fixed = patch_lengths([np.zeros(5), np.zeros(7)], rule="fixed", patch_size=3)
    assert [r.tolist() for r in fixed] == [[3, 2], [3, 3, 1]]
    rows = [np.array([0.0, 0.0, 5.0]), np.array([3.0, 3.5])]
    lengths = patch_lengths(rows, rule="monotonic", relative_threshold=1, max_patch_length=2)
    assert [r.tolist() for r in lengths] == [[2, 1], [2]]
    assert [r.tolist() for r in patch_lengths(None, rule="space", data=[b"a ", b" b"])] == [[2], [1, 1]]
    assert [r.tolist() for r in patch_lengths(None, rule="space", data=[b"a ", b"\x80\x80b"])] == [[2], [3]]
    padded = np.frombuffer(b"a \x80\x80b", np.uint8).reshape(1, -1).repeat(2, 0)  # rows 'a \x80\x80b' cut at 2, 5
    padded[1] = np.frombuffer(b"\x80\x80b  ", np.uint8)
    lengths = patch_lengths(None, rule="space", data=padded, row_lengths=[2, 3])
    assert [r.tolist() for r in lengths] == [[2], [3]]


def test_fixed_and_byte_golden() -> None:
    assert patch_lengths(np.zeros(10), rule="fixed", patch_size=4).tolist() == [4, 4, 2]
    assert patch_lengths(None, rule="fixed", patch_size=4, data=b"abcdefghij").tolist() == [4, 4, 2]
    assert patch_lengths(np.zeros(3), rule="byte").tolist() == [1, 1, 1]


def test_fixed_at_a_non_integer_size_golden() -> None:
    """Unit i starts at byte floor(i·L). n = 10, L = 2.5: floor(0, 2.5, 5, 7.5) = 0, 2, 5, 7 (10 is past the end)
    -> lengths [2, 3, 2, 3]. L = 2.75 over 11 bytes: 0, 2.75, 5.5, 8.25 -> 0, 2, 5, 8 -> [2, 3, 3, 3], 11 / 4 units
    = 2.75 exactly. An integral float is the integer size: 4.0 patches as 4."""
    assert patch_starts(np.zeros(10), rule="fixed", patch_size=2.5).tolist() == [0, 2, 5, 7]
    assert patch_lengths(np.zeros(10), rule="fixed", patch_size=2.5).tolist() == [2, 3, 2, 3]
    assert patch_lengths(np.zeros(11), rule="fixed", patch_size=2.75).tolist() == [2, 3, 3, 3]
    assert patch_lengths(np.zeros(10), rule="fixed", patch_size=4.0).tolist() == [4, 4, 2]
    assert _Spec("fixed", patch_size=4.0).patch_size == 4 and isinstance(_Spec("fixed", patch_size=4.0).patch_size, int)
    patcher = StreamingPatcher("fixed", patch_size=2.5)
    assert patcher.push(np.zeros(4)) + patcher.push(np.zeros(6)) == [0, 2, 5, 7]


@SETTINGS
@given(st.integers(1, 5000), st.floats(1, 50))
def test_fixed_rate_is_exact(n: int, size: float) -> None:
    """floor(i·L) < n for i < ceil(n / L) units (up to float rounding at the last one), so units = ceil(n / L):
    n / units -> L, and it is L exactly whenever L divides n."""
    units = len(patch_starts(np.zeros(n), rule="fixed", patch_size=size))
    assert units in (math.ceil(n / size), math.ceil(n / size) + 1) and units - 1 < n / size + 1e-9


def test_empty_input_gives_zero_patches() -> None:
    assert patch_lengths([], threshold=1).tolist() == []
    assert patch_starts(np.zeros(0, np.float32), threshold=1).size == 0
    assert patch_start_mask(np.zeros((2, 0)), threshold=1).shape == (2, 0)
    assert [r.tolist() for r in patch_lengths(np.zeros((2, 0)), threshold=1)] == [[], []]
    assert [r.tolist() for r in patch_lengths([np.zeros(0), np.ones(2)], threshold=0.5)] == [[], [1, 1]]
    assert StreamingPatcher(threshold=1).push([]) == []


def test_full_2d_batch_equals_row_by_row() -> None:
    e = np.random.default_rng(0).gamma(2.0, 0.6, size=(3, 50)).astype(np.float32)
    for kw in ({"threshold": 1.3}, {"rule": "monotonic", "relative_threshold": 0.5, "max_patch_length": 4}):
        assert [r.tolist() for r in patch_lengths(e, **kw)] == [patch_lengths(row, **kw).tolist() for row in e]
        assert patch_start_mask(e, **kw).tolist() == [patch_start_mask(row, **kw).tolist() for row in e]


def test_torch_input_is_accepted() -> None:
    e = np.array(H, dtype=np.float32)
    for t in (torch.tensor(e), torch.tensor(e, dtype=torch.bfloat16), torch.tensor(e, requires_grad=True)):
        assert patch_lengths(t, threshold=1).tolist() == [2, 3, 6, 1]
    assert patch_lengths(None, rule="space", data=torch.tensor(list(b"ab cd"))).tolist() == [3, 2]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"entropies": [0.1, float("nan"), 0.2], "threshold": 1}, r"entropies\[1\] is nan"),
        ({"entropies": np.array([[0.1, 0.2], [0.3, np.inf]]), "threshold": 1}, r"entropies\[1, 1\] is inf"),
        (
            {"entropies": [0.1], "threshold": -1.0},
            "threshold must be ≥ 0 nats, got -1.0; pass threshold=... or use "
            "calibrate_threshold / --target-bytes-per-patch",
        ),
        ({"entropies": [0.1]}, "rule 'global' needs threshold"),
        ({"entropies": [0.1], "rule": "monotonic"}, "needs relative_threshold"),
        ({"entropies": [0.1], "threshold": float("nan")}, "threshold must be ≥ 0 nats, got nan"),
        ({"entropies": [0.1], "threshold": 1, "max_patch_length": 0}, "max_patch_length must be an integer ≥ 1"),
        ({"entropies": [0.1], "rule": "entropy"}, "unknown rule 'entropy'; valid rules: global, monotonic, combined"),
        ({"entropies": [0.1], "rule": "fixed", "patch_size": 0.5}, "patch_size must be an integer ≥ 1 or a rate in"),
        ({"entropies": [0.1], "rule": "fixed", "patch_size": 0}, r"floor\(i·2\.75\)\) ≥ 1, got 0$"),
        ({"entropies": [0.1], "rule": "fixed", "patch_size": float("inf")}, "patch_size must be an integer ≥ 1"),
        ({"entropies": [0.1], "rule": "space"}, "needs data="),
        ({"data": b"ab", "rule": "space", "blt_compat": True}, "blt_compat applies to the reference code's rules"),
        ({"entropies": [0.1], "rule": "budget", "budget": 1, "blt_compat": True}, "not 'budget'"),
        ({"entropies": [0.1], "rule": "budget"}, "rule 'budget' needs budget"),
        ({"entropies": [0.1], "rule": "budget", "budget": -2}, "budget must be ≥ 0 nats, got -2"),
        ({"entropies": [0.1], "rule": "budget", "budget": 1, "min_patch_length": 0}, "min_patch_length must be an"),
        (
            {"entropies": [0.1], "rule": "budget", "budget": 1, "min_patch_length": 5, "max_patch_length": 4},
            "min_patch_length 5 is above max_patch_length 4",
        ),
        ({"entropies": [0.1, 0.2], "data": b"abc", "rule": "space"}, "differ in shape"),
        ({"entropies": np.zeros((2, 3)), "threshold": 1, "row_lengths": [3]}, "row_lengths must be 2 integers"),
        ({"entropies": np.zeros((2, 3)), "threshold": 1, "row_lengths": [3, 4]}, r"row_lengths\[1\] = 4 is outside"),
        ({"entropies": np.zeros((2, 3)), "threshold": 1, "row_lengths": [-1, 2]}, r"row_lengths\[0\] = -1"),
        ({"entropies": np.zeros(3), "threshold": 1, "row_lengths": [3]}, "row_lengths only with 2-D"),
        ({"entropies": np.zeros((2, 2, 2)), "threshold": 1}, "1-D"),
    ],
)
def test_bad_input_raises_one_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(BltError, match=message):
        patch_lengths(kwargs.pop("entropies", None), **kwargs)


def test_misspelt_argument_is_an_error() -> None:
    with pytest.raises(BltError, match=r"unknown argument\(s\) \['treshold'\]; valid: .*threshold"):
        patch_lengths([0.1], treshold=1)


def test_all_parameter_problems_in_one_error() -> None:
    with pytest.raises(BltError, match="threshold must be ≥ 0.*; max_patch_length must be"):
        patch_start_mask([0.1], threshold=-1, max_patch_length=0)


def test_nan_in_padding_is_fine_but_not_in_a_row() -> None:
    e = np.array([[0.1, 2.0, np.nan], [0.1, np.nan, 0.2]])
    assert [r.tolist() for r in patch_lengths(e, threshold=1, row_lengths=[2, 1])] == [[1, 1], [1]]
    with pytest.raises(BltError, match=r"entropies\[1, 1\] is nan"):
        patch_lengths(e, threshold=1, row_lengths=[2, 2])


def test_calibration_errors() -> None:
    rows = [np.array([0.5, 1.0, 2.0, 3.0])]
    with pytest.raises(BltError, match="out of reach.*gives 1 to 4 bytes/patch"):
        calibrate_threshold(rows, 0.5)
    with pytest.raises(BltError, match="out of reach.*gives 1 to 4 bytes/patch"):
        calibrate_threshold(rows, 5)
    with pytest.raises(BltError, match="supports rule .global., .monotonic. or .budget."):
        calibrate_threshold(rows, 2, rule="space")
    with pytest.raises(BltError, match="needs entropies and a target"):
        calibrate_threshold([np.zeros(0)], 2)
    with pytest.raises(BltError, match=r"entropies\[0, 2\] is inf"):
        calibrate_threshold([np.array([0.1, 0.2, np.inf])], 2)


def test_streaming_errors() -> None:
    sp = StreamingPatcher(threshold=1)
    sp.push([0.1, 0.2])
    with pytest.raises(BltError, match=r"entropies\[3\] is nan"):
        sp.push([0.3, np.nan])
    with pytest.raises(BltError, match="space"):
        StreamingPatcher("space")


# ---------------------------------------------------------------- hypothesis laws

nats = st.sampled_from(NATS) | st.floats(0, 6, width=32)


@st.composite
def cases(draw: st.DrawFn, rules: tuple[str, ...] = RULES, max_size: int = 40) -> tuple[np.ndarray, bytes, dict]:
    """(entropies [n] float32, data [n] bytes, keyword arguments) for a random rule."""
    rule = draw(st.sampled_from(rules))
    tricky = st.lists(st.sampled_from(list(b" a.\x80\xbf\xc3\xe6")), max_size=max_size).map(bytes)
    data = draw(st.binary(max_size=max_size) | st.text(max_size=max_size // 3).map(str.encode) | tricky)
    e = np.array(draw(st.lists(nats, min_size=len(data), max_size=len(data))), dtype=np.float32)
    kw: dict = {"rule": rule, "max_patch_length": draw(st.none() | st.integers(1, 6))}
    if rule in ("global", "combined"):
        kw["threshold"] = draw(st.sampled_from(NATS))
    if rule in ("monotonic", "combined"):
        kw["relative_threshold"] = draw(st.sampled_from(NATS))
    if rule in ("global", "monotonic", "combined"):
        kw["blt_compat"] = draw(st.booleans())
    if rule == "fixed":
        kw["patch_size"] = draw(st.integers(1, 7) | st.floats(1, 7) | st.sampled_from([1.5, 2.5, 2.75, 10 / 3]))
    if rule == "budget":
        kw["budget"] = draw(st.sampled_from(NATS) | st.floats(0, 12))
        kw["min_patch_length"] = draw(st.none() | st.integers(1, kw["max_patch_length"] or 6))
    return e, data, kw


def loop_mask(e: np.ndarray | None, data: bytes | None, kw: dict) -> list[bool]:
    return _patch_start_mask_loop(e, data, _Spec(**kw))


@SETTINGS
@given(cases())
def test_vectorised_equals_loop(case: tuple) -> None:
    e, data, kw = case
    mask = patch_start_mask(e, data=data, **kw)
    expected = loop_mask(e, data, kw)
    assert mask.tolist() == expected
    assert patch_lengths(e, data=data, **kw).tolist() == _patch_lengths_loop(expected)
    assert patch_starts(e, data=data, **kw).tolist() == [t for t, s in enumerate(expected) if s]


@SETTINGS
@given(cases())
def test_lengths_positive_sum_to_n_and_reassemble(case: tuple) -> None:
    e, data, kw = case
    lengths = patch_lengths(e, data=data, **kw)
    assert (lengths > 0).all() and lengths.sum() == len(data) and lengths.dtype == np.int64
    assert b"".join(segments(data, lengths)) == data
    if kw["max_patch_length"] is not None:
        assert (lengths <= kw["max_patch_length"]).all()


@SETTINGS
@given(st.text(max_size=30), st.binary(max_size=30))
def test_space_never_splits_a_character(text: str, junk: bytes) -> None:
    """Valid UTF-8 stays whole (every patch decodes); invalid bytes still reassemble exactly."""
    data = text.encode()
    pieces = segments(data, patch_lengths(None, rule="space", data=data))
    assert "".join(p.decode() for p in pieces) == text
    mixed = junk + data + junk
    assert b"".join(segments(mixed, patch_lengths(None, rule="space", data=mixed))) == mixed


@SETTINGS
@given(st.lists(nats, max_size=40), nats, nats, st.sampled_from(["global", "monotonic"]), st.none() | st.integers(1, 5))
def test_raising_threshold_never_adds_patches(e: list, a: float, b: float, rule: str, max_len: int | None) -> None:
    lo, hi = sorted((a, b))
    key = "threshold" if rule == "global" else "relative_threshold"
    starts_lo = set(patch_starts(e, rule=rule, max_patch_length=max_len, **{key: lo}).tolist())
    starts_hi = set(patch_starts(e, rule=rule, max_patch_length=max_len, **{key: hi}).tolist())
    assert len(starts_hi) <= len(starts_lo)
    if max_len is None:
        assert starts_hi <= starts_lo


@SETTINGS
@given(
    st.lists(cases(rules=("global", "monotonic", "combined", "budget", "space", "fixed")), min_size=1, max_size=4), nats
)
def test_ragged_batch_equals_row_by_row(rows: list, junk: float) -> None:
    """A list of rows, and the same rows right-padded into [B, T] (padding: junk, NaN, inf) with row_lengths, give
    each row's own result; nothing in one row (or its padding) changes another."""
    kw = rows[0][2]
    es, ds = [r[0] for r in rows], [r[1] for r in rows]
    alone = [patch_lengths(e, data=d, **kw).tolist() for e, d in zip(es, ds, strict=True)]
    assert [r.tolist() for r in patch_lengths(es, data=ds, **kw)] == alone
    assert [r.tolist() for r in patch_starts(es, data=ds, **kw)] == [spans(a) for a in alone]
    width = max(len(d) for d in ds) + 2
    padded = np.full((len(rows), width), np.float32(junk))
    padded[:, -1], padded[:, -2] = np.nan, np.inf
    data = np.full((len(rows), width), ord(" "), dtype=np.uint8)
    for i, (e, d) in enumerate(zip(es, ds, strict=True)):
        padded[i, : len(e)], data[i, : len(d)] = e, np.frombuffer(d, np.uint8)
    lengths = [len(d) for d in ds]
    assert [r.tolist() for r in patch_lengths(padded, data=data, row_lengths=lengths, **kw)] == alone
    mask = patch_start_mask(padded, data=data, row_lengths=lengths, **kw)
    for i, n in enumerate(lengths):
        assert np.flatnonzero(mask[i]).tolist() == spans(alone[i]) and not mask[i, n:].any()


@SETTINGS
@given(cases(), st.integers(0, 40))
def test_prefix_patching_is_patching_prefix(case: tuple, k: int) -> None:
    """The paper's incremental property: patching a prefix gives the prefix of the patching (all rules here)."""
    e, data, kw = case
    k = min(k, len(data))
    full = patch_start_mask(e, data=data, **kw)
    assert patch_start_mask(e[:k], data=data[:k], **kw).tolist() == full[:k].tolist()


@SETTINGS
@given(
    cases(rules=("global", "monotonic", "combined", "budget", "fixed", "byte")),
    st.lists(st.integers(0, 12), max_size=8),
)
def test_streaming_equals_batch(case: tuple, cuts: list[int]) -> None:
    e, _, kw = case
    kw = {k: v for k, v in kw.items() if k != "blt_compat"}  # the reference's conventions are batch-only
    patcher = StreamingPatcher(**kw)
    bounds = sorted({min(int(c), len(e)) for c in np.cumsum(cuts)} | {0, len(e)})
    out = [s for a, b in zip(bounds[:-1], bounds[1:], strict=True) for s in patcher.push(e[a:b])] + patcher.finish()
    assert out == np.flatnonzero(patch_start_mask(e, **kw)).tolist()
    # byte by byte, as generation feeds it, and the patcher is reusable after finish()
    assert [s for x in e for s in patcher.push(float(x))] + patcher.finish() == out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.floats(0, 6, width=32), max_size=30, unique=True), min_size=1, max_size=3),
    st.floats(0, 1),
    st.none() | st.integers(2, 6),
)
def test_calibration_lands_within_one_patch(rows: list, where: float, max_len: int | None) -> None:
    """With distinct values every patch count between the extremes is reachable, so the calibrated threshold gives
    the target's implied count N / target within one patch."""
    rows = [np.array(r, dtype=np.float32) for r in rows]
    total = sum(r.size for r in rows)
    # a value shared between rows could make the count jump by more than one
    assume(total > 0 and len({float(v) for r in rows for v in r[1:]}) == sum(max(r.size - 1, 0) for r in rows))
    m = max_len or total
    k_min = sum(math.ceil(r.size / m) for r in rows)
    k_max = sum(r.size for r in rows if r.size) - sum(1 for r in rows for v in r[1:] if v <= 0)
    target = total / (k_min + where * (k_max - k_min))
    theta = calibrate_threshold(rows, target, max_patch_length=max_len)
    patches = sum(len(x) for x in patch_lengths(rows, threshold=theta, max_patch_length=max_len))
    assert abs(patches - total / target) <= 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(NATS), max_size=12), min_size=1, max_size=3),
    st.floats(0, 1),
    st.sampled_from(["global", "monotonic"]),
    st.none() | st.integers(1, 4),
)
def test_calibration_equals_loop(rows: list, where: float, rule: str, max_len: int | None) -> None:
    """Exact: the same threshold as trying every candidate value by brute force with the loop patcher (ties
    included); the target lies between the extremes θ = 0 and θ = ∞, so it is reachable."""
    rows = [np.array(r, dtype=np.float32) for r in rows]
    total = sum(r.size for r in rows)
    assume(total > 0)
    key = "threshold" if rule == "global" else "relative_threshold"
    k = [sum(map(len, patch_lengths(rows, rule=rule, max_patch_length=max_len, **{key: th}))) for th in (0, 99)]
    target = total / (k[1] + where * (k[0] - k[1]))
    theta = calibrate_threshold(rows, target, rule=rule, max_patch_length=max_len)
    assert theta == _calibrate_threshold_loop(rows, target, rule, max_len)


def test_calibration_target_that_rounds_below_the_fewest_patches() -> None:
    """Found by hypothesis (a bare `min()` ValueError before): rows of 11 and 7 bytes, M = 3. Every θ gives
    ceil(11/3) = 4 patches in row 1 and [3, 3, 1] in row 2 (the 0.25 sits on the cut at byte 6 either way), so 7
    patches = 18 / (18/7) bytes/patch for all θ; but 18 / (18/7) is 6.999… in floats. The smallest θ ≥ 0 wins: 0."""
    rows = [np.zeros(11), np.array([0, 0, 0, 0, 0, 0, 0.25])]
    theta = calibrate_threshold(rows, 18 / 7, rule="global", max_patch_length=3)
    assert theta == 0.0
    assert sum(map(len, patch_lengths(rows, threshold=theta, max_patch_length=3))) == 7


def test_calibration_accepts_one_row_and_2d() -> None:
    e = np.array([0.5, 1.0, 2.0, 3.0, 0.1, 0.2])
    theta = calibrate_threshold(e, 2.0)
    assert theta == 1.0 and len(patch_lengths(e, threshold=theta)) == 3  # 2 of the 5 values must exceed θ
    assert calibrate_threshold(np.stack([e, e]), 2.0) == theta
    assert calibrate_threshold(torch.tensor(e), 2.0) == theta
