"""Segmentations → comparison metrics: pure numpy functions over unit start offsets, and a streaming accumulator.

Owns every number `blt compare` reports about one segmenter on a corpus: bytes per unit, fertility, continued-word
rate, Shannon/Rényi entropy and efficiency, vocabulary use, unit length distribution, boundary precision/recall/F1
(against words or another segmenter) and information evenness (bits the byte model assigns to each unit).

Conventions, used by every function here:
- A segmentation of `data: bytes` (n = len(data)) is `starts: [U] int64`, strictly increasing unit start offsets,
  `starts[0] == 0` when n > 0 and empty when n == 0. Unit i is `data[starts[i]:starts[i + 1]]`, the last one runs to
  n. "Unit" is a patch or a token; a unit's type is its byte string (for a tokeniser, the token's bytes).
- A word is a maximal run of non-whitespace bytes; whitespace is ASCII `\\t \\n \\v \\f \\r` and space, exactly what
  `bytes.split()` splits on. Bytes ≥ 0x80 never separate words (U+00A0, U+3000 do not), so an unspaced script
  (Chinese, Thai) counts a whole run as one word: word metrics compare segmenters on the same text, not scripts.
- Gold word boundaries are the internal offsets (0 < b < n) where a word starts or ends (exclusive end):
  `b"the cat"` → {3, 4}. A tokeniser that glues the space to the next word (`" cat"`) hits 3, not 4, so its recall
  against words is about 1/2 by construction; precision is the informative number there.
- A word is split ("continued") when a unit starts strictly inside it, i.e. it overlaps ≥ 2 units. A unit that
  straddles word edges counts for each word it overlaps: whitespace carried in a unit (`" cat"`) splits nothing, a
  unit of several whole words splits none of them, and `"th" "e c" "at"` splits both "the" and "cat".
- Corpus values are ratios of sums (micro averages), never means of per-document ratios.
- Undefined ratios (0/0: no units, no words, no boundaries, one type in a vocabulary of one) are nan, silently.

Efficiencies equal the reference package tokenization-scorer 1.1.8 bit for bit (same operations in the same
order): `H / log2(V)` with V the number of observed types unless `vocab_size` is given. Deliberate differences:
α = 1 gives Shannon (the reference's exhausted generator returns 0.0), an empty stream gives nan (the reference
gives nan for Rényi and 0.0 for Shannon from log2(0)), and `vocab_size` below the observed types raises (the
reference returns values > 1). Each vectorised kernel has a plain loop twin (`_*_loop`, at the end) for the tests.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

WHITESPACE = b" \t\n\v\f\r"  # ASCII whitespace, as bytes.split()
_IS_SPACE = np.zeros(256, dtype=bool)
_IS_SPACE[list(WHITESPACE)] = True
HISTOGRAM_BINS = 64  # length histograms: one bin per length 1..63, the last bin counts every length ≥ 64
P90_RELATIVE_ERROR = 1e-3  # SegmentationStats' p90 of bits per unit comes from log-spaced bins this fine


def _grow_add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise a + b of two count arrays, the shorter one padded with zeros."""
    out = np.zeros(max(a.size, b.size), dtype=np.int64)
    out[: a.size] += a
    out[: b.size] += b
    return out


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


def _as_starts(starts: Any, n: int) -> np.ndarray:
    """`starts` as int64 after checking the segmentation invariants; ValueError naming the broken one."""
    s = np.asarray(starts)
    if s.size == 0:
        s = s.reshape(0).astype(np.int64)
    if s.ndim != 1 or s.dtype.kind not in "iu":
        raise ValueError(f"starts must be a 1-D integer array of unit start offsets, got {s.dtype} of shape {s.shape}")
    s = s.astype(np.int64, copy=False)
    if n == 0 and s.size:
        raise ValueError(f"an empty document has no units: starts must be empty, got {s[:8].tolist()}")
    if n > 0 and (s.size == 0 or s[0] != 0):
        raise ValueError(f"starts[0] must be 0 for a non-empty document (n = {n} bytes), got {s[:8].tolist()}")
    bad = np.flatnonzero(np.diff(s) <= 0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"starts must be strictly increasing: starts[{i}] = {s[i]} ≥ starts[{i + 1}] = {s[i + 1]}")
    if s.size and s[-1] >= n:
        raise ValueError(f"starts[-1] = {s[-1]} must be < n = {n}: the last unit runs to the end of the document")
    return s


def unit_lengths(starts: Any, n: int) -> np.ndarray:
    """`[U] int64` unit lengths in bytes for the segmentation `starts` of an n-byte document (they sum to n)."""
    s = _as_starts(starts, n)
    return np.diff(s, append=np.int64(n))


def unit_bytes(data: bytes, starts: Any) -> list[bytes]:
    """The units themselves, `[U]` byte strings that concatenate to `data`: their types for the entropy metrics."""
    s = _as_starts(starts, len(data)).tolist()
    return [data[a:b] for a, b in zip(s, s[1:] + [len(data)], strict=False)]  # no units: zip stops at once


def word_spans(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """`(word_starts, word_ends)`: `[W] int64` byte offsets of each word's first byte and exclusive end."""
    in_word = ~_IS_SPACE[np.frombuffer(data, dtype=np.uint8)]
    edges = np.diff(in_word.astype(np.int8), prepend=np.int8(0), append=np.int8(0))  # [n + 1]: +1 start, -1 end
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def word_starts(data: bytes) -> np.ndarray:
    """`[W] int64` start offsets of the whitespace-delimited words of `data` (see the module docstring)."""
    return word_spans(data)[0]


def word_boundaries(data: bytes) -> np.ndarray:
    """Gold word boundaries: sorted internal offsets (0 < b < n) where a word starts or ends."""
    ws, we = word_spans(data)
    b = np.union1d(ws, we)
    return b[(b > 0) & (b < len(data))]


def _split_words(starts: np.ndarray, ws: np.ndarray, we: np.ndarray) -> int:
    """How many words [ws, we) have a unit start strictly inside them."""
    inside = np.searchsorted(starts, we, side="left") - np.searchsorted(starts, ws, side="right")
    return int(np.count_nonzero(inside > 0))


def bytes_per_unit(starts: Any, n: int) -> float:
    """Bytes per unit `n / U` of one document (nan when empty)."""
    return _ratio(n, _as_starts(starts, n).size)


def fertility(starts: Any, data: bytes) -> float:
    """Units per whitespace word `U / W` (nan without words)."""
    return _ratio(_as_starts(starts, len(data)).size, word_spans(data)[0].size)


def continued_word_rate(starts: Any, data: bytes) -> float:
    """Share of words split into ≥ 2 units, in [0, 1] (nan without words)."""
    ws, we = word_spans(data)
    return _ratio(_split_words(_as_starts(starts, len(data)), ws, we), ws.size)


def _probs(counts: Iterable[float] | Mapping[Any, float]) -> np.ndarray:
    """Frequencies → probabilities, most frequent first (the reference's `Counter.most_common()` order)."""
    values = counts.values() if isinstance(counts, Mapping) else counts
    c = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError("counts must be finite and ≥ 0 (one frequency per unit type)")
    c = -np.sort(-c[c > 0])
    return c / c.sum() if c.size else c


def _check_alpha(alpha: float) -> float:
    if not (isinstance(alpha, (int, float, np.number)) and math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite order ≥ 0 (2.5 in Zouhar et al. 2023), got {alpha!r}")
    return float(alpha)


def shannon_entropy(counts: Iterable[float] | Mapping[Any, float]) -> float:
    """Shannon entropy in bits, `-Σ p log2 p`, of the distribution with these frequencies (zeros ignored; nan if
    there are none). A Mapping's values are the frequencies, e.g. a `Counter` of unit types."""
    p = _probs(counts)
    return float(-np.sum(p * np.log2(p))) + 0.0 if p.size else math.nan  # + 0.0: no "-0.0 bits"


def renyi_entropy(counts: Iterable[float] | Mapping[Any, float], alpha: float) -> float:
    """Rényi entropy of order α in bits, `log2(Σ p^α) / (1 - α)`; α = 1 is its limit, Shannon entropy.
    Non-increasing in α; α = 0 gives log2 of the number of types."""
    alpha = _check_alpha(alpha)
    if alpha == 1.0:
        return shannon_entropy(counts)
    p = _probs(counts)
    return float((1 / (1 - alpha)) * np.log2(np.sum(p**alpha))) + 0.0 if p.size else math.nan


def _check_vocab(vocab_size: Any, n_types: int) -> int:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 1:
        raise ValueError(f"vocab_size must be an integer ≥ 1 (or None for the observed types), got {vocab_size!r}")
    if vocab_size < n_types:
        raise ValueError(f"vocab_size = {vocab_size} is below the {n_types} unit types observed; pass the segmenter's"
                         " full vocabulary size, or None to normalise by the observed types")  # fmt: skip
    return int(vocab_size)


def _efficiency(entropy_bits: float, n_types: int, vocab_size: int | None) -> float:
    v = n_types if vocab_size is None else _check_vocab(vocab_size, n_types)
    if v <= 1 or math.isnan(entropy_bits):
        return math.nan  # log2(1) = 0: one type carries no choice to be efficient about
    return float(entropy_bits / np.log2(v)) + 0.0


def shannon_efficiency(units: Iterable[Hashable], *, vocab_size: int | None = None) -> float:
    """Shannon entropy of the unit-type frequencies over `log2(vocab_size)` (default: observed types), in [0, 1]."""
    counts = Counter(units)
    return _efficiency(shannon_entropy(counts), len(counts), vocab_size)


def renyi_efficiency(units: Iterable[Hashable], *, alpha: float = 2.5, vocab_size: int | None = None) -> float:
    """Rényi entropy of order α (bits) of the unit-type frequencies over `log2(vocab_size)` (default: observed
    types), in [0, 1]. tokenization-scorer's `score(..., metric="renyi", power=alpha, vocab=vocab_size)`."""
    counts = Counter(units)
    return _efficiency(renyi_entropy(counts, alpha), len(counts), vocab_size)


def vocabulary_use(units: Iterable[Hashable], vocab_size: int) -> float:
    """Share of the vocabulary used: distinct unit types / `vocab_size`."""
    types = len(set(units))
    return types / _check_vocab(vocab_size, types)


def _hist_quantile(values: np.ndarray, counts: np.ndarray, q: float) -> float:
    """Quantile q of the sample holding `counts[i]` copies of ascending `values[i]`, linearly interpolated between
    order statistics (numpy's default `method="linear"`); nan when empty."""
    total = int(counts.sum())
    if total == 0:
        return math.nan
    pos = q * (total - 1)
    lo, frac = int(math.floor(pos)), pos - math.floor(pos)
    cum = np.cumsum(counts)
    v_lo, v_hi = values[np.searchsorted(cum, [lo, min(lo + 1, total - 1)], side="right")]
    return float(v_lo + (v_hi - v_lo) * frac)


def _length_summary(hist: np.ndarray, max_bin: int) -> dict[str, Any]:
    """`hist[k]` = number of units of length k (hist[0] == 0)."""
    lengths = np.arange(hist.size)
    u = int(hist.sum())
    longest = int(np.flatnonzero(hist)[-1]) if u else 0
    shown = hist[1 : longest + 1].tolist()
    if longest > max_bin:
        shown = shown[: max_bin - 1] + [sum(shown[max_bin - 1 :])]
    return {
        "mean": _ratio(int(hist @ lengths), u),
        "median": _hist_quantile(lengths, hist, 0.5),
        "p90": _hist_quantile(lengths, hist, 0.9),
        "max": longest,
        "histogram": shown,
    }


def length_stats(lengths: Any, *, max_bin: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """Unit lengths (bytes) → `{mean, median, p90, max, histogram}`. Quantiles interpolate linearly (numpy's
    default). `histogram[k - 1]` counts units of length k for k = 1..min(max, max_bin); when max > max_bin the last
    bin is open and counts every length ≥ max_bin. nan statistics and an empty histogram for no units."""
    x = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if x.size and x.min() < 1:
        raise ValueError(f"unit lengths must be ≥ 1 byte, got {int(x.min())}; compute them with unit_lengths")
    return _length_summary(np.bincount(x, minlength=1), max_bin)


def unit_information(surprisal_nats: Any, starts: Any) -> np.ndarray:
    """Bits per unit `[U] float64`: Σ of the byte model's surprisal `[n] nats` over each unit's bytes, / ln 2."""
    s = np.asarray(surprisal_nats, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError("surprisal_nats must be finite and ≥ 0 (-log p of each byte, in nats)")
    st = _as_starts(starts, s.size)
    return np.add.reduceat(s, st) / math.log(2) if st.size else np.zeros(0)


def evenness_stats(bits_per_unit: Any) -> dict[str, float]:
    """Information evenness of units: `{mean, std, cv, p90}` of bits per unit; std is the population one (ddof 0),
    cv = std / mean, p90 interpolates linearly. nan when there are no units."""
    x = np.asarray(bits_per_unit, dtype=np.float64).reshape(-1)
    if not x.size:
        return {"mean": math.nan, "std": math.nan, "cv": math.nan, "p90": math.nan}
    mean, std = float(x.mean()), float(x.std())
    return {"mean": mean, "std": std, "cv": _ratio(std, mean), "p90": float(np.percentile(x, 90))}


class _LogHistogram:
    """Counts of values ≥ 0 in log-spaced bins (DDSketch): bin k holds (γ^(k-1), γ^k] and stands for 2γ^k/(γ+1),
    within `rel_error` of every value in it; values below `floor` share a bin standing for 0. Bounded, mergeable,
    independent of document order: 1e-6..1e6 bits spans ~14 k bins at 1e-3."""

    def __init__(self, rel_error: float = P90_RELATIVE_ERROR, floor: float = 1e-6) -> None:
        self.log_gamma = math.log((1 + rel_error) / (1 - rel_error))
        self.floor, self.first = floor, math.ceil(math.log(floor) / self.log_gamma)
        self.zeros, self.counts = 0, np.zeros(0, dtype=np.int64)

    def add(self, values: np.ndarray) -> None:
        small = values < self.floor
        self.zeros += int(np.count_nonzero(small))
        k = np.ceil(np.log(values[~small]) / self.log_gamma).astype(np.int64) - self.first
        self.counts = _grow_add(self.counts, np.bincount(np.maximum(k, 0)))  # max(): rounding at the floor

    def merge(self, other: _LogHistogram) -> None:
        self.zeros += other.zeros
        self.counts = _grow_add(self.counts, other.counts)

    def quantile(self, q: float) -> float:
        gamma = math.exp(self.log_gamma)
        reps = 2 * np.exp((np.arange(self.counts.size) + self.first) * self.log_gamma) / (gamma + 1)
        return _hist_quantile(np.concatenate(([0.0], reps)), np.concatenate(([self.zeros], self.counts)), q)


@dataclass
class BoundaryCounts:
    """Boundary matches, summed over documents for micro-averaged P/R/F1: `tp` predicted boundaries that are gold,
    `fp` predicted ones that are not, `fn` gold ones not predicted. Add with `+` / `+=`."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: BoundaryCounts) -> BoundaryCounts:
        return BoundaryCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def prf(self) -> tuple[float, float, float]:
        """(precision, recall, F1); F1 = 2tp / (2tp + fp + fn), so it is defined whenever any boundary exists."""
        return (
            _ratio(self.tp, self.tp + self.fp),
            _ratio(self.tp, self.tp + self.fn),
            _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn),
        )


def boundary_counts(pred_starts: Any, gold_boundaries: Any, n: int) -> BoundaryCounts:
    """Match the internal boundaries (0 < b < n) of the segmentation `pred_starts` against `gold_boundaries`
    (offsets in [0, n]; 0, n and repeats are dropped): `word_boundaries(data)`, or another segmentation's starts
    for pairwise agreement (then precision of A vs B is recall of B vs A, and F1 is symmetric)."""
    pred = _as_starts(pred_starts, n)[1:]
    gold = np.asarray(gold_boundaries).reshape(-1)
    if gold.size and (gold.dtype.kind not in "iu" or gold.min() < 0 or gold.max() > n):
        raise ValueError(f"gold_boundaries must be integer offsets in [0, n = {n}]")
    gold = np.unique(gold[(gold > 0) & (gold < n)].astype(np.int64))
    tp = int(np.count_nonzero(np.isin(pred, gold, assume_unique=True)))
    return BoundaryCounts(tp, pred.size - tp, gold.size - tp)


def boundary_prf(pred_starts: Any, gold_boundaries: Any, n: int) -> tuple[float, float, float]:
    """(precision, recall, F1) of one document's internal boundaries; see `boundary_counts` (nan when undefined)."""
    return boundary_counts(pred_starts, gold_boundaries, n).prf()


class SegmentationStats:
    """Every metric above for one segmenter over a corpus, fed one document at a time with flat memory.

    State is O(types + max unit length): a `Counter` of unit types (byte strings), a length histogram, word and
    split-word counts, `BoundaryCounts` against word boundaries, and for evenness the count/mean/M2 of bits per unit
    (merged per document with Chan's formula: exact mean and std) plus a log-spaced histogram for the p90, which is
    therefore within `P90_RELATIVE_ERROR` (0.1 %) of the exact value, deterministic and independent of document
    order (a reservoir sample would be neither). Pairwise agreement between segmenters needs both segmentations of
    a document at once: sum `boundary_counts(starts_a, starts_b, n)` alongside. `merge` joins parallel workers.
    """

    def __init__(self) -> None:
        self.documents = self.n_bytes = self.n_words = self.n_split_words = 0
        self.type_counts: Counter[bytes] = Counter()
        self.length_hist = np.zeros(1, dtype=np.int64)  # [max length + 1]: length_hist[k] = units of k bytes
        self.word_boundaries = BoundaryCounts()
        self.scored_docs = self.unscored_docs = 0  # non-empty documents with / without surprisal
        self._bits = (0, 0.0, 0.0)  # bits per unit: count, mean, sum of squared deviations (M2)
        self._bits_hist = _LogHistogram()

    def add(self, data: bytes, starts: Any, surprisal_nats: Any = None) -> None:
        """Add one document: its bytes, its segmentation and optionally the byte model's surprisal `[n] nats`."""
        n, doc = len(data), SegmentationStats()
        s = _as_starts(starts, n)
        ws, we = word_spans(data)
        doc.documents, doc.n_bytes, doc.n_words, doc.n_split_words = 1, n, ws.size, _split_words(s, ws, we)
        doc.length_hist = np.bincount(np.diff(s, append=np.int64(n)), minlength=1)
        doc.word_boundaries = boundary_counts(s, np.concatenate((ws, we)), n)
        if n and surprisal_nats is None:
            doc.unscored_docs = 1
        elif n:
            if np.size(surprisal_nats) != n:
                raise ValueError(f"surprisal_nats has {np.size(surprisal_nats)} values for a {n}-byte document")
            bits = unit_information(surprisal_nats, s)
            doc.scored_docs, doc._bits = 1, (bits.size, float(bits.mean()), float(((bits - bits.mean()) ** 2).sum()))
            doc._bits_hist.add(bits)
        self.merge(doc)
        self.type_counts.update(unit_bytes(data, s))  # straight from the list: Counter's C fast path

    def merge(self, other: SegmentationStats) -> None:
        """Fold in another accumulator's documents (e.g. a parallel worker's)."""
        if (self.scored_docs or other.scored_docs) and (self.unscored_docs or other.unscored_docs):
            raise ValueError("surprisal_nats was given for some documents but not others; pass it for all or none")
        self.documents += other.documents
        self.n_bytes += other.n_bytes
        self.n_words += other.n_words
        self.n_split_words += other.n_split_words
        self.type_counts.update(other.type_counts)
        self.length_hist = _grow_add(self.length_hist, other.length_hist)
        self.word_boundaries += other.word_boundaries
        self.scored_docs += other.scored_docs
        self.unscored_docs += other.unscored_docs
        (na, ma, m2a), (nb, mb, m2b) = self._bits, other._bits
        if nb:  # Chan et al.: combine counts, means and M2 of two samples exactly
            d, nt = mb - ma, na + nb
            self._bits = (nt, ma + d * nb / nt, m2a + m2b + d * d * na * nb / nt)
        self._bits_hist.merge(other._bits_hist)

    def summary(self, vocab_size: int | None = None, *, alpha: float = 2.5) -> dict[str, Any]:
        """Every metric as a flat dict; `vocab_size` is the segmenter's closed vocabulary V (None: open).

        Each efficiency key names its one normalisation, so a column never mixes two: `*_efficiency_vocab` is the
        entropy over log2 V (None without V), `*_efficiency_types` the entropy over log2 of the observed types (for
        every segmenter). `vocabulary_use` and the `bits_per_unit_*` evenness values are None without V / surprisal.
        """
        units, types = int(self.length_hist.sum()), len(self.type_counts)
        shannon, renyi = shannon_entropy(self.type_counts), renyi_entropy(self.type_counts, alpha)
        p, r, f1 = self.word_boundaries.prf()
        n_bits, mean, m2 = self._bits
        mean, std = (mean, math.sqrt(m2 / n_bits)) if n_bits else (math.nan, math.nan)
        evenness = {"mean": mean, "std": std, "cv": _ratio(std, mean), "p90": self._bits_hist.quantile(0.9)}

        def by_vocab(entropy_bits: float) -> float | None:  # an open vocabulary has no V to divide by
            return None if vocab_size is None else _efficiency(entropy_bits, types, vocab_size)

        return {
            "documents": self.documents,
            "bytes": self.n_bytes,
            "units": units,
            "words": self.n_words,
            "types": types,
            "bytes_per_unit": _ratio(self.n_bytes, units),
            "fertility": _ratio(units, self.n_words),
            "continued_word_rate": _ratio(self.n_split_words, self.n_words),
            "shannon_entropy": shannon,
            "shannon_efficiency_vocab": by_vocab(shannon),
            "shannon_efficiency_types": _efficiency(shannon, types, None),
            "renyi_alpha": _check_alpha(alpha),
            "renyi_entropy": renyi,
            "renyi_efficiency_vocab": by_vocab(renyi),
            "renyi_efficiency_types": _efficiency(renyi, types, None),
            "vocab_size": vocab_size,
            "vocabulary_use": None if vocab_size is None else types / _check_vocab(vocab_size, types),
            **{f"length_{k}": v for k, v in _length_summary(self.length_hist, HISTOGRAM_BINS).items()},
            "word_boundary_precision": p,
            "word_boundary_recall": r,
            "word_boundary_f1": f1,
            **{f"bits_per_unit_{k}": v if self.scored_docs else None for k, v in evenness.items()},
        }


def _unit_lengths_loop(starts: list[int], n: int) -> list[int]:
    return [(starts[i + 1] if i + 1 < len(starts) else n) - starts[i] for i in range(len(starts))]


def _word_spans_loop(data: bytes) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(rb"[^ \t\n\v\f\r]+", data)]


def _continued_words_loop(starts: list[int], data: bytes) -> int:
    return sum(any(a < s < b for s in starts) for a, b in _word_spans_loop(data))


def _word_boundaries_loop(data: bytes) -> list[int]:
    return sorted({b for span in _word_spans_loop(data) for b in span if 0 < b < len(data)})


def _boundary_counts_loop(pred_starts: list[int], gold: list[int], n: int) -> tuple[int, int, int]:
    p, g = {b for b in pred_starts if 0 < b < n}, {b for b in gold if 0 < b < n}
    return len(p & g), len(p - g), len(g - p)


def _renyi_entropy_loop(counts: list[int], alpha: float) -> float:
    total = sum(counts)
    ps = [c / total for c in counts if c > 0]
    if alpha == 1:
        return -sum(p * math.log2(p) for p in ps)
    return math.log2(sum(p**alpha for p in ps)) / (1 - alpha)


def _unit_information_loop(surprisal_nats: list[float], starts: list[int]) -> list[float]:
    ends = starts[1:] + [len(surprisal_nats)]
    return [sum(surprisal_nats[a:b]) / math.log(2) for a, b in zip(starts, ends, strict=False)]
