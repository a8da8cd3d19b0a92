"""Showing patches: character spans over raw bytes, the terminal view, the self-contained HTML page, the entropy plot
and atomic file writes."""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat
from functools import cache
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from conftest import make_spiky_model
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from blt.bytelm.entropy import ByteScores
from blt.files import write_atomic
from blt.report.html import patches_html, write_patches_html
from blt.report.plots import plot_patches
from blt.report.terminal import render_entropy_table, render_terminal, write_json
from blt.report.text import char_spans, shown_prefix
from blt.segment.patcher import Patcher, Patches

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT = "héllo wörld 日本 😀\nsecond line"


spiky_model = cache(make_spiky_model)


def entropy_patches(text: str | bytes, threshold: float = 0.1) -> Patches:
    return Patcher(spiky_model(), threshold=threshold).patch([text])[0]


# ---------------------------------------------------------------- char_spans


def test_char_spans_golden() -> None:
    """ASCII is one byte, é two (C3 A9), 日 three (E6 97 A5), 😀 four (F0 9F 98 80); an invalid byte is its own
    \\xNN span, and so is each byte of a truncated sequence (E6 97 with no third byte)."""
    assert char_spans(b"a") == [(0, 1, "a")]
    assert char_spans("aé日😀".encode()) == [(0, 1, "a"), (1, 3, "é"), (3, 6, "日"), (6, 10, "😀")]
    assert char_spans(b"\xff") == [(0, 1, "\\xff")]
    assert char_spans(b"\xe6\x97") == [(0, 1, "\\xe6"), (1, 2, "\\x97")]
    assert char_spans(b"x\xe6\x97y") == [(0, 1, "x"), (1, 2, "\\xe6"), (2, 3, "\\x97"), (3, 4, "y")]
    assert char_spans(b"\xe6\xe6\x97\xa5") == [(0, 1, "\\xe6"), (1, 4, "日")]  # a bad lead, then a whole character
    assert char_spans(b"\xed\xa0\x80") == [(0, 1, "\\xed"), (1, 2, "\\xa0"), (2, 3, "\\x80")]  # a surrogate
    assert char_spans(b"") == []


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=60) | st.text(max_size=30).map(str.encode))
def test_char_spans_tile_the_bytes_and_agree_with_python(data: bytes) -> None:
    """Spans tile [0, n) in order; each label is its bytes decoded, or \\xNN for a single invalid byte; together the
    labels are Python's own `decode("utf-8", "backslashreplace")`."""
    spans = char_spans(data)
    assert [s for s, _, _ in spans] == ([0] if spans else []) + [e for _, e, _ in spans[:-1]]
    assert (spans[-1][1] if spans else 0) == len(data)
    for s, e, label in spans:
        assert 1 <= e - s <= 4
        if label.startswith("\\x") and len(label) == 4 and e - s == 1 and label == f"\\x{data[s]:02x}":
            continue
        assert data[s:e].decode("utf-8") == label and len(label) == 1
    assert "".join(label for _, _, label in spans) == data.decode("utf-8", "backslashreplace")


# ---------------------------------------------------------------- terminal


def recorded(patches: Patches) -> tuple[str, str]:
    console = Console(record=True, width=200, file=io.StringIO(), color_system="truecolor")
    render_terminal(patches, console)
    return console.export_text(clear=False), console.export_html(inline_styles=True)


def test_terminal_shows_the_whole_text_and_the_summary() -> None:
    """With θ = 0.5 nats the summary reads "... threshold 0.5000 nats (0.7213 bits)" (0.5 / ln 2 = 0.72135)."""
    p = entropy_patches(TEXT, threshold=0.5)
    text, _ = recorded(p)
    lines = text.splitlines()
    assert lines[:2] == TEXT.splitlines()
    n = len(TEXT.encode())
    assert lines[2] == (
        f"{len(p.starts)} patches, {n} bytes, {n / len(p.starts):.2f} bytes/patch, threshold 0.5000 nats (0.7213 bits)"
    )
    assert len(lines) == 3


def test_terminal_shows_invalid_bytes_as_hex_and_rule_patches_without_threshold() -> None:
    """Space rule on b"ok \\xff end": ␠ \\xff ␠ (bytes 2-4) are one spacelike run (\\xff is neither alnum nor a
    continuation byte), so one start after byte 2 -> "ok " and "\\xff end": 2 patches, 4.00 bytes/patch."""
    p = Patcher(rule="space").patch([b"ok \xff end"])[0]
    text, _ = recorded(p)
    assert text.splitlines() == ["ok \\xff end", "2 patches, 8 bytes, 4.00 bytes/patch"]


def test_terminal_alternates_two_colours() -> None:
    """One patch uses one background; two or more alternate between two."""
    _, one = recorded(Patcher(rule="fixed", patch_size=10).patch(["abc"])[0])
    _, many = recorded(Patcher(rule="byte").patch(["abc"])[0])
    colours = {"#ffd166", "#8ecae6"}
    assert sum(c in one for c in colours) == 1 and all(c in many for c in colours)


def test_a_large_input_shows_its_start_and_a_summary() -> None:
    """1 MB cut every 4 bytes (fixed rule): the output is the first 64 KiB of text, a note, the length statistics
    and the summary, about 64 kB in all, however long the input (the renderer holds ~1 kB per character shown)."""
    data = ("héllo wörld, 日本語 😀 " * 40_000).encode()[:1_000_000]
    p = Patcher(rule="fixed", patch_size=4).patch([data])[0]
    console = Console(file=(buf := io.StringIO()), width=100, color_system=None, soft_wrap=True)
    render_terminal(p, console, max_bytes=1 << 16)
    out = buf.getvalue()
    shown = shown_prefix(data, 1 << 16)
    assert 65536 - 3 <= shown <= 65536 and data[:shown].decode()  # cut between characters
    body, note, stats, summary = out.rsplit("\n", 4)[:4]
    assert body.replace("│", "") == data[:shown].decode()
    assert note == f"… the first {shown:,} of 1,000,000 bytes shown; every patch: --json, or --html FILE"
    assert stats == "patch lengths (bytes): min 4, median 4, mean 4.00, p90 4, max 4"
    assert summary == "250000 patches, 1000000 bytes, 4.00 bytes/patch"
    assert len(out) < 2 * 65536


def test_a_short_input_is_shown_whole_without_a_note() -> None:
    text, _ = recorded(Patcher(rule="byte").patch(["abc"])[0])
    assert "shown" not in text and "patch lengths" not in text


def test_the_entropy_table_of_a_long_input_is_bounded() -> None:
    """10,000 bytes, 100 rows shown: the table's rows, a note, then a summary of all 10,000 (ln 2 nats = 1 bit)."""
    data = bytes(range(256)) * 39 + b"x" * 16
    ent = np.full(len(data), math.log(2), np.float32)
    scores = ByteScores(data, ent, 2 * ent)
    console = Console(file=(buf := io.StringIO()), width=100, color_system=None)
    render_entropy_table(scores, console, max_rows=100)
    lines = buf.getvalue().splitlines()
    assert sum(line.startswith("│") for line in lines) == 100
    assert lines[-2] == "… the first 100 of 10,000 bytes shown; every byte: --json"
    assert lines[-1] == "10,000 bytes, mean entropy 1.000 bits, 2.000 bits/byte"


def test_write_json_streams_what_json_dumps_writes() -> None:
    """Arrays go out 3 values at a time; the text is exactly `json.dumps` of the lists (floats rounded to 6
    decimals) that `blt segment --json` printed before it streamed."""
    ent = np.array([0.1234567, 2.5, 1e-7, 3.0, 0.5], np.float32)
    fields = {"lengths": np.array([2, 3], np.int64), "empty": np.zeros(0), "entropies": ent, "x": None, "t": 0.25}
    buf = io.StringIO()
    write_json(fields, buf, chunk=3)
    listed = {**fields, "lengths": [2, 3], "empty": [], "entropies": [round(float(x), 6) for x in ent]}
    assert buf.getvalue() == json.dumps(listed, ensure_ascii=False) + "\n"
    assert json.loads(buf.getvalue())["entropies"][:2] == [0.123457, 2.5]


# ---------------------------------------------------------------- HTML


def test_html_is_a_self_contained_page_with_one_box_per_patch() -> None:
    p = entropy_patches("plain ascii text, patched by entropy.\nline two")
    page = patches_html(p)
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    for external in ("http://", "https://", "<script", "<link", "src=", "url(", "@import"):
        assert external not in page.lower()
    assert page.count("class='patch'") == len(p.starts) > 1
    assert "<meta charset='utf-8'>" in page


def test_the_html_file_is_written_in_pieces_and_equals_the_page(tmp_path: Path) -> None:
    """40,000 characters, one patch each: more pieces than one write holds, and the file is exactly the page."""
    p = Patcher(rule="byte").patch([("ab<é>\n" * 8000)])[0]
    path = write_patches_html(p, tmp_path / "out" / "p.html")
    assert path.read_text(encoding="utf-8") == patches_html(p)
    assert path.read_text(encoding="utf-8").count("class='patch'") == len(p.starts)


def test_html_escapes_the_text() -> None:
    text = "<script>alert('x')</script> & <b>bold</b>"
    page = patches_html(Patcher(rule="space").patch([text])[0], title="<i>title</i>")
    assert "<script>" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;" in page and "&gt;" in page and "&amp;" in page


def test_html_hover_shows_the_bits_of_each_byte() -> None:
    """One span per character; its title lists the entropy of each of its bytes in bits (2 decimals): é has two
    values, 日 three, 😀 four (a threshold above every entropy keeps the characters whole: one patch)."""
    data = "aé日😀".encode()
    p = entropy_patches(data, threshold=100.0)
    titles = re.findall(r"title='([^']*) bits'", patches_html(p))
    assert len(titles) == 4
    expected = [p.entropies_nats[s:e] / math.log(2) for s, e, _ in char_spans(data)]
    for title, bits in zip(titles, expected, strict=True):
        assert title.split() == [f"{b:.2f}" for b in bits]


def test_html_without_entropies_has_no_hover() -> None:
    page = patches_html(Patcher(rule="space").patch(["a b c"])[0])
    assert "title=" not in page and page.count("class='patch'") == 3


@pytest.mark.parametrize("data", ["é".encode(), b""])
def test_html_has_one_box_per_patch_even_inside_characters(data: bytes) -> None:
    p = Patcher(rule="byte").patch([data])[0]
    assert patches_html(p).count("class='patch'") == len(p.starts)


# ---------------------------------------------------------------- plot


@pytest.mark.filterwarnings("ignore:Glyph .* missing from font:UserWarning")  # CJK glyphs, not in DejaVu Sans
def test_plot_writes_a_png_with_the_agg_backend(tmp_path: Path) -> None:
    out = plot_patches(entropy_patches(TEXT), tmp_path / "sub" / "plot.png")
    assert out == tmp_path / "sub" / "plot.png"
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert matplotlib.get_backend().lower() == "agg"
    assert sorted(p.name for p in out.parent.iterdir()) == ["plot.png"]  # no temp file left


def test_plot_of_a_long_text_shows_its_start(tmp_path: Path) -> None:
    out = plot_patches(entropy_patches("long text " * 100), tmp_path / "long.png", max_bytes=50)
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_plot_needs_entropies(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="entropy rule"):
        plot_patches(Patcher(rule="space").patch(["a b"])[0], tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- write_atomic


def test_write_atomic_writes_with_the_usual_permissions(tmp_path: Path) -> None:
    path = write_atomic(tmp_path / "a" / "out.txt", lambda p: p.write_text("new"))
    assert path.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert os.listdir(path.parent) == ["out.txt"]


def test_write_atomic_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")

    def half_write(p: Path) -> None:
        p.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, half_write)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]
    with pytest.raises(RuntimeError):
        write_atomic(tmp_path / "fresh.txt", half_write)
    assert os.listdir(tmp_path) == ["out.txt"]


def test_write_atomic_replaces_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    write_atomic(target, lambda p: p.write_bytes(np.arange(3, dtype=np.uint8).tobytes()))
    assert target.read_bytes() == b"\x00\x01\x02" and os.listdir(tmp_path) == ["out.bin"]
