"""How well the byte model fits the evaluation text: bits/byte beside general-purpose compressors, and the
calibration gap between the bits it pays and the entropy it predicts. Pure functions over bytes and per-byte nats.

Imports: stdlib and numpy only (a metrics-level module).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# name -> compress(data) at the strongest standard setting (REFERENCE.md "compressor baselines")
COMPRESSORS = {
    "gzip -9": lambda d: gzip.compress(d, 9),
    "bzip2 -9": lambda d: bz2.compress(d, 9),
    "xz -9e": lambda d: lzma.compress(d, preset=9 | lzma.PRESET_EXTREME),
}


def compressor_bits_per_byte(data: bytes) -> dict[str, float]:
    """`8 · len(compress(data)) / len(data)` for each of COMPRESSORS (NaN for empty data). Headers and trailers
    count: a compressor pays them on a file, and on a short text they are a real share of its cost."""
    return {name: 8 * len(fn(data)) / len(data) if data else math.nan for name, fn in COMPRESSORS.items()}


def calibration_gap(surprisal_nats: Sequence[Any], entropy_nats: Sequence[Any]) -> tuple[float, float, float]:
    """Per-document surprisal and predicted entropy (nats, one array per document, same bytes) ->
    (bits/byte paid, mean predicted entropy in bits/byte, gap = (paid − predicted) / paid). Both are ratios of sums
    over all bytes (lm-eval-harness convention). A positive gap: the model is overconfident (it expects to pay fewer
    bits than it does); negative: underconfident."""
    n = sum(len(s) for s in surprisal_nats)
    if n == 0:
        return math.nan, math.nan, math.nan
    paid = sum(float(np.sum(s, dtype=np.float64)) for s in surprisal_nats) / (math.log(2) * n)
    predicted = sum(float(np.sum(e, dtype=np.float64)) for e in entropy_nats) / (math.log(2) * n)
    return paid, predicted, (paid - predicted) / paid if paid > 0 else math.nan


def fit_facts(
    docs: Sequence[bytes],
    surprisal_nats: Sequence[Any],
    entropy_nats: Sequence[Any],
    compressors: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The byte model's fit for `byte_model` in results.json: the gap, and the compressors over the documents
    concatenated in order (one stream, as a file of them would be compressed); `compressors`: their figures for these
    documents when already known (the same text scored twice, static and online, is compressed once)."""
    paid, predicted, gap = calibration_gap(surprisal_nats, entropy_nats)
    text = b"".join(docs)
    compressors = compressors or compressor_bits_per_byte(text)
    best = min(compressors, key=lambda k: compressors[k])
    return {
        "mean_entropy_bits": predicted,
        "calibration_gap": gap,
        "compressors_bits_per_byte": compressors,
        "compressed_text": f"the {len(docs)} evaluation documents concatenated in order, {len(text):,} bytes",
        "worse_than": [k for k, v in compressors.items() if paid > v],
        "best_compressor": best,
    }


def fit_line(model: dict[str, Any]) -> list[str]:
    """One line of fit (and one more when a compressor beats the model) for the terminal and report.md; scored online,
    the line gives the online figures with the static ones beside them, and what the online scoring cost."""
    if "compressors_bits_per_byte" not in model:
        return []
    comp = model["compressors_bits_per_byte"]
    cells = ", ".join(f"{k} {v:.3f}" for k, v in comp.items() if v is not None)
    gap, static, lr = model.get("calibration_gap"), model.get("static"), model.get("online_lr")
    if lr is not None and static is not None:
        static_gap = _percent(static.get("calibration_gap"))
        lines = [
            f"byte model fit, scored online (Adam lr {lr:g}, one step on each window after scoring it): "
            f"{model['bits_per_byte']:.3f} bits/byte (static {static['bits_per_byte']:.3f}; predicted entropy "
            f"{model['mean_entropy_bits']:.3f}, calibration gap {_percent(gap)}, static {static_gap}) vs {cells} on "
            f"the concatenated evaluation bytes; online scoring took {model['scoring_seconds']:.1f} s "
            f"({model['scoring_mb_per_s'] * 1e3:.1f} kB/s)"
        ]
    elif gap is not None:
        lines = [
            f"byte model fit: {model['bits_per_byte']:.3f} bits/byte (predicted entropy "
            f"{model['mean_entropy_bits']:.3f}, calibration gap {gap:+.1%}) vs {cells} on the concatenated "
            f"evaluation bytes"
        ]
    else:
        lines = [f"byte model fit: {model['bits_per_byte']:.3f} bits/byte vs {cells}"]
    if model.get("worse_than"):
        best, more = model["best_compressor"], "longer " if "bits_per_byte_before_adapt" in model else ""
        even = " even online" if lr is not None else ""
        lines.append(
            f"the byte model is worse than {best} on this text{even} ({model['bits_per_byte']:.3f} vs "
            f"{comp[best]:.3f} bits/byte): its entropies say little here; adapt it {more}with --adapt-minutes 5 "
            "(or train one on it)"
        )
    return lines


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1%}"
