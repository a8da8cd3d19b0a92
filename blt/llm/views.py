"""What `blt llm score/compare` show token by token: each model's `TokenScores` as a shaded `UnitView` (the renderer
`blt entropy` uses for bytes), the per-token records as JSONL/CSV, the side-by-side HTML page, the entropy–varentropy
map, entropix region shares, and line/sentence means (`token_outputs` writes whichever the user asked for).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from blt.bytelm.entropy import LN2
from blt.errors import BltError
from blt.llm.scorers import TokenScores
from blt.llm.tokens import (
    REGION_ENTROPY_BITS,
    REGION_VARENTROPY_BITS2,
    REGIONS,
    document_bytes,
    region_shares,
    span_records,
    token_records,
    token_regions,
    write_token_records,
)
from blt.report.plots import plot_entropy_varentropy
from blt.report.units import UnitView, render_units_terminal, shade_scale, write_units_html

SPAN_TEXT_SHOWN = 70  # characters of a span's text in the terminal table
SPANS_SHOWN = 40  # rows of the span table per model in the terminal; the files have all


@dataclass(frozen=True)
class RegionCuts:
    """The 2×2 split of the entropy–varentropy map (bits, bits²)."""

    entropy_bits: float = REGION_ENTROPY_BITS
    varentropy_bits2: float = REGION_VARENTROPY_BITS2

    @classmethod
    def parse(cls, text: str | None) -> RegionCuts:
        """ "H,V" (bits, bits²) -> cuts; None -> the defaults."""
        if text is None:
            return cls()
        try:
            h, v = (float(x) for x in text.split(","))
        except ValueError:
            raise BltError(f"--region-cuts takes ENTROPY_BITS,VARENTROPY_BITS2 such as 3,5; got {text!r}") from None
        if not (h > 0 and v > 0 and math.isfinite(h) and math.isfinite(v)):
            raise BltError(f"--region-cuts must be two finite numbers > 0 (bits, bits²), got {text!r}")
        return cls(h, v)

    def describe(self) -> str:
        return f"high entropy > {self.entropy_bits:g} bits, high varentropy > {self.varentropy_bits2:g} bits²"


def entropy_bits(s: TokenScores) -> np.ndarray:
    """[T] entropy in bits; bounded (API) scores: the midpoint of the bounds."""
    if s.entropy_lower_nats is not None and s.entropy_upper_nats is not None:
        return np.asarray((s.entropy_lower_nats + s.entropy_upper_nats) / (2 * LN2))
    return np.asarray(s.entropy_nats / LN2)


def _bits(s: TokenScores) -> tuple[np.ndarray, np.ndarray]:
    """(entropy [T] bits as `entropy_bits`, varentropy [T] bits², NaN for bounded scores)."""
    return entropy_bits(s), s.varentropy_nats2 / LN2**2


def region_summary(s: TokenScores, cuts: RegionCuts) -> dict[str, Any]:
    """{"entropy_cut_bits", "varentropy_cut_bits2", "shares": {region: share of tokens}} (shares None without
    exact entropies: API logprobs)."""
    h, v = _bits(s)
    regions = token_regions(h, v, entropy_cut_bits=cuts.entropy_bits, varentropy_cut_bits2=cuts.varentropy_bits2)
    shares = region_shares(regions)
    return {"entropy_cut_bits": cuts.entropy_bits, "varentropy_cut_bits2": cuts.varentropy_bits2, "shares": shares}


def prompted(s: TokenScores) -> str:
    """How the model was prompted, in words, for headings and the report."""
    how = "chat template applied" if s.chat_template else "plain text"
    return how + " (it has a chat template)" * (not s.chat_template and s.has_chat_template)


def unit_view(s: TokenScores, records: Sequence[dict[str, Any]] | None = None) -> UnitView:
    """The shaded view of one model's scores: entropy in bits (API logprobs: the midpoint of the bounds, the
    bounds on hover), every per-token number in the hover text."""
    records = list(token_records(s)) if records is None else records
    h, _ = _bits(s)
    tips = []
    for r in records:
        if r["entropy_lower_bits"] is not None:
            head = f"H in [{r['entropy_lower_bits']:.3f}, {r['entropy_upper_bits']:.3f}] bits"
        else:
            head = "H ?" if r["entropy_bits"] is None else f"H {r['entropy_bits']:.3f} bits"
        parts = [head]
        if r["varentropy_bits2"] is not None:
            parts.append(f"V {r['varentropy_bits2']:.3f} bits²")
        parts.append("surprisal ?" if r["surprisal_bits"] is None else f"surprisal {r['surprisal_bits']:.3f} bits")
        if r["top1_mass"] is not None:
            parts.append(f"top-1 {r['top1_mass']:.3f}")
        parts.append("rank ?" if r["rank"] is None else f"rank {r['rank']}")
        if r["region"] is not None:
            parts.append(r["region"])
        tips.append(f"#{r['index']} {r['token']!r}: " + ", ".join(parts))
    lower = s.entropy_lower_nats / LN2 if s.entropy_lower_nats is not None else None
    titles = None if s.prompts is None else [f"prompt: {p}" for p in s.prompts]
    note = f"{s.mode}, {prompted(s)}"
    return UnitView(s.source, list(s.token_bytes), h, tips, s.doc_ids, note, lower, titles)


def print_spans(rows: Sequence[dict[str, Any]], console: Console, kind: str) -> None:
    """A table of the line/sentence means of one model (the first SPANS_SHOWN rows; the files have all)."""
    table = Table("doc", kind, "tokens", "mean H (bits)", "max H", "bits/byte", "text", title=rows[0]["model"])
    for r in rows[:SPANS_SHOWN]:
        text = r["text"].strip().replace("\n", "↵")
        text = text if len(text) <= SPAN_TEXT_SHOWN else text[: SPAN_TEXT_SHOWN - 1] + "…"
        cells = [r["mean_entropy_bits"], r["max_entropy_bits"], r["bits_per_byte"]]
        shown = ["—" if c is None else f"{c:.3f}" for c in cells]
        if r["mean_entropy_bits"] is None and r["mean_entropy_lower_bits"] is not None:  # API logprobs: bounds
            shown[0] = f"[{r['mean_entropy_lower_bits']:.3f}, {r['mean_entropy_upper_bits']:.3f}]"
        table.add_row(str(r["doc"]), str(r["span"]), str(r["tokens"]), *shown, text)
    Console(file=console.file, width=max(console.width, 120), soft_wrap=True).print(table)  # as `print_results`
    if len(rows) > SPANS_SHOWN:
        console.print(f"showing {SPANS_SHOWN} of {len(rows)} {kind}s; all of them: --out DIR (results.json)")


def token_outputs(
    scores: Sequence[TokenScores],
    console: Console,
    *,
    tokens: bool = False,
    jsonl: Path | None = None,
    csv: Path | None = None,
    html: Path | None = None,
    map_png: Path | None = None,
    spans: str | None = None,
    cuts: RegionCuts | None = None,
) -> dict[str, Any]:
    """Show or write the per-token views the user asked for; returns {"tokens": records of every model, "spans":
    [{"model", "line": [...], "sentence": [...]} per model]} for results.json."""
    cuts = cuts or RegionCuts()
    kw = dict(entropy_cut_bits=cuts.entropy_bits, varentropy_cut_bits2=cuts.varentropy_bits2)
    records = [list(token_records(s, **kw)) for s in scores]
    views = [unit_view(s, r) for s, r in zip(scores, records, strict=True)]
    span_rows: list[dict[str, Any]] = [
        {"model": s.source} | {k: span_records(r, document_bytes(s), k) for k in ("line", "sentence")}
        for s, r in zip(scores, records, strict=True)
    ]
    if tokens:
        scale = shade_scale(views)
        for view in views:
            console.print(f"[bold]{view.name}[/bold] ({view.note})", highlight=False)
            render_units_terminal(view, console, scale_bits=scale)
    if spans:
        for rows in span_rows:
            print_spans(rows[spans], console, spans)
    everything = [r for rs in records for r in rs]
    for path, fmt in ((jsonl, "jsonl"), (csv, "csv")):
        if path is not None:
            write_token_records(everything, path, fmt)
    if html is not None:
        write_units_html(views, html, title="blt llm: next-token entropy")
    if map_png is not None:
        plot_map(scores, map_png, cuts)
    return {"tokens": everything, "spans": span_rows}


def plot_map(scores: Sequence[TokenScores], path: Path, cuts: RegionCuts) -> Path:
    """The entropy–varentropy map, one panel per model (API logprobs have no varentropy: refused)."""
    exact = [s for s in scores if s.entropy_lower_nats is None]
    if not exact:
        raise BltError("the entropy–varentropy map needs exact distributions (a model): API logprobs give neither")
    panels = [(s.source, *_bits(s)) for s in exact]
    regions = {name: (hh, hv) for name, (hh, hv, _) in REGIONS.items()}
    return plot_entropy_varentropy(
        panels, path, entropy_cut_bits=cuts.entropy_bits, varentropy_cut_bits2=cuts.varentropy_bits2, regions=regions
    )
