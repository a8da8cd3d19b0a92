"""Showing results: patches in the terminal (alternating colours), as a self-contained HTML page (boxes shaded by
entropy, per-byte values on hover), and as the entropy plot of the BLT paper's Figure 4 for the user's own text;
files are written atomically.
"""

from __future__ import annotations

import html
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.text import Text

from blt.errors import BltError
from blt.segmenters import Patches

LN2 = math.log(2)
PATCH_STYLES = ("black on #ffd166", "black on #8ecae6")


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temp file beside `path`, then rename it into place: no half-written files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the file the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def render_terminal(patches: Patches, console: Console) -> None:
    """The text with patches in alternating background colours, then a one-line summary. A character cut by a
    patch boundary is shown whole, in the colour of the patch holding its first byte."""
    out = Text()
    patch_of = np.searchsorted(patches.starts, np.arange(len(patches.data)), side="right") - 1  # [n]
    for start, _, label in char_spans(patches.data):
        shown = label if label.isprintable() or label == "\n" else repr(label)[1:-1]
        out.append(shown, style=PATCH_STYLES[int(patch_of[start]) % 2])
    console.print(out)
    console.print(summary_line(patches))


def summary_line(patches: Patches) -> str:
    line = f"{len(patches.starts)} patches, {len(patches.data)} bytes, {patches.bytes_per_patch:.2f} bytes/patch"
    if patches.threshold_nats is not None:
        line += f", threshold {patches.threshold_nats:.4f} nats ({patches.threshold_nats / LN2:.4f} bits)"
    if patches.relative_threshold_nats is not None:
        rel = patches.relative_threshold_nats
        line += f", relative threshold {rel:.4f} nats ({rel / LN2:.4f} bits)"
    return line


def char_spans(data: bytes) -> list[tuple[int, int, str]]:
    """(start, end, label) per character: UTF-8 sequences stay whole, invalid bytes become \\xNN."""
    out, t = [], 0
    while t < len(data):
        b = data[t]
        width = 1 if b < 0x80 else 2 if 0xC2 <= b < 0xE0 else 3 if 0xE0 <= b < 0xF0 else 4 if 0xF0 <= b < 0xF5 else 1
        try:
            label = data[t : t + width].decode("utf-8")
        except UnicodeDecodeError:
            width, label = 1, f"\\x{b:02x}"
        out.append((t, t + width, label))
        t += width
    return out


def patches_html(patches: Patches, title: str = "blt patches") -> str:
    """A self-contained page: one box per patch, each character shaded by its entropy, values on hover."""
    ent = patches.entropies_nats
    peak = float(ent.max()) if ent is not None and len(ent) else 1.0
    starts = set(int(s) for s in patches.starts)
    pieces = []  # (start, end, label): characters, or single bytes of a character that a patch boundary cuts
    for start, end, label in char_spans(patches.data):
        if any(b in starts for b in range(start + 1, end)):
            pieces.extend((b, b + 1, f"\\x{patches.data[b]:02x}") for b in range(start, end))
        else:
            pieces.append((start, end, label))
    parts = []
    for start, end, label in pieces:
        if start in starts:
            parts.append("</div><div class='patch'>" if parts else "<div class='patch'>")
        shown = {"\n": "↵", " ": "&nbsp;", "\t": "⇥"}.get(label, html.escape(label))
        if ent is not None:
            bits = ent[start:end] / LN2
            level = float(ent[start]) / peak if peak > 0 else 0.0
            tip = " ".join(f"{b:.2f}" for b in bits)
            parts.append(f"<span style='background:rgba(230,57,70,{level:.3f})' title='{tip} bits'>{shown}</span>")
        else:
            parts.append(f"<span>{shown}</span>")
        if label == "\n":
            parts.append("<br>")
    if parts:
        parts.append("</div>")
    style = (
        "body{font-family:ui-monospace,monospace;line-height:2.2;max-width:70em;margin:2em auto}"
        ".patch{display:inline;border:1px solid #457b9d;border-radius:3px;padding:2px 1px;margin:0 1px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h3>{html.escape(summary_line(patches))}</h3>"
        f"<p>Shade: entropy of the prediction for the byte (red = high); hover for bits per byte.</p>"
        f"{''.join(parts)}</body></html>\n"
    )


def plot_patches(patches: Patches, path: str | Path, max_bytes: int = 400) -> Path:
    """Per-byte entropy (bits) with the threshold and patch boundaries, characters on the x axis (the BLT paper's
    Figure 4, for the user's text). Long inputs show their first `max_bytes` bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if patches.entropies_nats is None:
        raise BltError("plots need an entropy rule (global, monotonic or combined)")
    n = min(len(patches.data), max_bytes)
    bits = patches.entropies_nats[:n] / LN2
    fig, ax = plt.subplots(figsize=(max(8.0, n * 0.18), 3.6))
    ax.plot(np.arange(n), bits, marker="o", markersize=3, linewidth=1, color="#1d3557")
    if patches.threshold_nats is not None:
        ax.axhline(patches.threshold_nats / LN2, color="#e63946", linestyle="--", linewidth=1, label="threshold")
        ax.legend(loc="upper right")
    for s in patches.starts[1:]:
        if s < n:
            ax.axvline(s - 0.5, color="#a8dadc", linewidth=1)
    spans = [c for c in char_spans(patches.data[:n]) if c[0] < n]
    ax.set_xticks([s for s, _, _ in spans])
    ax.set_xticklabels([{" ": "␣", "\n": "↵"}.get(lbl, lbl) for _, _, lbl in spans], fontsize=7)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylabel("entropy (bits)")
    ax.set_title(summary_line(patches), fontsize=9)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return Path(path)
