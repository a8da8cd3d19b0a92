"""Token by token: the per-token records of any `TokenScores` (an LLM, GGUF, the byte model or API logprobs) as rows
for JSONL, CSV and results.json (`token_records`, `write_token_records`); entropix's entropy–varentropy regions
(`token_regions`, `region_shares`); and means over lines or sentences so long outputs can be scanned
(`span_records`). Nats inside; the records are in bits (varentropy in bits², as entropix states it).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blt.bytelm.entropy import LN2
from blt.errors import BltError
from blt.files import write_atomic
from blt.llm.scorers import TokenScores

# entropix (github.com/xjdr-alt/entropix) reads a next-token distribution by its entropy H and varentropy V, both in
# bits. Its original sampler calls H > 3 bits "high entropy" and V > 5 bits² "high varentropy"; a 2×2 split at those
# values gives the four regions below (its own "confident" corner, H < 0.1 and V < 0.1, is much tighter).
REGION_ENTROPY_BITS = 3.0
REGION_VARENTROPY_BITS2 = 5.0
REGIONS = {  # name: (high entropy?, high varentropy?, entropix's phrase: what it means); order: 2·(high H) + (high V)
    "confident": (False, False, '"flowing with unspoken intent": one clear continuation'),
    "exploring": (False, True, '"exploring forks in the path": a few strong, different candidates'),
    "uncertain": (True, False, '"treading carefully": many candidates, all alike'),
    "branching": (True, True, '"resampling in the mist": many candidates of very different probability'),
}
TOKEN_FIELDS = (  # the columns of every record, in order (CSV header); None/empty where not known
    "model", "doc", "index", "token", "bytes_hex", "byte_start", "byte_end", "entropy_bits", "entropy_lower_bits",
    "entropy_upper_bits", "varentropy_bits2", "surprisal_bits", "top1_mass", "rank", "residual_mass", "censored",
    "region",
)  # fmt: skip
SPAN_KINDS = ("line", "sentence")
# a sentence ends after . ! ? … (and closing quotes/brackets) followed by white space, or at a blank line
SENTENCE_END = re.compile(rb"(?:[.!?]|\xe2\x80\xa6)+[\"')\]\xe2\x80\x9d\xe2\x80\x99]*\s+|\n\s*\n")


def _number(x: float, digits: int = 6) -> float | None:
    return round(float(x), digits) if math.isfinite(x) else None


def token_regions(
    entropy_bits: np.ndarray,
    varentropy_bits2: np.ndarray,
    *,
    entropy_cut_bits: float = REGION_ENTROPY_BITS,
    varentropy_cut_bits2: float = REGION_VARENTROPY_BITS2,
) -> np.ndarray:
    """[T] object array: each token's region of `REGIONS` (high means strictly above the cut), None where H or V is
    not known (API logprobs give neither exactly)."""
    h, v = np.asarray(entropy_bits, np.float64), np.asarray(varentropy_bits2, np.float64)
    known = np.isfinite(h) & np.isfinite(v)
    code = 2 * (h > entropy_cut_bits) + (v > varentropy_cut_bits2)  # [T] the index in REGIONS' order
    out = np.full(len(h), None, dtype=object)
    out[known] = np.array(list(REGIONS), dtype=object)[code[known]]
    return out


def region_shares(regions: np.ndarray) -> dict[str, float | None]:
    """Each region's share of the tokens whose region is known (None for all when none is)."""
    known = [r for r in regions if r is not None]
    return {name: (known.count(name) / len(known) if known else None) for name in REGIONS}


def _byte_starts(scores: TokenScores) -> np.ndarray:
    """[T] int64: each token's first byte offset within its document's bytes."""
    lengths = np.fromiter(map(len, scores.token_bytes), np.int64, len(scores))
    ends = np.cumsum(lengths)
    doc_start = np.zeros(len(scores), np.int64)  # the cumulative offset at each document's first token
    doc_ids = np.asarray(scores.doc_ids)
    first = np.flatnonzero(np.r_[True, doc_ids[1:] != doc_ids[:-1]]) if len(scores) else np.zeros(0, np.int64)
    for a, b in zip(first, [*first[1:], len(scores)], strict=True):
        doc_start[a:b] = ends[a] - lengths[a]
    return ends - lengths - doc_start


def token_records(
    scores: TokenScores,
    *,
    entropy_cut_bits: float = REGION_ENTROPY_BITS,
    varentropy_cut_bits2: float = REGION_VARENTROPY_BITS2,
) -> Iterator[dict[str, Any]]:
    """One dict per token, keys `TOKEN_FIELDS`: the model, document and the token's index in its tokenization, its
    text and UTF-8 bytes (hex), byte offsets [byte_start, byte_end) into the document's text, entropy (bits; API
    logprobs: NaN, and the lower/upper bounds instead), varentropy (bits²), surprisal of the actual token (bits;
    None if censored), top-1 mass, rank of the actual token (1 = the most probable; None where not known, e.g.
    outside an API's top k), residual mass outside the top k, censored, and the entropix region."""
    h = scores.entropy_nats / LN2
    v = scores.varentropy_nats2 / LN2**2
    regions = token_regions(h, v, entropy_cut_bits=entropy_cut_bits, varentropy_cut_bits2=varentropy_cut_bits2)
    starts = _byte_starts(scores)
    lower = scores.entropy_lower_nats / LN2 if scores.entropy_lower_nats is not None else None
    upper = scores.entropy_upper_nats / LN2 if scores.entropy_upper_nats is not None else None
    doc_ids, positions, censored = (np.asarray(a) for a in (scores.doc_ids, scores.positions, scores.censored))
    for t in range(len(scores)):
        rank = scores.rank[t] if scores.rank is not None else math.nan
        yield {
            "model": scores.source,
            "doc": int(doc_ids[t]),
            "index": int(positions[t]),
            "token": scores.tokens[t],
            "bytes_hex": scores.token_bytes[t].hex(),
            "byte_start": int(starts[t]),
            "byte_end": int(starts[t]) + len(scores.token_bytes[t]),
            "entropy_bits": _number(h[t]),
            "entropy_lower_bits": None if lower is None else _number(lower[t]),
            "entropy_upper_bits": None if upper is None else _number(upper[t]),
            "varentropy_bits2": _number(v[t]),
            "surprisal_bits": _number(scores.surprisal_nats[t] / LN2),
            "top1_mass": _number(scores.top1_mass[t]),
            "rank": int(rank) if math.isfinite(rank) else None,
            "residual_mass": None if scores.residual_mass is None else _number(scores.residual_mass[t]),
            "censored": bool(censored[t]),
            "region": regions[t],
        }


def write_token_records(records: Sequence[dict[str, Any]], path: str | Path, fmt: str = "jsonl") -> Path:
    """Write records to `path` atomically: `fmt` "csv" as CSV with the `TOKEN_FIELDS` header (empty cells where
    None), "jsonl" as JSON Lines (one object per token)."""
    path = Path(path)
    if fmt not in ("csv", "jsonl"):
        raise BltError(f"token records are written as csv or jsonl, got {fmt!r}")
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, TOKEN_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        text = buffer.getvalue()
    else:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    return write_atomic(path, write)


def span_bounds(data: bytes, kind: str) -> list[int]:
    """Byte offsets [0, ..., len(data)] cutting `data` into lines (each ends after its b"\\n") or sentences (each ends
    after `SENTENCE_END`: terminal punctuation, closing quotes, then white space; or a blank line)."""
    if kind not in SPAN_KINDS:
        raise BltError(f"spans are by {' or '.join(SPAN_KINDS)}, got {kind!r}")
    pattern = re.compile(rb"\n") if kind == "line" else SENTENCE_END
    cuts = [m.end() for m in pattern.finditer(data) if 0 < m.end() < len(data)]
    return [0, *dict.fromkeys(cuts), len(data)] if data else [0]


def span_records(records: Sequence[dict[str, Any]], data_of: dict[int, bytes], kind: str) -> list[dict[str, Any]]:
    """Means over each line or sentence (`span_bounds`) of each document, from `token_records` rows (one model):
    the span's text, byte range, tokens (those whose first byte lies in it), mean and max entropy (bits), mean
    surprisal (bits), bits per byte (its tokens' surprisal over their bytes), and for API logprobs the mean entropy
    bounds; None where nothing is known."""
    by_doc: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        by_doc.setdefault(r["doc"], []).append(r)
    out = []
    for doc, rows in by_doc.items():
        data = data_of[doc]
        bounds = span_bounds(data, kind)
        starts = np.array([r["byte_start"] for r in rows])
        which = np.searchsorted(bounds, starts, side="right") - 1  # [tokens] span of each token's first byte
        first = np.searchsorted(which, np.arange(len(bounds)))  # [spans + 1] tokens in order: span i's are a slice
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            members = rows[first[i] : first[i + 1]]
            h = [m["entropy_bits"] for m in members if m["entropy_bits"] is not None]
            lo = [m["entropy_lower_bits"] for m in members if m["entropy_lower_bits"] is not None]
            hi = [m["entropy_upper_bits"] for m in members if m["entropy_upper_bits"] is not None]
            s = [m["surprisal_bits"] for m in members]
            n_bytes = sum(m["byte_end"] - m["byte_start"] for m in members)
            known_s = members and None not in s and n_bytes
            out.append(
                {
                    "model": rows[0]["model"],
                    "doc": doc,
                    "span": i,
                    "kind": kind,
                    "byte_start": a,
                    "byte_end": b,
                    "text": data[a:b].decode("utf-8", "replace"),
                    "tokens": len(members),
                    "mean_entropy_bits": _number(float(np.mean(h))) if h else None,
                    "max_entropy_bits": _number(max(h)) if h else None,
                    "mean_entropy_lower_bits": _number(float(np.mean(lo))) if lo else None,
                    "mean_entropy_upper_bits": _number(float(np.mean(hi))) if hi else None,
                    "mean_surprisal_bits": _number(float(np.mean(s))) if known_s else None,
                    "bits_per_byte": _number(sum(s) / n_bytes) if known_s else None,
                }
            )
    return out


def document_bytes(scores: TokenScores) -> dict[int, bytes]:
    """{doc id: the bytes its tokens spell}."""
    out: dict[int, list[bytes]] = {}
    for doc, piece in zip(np.asarray(scores.doc_ids).tolist(), scores.token_bytes, strict=True):
        out.setdefault(doc, []).append(piece)
    return {d: b"".join(p) for d, p in out.items()}
