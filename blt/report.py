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

from blt.entropy import LN2
from blt.errors import BltError
from blt.segmenters import Patches

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


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a report's numbers (those installed), and the thread counts."""
    import importlib.metadata as md

    import torch

    versions = {}
    for dist in ("blt-patcher", "torch", "tokenizers", "sentencepiece", "tiktoken"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    versions["threads"] = (
        f"torch {torch.get_num_threads()}, RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'unset')}"
    )
    return versions


def render_terminal(patches: Patches, console: Console) -> None:
    """The text with patches in alternating background colours (│ between patches where the output has no
    colours), then a one-line summary. A character cut by a patch boundary is shown whole, in the colour of the
    patch holding its first byte."""
    out = Text()
    patch_of = np.searchsorted(patches.starts, np.arange(len(patches.data)), side="right") - 1  # [n]
    plain = console.color_system is None  # a pipe or a file: no colours, so mark boundaries with │
    previous = 0
    for start, end, label in char_spans(patches.data):
        shown = label if label.isprintable() or label == "\n" else repr(label)[1:-1]
        if plain and patch_of[end - 1] != previous:  # a patch starts at or inside this character
            out.append("│")
        previous = patch_of[end - 1]
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


# ---------------------------------------------------------------------------------------------- comparison

COLUMNS = (  # (results key, header, format)
    ("bytes_per_unit", "bytes/unit", "{:.2f}"),
    ("fertility", "units/word", "{:.2f}"),
    ("continued_word_rate", "split words", "{:.1%}"),
    ("renyi_efficiency", "Rényi eff. (α=2.5)", "{:.3f}"),
    ("vocabulary_use", "vocab use", "{:.1%}"),
    ("length_p90", "len p90", "{:.0f}"),
    ("word_boundary_f1", "word-boundary F1", "{:.3f}"),
    ("bits_per_unit_mean", "bits/unit", "{:.2f}"),
    ("bits_per_unit_cv", "CV bits/unit", "{:.3f}"),
    ("encode_mb_per_s", "encode MB/s", "{:.2f}"),
)


def _cell(value: object, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return fmt.format(value)


def compare_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    headers = ["segmenter", "vocab", *(h for _, h, _ in COLUMNS)]
    rows = []
    for r in results["segmenters"]:
        vocab = str(r["vocab_size"]) if r["vocab_size"] else "open"
        rows.append([r["segmenter"], vocab, *(_cell(r.get(k), f) for k, _, f in COLUMNS)])
    return headers, rows


def print_compare(results: dict, console: Console) -> None:
    from rich.table import Table

    headers, rows = compare_rows(results)
    table = Table(*headers, title=f"{results['eval_documents']} held-out documents, {results['eval_bytes']:,} bytes")
    for row in rows:
        table.add_row(*row)
    # Never squeeze the numbers into a narrow pipe or CI log: print at ≥ 200 columns.
    Console(file=console.file, width=max(console.width, 200), soft_wrap=True).print(table)


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def _savefig(fig: object, path: Path) -> None:
    import matplotlib.pyplot as plt

    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]


def compare_plots(results: dict, out: Path) -> list[str]:
    """PNG plots beside the report: length histograms, evenness, agreement matrix, bytes/unit per language."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["segmenter"] for r in results["segmenters"]]
    written = []
    fig, ax = plt.subplots(figsize=(9, 4))
    for name in names:
        lengths = results["_lengths"][name]
        if len(lengths):
            ax.hist(np.minimum(lengths, 32), bins=np.arange(1, 34) - 0.5, histtype="step", density=True, label=name)
    ax.set_xlabel("unit length (bytes, 32 = 32 or more)")
    ax.set_ylabel("share of units")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    _savefig(fig, out / "lengths.png")
    written.append("lengths.png")
    bits = {n: results["_bits_per_unit"][n] for n in names if len(results["_bits_per_unit"][n])}
    if bits:
        fig, ax = plt.subplots(figsize=(9, 4))
        ax.boxplot(list(bits.values()), showfliers=False)
        ax.set_xticks(range(1, len(bits) + 1), list(bits), rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("bits per unit (byte model)")
        ax.set_title("information evenness: narrower is more even")
        fig.tight_layout()
        _savefig(fig, out / "evenness.png")
        written.append("evenness.png")
    matrix = np.array([[results["agreement_f1"][a][b] for b in names] for a in names], dtype=float)
    fig, ax = plt.subplots(figsize=(1 + 0.7 * len(names), 0.8 + 0.6 * len(names)))
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            if math.isfinite(matrix[i, j]):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(im, ax=ax, label="boundary F1")
    fig.tight_layout()
    _savefig(fig, out / "agreement.png")
    written.append("agreement.png")
    per_lang = results["by_language"]
    if per_lang:
        langs = sorted(per_lang, key=lambda lab: per_lang[lab].get(names[0], 0))
        fig, ax = plt.subplots(figsize=(max(8, 0.12 * len(langs)), 4.5))
        for name in names:
            ax.plot(
                range(len(langs)), [per_lang[lab].get(name, np.nan) for lab in langs], marker=".", lw=0.8, label=name
            )
        ax.set_xticks(range(len(langs)), langs, rotation=90, fontsize=5)
        ax.set_ylabel("bytes per unit")
        ax.legend(fontsize=7, ncol=3)
        fig.tight_layout()
        _savefig(fig, out / "by_language.png")
        written.append("by_language.png")
    return written


def write_compare_report(results: dict, out: str | Path, command: str, versions: dict[str, str]) -> Path:
    """`report.md` (tables, plots, the exact command and versions), `results.json` and `results.csv` in `out`."""
    import csv
    import io
    import json

    from blt.compare import finite

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = compare_plots(results, out)
    public = finite({k: v for k, v in results.items() if not k.startswith("_")})
    write_atomic(out / "results.json", lambda p: p.write_text(json.dumps(public, indent=2) + "\n"))
    keys = sorted({k for r in public["segmenters"] for k, v in r.items() if not isinstance(v, (dict, list))})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(public["segmenters"])
    write_atomic(out / "results.csv", lambda p: p.write_text(buf.getvalue()))
    headers, rows = compare_rows(results)
    model = public["byte_model"]
    lines = [
        "# blt compare",
        "",
        f"```\n{command}\n```",
        "",
        f"Corpus {', '.join(results['config']['sources'])}: {results['train_documents']} training documents, "
        f"{results['eval_documents']} held-out documents ({results['eval_bytes']:,} bytes; at most "
        f"max_eval_bytes = {results['config']['max_eval_bytes']}) measured"
        + (f", from {', '.join(ev)}." if (ev := results["config"].get("eval_sources")) else " (a content-hash split)."),
        "",
        markdown_table(headers, rows),
        "",
    ]
    lines.append(
        f"Trained tokenisers: vocabulary size {results['vocab_size']} "
        f"({'given' if results['config']['vocab_size'] else 'chosen from the training bytes and characters'})."
    )
    if results["match_bytes_per_unit"]:
        lines.append(
            f"Entropy thresholds calibrated to {results['config']['match']}'s "
            f"{results['match_bytes_per_unit']:.3f} bytes/unit on the held-out text (compression-matched)."
        )
    if model:
        before = model.get("bits_per_byte_before_adapt")
        adapted = f" (before adaptation: {before:.3f})" if before is not None else ""
        speed = model.get("scoring_mb_per_s")
        scored = f"scored at {speed:.3f} MB/s" if speed is not None else "scores reused from the cache"
        lines.append(
            f"Byte model {model['model']} ({model['params']:,} params): {model['bits_per_byte']:.3f} bits/byte on "
            f"the held-out text{adapted}, {scored} (the entropy segmenters' encode speed excludes this scoring)."
        )
    lines += [
        "",
        *(f"![{p}]({p})" for p in plots),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
    ]
    write_atomic(out / "report.md", lambda p: p.write_text("\n".join(lines) + "\n"))
    return out / "report.md"
