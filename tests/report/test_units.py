"""Text cut into units, shaded by entropy: labels, the shared scale, the HTML page (parsed as text and as a real
browser builds it) and the terminal view.

The golden view, by hand: units [b"ab", b" c", b"\\xe2\\x82"] with bits [0, 1, NaN]. Labels "ab", " c" and
"\\xe2\\x82" (the first two bytes of "€" do not decode alone). Scale: the largest finite value is 1, and the scale
is at least 1 -> 1.0. So the page has 3 span.u with data-bits "0", "1", "nan"; alphas 0 and 0.75 (full scale).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from blt.report.units import (
    UnitView,
    display_labels,
    ramp_legend,
    ramp_step,
    render_units_terminal,
    shade_scale,
    units_html,
    write_units_html,
)

GOLDEN_PIECES = [b"ab", b" c", b"\xe2\x82"]
GOLDEN_LABELS = ["ab", " c", "\\xe2\\x82"]


def view(pieces: list[bytes], bits: list[float], name: str = "gpt2", **kw: object) -> UnitView:
    """A view whose tips carry the numbers, as callers write them."""
    tips = [f"#{t}: {b:.3f} bits" for t, b in enumerate(bits)]
    return UnitView(name, pieces, np.array(bits, dtype=np.float64), tips, **kw)  # type: ignore[arg-type]


def golden(**kw: object) -> UnitView:
    return view(GOLDEN_PIECES, [0.0, 1.0, float("nan")], **kw)


# ---------------------------------------------------------------- parsing a page (stdlib only)


@dataclass
class ParsedView:
    heading: str = ""
    note: str = ""
    docs: int = 0
    units: list[tuple[dict[str, str | None], str]] = field(default_factory=list)  # (attributes, text)
    doc_of_unit: list[int] = field(default_factory=list)


class UnitsDom(HTMLParser):
    """The columns of a units page: each section.view's heading, note, div.doc count and span.u (attributes, text
    including nested spans)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.views: list[ParsedView] = []
        self.legend = ""
        self.grid_style = ""
        self.in_legend = 0
        self.unit_depth = 0  # >0 inside a span.u (nested spans counted)
        self.grab: str | None = None  # "heading" / "note": the element whose text is read

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "div" and "legend" in classes:
            self.in_legend = 1
        elif self.in_legend and tag == "div":
            self.in_legend += 1
        if tag == "main" and "views" in classes:
            self.grid_style = a.get("style") or ""
        if tag == "section" and "view" in classes:
            self.views.append(ParsedView())
        elif tag == "div" and "doc" in classes:
            self.views[-1].docs += 1
        elif tag == "h2" and self.views:
            self.grab = "heading"
        elif tag == "p" and "note" in classes:
            self.grab = "note"
        if tag == "span" and self.unit_depth:
            self.unit_depth += 1
        elif tag == "span" and "u" in classes:
            self.unit_depth = 1
            self.views[-1].units.append((a, ""))
            self.views[-1].doc_of_unit.append(self.views[-1].docs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "span" and self.unit_depth:
            self.unit_depth -= 1
        if tag == "div" and self.in_legend:
            self.in_legend -= 1
        if tag in ("h2", "p"):
            self.grab = None

    def handle_data(self, data: str) -> None:
        if self.in_legend:
            self.legend += data
        if self.unit_depth:
            attrs, text = self.views[-1].units[-1]
            self.views[-1].units[-1] = (attrs, text + data)
        elif self.grab == "heading":
            self.views[-1].heading += data
        elif self.grab == "note":
            self.views[-1].note += data


def parse(page: str) -> UnitsDom:
    dom = UnitsDom()
    dom.feed(page)
    dom.close()
    return dom


# ---------------------------------------------------------------- labels and scale


@pytest.mark.parametrize(
    ("piece", "label"),
    [
        (b"ab", "ab"),
        (b" c", " c"),
        (b"\xe2\x82", "\\xe2\\x82"),  # "€" cut after two of its three bytes
        (b"\xe2\x82\xac", "€"),
        (b"a\xff", "a\\xff"),  # invalid UTF-8 next to valid text
        (b"x\r\x00\x7f", "x\\r\\x00\\x7f"),  # control characters: their escapes
        (b"\n\t", "\n\t"),  # newline and tab stay themselves
        (b"", ""),
    ],
)
def test_unit_label_golden(piece: bytes, label: str) -> None:
    assert display_labels(view([piece], [0.0])) == [label]


def test_a_character_split_across_units_shows_whole_on_its_first() -> None:
    """ "é€!" as bytes c3 a9 | e2 82 ac | 21 cut into units [c3] [a9 e2] [82] [ac 21]: é starts in unit 0, € in unit
    1, "!" in unit 3; unit 2 starts no character and shows nothing. A new document starts afresh."""
    pieces = [b"\xc3", b"\xa9\xe2", b"\x82", b"\xac!", b"\xa9"]
    got = display_labels(view(pieces, [0.0] * 5, doc_ids=np.array([0, 0, 0, 0, 1])))
    assert got == ["é", "€", "", "!", "\\xa9"]  # doc 1: a lone continuation byte starts no character


def test_shade_scale_is_the_largest_finite_value_at_least_one() -> None:
    assert shade_scale([golden()]) == 1.0
    assert shade_scale([golden(), view([b"x", b"y"], [3.5, float("inf")])]) == 3.5  # inf is not a value
    assert shade_scale([view([b"x"], [0.25])]) == 1.0
    assert shade_scale([view([b"x"], [float("nan")]), view([], [])]) == 1.0


def test_mismatched_lengths_say_which_field_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"'m': bits has 2, tips has 1 values but pieces has 3 units; give one"):
        UnitView("m", [b"a", b"b", b"c"], np.zeros(2), ["x"])
    with pytest.raises(ValueError, match="doc_ids has 1"):
        UnitView("m", [b"a", b"b"], np.zeros(2), ["", ""], doc_ids=np.zeros(1, int))


# ---------------------------------------------------------------- the page, read as text


def test_golden_page_has_one_span_per_unit_with_its_value() -> None:
    page = units_html([golden()])
    dom = parse(page)
    assert len(dom.views) == 1
    units = dom.views[0].units
    assert [text for _, text in units] == GOLDEN_LABELS
    assert [a["data-bits"] for a, _ in units] == ["0", "1", "nan"]
    assert [a["data-i"] for a, _ in units] == ["0", "1", "2"]
    assert [a["title"] for a, _ in units] == ["#0: 0.000 bits", "#1: 1.000 bits", "#2: nan bits"]
    assert "rgba(203,24,29,0.00)" in (units[0][0]["style"] or "") and "0.75)" in (units[1][0]["style"] or "")
    assert "nan" in (units[2][0]["class"] or "").split() and units[2][0].get("style") is None
    assert len(re.findall(r'<span class="u[ "]', page)) == 3


def test_page_is_self_contained_with_a_legend() -> None:
    page = units_html([golden()])
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert '<meta charset="utf-8">' in page and "white-space:pre-wrap" in page
    for external in ("http://", "https://", "<script", "<link", "src=", "url(", "@import"):
        assert external not in page.lower()
    legend = parse(page).legend
    assert "next-token entropy, bits" in legend and "0" in legend and "1" in legend and "unknown" in legend
    assert "next-byte entropy, bits" in parse(units_html([golden()], unit="byte")).legend
    assert "unknown" not in parse(units_html([view([b"a"], [0.5])])).legend  # no NaN: nothing to explain


def test_everything_user_provided_is_escaped() -> None:
    v = view([b"<b>&", b"<script>alert(1)</script>"], [1.0, 2.0], name="<i>m</i>", note='a "note" <u>')
    v.tips[0] = 'tip "quoted" <x>'
    page = units_html([v], title="<h1>t</h1>")
    for raw in ("<b>", "<script>", "<i>m", "<u>", "<x>", "<h1>t"):
        assert raw not in page
    dom = parse(page)
    assert [text for _, text in dom.views[0].units] == ["<b>&", "<script>alert(1)</script>"]
    assert dom.views[0].units[0][0]["title"] == 'tip "quoted" <x>'
    assert (dom.views[0].heading, dom.views[0].note) == ("<i>m</i>", 'a "note" <u>')


def test_two_views_are_two_columns_side_by_side() -> None:
    a = golden(name="gpt2", note="plain text")
    b = view([b"abc", b"\xe2\x82\xac"], [2.0, 0.5], name="llama", note="chat template applied")
    page = units_html([a, b])
    dom = parse(page)
    assert [(v.heading, v.note) for v in dom.views] == [("gpt2", "plain text"), ("llama", "chat template applied")]
    assert [len(v.units) for v in dom.views] == [3, 2]
    assert "repeat(2," in dom.grid_style and "display:grid" in page
    assert '<span class="hi">2</span>' in page  # one scale for both columns: the larger view's top, 2 bits


def test_a_new_document_starts_a_new_block() -> None:
    dom = parse(units_html([golden(doc_ids=np.array([0, 0, 1]))]))
    assert dom.views[0].docs == 2 and dom.views[0].doc_of_unit == [1, 1, 2]
    assert parse(units_html([golden()])).views[0].docs == 1
    assert ".doc+.doc,.doctitle{border-top" in units_html([golden()])  # the thin rule between documents


def test_newlines_break_lines_and_the_marker_is_not_text() -> None:
    page = units_html([view([b"a\n", b"\n\nb"], [1.0, 1.0])])
    assert [text for _, text in parse(page).views[0].units] == ["a\n", "\n\nb"]
    assert page.count('<span class="nl"></span>\n') == 3 and '.nl::before{content:"↵"' in page


def test_wide_bounds_are_marked_and_explained() -> None:
    """bits is the midpoint, so upper − lower = 2·(bits − lower): [1, 0.2] - [0, 0.1] -> widths 2 and 0.2 bits."""
    v = view([b"a", b"b", b"c"], [1.0, 0.2, float("nan")], lower_bits=np.array([0.0, 0.1, float("nan")]))
    dom = parse(units_html([v]))
    assert [(a["class"] or "").split() for a, _ in dom.views[0].units] == [["u", "wide"], ["u"], ["u", "nan"]]
    assert "wider than 1 bit" in dom.legend
    assert "wider than" not in parse(units_html([golden()])).legend


def test_units_html_needs_a_view() -> None:
    with pytest.raises(ValueError, match="at least one UnitView"):
        units_html([])


def test_write_units_html_is_atomic_and_equals_the_page(tmp_path: Path) -> None:
    path = write_units_html([golden()], tmp_path / "sub" / "t.html", title="x", unit="byte")
    assert path == tmp_path / "sub" / "t.html"
    assert path.read_text(encoding="utf-8") == units_html([golden()], title="x", unit="byte")
    assert [p.name for p in path.parent.iterdir()] == ["t.html"]  # no temp file left


@settings(max_examples=100, deadline=None)
@given(
    pieces=st.lists(st.binary(max_size=5) | st.text(max_size=3).map(str.encode), max_size=25),
    data=st.data(),
)
def test_one_span_per_unit_holding_its_label(pieces: list[bytes], data: st.DataObject) -> None:
    """Any bytes, any values (NaN, inf, negative): one span.u per unit, in order, whose text is its label."""
    bits = data.draw(st.lists(st.floats(allow_nan=True), min_size=len(pieces), max_size=len(pieces)))
    dom = parse(units_html([view(pieces, bits)]))
    labels = display_labels(view(pieces, bits))
    assert [text for _, text in dom.views[0].units] == labels
    assert "".join(labels) == display_labels(view([b"".join(pieces)], [0.0]))[0]  # cutting into units loses nothing
    assert [a["data-i"] for a, _ in dom.views[0].units] == [str(t) for t in range(len(pieces))]


# ---------------------------------------------------------------- the page, as a browser builds it


@pytest.mark.slow
def test_a_real_browser_builds_every_unit_of_every_column(tmp_path: Path) -> None:
    """Chromium loads the page from disk and dumps its DOM: each column has one span.u per unit, in order, with the
    labels as text and the numbers as title; the legend and both columns exist."""
    chromium = shutil.which("chromium")
    if chromium is None:
        message = "chromium is not on PATH (Debian: apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must run the browser test, not skip it")
        pytest.skip(message)
    a = view(
        [b"Hello", b" <world>", b" &", b"\n", b"\xe2\x82", b"\xac", b"x\r"],
        [0.0, 1.5, 3.0, float("nan"), 2.0, 0.1, 0.7],
        name="gpt2",
        note="plain text",
        doc_ids=np.array([0, 0, 0, 0, 1, 1, 1]),
    )
    byte_pieces = [bytes([x]) for x in "Hi €\n".encode()]  # € split over three units: shown on the first
    b = view(byte_pieces, [0.5] * len(byte_pieces), name="byte model", note="bytes")
    page = write_units_html([a, b], tmp_path / "page.html")
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = parse(result.stdout)
    assert len(dom.views) == 2, result.stdout[:2000]
    assert "next-token entropy, bits" in dom.legend
    for parsed, expected in zip(dom.views, [a, b], strict=True):
        assert parsed.heading == expected.name and parsed.note == expected.note
        assert len(parsed.units) == len(expected.pieces)
        assert [text for _, text in parsed.units] == display_labels(expected)
        assert [attrs["title"] for attrs, _ in parsed.units] == expected.tips
    assert dom.views[0].docs == 2 and dom.views[1].docs == 1
    assert [t for _, t in dom.views[0].units][4:6] == ["€", ""] and "€" in [t for _, t in dom.views[1].units]
    assert [attrs["data-bits"] for attrs, _ in dom.views[0].units][3] == "nan"


# ---------------------------------------------------------------- terminal


def test_ramp_steps_and_their_ranges() -> None:
    """Scale 8 over 8 steps: one bit a step; the last step is open above; NaN has none (-1)."""
    assert ramp_legend(8.0) == ["0–1", "1–2", "2–3", "3–4", "4–5", "5–6", "6–7", "≥ 7"]
    assert ramp_legend(1.0)[:2] == ["0–0.12", "0.12–0.25"]
    assert [ramp_step(x, 8.0) for x in (0.0, 0.99, 1.0, 7.99, 8.0, 100.0, -1.0)] == [0, 0, 1, 7, 7, 7, 0]
    assert ramp_step(float("nan"), 8.0) == -1


def test_terminal_without_colour_separates_units_and_truncates() -> None:
    out = io.StringIO()
    shown = render_units_terminal(golden(), Console(file=out, color_system=None, width=80), max_units=2)
    lines = out.getvalue().splitlines()
    assert shown == 2
    assert lines[0] == "ab│ c"
    assert lines[1] == "showing the first 2 of 3 tokens; the rest: --jsonl FILE / --html FILE"
    assert lines[2].startswith("entropy (bits): 0–0.12 0.12–0.25") and lines[2].endswith("≥ 0.88")
    assert "\x1b[" not in out.getvalue()


def test_terminal_shows_everything_below_the_limit_and_rules_between_documents() -> None:
    out = io.StringIO()
    v = golden(doc_ids=np.array([0, 0, 1]))
    shown = render_units_terminal(v, Console(file=out, color_system=None, width=80), scale_bits=8.0, unit="byte")
    lines = out.getvalue().splitlines()
    assert shown == 3
    assert lines[0] == "ab│ c" and set(lines[1]) == {"─"} and lines[2] == "\\xe2\\x82"
    assert lines[3] == "entropy (bits): 0–1 1–2 2–3 3–4 4–5 5–6 6–7 ≥ 7" and len(lines) == 4


def test_terminal_with_colour_emits_ansi_backgrounds() -> None:
    out = io.StringIO()
    render_units_terminal(golden(), Console(file=out, color_system="truecolor", width=80))
    text = out.getvalue()
    assert "\x1b[" in text and "│" not in text
    assert "48;2;255;245;240mab" in text  # 0 bits: the palest step
    assert "48;2;165;15;21m c" in text  # 1 bit, the top of the scale: the darkest step, white text
    assert "48;2;200;200;200m\\xe2\\x82" in text  # NaN: grey
    assert "entropy (bits):" in text and "unknown" in text


def test_terminal_rejects_a_bad_limit_with_the_fix() -> None:
    console = Console(file=io.StringIO(), color_system=None)
    with pytest.raises(ValueError, match="max_units must be ≥ 1, got 0"):
        render_units_terminal(golden(), console, max_units=0)
