"""The reference rate and evenness curves (`blt.compare.rates`) and exact fixed sizes (`fixed_size_for`): golden
cases by hand, and parity of the curve's evenness with `SegmentationStats`."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blt.compare.rates import choose_reference, evenness_point, fixed_curve, interpolate_at, is_matched
from blt.compare.segmenters import fixed_size_for, rule_segmenter
from blt.metrics import SegmentationStats


def test_choose_reference_prefers_a_pretrained_bpe_then_trained_then_space() -> None:
    """auto: o200k, then cl100k, then any hf: tokenizer, then bpe, sp-unigram, sp-bpe, space; a given name is kept;
    None (thresholds given) keeps none; with nothing to match (byte, fixed only) there is none."""
    everything = ["bpe", "sp-unigram", "tiktoken-cl100k", "tiktoken-o200k", "space", "fixed"]
    assert choose_reference("auto", everything) == "tiktoken-o200k"
    assert choose_reference("auto", ["bpe", "tiktoken-cl100k"]) == "tiktoken-cl100k"
    assert choose_reference("auto", ["sp-bpe", "hf:gpt2", "bpe"]) == "hf:gpt2"
    assert choose_reference("auto", ["sp-bpe", "sp-unigram", "bpe"]) == "bpe"
    assert choose_reference("auto", ["space", "sp-bpe"]) == "sp-bpe"
    assert choose_reference("auto", ["byte", "fixed"]) is None
    assert choose_reference("space", everything) == "space" and choose_reference(None, everything) is None


def test_is_matched_within_one_percent() -> None:
    assert is_matched(4.0, 4.0) and is_matched(4.039, 4.0) and not is_matched(4.041, 4.0)
    assert is_matched(3.0, None) is None


def test_interpolate_golden() -> None:
    """(2, 0.8) and (4, 0.6): 0.7 at 3 (halfway), 0.8 at 2.01 (within 1 % of a point), None at 5 and at 1.5
    (outside the curve); unsorted input and NaN points are handled."""
    pts = [{"bytes_per_unit": 4.0, "bits_per_unit_cv": 0.6}, {"bytes_per_unit": 2.0, "bits_per_unit_cv": 0.8}]
    assert interpolate_at(pts, 3.0) == pytest.approx(0.7)
    assert interpolate_at(pts, 2.01) == 0.8
    assert interpolate_at(pts, 5.0) is None and interpolate_at(pts, 1.5) is None
    assert interpolate_at([*pts, {"bytes_per_unit": 3.0, "bits_per_unit_cv": math.nan}], 3.0) == pytest.approx(0.7)
    assert interpolate_at([], 3.0) is None


def test_fixed_size_golden() -> None:
    """Documents of 10 and 5 bytes at 3 bytes/unit: round(15 / 3) = 5 units. At L = 3 they get ⌈10/3⌉ + ⌈5/3⌉ =
    4 + 2 = 6; the count drops to 3 + 2 = 5 at L = 10/3 (starts 0, 3, 6 and 0, 3): L = 10/3, exactly 3 bytes/unit.
    One document of 8 bytes at 2.5: round(3.2) = 3 units, first reached at L = 8/3 (starts 0, 2, 5)."""
    size = fixed_size_for([b"x" * 10, b"y" * 5], 3)
    assert size == pytest.approx(10 / 3, rel=1e-12)
    seg = rule_segmenter("fixed", size, rate=3)
    assert seg.name == "fixed-3" and seg.patch_size == size
    assert seg.starts(b"x" * 10).tolist() == [0, 3, 6] and seg.starts(b"y" * 5).tolist() == [0, 3]
    size = fixed_size_for([b"z" * 8], 2.5)
    assert size == pytest.approx(8 / 3, rel=1e-12) and rule_segmenter("fixed", size).starts(b"z" * 8).tolist() == [
        0,
        2,
        5,
    ]
    assert fixed_size_for([b"", b"abc"], 10) == 3.0  # at least one unit per non-empty document


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=12), st.floats(1.0, 9.0))
def test_fixed_size_gives_the_nearest_reachable_count(lengths: list[int], rate: float) -> None:
    """The units at L never exceed round(Σn / rate) (or one per document), and any smaller L gives more: L is the
    smallest size reaching the count, so no fixed size comes closer from below."""
    docs = [b"a" * n for n in lengths]
    want = max(len(docs), round(sum(lengths) / rate))
    size = fixed_size_for(docs, rate)

    def units(length: float) -> int:
        return sum(len(rule_segmenter("fixed", length).starts(d)) for d in docs)

    assert units(size) <= want
    assert size <= 1.0 + 1e-9 or units(size * (1 - 1e-7)) > want


def test_evenness_point_equals_segmentation_stats() -> None:
    """The curve's (bytes/unit, CV) is the row's: same units, same surprisal, population std."""
    rng = np.random.default_rng(0)
    docs = [bytes(rng.integers(97, 123, size=n, dtype=np.uint8)) for n in (50, 1, 0, 133)]
    sur = [rng.random(len(d)).astype(np.float32) * 3 for d in docs]
    seg = rule_segmenter("fixed", 2.7)
    stats = SegmentationStats()
    for d, s in zip(docs, sur, strict=True):
        stats.add(d, seg.starts(d), s)
    summary = stats.summary()
    bpu, cv = evenness_point(seg.starts, docs, sur)
    assert bpu == pytest.approx(summary["bytes_per_unit"], rel=1e-12)
    assert cv == pytest.approx(summary["bits_per_unit_cv"], rel=1e-9)
    points = fixed_curve(docs, sur, [2.0, 4.0])
    n = sum(map(len, docs))  # 184 bytes in 3 non-empty documents: 92 and 46 units, as close as fixed sizes get
    assert [p["bytes_per_unit"] for p in points] == [n / 92, n / 46]


def test_budget_reach_and_curve_golden() -> None:
    """The budget rule over rows [1, 1, 1, 1] and [2, 2] nats (6 bytes): at B = 0 every byte of positive entropy
    starts (6 patches, 1 byte/patch), at B = ∞ each row is one patch (3 bytes/patch). In between the counts are
    6 for B < 2 (no two bytes fit), 4 for 2 ≤ B < 4 ([1,1][1,1] and [2][2], or [1,1,1][1] from B = 3) and 2 from
    B = 4: 3 patches (2 bytes/patch) cannot be had, and the nearest count is 4
    (1.5 bytes/patch, off by 0.5, where 2 patches are off by 1.0), first reached at B = 2. Graded by surprisal
    [1, 2, 3, 4] and [1, 1] nats, the units [1,2][3,4][1][1] carry 3, 7, 1, 1 nats."""
    from blt.compare.rates import entropy_curve
    from blt.compare.run import reachable_bytes_per_patch

    rows = [np.ones(4, np.float32), np.full(2, 2.0, np.float32)]
    assert reachable_bytes_per_patch(rows, "budget") == (1.0, 3.0)
    docs = [b"abcd", b"ef"]
    surprisal = [np.array([1, 2, 3, 4], np.float32), np.ones(2, np.float32)]
    points = entropy_curve("budget", rows, docs, surprisal, [2.0, 9.0])  # 9 is out of reach: left out
    assert len(points) == 1 and points[0]["value_nats"] == 2.0 and points[0]["param"] == "B=2.0000 nats"
    unit_nats = np.array([3.0, 7.0, 1.0, 1.0])
    assert points[0]["bytes_per_unit"] == 1.5
    assert points[0]["bits_per_unit_cv"] == pytest.approx(unit_nats.std() / unit_nats.mean(), rel=1e-6)
