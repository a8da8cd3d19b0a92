"""Text cut into units (LLM tokens, or single bytes for the byte model), each unit shaded by its next-unit entropy in
bits: one renderer for `blt llm score/compare --tokens/--html` and `blt entropy`. Owns `UnitView` (one model's view
of one or more texts), the shared colour scale, the display label of a unit's bytes, the self-contained HTML page
(views side by side) and the terminal view (a fixed colour ramp, or │ between units where there is no colour).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.text import Text

from blt.bytelm.entropy import LN2, ByteScores
from blt.files import write_atomic
from blt.report.text import iter_char_spans

WIDE_INTERVAL_BITS = 1.0  # a unit whose entropy bounds are further apart than this is marked (dashed underline)
# the terminal's ramp, pale to red (ColorBrewer Reds, 8 steps: a byte's 0–8 bits read 0–1, 1–2, ...); the two
# darkest steps take white text to keep the contrast above 4.5:1
TERMINAL_RAMP = (
    "black on #fff5f0",
    "black on #fee0d2",
    "black on #fcbba1",
    "black on #fc9272",
    "black on #fb6a4a",
    "black on #ef3b2c",
    "white on #cb181d",
    "white on #a50f15",
)
TERMINAL_UNKNOWN = "black on #c8c8c8"  # NaN: no value to shade
HTML_RGB = "203,24,29"  # the page's shade: this red, alpha proportional to value / scale ...
HTML_MAX_ALPHA = 0.75  # ... up to this, so black text keeps a contrast above 5:1
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # control characters (Unicode Cc) other than \t and \n


@dataclass
class UnitView:
    """One model's view of one or more texts: unit t has bytes pieces[t] and a value (bits) for the shade."""

    name: str  # model name shown as the column/heading
    pieces: list[bytes]  # [T] the bytes of each unit; b"".join over one document == that document's bytes
    bits: np.ndarray  # [T] float64 shade value in bits (entropy; API logprobs: the bounds' midpoint); NaN = unknown
    tips: list[str]  # [T] hover text per unit (the numbers), plain text
    doc_ids: np.ndarray | None = None  # [T] int; None -> all 0. A new document starts a new block
    note: str = ""  # one line under the heading, e.g. "chat template applied" / "plain text"
    # [T] lower bounds (bits) for API logprobs: the interval is [lower, 2·bits − lower] since bits is its midpoint
    lower_bits: np.ndarray | None = None
    doc_titles: list[str] | None = None  # one caption per document, in order (e.g. the prompt of a sample)

    def __post_init__(self) -> None:
        self.bits = np.asarray(self.bits, dtype=np.float64)
        if self.doc_ids is not None:
            self.doc_ids = np.asarray(self.doc_ids, dtype=np.int64)
        if self.lower_bits is not None:
            self.lower_bits = np.asarray(self.lower_bits, dtype=np.float64)
        n = len(self.pieces)
        sizes = {"bits": len(self.bits), "tips": len(self.tips)}
        sizes |= {"doc_ids": len(self.doc_ids)} if self.doc_ids is not None else {}
        sizes |= {"lower_bits": len(self.lower_bits)} if self.lower_bits is not None else {}
        wrong = [f"{field} has {size}" for field, size in sizes.items() if size != n]
        if wrong:
            raise ValueError(
                f"UnitView {self.name!r}: {', '.join(wrong)} values but pieces has {n} units; "
                "give one value per unit (NaN where the value is unknown)"
            )


def display_labels(view: UnitView) -> list[str]:
    """What each unit shows: the characters that start in it, whole, so a character split across units (a byte of
    "é" per unit, or a BPE token ending mid-character) reads as the character on its first unit and nothing on the
    rest; bytes that start no character as \\xNN; control characters other than \\n and \\t as escapes."""
    docs, labels = _doc_ids(view), [""] * len(view.pieces)
    ends = np.cumsum([len(p) for p in view.pieces])  # [T] each unit's end offset in the joined bytes
    starts = ends - [len(p) for p in view.pieces]
    firsts = [0, *np.flatnonzero(docs[1:] != docs[:-1]) + 1]  # each document's first unit
    for a, b in zip(firsts, [*firsts[1:], len(view.pieces)], strict=True):
        data, base = b"".join(view.pieces[a:b]), int(starts[a]) if b > a else 0
        chars = list(iter_char_spans(data))
        holder = a + np.searchsorted(ends[a:b] - base, [c[0] for c in chars], side="right")  # unit of each char
        for t, (_, _, label) in zip(holder.tolist(), chars, strict=True):
            labels[t] += _CONTROL.sub(_escape, label)
    return labels


def _escape(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


def shade_scale(views: Sequence[UnitView]) -> float:
    """The top of the colour scale in bits shared by all views: the largest finite value, at least 1.0."""
    tops = [float(np.max(v.bits[np.isfinite(v.bits)])) for v in views if np.isfinite(v.bits).any()]
    return max([1.0, *tops])


def _num(x: float) -> str:
    """2.0 -> '2', 1.3333 -> '1.33'."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _doc_ids(view: UnitView) -> np.ndarray:
    return view.doc_ids if view.doc_ids is not None else np.zeros(len(view.pieces), np.int64)


def _wide(view: UnitView) -> np.ndarray:
    """[T] bool: the unit's bounds are more than WIDE_INTERVAL_BITS apart (upper − lower = 2·(bits − lower))."""
    if view.lower_bits is None:
        return np.zeros(len(view.pieces), bool)
    with np.errstate(invalid="ignore"):
        return np.asarray(2 * (view.bits - view.lower_bits) > WIDE_INTERVAL_BITS)


# ---------------------------------------------------------------------------------------------- HTML page

_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#111;background:#fff}"
    "h1{font-size:1.3em;margin:0 0 .4em}"
    ".legend{display:flex;flex-wrap:wrap;align-items:center;gap:.5em;margin:0 0 1em;font-size:.9em}"
    f".bar{{display:inline-block;width:12em;height:1em;border:1px solid #999;"
    f"background:linear-gradient(to right,rgba({HTML_RGB},0),rgba({HTML_RGB},{HTML_MAX_ALPHA}))}}"
    ".views{display:grid;gap:1.5em;align-items:start}"
    ".view{min-width:0}"
    ".view h2{font-size:1.05em;margin:0}"
    ".note,.stats{margin:.1em 0 .5em;color:#555;font-size:.85em}"
    ".doc{font-family:ui-monospace,monospace;white-space:pre-wrap;overflow-wrap:anywhere;line-height:1.7;"
    "padding:.4em 0}"
    ".doc+.doc,.doctitle{border-top:1px solid #bbb}"
    ".doctitle{margin:.3em 0 0;padding-top:.3em;color:#555;font-size:.85em}"
    ".u{box-shadow:inset -1px 0 rgba(0,0,0,.15)}"  # a faint edge after each unit: its boundaries stay visible
    ".u:empty{display:inline-block;min-width:.4em;height:1em;vertical-align:middle}"  # a unit of no bytes
    ".u:hover{outline:1px solid #000}"
    ".swatch{display:inline-block;min-width:1.4em;text-align:center}"
    ".nan{background:repeating-linear-gradient(45deg,#ddd 0 3px,#fff 3px 6px)}"
    ".wide{text-decoration:underline dashed #333;text-underline-offset:3px}"
    '.nl::before{content:"↵";color:#888}'  # drawn, not text: the DOM's text stays the unit's own
)


def units_html(views: Sequence[UnitView], *, title: str = "blt token entropy", unit: str = "token") -> str:
    """A self-contained page (inline CSS, no scripts): a heading, a legend (colour bar, its ends in bits), then one
    column per view side by side, each a heading, its note and its documents; every unit is one
    `<span class="u" data-i data-bits title>` holding its `display_labels` text, shaded by value / `shade_scale`."""
    if not views:
        raise ValueError("no views to show; pass at least one UnitView")
    return "".join(_page(views, title, unit))


def write_units_html(
    views: Sequence[UnitView], path: str | Path, *, title: str = "blt token entropy", unit: str = "token"
) -> Path:
    """`units_html` written atomically to `path` (a temp file renamed into place)."""
    page = units_html(views, title=title, unit=unit)

    def write(tmp: Path) -> None:
        tmp.write_text(page, encoding="utf-8")

    return write_atomic(path, write)


def _page(views: Sequence[UnitView], title: str, unit: str) -> Iterator[str]:
    scale = shade_scale(views)
    yield (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_CSS}</style></head><body>'
        f"<h1>{html.escape(title)}</h1>"
    )
    yield from _legend(views, scale, unit)
    yield f'<main class="views" style="grid-template-columns:repeat({len(views)},minmax(0,1fr))">'
    for view in views:
        yield from _column(view, scale, unit)
    yield "</main></body></html>\n"


def _legend(views: Sequence[UnitView], scale: float, unit: str) -> Iterator[str]:
    what = html.escape(f"next-{unit} entropy, bits")
    yield (
        f'<div class="legend"><span class="what">{what}:</span><span class="lo">0</span><span class="bar"></span>'
        f'<span class="hi">{_num(scale)}</span><span>(hover a {html.escape(unit)} for its numbers)</span>'
    )
    if any(np.isnan(v.bits).any() for v in views):
        yield '<span><span class="swatch nan"> </span> unknown</span>'
    if any(v.lower_bits is not None for v in views):
        yield (
            f'<span><span class="swatch wide">abc</span> the logprobs bound the entropy only to an interval wider than '
            f"{_num(WIDE_INTERVAL_BITS)} bit (shade: its midpoint)</span>"
        )
    yield "</div>"


def _column(view: UnitView, scale: float, unit: str) -> Iterator[str]:
    docs, bits, wide = _doc_ids(view), view.bits, _wide(view)
    finite = bits[np.isfinite(bits)]
    mean = f", mean {finite.mean():.3f} bits" if len(finite) else ""
    n_docs = len(np.unique(docs))
    stats = f"{len(bits):,} {unit}s in {n_docs:,} document{'s' if n_docs != 1 else ''}{mean}"
    yield f'<section class="view"><h2>{html.escape(view.name)}</h2>'
    if view.note:
        yield f'<p class="note">{html.escape(view.note)}</p>'
    yield f'<p class="stats">{html.escape(stats)}</p>'
    parts: list[str] = []
    labels, n_docs_seen = display_labels(view), 0
    for t in range(len(view.pieces)):
        if t == 0 or docs[t] != docs[t - 1]:
            parts.append("</div>" if t else "")
            if view.doc_titles is not None and n_docs_seen < len(view.doc_titles):
                parts.append(f'<p class="doctitle">{html.escape(view.doc_titles[n_docs_seen])}</p>')
            n_docs_seen += 1
            parts.append(f'<div class="doc" data-doc="{int(docs[t])}">')
        parts.append(_span(t, labels[t], float(bits[t]), view.tips[t], bool(wide[t]), scale))
    if parts:
        parts.append("</div>")
    yield "".join(parts)
    yield "</section>"


def _span(t: int, label: str, value: float, tip: str, wide: bool, scale: float) -> str:
    """One unit: its label (newlines marked ↵ by CSS), shade, value and hover text."""
    shown = html.escape(label).replace("\n", '<span class="nl"></span>\n')
    title = html.escape(tip or f"{value:.3f} bits")
    classes = "u" + (" wide" if wide else "")
    if math.isnan(value):
        return f'<span class="{classes} nan" data-i="{t}" data-bits="nan" title="{title}">{shown}</span>'
    alpha = min(max(value / scale, 0.0), 1.0) * HTML_MAX_ALPHA
    return (
        f'<span class="{classes}" data-i="{t}" data-bits="{value:.4g}" title="{title}" '
        f'style="background:rgba({HTML_RGB},{alpha:.2f})">{shown}</span>'
    )


# ---------------------------------------------------------------------------------------------- terminal


def ramp_step(value: float, scale: float, steps: int = len(TERMINAL_RAMP)) -> int:
    """The terminal ramp's step of a value: [k·scale/steps, (k+1)·scale/steps) -> k; the last step is open above;
    -1 for NaN."""
    if math.isnan(value):
        return -1
    return min(max(int(value / scale * steps), 0), steps - 1)


def ramp_legend(scale: float, steps: int = len(TERMINAL_RAMP)) -> list[str]:
    """The ramp's bit ranges: scale 8 -> ['0–1', '1–2', '2–3', '3–4', '4–5', '5–6', '6–7', '≥ 7']."""
    edges = [scale * k / steps for k in range(steps)]
    return [f"{_num(a)}–{_num(b)}" for a, b in zip(edges, edges[1:], strict=False)] + [f"≥ {_num(edges[-1])}"]


def render_units_terminal(
    view: UnitView,
    console: Console,
    *,
    max_units: int = 2000,
    scale_bits: float | None = None,
    unit: str = "token",
    rest: str = "--jsonl FILE / --html FILE",
) -> int:
    """The text with each unit's background coloured by its value on a fixed ramp (│ between units where the
    console has no colour), a line saying where the rest is when there are more than `max_units`, then the legend
    line. Returns how many units were shown. `rest` names the options that give every unit."""
    if max_units < 1:
        raise ValueError(f"max_units must be ≥ 1, got {max_units}; pass the number of {unit}s to show")
    scale = scale_bits if scale_bits is not None else shade_scale([view])
    if not scale > 0:
        raise ValueError(f"scale_bits must be > 0 bits, got {scale}; leave it None to use the largest value")
    plain = console.color_system is None  # a pipe or a file: no colours, so mark boundaries with │
    n = min(len(view.pieces), max_units)
    docs = _doc_ids(view)
    out, labels = Text(), display_labels(view)
    for t in range(n):
        if t and docs[t] != docs[t - 1]:  # a new document: a thin rule between the blocks
            out.append("\n" + "─" * min(console.width, 40) + "\n", style="dim")
        elif t and plain and labels[t]:  # (a unit inside a character shows nothing, and gets no separator)
            out.append("│")
        label = labels[t].replace("\n", "↵\n")
        step = ramp_step(float(view.bits[t]), scale)
        out.append(label, style=TERMINAL_UNKNOWN if step < 0 else TERMINAL_RAMP[step])
    console.print(out)
    if n < len(view.pieces):
        console.print(f"showing the first {n:,} of {len(view.pieces):,} {unit}s; the rest: {rest}", highlight=False)
    legend = Text("entropy (bits):")
    for style, label in zip(TERMINAL_RAMP, ramp_legend(scale), strict=True):
        legend.append(f" {label}" if plain else f" {label} ", style=None if plain else style)
    if not plain and np.isnan(view.bits[:n]).any():
        legend.append(" unknown ", style=TERMINAL_UNKNOWN)
    console.print(legend, soft_wrap=True)  # one line, however narrow the console
    return n


def byte_view(scores: ByteScores, name: str) -> UnitView:
    """The byte model's scores of one text as units of one byte (what `blt entropy --shade/--html` show), with
    surprisal, and with `score(..., extra_stats=True)` varentropy, top-1 mass and rank, on hover."""
    h_bits, s_bits = scores.entropy_nats / LN2, scores.surprisal_nats / LN2
    tips = []
    for t in range(len(scores)):
        tip = f"byte {t} (0x{scores.data[t]:02x}): H {h_bits[t]:.3f} bits, surprisal {s_bits[t]:.3f} bits"
        if scores.varentropy_nats2 is not None and scores.top1_mass is not None and scores.rank is not None:
            v, top1, rank = scores.varentropy_nats2[t] / LN2**2, scores.top1_mass[t], int(scores.rank[t])
            tip += f", V {v:.3f} bits², top-1 {top1:.3f}, rank {rank}"
        tips.append(tip)
    return UnitView(name, [bytes([b]) for b in scores.data], h_bits.astype(np.float64), tips, note="next-byte entropy")
