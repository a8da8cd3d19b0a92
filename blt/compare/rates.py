"""The rates a comparison is made at: the reference rate every row is compared at (bytes/unit of a reference
segmenter on the evaluation text), which rows are at it (`matched`), and evenness curves over rates — the
coefficient of variation of bits/unit at several bytes/unit per segmenter — with the value at the reference rate
interpolated, so segmenters that cannot be set to a rate (trained tokenisers: the vocabulary sets it) are still
compared at the same rate.

Why curves: the CV of bits/unit falls as units grow (fixed patches: 0.76 at 2 bytes, 0.55 at 6 on English), so
CVs at different bytes/unit are not comparable; only values at one rate are.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from blt.errors import BltError
from blt.metrics import evenness_stats, unit_information

# The default reference, first available wins: a pretrained BPE's bytes/token on the evaluation text, as the BLT
# paper matched Llama 3's tokeniser (o200k: GPT-4o's 200k BPE, the closest offline kin of Llama 3's 128k one);
# then a trained tokeniser (at the largest vocabulary the training split supports), then words.
REFERENCE_ORDER = ("tiktoken-o200k", "tiktoken-cl100k", "hf:", "bpe", "sp-unigram", "sp-bpe", "space")
MATCH_TOLERANCE = 0.01  # a row within 1 % of the reference bytes/unit counts as matched (calibration is exact)
RATE_GRID = (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)  # bytes/unit of the curves for rate-settable segmenters
CURVE_MIN_VOCAB = 512  # trained tokenisers' curves: 512, 1024, ... up to the row's own vocabulary


def choose_reference(match: str | None, available: Sequence[str]) -> str | None:
    """The segmenter whose bytes/unit the others are compared at: `match` when given (None: no reference),
    with "auto" the first of `REFERENCE_ORDER` among the `available` (non-entropy, non-fixed) segmenters."""
    if match != "auto":
        return match
    for want in REFERENCE_ORDER:
        for name in available:
            if name == want or (want == "hf:" and name.startswith("hf:")):
                return name
    return None


def is_matched(bytes_per_unit: float, reference_bpu: float | None) -> bool | None:
    """Whether a row's rate is the reference rate (within `MATCH_TOLERANCE`); None without a reference."""
    if reference_bpu is None:
        return None
    return bool(abs(bytes_per_unit / reference_bpu - 1) <= MATCH_TOLERANCE)


def evenness_point(
    starts_of: Callable[[bytes], np.ndarray], docs: Sequence[bytes], surprisal: Sequence[np.ndarray]
) -> tuple[float, float]:
    """(bytes/unit, CV of bits/unit) of one segmentation of `docs`, graded by per-byte `surprisal` [n] nats:
    `evenness_stats` over every unit, as the row's `SegmentationStats` gives it."""
    bits = [unit_information(sur, starts_of(data)) for data, sur in zip(docs, surprisal, strict=True) if len(data)]
    units = sum(b.size for b in bits)
    if not units:
        return math.nan, math.nan
    return sum(map(len, docs)) / units, evenness_stats(np.concatenate(bits))["cv"]


def interpolate_at(points: Sequence[dict[str, Any]], rate: float, key: str = "bits_per_unit_cv") -> float | None:
    """`key` at bytes/unit `rate`, linear between the two points around it (sorted by bytes/unit); a point within
    `MATCH_TOLERANCE` of the rate is taken as is; None when the curve does not reach the rate.

    Golden: points (2, 0.8) and (4, 0.6) give 0.7 at 3 and None at 5."""
    pts = sorted((p["bytes_per_unit"], p[key]) for p in points if _finite(p["bytes_per_unit"]) and _finite(p[key]))
    for x, y in pts:
        if abs(x / rate - 1) <= MATCH_TOLERANCE:
            return y
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        if x0 <= rate <= x1 and x1 > x0:
            return y0 + (y1 - y0) * (rate - x0) / (x1 - x0)
    return None


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def entropy_curve(
    rule: str,
    entropies: Sequence[np.ndarray],
    docs: Sequence[bytes],
    surprisal: Sequence[np.ndarray],
    rates: Sequence[float],
) -> list[dict[str, Any]]:
    """An entropy rule's curve: its threshold (or budget) calibrated to each reachable rate of `rates` over these
    documents' entropies [n] nats (the scores that place the patches), graded by `surprisal`."""
    from blt.compare.config import RULE_VALUE
    from blt.compare.run import reachable_bytes_per_patch
    from blt.patching.calibration import calibrate_threshold
    from blt.patching.rules import patch_starts

    rows = [e for e in entropies if len(e)]
    if not rows:
        return []
    lo, hi = reachable_bytes_per_patch(rows, rule)
    by_data = {d: e for d, e in zip(docs, entropies, strict=True)}
    points = []
    for rate in sorted(r for r in rates if lo <= r <= hi):
        value = calibrate_threshold(rows, rate, rule=rule)
        cut = {RULE_VALUE[rule]: value}
        bpu, cv = evenness_point(lambda d, cut=cut: patch_starts(by_data[d], rule=rule, **cut), docs, surprisal)
        param = f"B={value:.4f} nats" if rule == "budget" else f"θ={value:.4f} nats"
        points.append({"bytes_per_unit": bpu, "bits_per_unit_cv": cv, "param": param, "value_nats": value})
    return points


def fixed_curve(docs: Sequence[bytes], surprisal: Sequence[np.ndarray], rates: Sequence[float]) -> list[dict]:
    """Fixed patches at each rate exactly over these documents (`fixed_size_for`: unit i at byte ⌊i·L⌋)."""
    from blt.compare.segmenters import fixed_size_for, rule_segmenter

    points = []
    for rate in sorted(rates):
        size = fixed_size_for(docs, rate)
        bpu, cv = evenness_point(rule_segmenter("fixed", size).starts, docs, surprisal)
        points.append({"bytes_per_unit": bpu, "bits_per_unit_cv": cv, "param": f"L={size:.4g} bytes"})
    return points


def tokenizer_curve(
    kind: str,
    top_vocab: int,
    train_docs: Sequence[bytes],
    docs: Sequence[bytes],
    surprisal: Sequence[np.ndarray],
    *,
    train_sha: str,
    cache: bool,
) -> list[dict[str, Any]]:
    """A trained tokeniser's curve: trained at 512, 1024, ... below `top_vocab` (sizes its trainer refuses, e.g.
    SentencePiece below one piece per character, are left out); the row's own point is added by the caller."""
    from blt.segment.tokenizers import cached_tokenizer

    points, vocab = [], CURVE_MIN_VOCAB
    while vocab < top_vocab:
        try:
            seg, _, _ = cached_tokenizer(kind, vocab, train_docs, train_sha=train_sha, cache=cache)
        except BltError:  # too small for SentencePiece's characters, or too large for the corpus
            vocab *= 2
            continue
        bpu, cv = evenness_point(seg.starts, docs, surprisal)
        points.append({"bytes_per_unit": bpu, "bits_per_unit_cv": cv, "param": f"vocab {vocab}"})
        vocab *= 2
    return points


def evenness_curves(
    rows: Sequence[dict[str, Any]],
    docs: Sequence[bytes],
    surprisal: Sequence[np.ndarray],
    entropies: Sequence[np.ndarray] | None,
    train_docs: Sequence[bytes],
    *,
    reference_bpu: float | None,
    cache: bool,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, list[dict[str, Any]]]:
    """Every row's curve (points sorted by bytes/unit), and `bits_per_unit_cv_at_reference` set on each row whose
    curve reaches the reference rate: entropy rules and fixed patches over `RATE_GRID` (and the reference rate),
    trained tokenisers over vocabularies, the others (pretrained tokenisers, space) at their one rate."""
    from blt.cache import documents_hash
    from blt.compare.config import ENTROPY, TRAINED

    rates = sorted({*RATE_GRID, *([reference_bpu] if reference_bpu else [])})
    train_sha = documents_hash(train_docs) if any(r["segmenter"] in TRAINED for r in rows) else ""
    curves = {}
    for row in rows:
        name = row["segmenter"]
        own = {"bytes_per_unit": row["bytes_per_unit"], "bits_per_unit_cv": row["bits_per_unit_cv"], "param": "row"}
        progress(f"evenness curve: {name}")
        if name in ENTROPY and entropies is not None:
            points = entropy_curve(name.removeprefix("entropy-"), entropies, docs, surprisal, rates)
        elif name.startswith("fixed"):
            points = fixed_curve(docs, surprisal, rates)
        elif name in TRAINED:
            top = row["vocab_size"]
            points = tokenizer_curve(name, top, train_docs, docs, surprisal, train_sha=train_sha, cache=cache)
            points.append({**own, "param": f"vocab {top}"})
        else:
            points = [own]
        curves[name] = sorted(points, key=lambda p: p["bytes_per_unit"])
        if reference_bpu is not None:
            row["bits_per_unit_cv_at_reference"] = interpolate_at(curves[name], reference_bpu)
    return curves
