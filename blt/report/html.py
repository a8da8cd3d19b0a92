"""Patches as a self-contained HTML page: boxes shaded by entropy, per-byte values on hover; character spans of UTF-8
text.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from blt.bytelm.entropy import LN2
from blt.files import write_atomic
from blt.report.text import iter_char_spans, summary_line
from blt.segment.patcher import Patches


def patches_html(patches: Patches, title: str = "blt patches") -> str:
    """A self-contained page: one box per patch, each character shaded by its entropy, values on hover."""
    return "".join(html_pieces(patches, title))


def write_patches_html(patches: Patches, path: str | Path, title: str = "blt patches") -> Path:
    """`patches_html` written atomically to `path` piece by piece: a long input's page never sits in memory whole
    (it takes ~20 bytes of HTML per byte of text, ~100 with entropies)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            buffer: list[str] = []
            for piece in html_pieces(patches, title):
                buffer.append(piece)
                if len(buffer) >= 1 << 14:
                    f.write("".join(buffer))
                    buffer.clear()
            f.write("".join(buffer))

    return write_atomic(path, write)


def html_pieces(patches: Patches, title: str) -> Iterator[str]:
    """The page of `patches_html`, in order, a few characters of text at a time."""
    ent = patches.entropies_nats
    peak = float(ent.max()) if ent is not None and len(ent) else 1.0
    data = patches.data
    is_start = np.zeros(len(data) + 1, np.uint8)
    is_start[patches.starts] = 1
    is_start = is_start.tobytes()  # [n + 1]: 1 where a patch starts (bytes index fast, one byte per byte of text)
    style = (
        "body{font-family:ui-monospace,monospace;line-height:2.2;max-width:70em;margin:2em auto}"
        ".patch{display:inline;border:1px solid #457b9d;border-radius:3px;padding:2px 1px;margin:0 1px}"
    )
    yield (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h3>{html.escape(summary_line(patches))}</h3>"
        f"<p>Shade: entropy of the prediction for the byte (red = high); hover for bits per byte.</p>"
    )

    def pieces() -> Iterator[tuple[int, int, str]]:  # characters, or single bytes of one a patch boundary cuts
        for start, end, label in iter_char_spans(data):
            if end - start > 1 and any(is_start[start + 1 : end]):
                yield from ((b, b + 1, f"\\x{data[b]:02x}") for b in range(start, end))
            else:
                yield start, end, label

    opened = False
    for start, end, label in pieces():
        if is_start[start]:
            yield "</div><div class='patch'>" if opened else "<div class='patch'>"
            opened = True
        shown = {"\n": "↵", " ": "&nbsp;", "\t": "⇥"}.get(label, html.escape(label))
        if ent is not None:
            level = float(ent[start]) / peak if peak > 0 else 0.0
            tip = " ".join(f"{b:.2f}" for b in ent[start:end] / LN2)
            yield f"<span style='background:rgba(230,57,70,{level:.3f})' title='{tip} bits'>{shown}</span>"
        else:
            yield f"<span>{shown}</span>"
        if label == "\n":
            yield "<br>"
    if opened:
        yield "</div>"
    yield "</body></html>\n"
