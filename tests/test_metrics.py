"""Segmentation metrics: hand-derived golden values, tokenization-scorer's own test values and parity with it,
hypothesis laws, loop-twin parity and edge cases (empty, whitespace-only, one unit, one type)."""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blt.metrics import (
    P90_RELATIVE_ERROR,
    BoundaryCounts,
    SegmentationStats,
    _boundary_counts_loop,
    _continued_words_loop,
    _LogHistogram,
    _renyi_entropy_loop,
    _unit_information_loop,
    _unit_lengths_loop,
    _word_boundaries_loop,
    _word_spans_loop,
    boundary_counts,
    boundary_prf,
    bytes_per_unit,
    continued_word_rate,
    evenness_stats,
    fertility,
    length_stats,
    renyi_efficiency,
    renyi_entropy,
    shannon_efficiency,
    shannon_entropy,
    unit_bytes,
    unit_information,
    unit_lengths,
    vocabulary_use,
    word_boundaries,
    word_spans,
    word_starts,
)

SETTINGS = settings(max_examples=60, deadline=None)
# tokenization-scorer's test texts and the values its tests assert (power = α = 2.5)
TEXT1 = b"pick @@ed pick @@l @@ed pick @@les".split()
TEXT2 = b"pick @@e @@d pick @@l @@e @@d pick @@l @@e @@s".split()


@st.composite
def documents(draw: st.DrawFn, max_size: int = 40) -> tuple[bytes, np.ndarray]:
    """A document over a small alphabet (words, every whitespace kind, a UTF-8 lead byte) and a random segmentation."""
    data = draw(st.lists(st.sampled_from(list(b"ab \t\n\v\f\r\xc3")), max_size=max_size).map(bytes))
    cuts = draw(st.sets(st.integers(1, max(len(data) - 1, 1)))) if len(data) > 1 else set()
    return data, np.array(sorted({0} | cuts) if data else [], dtype=np.int64)


@st.composite
def scored_documents(draw: st.DrawFn) -> tuple[bytes, np.ndarray, np.ndarray]:
    data, starts = draw(documents())
    nats = st.floats(0, 20, allow_nan=False, width=32)
    return data, starts, np.array(draw(st.lists(nats, min_size=len(data), max_size=len(data))), dtype=np.float32)


# ---- golden values ------------------------------------------------------------------------------------------------


def test_golden_the_cat_sat() -> None:
    """b"the cat sat" (n = 11): words [0,3) [4,7) [8,11), gold boundaries {3, 4, 7, 8}.

    A = [0, 4, 8] ("the ", "cat ", "sat"): U = 3, W = 3 → fertility 1, bytes/unit 11/3; no start lies strictly
    inside a word → continued-word rate 0; boundaries {4, 8}: tp 2, fp 0, fn 2 → P 1, R 1/2, F1 4/6.
    B = [0, 2, 4, 6, 8] ("th", "e ", "ca", "t ", "sat"): fertility 5/3; 2 is inside "the", 6 inside "cat" →
    rate 2/3; boundaries {2, 4, 6, 8}: tp 2 (4, 8), fp 2 (2, 6), fn 2 (3, 7) → P = R = F1 = 1/2.
    A against B: pred {4, 8}, gold {2, 4, 6, 8} → P 1, R 1/2, F1 2/3; B against A swaps P and R.
    Lengths of B: [2, 2, 2, 2, 3] → mean 2.2, median 2, p90 at position 0.9·4 = 3.6 → 2 + 0.6·(3 - 2) = 2.6.
    """
    data, a, b = b"the cat sat", [0, 4, 8], [0, 2, 4, 6, 8]
    assert word_starts(data).tolist() == [0, 4, 8]
    assert word_boundaries(data).tolist() == [3, 4, 7, 8]
    assert fertility(a, data) == 1.0 and fertility(b, data) == pytest.approx(5 / 3)
    assert bytes_per_unit(a, 11) == pytest.approx(11 / 3) and bytes_per_unit(b, 11) == 2.2
    assert continued_word_rate(a, data) == 0.0 and continued_word_rate(b, data) == pytest.approx(2 / 3)
    gold = word_boundaries(data)
    assert boundary_prf(a, gold, 11) == pytest.approx((1.0, 0.5, 2 / 3))
    assert boundary_prf(b, gold, 11) == pytest.approx((0.5, 0.5, 0.5))
    assert boundary_prf(a, b, 11) == pytest.approx((1.0, 0.5, 2 / 3))
    assert boundary_prf(b, a, 11) == pytest.approx((0.5, 1.0, 2 / 3))
    assert unit_bytes(data, b) == [b"th", b"e ", b"ca", b"t ", b"sat"]
    stats = length_stats(unit_lengths(b, 11))
    assert stats.pop("histogram") == [0, 4, 1]  # pytest ≥ 9's approx refuses nested containers
    assert stats == pytest.approx({"mean": 2.2, "median": 2.0, "p90": 2.6, "max": 3})
    assert shannon_efficiency(unit_bytes(data, b)) == 1.0  # five distinct units: uniform over the observed types


def test_golden_evenness() -> None:
    """One bit per byte (ln 2 nats) on b"the cat sat" with units [0, 4, 8]: bits per unit = lengths [4, 4, 3];
    mean 11/3, population variance ((1/3)² + (1/3)² + (2/3)²) / 3 = 2/9, so std √2/3, cv = (√2/3) / (11/3) = √2/11;
    p90 at position 1.8 of [3, 4, 4] → 4."""
    bits = unit_information(np.full(11, math.log(2)), [0, 4, 8])
    assert bits == pytest.approx([4, 4, 3])
    stats = evenness_stats(bits)
    assert stats == pytest.approx({"mean": 11 / 3, "std": math.sqrt(2) / 3, "cv": math.sqrt(2) / 11, "p90": 4.0})


def test_golden_efficiency_normalisations() -> None:
    """b"aabbaabb" cut at [0, 2, 4, 6]: 4 units "aa" "bb" "aa" "bb", 2 types at p = 1/2 each, so Shannon and Rényi
    (any α, uniform) entropy are both 1 bit. A closed vocabulary of V = 4: 1 / log2 4 = 0.5 over V, 1 / log2 2 = 1.0
    over the observed types, so the two keys differ. Open (no V): the _vocab keys are None, _types still 1.0."""
    stats = SegmentationStats()
    stats.add(b"aabbaabb", [0, 2, 4, 6])
    closed, open_ = stats.summary(vocab_size=4), stats.summary()
    assert closed["shannon_entropy"] == 1.0 and closed["renyi_entropy"] == pytest.approx(1.0, abs=1e-12)
    assert closed["shannon_efficiency_vocab"] == 0.5 and closed["renyi_efficiency_vocab"] == pytest.approx(0.5)
    for out in (closed, open_):
        assert out["shannon_efficiency_types"] == 1.0 and out["renyi_efficiency_types"] == pytest.approx(1.0)
    assert open_["shannon_efficiency_vocab"] is None and open_["renyi_efficiency_vocab"] is None
    assert not {"shannon_efficiency", "renyi_efficiency"} & closed.keys()  # no key mixes the two normalisations
    units = [b"aa", b"bb"] * 2  # the same values through the parity API
    assert shannon_efficiency(units, vocab_size=4) == 0.5 and shannon_efficiency(units) == 1.0


@pytest.mark.parametrize(
    ("units", "renyi", "renyi_eff", "shannon", "shannon_eff"),
    [
        (TEXT1, 1.653012966845049, 0.8265064834225245, 1.8423709931771088, 0.9211854965885544),
        (TEXT2, 2.1372977167241545, 0.9204840242168808, 2.2312702546075758, 0.9609557933859342),
    ],
)
def test_tokenization_scorer_values(units: list[bytes], renyi: float, renyi_eff: float, shannon: float,
                                    shannon_eff: float) -> None:  # fmt: skip
    """tokenization-scorer's test values (α = 2.5). TEXT1 has counts pick 3, @@ed 2, @@l 1, @@les 1 (7 units,
    4 types): H = -(3/7 log2 3/7 + 2/7 log2 2/7 + 2 · 1/7 log2 1/7) = 1.842371, / log2 4 = 0.921185;
    H_2.5 = log2((3^2.5 + 2^2.5 + 2) / 7^2.5) / (1 - 2.5) = 1.653013, / 2 = 0.826506."""
    counts = Counter(units)
    assert renyi_entropy(counts, 2.5) == pytest.approx(renyi, abs=1e-12)
    assert renyi_efficiency(units, alpha=2.5) == pytest.approx(renyi_eff, abs=1e-12)
    assert shannon_entropy(counts) == pytest.approx(shannon, abs=1e-12)
    assert shannon_efficiency(units) == pytest.approx(shannon_eff, abs=1e-12)
    assert shannon_entropy(list(counts.values())) == shannon_entropy(counts)  # counts as a sequence or a mapping


def test_reference_values_rounded() -> None:
    """The values as REFERENCE.md states them, to its six decimals."""
    assert round(renyi_entropy(Counter(TEXT1), 2.5), 6) == 1.653013
    assert round(renyi_efficiency(TEXT1, alpha=2.5), 6) == 0.826506
    assert round(shannon_entropy(Counter(TEXT1)), 6) == 1.842371
    assert round(shannon_efficiency(TEXT1), 6) == 0.921185


# ---- parity with tokenization-scorer ------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("tokenization_scorer") is None, reason="needs the dev extra")
@SETTINGS
@given(
    stream=st.lists(st.integers(0, 12), min_size=1, max_size=60),
    alpha=st.one_of(st.sampled_from([0.0, 0.5, 2.0, 2.5, 3.0]), st.floats(0, 8).filter(lambda a: a != 1.0)),
    extra=st.one_of(st.none(), st.integers(0, 100)),
)
def test_parity_with_tokenization_scorer(stream: list[int], alpha: float, extra: int | None) -> None:
    """Bit-identical efficiencies and entropies (nan where it gives nan: a single observed type, log2(1) = 0).
    α = 1 is excluded: the reference there re-reads an exhausted generator and returns 0.0; we return Shannon."""
    import tokenization_scorer as ts

    vocab = None if extra is None else len(set(stream)) + extra
    text = " ".join(f"u{i}" for i in stream)
    kw = {} if vocab is None else {"vocab": vocab}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reference divides 0 by 0 for a single type
        theirs = [
            ts.score(text, metric="renyi", power=alpha, **kw),
            ts.score(text, metric="renyi_entropy", power=alpha),
            ts.score(text, metric="shannon_efficiency", **kw),
            ts.score(text, metric="shannon_entropy"),
        ]
    counts = Counter(stream)
    ours = [
        renyi_efficiency(stream, alpha=alpha, vocab_size=vocab),
        renyi_entropy(counts, alpha),
        shannon_efficiency(stream, vocab_size=vocab),
        shannon_entropy(counts),
    ]
    for mine, ref in zip(ours, theirs, strict=True):
        assert (math.isnan(mine) and math.isnan(ref)) or mine == ref


# ---- laws ---------------------------------------------------------------------------------------------------------


@SETTINGS
@given(documents())
def test_loop_twins_and_lengths(doc: tuple[bytes, np.ndarray]) -> None:
    data, starts = doc
    n, s = len(data), starts.tolist()
    lengths = unit_lengths(starts, n)
    assert lengths.tolist() == _unit_lengths_loop(s, n) and lengths.sum() == n
    assert b"".join(unit_bytes(data, starts)) == data
    ws, we = word_spans(data)
    assert list(zip(ws.tolist(), we.tolist(), strict=True)) == _word_spans_loop(data)
    assert len(ws) == len(data.split())
    assert word_boundaries(data).tolist() == _word_boundaries_loop(data)
    split = _continued_words_loop(s, data)
    assert (math.isnan(continued_word_rate(starts, data)) and not ws.size) or continued_word_rate(
        starts, data
    ) == split / len(ws)
    if lengths.size:
        stats = length_stats(lengths)
        assert stats["median"] == pytest.approx(np.median(lengths))
        assert stats["p90"] == pytest.approx(np.percentile(lengths, 90))
        assert sum(stats["histogram"]) == lengths.size and stats["max"] == lengths.max()


@SETTINGS
@given(documents(), st.lists(st.integers(0, 40), max_size=12))
def test_boundary_counts_loop_twin(doc: tuple[bytes, np.ndarray], gold: list[int]) -> None:
    data, starts = doc
    gold = [g for g in gold if g <= len(data)]  # with 0, n and repeats, which are dropped
    c = boundary_counts(starts, np.array(gold, dtype=np.int64), len(data))
    assert (c.tp, c.fp, c.fn) == _boundary_counts_loop(starts.tolist(), gold, len(data))
    p, r, f1 = c.prf()
    assert math.isnan(f1) or 0 <= f1 <= 1
    if not (math.isnan(p) or math.isnan(r)) and p + r > 0:
        assert f1 == pytest.approx(2 * p * r / (p + r))


@SETTINGS
@given(scored_documents())
def test_unit_information_sums_to_total_bits(doc: tuple[bytes, np.ndarray, np.ndarray]) -> None:
    data, starts, nats = doc
    bits = unit_information(nats, starts)
    assert bits == pytest.approx(_unit_information_loop(nats.astype(np.float64).tolist(), starts.tolist()))
    assert bits.sum() == pytest.approx(nats.astype(np.float64).sum() / math.log(2), abs=1e-9)


@SETTINGS
@given(st.lists(st.integers(1, 30), min_size=1, max_size=40), st.integers(0, 50))
def test_entropy_laws(counts: list[int], extra: int) -> None:
    """Efficiencies in [0, 1] for vocab_size ≥ types; H_α non-increasing in α; α → 1 approaches Shannon; loop twin."""
    alphas = [0.0, 0.5, 0.9, 1.0, 1.1, 2.0, 2.5, 3.0, 8.0]
    h = [renyi_entropy(counts, a) for a in alphas]
    assert h == pytest.approx([_renyi_entropy_loop(counts, a) for a in alphas], abs=1e-9)
    assert all(x >= y - 1e-9 for x, y in zip(h, h[1:], strict=False))
    assert h[0] == pytest.approx(math.log2(len(counts)))
    shannon = shannon_entropy(counts)
    for eps in (1e-4, -1e-4):
        assert renyi_entropy(counts, 1 + eps) == pytest.approx(shannon, abs=1e-3)
    units = [i for i, c in enumerate(counts) for _ in range(c)]
    for vocab in (None, len(counts) + extra):
        for eff in (shannon_efficiency(units, vocab_size=vocab), renyi_efficiency(units, vocab_size=vocab)):
            assert math.isnan(eff) or -1e-12 <= eff <= 1 + 1e-12
            assert not math.isnan(eff) or (vocab or len(counts)) == 1
    assert same(renyi_efficiency(units, alpha=1.0), shannon_efficiency(units), rel=0, abs_=0)


def summary_from_parts(docs: list[tuple[bytes, np.ndarray, np.ndarray]]) -> dict:
    """The corpus metrics recomputed from the concatenated per-document results with the pure functions."""
    units = [u for data, s, _ in docs for u in unit_bytes(data, s)]
    lengths = np.concatenate([np.zeros(0, np.int64), *(unit_lengths(s, len(data)) for data, s, _ in docs)])
    bits = np.concatenate([np.zeros(0), *(unit_information(nats, s) for _, s, nats in docs)])
    words = sum(len(data.split()) for data, _, _ in docs)
    split = sum(_continued_words_loop(s.tolist(), data) for data, s, _ in docs)
    counts = sum((boundary_counts(s, word_boundaries(data), len(data)) for data, s, _ in docs), BoundaryCounts())
    nbytes = sum(len(data) for data, _, _ in docs)
    p, r, f1 = counts.prf()
    return {
        "units": len(units),
        "bytes_per_unit": nbytes / len(units) if units else math.nan,
        "fertility": len(units) / words if words else math.nan,
        "continued_word_rate": split / words if words else math.nan,
        "shannon_efficiency_types": shannon_efficiency(units),
        "renyi_efficiency_types": renyi_efficiency(units),
        "types": len(set(units)),
        **{f"length_{k}": v for k, v in length_stats(lengths).items()},
        "word_boundary_precision": p,
        "word_boundary_recall": r,
        "word_boundary_f1": f1,
        **{f"bits_per_unit_{k}": v for k, v in evenness_stats(bits).items()},
    }


def same(a: object, b: object, rel: float = 1e-9, abs_: float = 1e-9) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == pytest.approx(b, rel=rel, abs=abs_)


@SETTINGS
@given(st.lists(scored_documents(), max_size=6))
def test_accumulator_equals_concatenated_parts(docs: list[tuple[bytes, np.ndarray, np.ndarray]]) -> None:
    """SegmentationStats over documents == the pure functions over the concatenated per-document results; p90 of
    bits per unit within the log histogram's relative error; a merge of two halves == one pass."""
    acc, left, right = SegmentationStats(), SegmentationStats(), SegmentationStats()
    for i, (data, starts, nats) in enumerate(docs):
        acc.add(data, starts, nats)
        (left if i % 2 else right).add(data, starts, nats)
    got, want = acc.summary(), summary_from_parts(docs)
    scored = any(len(d) for d, _, _ in docs)
    for key, value in want.items():
        if key.startswith("bits_per_unit_") and not scored:
            assert got[key] is None
        elif key == "bits_per_unit_p90":
            assert same(got[key], value, rel=P90_RELATIVE_ERROR * 1.001, abs_=1e-5), key
        else:
            assert same(got[key], value), key
    left.merge(right)
    merged = left.summary()
    for key, value in got.items():
        assert same(merged[key], value) if isinstance(value, float) else merged[key] == value, key


@SETTINGS
@given(st.lists(st.floats(-12, 12), min_size=1, max_size=300), st.sampled_from([0.5, 0.9, 0.99]))
def test_log_histogram_quantile_accuracy(exponents: list[float], q: float) -> None:
    """Quantiles from log-spaced bins are within the relative error of numpy's on values over 10 decades."""
    x = np.exp2(np.array(exponents))
    hist = _LogHistogram()
    hist.add(x[: len(x) // 2])
    hist.add(x[len(x) // 2 :])
    assert hist.quantile(q) == pytest.approx(np.quantile(x, q), rel=P90_RELATIVE_ERROR * 1.001, abs=1e-6)


# ---- edge cases and errors ----------------------------------------------------------------------------------------


def test_empty_document() -> None:
    nan3 = (math.nan,) * 3
    assert unit_lengths([], 0).tolist() == [] and unit_bytes(b"", []) == []
    assert all(math.isnan(f(*args)) for f, args in [(bytes_per_unit, ([], 0)), (fertility, ([], b"")),
                                                    (continued_word_rate, ([], b""))])  # fmt: skip
    assert all(math.isnan(v) for v in boundary_prf([], [], 0)) and len(nan3) == 3
    assert unit_information(np.zeros(0), []).shape == (0,)
    assert length_stats([])["histogram"] == [] and math.isnan(length_stats([])["mean"])
    assert all(math.isnan(v) for v in evenness_stats([]).values())
    acc = SegmentationStats()
    acc.add(b"", [], np.zeros(0))
    acc.add(b"", [])
    out = acc.summary()
    assert out["documents"] == 2 and out["units"] == 0 and math.isnan(out["shannon_efficiency_types"])
    assert out["shannon_efficiency_vocab"] is None and out["renyi_efficiency_vocab"] is None  # open: no V
    assert out["bits_per_unit_mean"] is None and out["length_max"] == 0


def test_whitespace_only_document() -> None:
    data = b" \t\n\v\f\r "
    assert word_starts(data).size == 0 and word_boundaries(data).size == 0
    assert math.isnan(fertility([0, 3], data)) and math.isnan(continued_word_rate([0, 3], data))
    p, r, f1 = boundary_prf([0, 3], word_boundaries(data), len(data))  # one boundary, no gold: all false positives
    assert p == 0.0 and math.isnan(r) and f1 == 0.0
    assert all(math.isnan(v) for v in boundary_prf([0], [], len(data)))


def test_single_unit_and_single_type() -> None:
    data = b"hello world"
    assert fertility([0], data) == 0.5 and continued_word_rate([0], data) == 0.0
    p, r, f1 = boundary_prf([0], word_boundaries(data), len(data))  # no predicted boundary
    assert math.isnan(p) and r == 0.0 and f1 == 0.0
    same_type = [b"ab"] * 5
    assert shannon_entropy(Counter(same_type)) == 0.0 and math.copysign(1, renyi_entropy([5], 2.5)) == 1.0
    assert math.isnan(shannon_efficiency(same_type)) and math.isnan(renyi_efficiency(same_type))  # log2(1) = 0
    assert shannon_efficiency(same_type, vocab_size=4) == 0.0 and renyi_efficiency(same_type, vocab_size=4) == 0.0
    assert math.isnan(shannon_efficiency([])) and math.isnan(renyi_entropy([], 2.5))
    assert vocabulary_use(same_type + [b"c"], 8) == 0.25


def test_length_histogram_cap() -> None:
    stats = length_stats([1, 2, 2, 70, 100], max_bin=4)
    assert stats["histogram"] == [1, 2, 0, 2] and stats["max"] == 100  # the last bin counts lengths ≥ 4


@pytest.mark.parametrize(
    ("starts", "n", "match"),
    [
        ([1, 3], 5, r"starts\[0\] must be 0"),
        ([0, 3, 3], 5, "strictly increasing"),
        ([0, 5], 5, r"must be < n = 5"),
        ([0.0, 2.0], 5, "integer"),
        ([0], 0, "empty document"),
    ],
)
def test_bad_starts(starts: list, n: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        unit_lengths(starts, n)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="below the 3 unit types"):
        shannon_efficiency([1, 2, 3], vocab_size=2)
    with pytest.raises(ValueError, match="vocab_size must be an integer"):
        renyi_efficiency([1], vocab_size=0)
    with pytest.raises(ValueError, match="alpha must be"):
        renyi_entropy([1, 2], -1.0)
    with pytest.raises(ValueError, match="surprisal_nats must be finite"):
        unit_information([0.5, -1.0], [0])
    with pytest.raises(ValueError, match="gold_boundaries"):
        boundary_counts([0], [7], 5)
    acc = SegmentationStats()
    acc.add(b"ab", [0], [0.1, 0.2])
    with pytest.raises(ValueError, match="some documents but not others"):
        acc.add(b"cd", [0])
    with pytest.raises(ValueError, match="2 values for a 3-byte"):
        acc.add(b"cde", [0], [0.1, 0.2])


# ---------------------------------------------------------------- the byte model's fit (blt.compare.baselines)


def test_compressor_baselines_equal_python_compressors() -> None:
    import bz2
    import gzip
    import lzma

    from blt.compare.baselines import compressor_bits_per_byte

    d = b"the cat sat on the mat; " * 40 + bytes(range(256))
    assert compressor_bits_per_byte(d) == {
        "gzip -9": 8 * len(gzip.compress(d, 9)) / len(d),
        "bzip2 -9": 8 * len(bz2.compress(d, 9)) / len(d),
        "xz -9e": 8 * len(lzma.compress(d, preset=9 | lzma.PRESET_EXTREME)) / len(d),
    }
    assert all(math.isnan(v) for v in compressor_bits_per_byte(b"").values())


def test_calibration_gap_golden() -> None:
    """Two documents, 4 bytes, surprisal ln2·[1, 3] and ln2·[2, 2] nats (8 bits: 2 bits/byte paid), entropy
    ln2·[1, 1] and ln2·[1, 3] nats (6 bits: 1.5 bits/byte predicted): gap (2 − 1.5) / 2 = 0.25."""
    from blt.compare.baselines import calibration_gap

    ln2 = math.log(2)
    paid, predicted, gap = calibration_gap(
        [np.array([1.0, 3.0]) * ln2, np.array([2.0, 2.0]) * ln2], [np.array([1.0, 1.0]) * ln2, np.array([1, 3]) * ln2]
    )
    assert (paid, predicted, gap) == pytest.approx((2.0, 1.5, 0.25))
    assert all(math.isnan(x) for x in calibration_gap([], []))
