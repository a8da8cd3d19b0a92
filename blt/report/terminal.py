"""Showing results: patches in the terminal (alternating colours), as a self-contained HTML page (boxes shaded by
entropy, per-byte values on hover), and as the entropy plot of the BLT paper's Figure 4 for the user's own text;
files are written atomically.
"""

from __future__ import annotations

import html
import math
import os
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from rich.console import Console
from rich.text import Text

from blt.entropy import LN2, ByteScores
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


TERMINAL_MAX_BYTES = 1 << 16  # longer inputs show their first 64 KiB: the renderer holds ~1 kB per character shown
ENTROPY_TABLE_MAX_BYTES = 512  # rows of `blt entropy`'s table (one per byte; rich takes ~2 ms a row); --json: all


def shown_prefix(data: bytes, max_bytes: int) -> int:
    """How many bytes of `data` to show: all of it, or about `max_bytes` cut before a character, not inside one."""
    if len(data) <= max_bytes:
        return len(data)
    end = max_bytes
    while end > max_bytes - 3 and 0x80 <= data[end] < 0xC0:  # a continuation byte: its character began earlier
        end -= 1
    return end if end > 0 else max_bytes


def render_terminal(patches: Patches, console: Console, max_bytes: int = TERMINAL_MAX_BYTES) -> None:
    """The text with patches in alternating background colours (│ between patches where the output has no
    colours), then a one-line summary. A character cut by a patch boundary is shown whole, in the colour of the
    patch holding its first byte. Inputs longer than `max_bytes` show their start, patch-length statistics and
    where to get the rest: the output (and memory) stays bounded whatever the input's size."""
    n = shown_prefix(patches.data, max_bytes)
    out = Text()
    patch_of = np.searchsorted(patches.starts, np.arange(n), side="right") - 1  # [n]
    plain = console.color_system is None  # a pipe or a file: no colours, so mark boundaries with │
    previous, run, run_style = 0, [], PATCH_STYLES[0]
    for start, end, label in char_spans(patches.data[:n]):
        shown = label if label.isprintable() or label == "\n" else repr(label)[1:-1]
        style = PATCH_STYLES[int(patch_of[start]) % 2]
        if style != run_style or (plain and patch_of[end - 1] != previous):  # one span per run of a colour
            out.append("".join(run), style=run_style)
            run, run_style = [], style
        if plain and patch_of[end - 1] != previous:  # a patch starts at or inside this character
            out.append("│")
        previous = patch_of[end - 1]
        run.append(shown)
    out.append("".join(run), style=run_style)
    console.print(out)
    if n < len(patches.data):
        console.print(
            f"… the first {n:,} of {len(patches.data):,} bytes shown; every patch: --json, or --html FILE",
            highlight=False,
        )
        console.print(length_stats_line(patches.lengths), highlight=False)
    console.print(summary_line(patches))


def length_stats_line(lengths: np.ndarray) -> str:
    """lengths [P] (bytes) -> 'patch lengths (bytes): min 1, median 3, mean 4.21, p90 8, max 31'."""
    if not len(lengths):
        return "patch lengths (bytes): none"
    p50, p90 = np.percentile(lengths, [50, 90])
    return (
        f"patch lengths (bytes): min {lengths.min()}, median {p50:g}, mean {lengths.mean():.2f}, "
        f"p90 {p90:g}, max {lengths.max()}"
    )


def byte_label(data: bytes, t: int) -> str:
    """The character that byte t starts (continuation bytes show as '·', undecodable ones as hex)."""
    b = data[t]
    if 0x80 <= b < 0xC0:
        return "·"
    width = 1 if b < 0x80 else 2 if b < 0xE0 else 3 if b < 0xF0 else 4
    try:
        ch = data[t : t + width].decode("utf-8")
    except UnicodeDecodeError:
        return f"\\x{b:02x}"
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r", " ": "␠"}.get(ch, ch if ch.isprintable() else repr(ch)[1:-1])


def render_entropy_table(scores: ByteScores, console: Console, max_rows: int = ENTROPY_TABLE_MAX_BYTES) -> None:
    """One row per byte (position, hex, character, entropy and surprisal in bits) for the first `max_rows`
    bytes, then a summary of all of them."""
    from rich.table import Table

    data = scores.data
    n = min(len(data), max_rows)
    table = Table("pos", "byte", "char", "entropy (bits)", "surprisal (bits)")
    ent_bits, sur_bits = scores.entropy_nats[:n] / LN2, scores.surprisal_nats[:n] / LN2
    for t in range(n):
        table.add_row(str(t), f"{data[t]:02x}", byte_label(data, t), f"{ent_bits[t]:.3f}", f"{sur_bits[t]:.3f}")
    console.print(table)
    if n < len(data):
        console.print(f"… the first {n:,} of {len(data):,} bytes shown; every byte: --json", highlight=False)
    console.print(
        f"{len(data):,} bytes, mean entropy {scores.entropy_nats.mean(dtype=np.float64) / LN2:.3f} bits, "
        f"{scores.bits_per_byte:.3f} bits/byte"
    )


def write_json(fields: dict[str, Any], file: TextIO | None = None, chunk: int = 1 << 16) -> None:
    """`json.dumps(fields)` and a newline, written piece by piece to `file` (default stdout): numpy arrays go out
    `chunk` values at a time (floats rounded to 6 decimals), so per-byte values of a long input never exist as
    one list of Python floats or one giant string."""
    import json

    file = file if file is not None else sys.stdout
    file.write("{")
    for i, (key, value) in enumerate(fields.items()):
        file.write((", " if i else "") + json.dumps(key, ensure_ascii=False) + ": ")
        if not isinstance(value, np.ndarray):
            file.write(json.dumps(value, ensure_ascii=False))
            continue
        file.write("[")
        for a in range(0, len(value), chunk):
            part = value[a : a + chunk].tolist()
            if value.dtype.kind == "f":
                part = [round(x, 6) for x in part]
            file.write((", " if a else "") + json.dumps(part)[1:-1])
        file.write("]")
    file.write("}\n")


def byte_progress(console: Console, description: str, total: int | None = None) -> Any:
    """A transient progress bar of bytes on `console` (stderr), shown only when it is a terminal. Used as
    `with byte_progress(...) as advance: ... advance(n_bytes)`."""
    from contextlib import contextmanager

    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    @contextmanager
    def bar() -> Iterator[Callable[[int], None]]:
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        timing = (TimeElapsedColumn(), TimeRemainingColumn()) if total else (TimeElapsedColumn(),)
        with Progress(*columns, *timing, console=console, transient=True, disable=not console.is_terminal) as p:
            task = p.add_task(description, total=total)
            yield lambda n: p.advance(task, n)

    return bar()


def summary_line(patches: Patches) -> str:
    line = f"{len(patches.starts)} patches, {len(patches.data)} bytes, {patches.bytes_per_patch:.2f} bytes/patch"
    if patches.threshold_nats is not None:
        line += f", threshold {patches.threshold_nats:.4f} nats ({patches.threshold_nats / LN2:.4f} bits)"
    if patches.relative_threshold_nats is not None:
        rel = patches.relative_threshold_nats
        line += f", relative threshold {rel:.4f} nats ({rel / LN2:.4f} bits)"
    return line


def iter_char_spans(data: bytes) -> Iterator[tuple[int, int, str]]:
    """(start, end, label) per character: UTF-8 sequences stay whole, invalid bytes become \\xNN."""
    t = 0
    while t < len(data):
        b = data[t]
        width = 1 if b < 0x80 else 2 if 0xC2 <= b < 0xE0 else 3 if 0xE0 <= b < 0xF0 else 4 if 0xF0 <= b < 0xF5 else 1
        try:
            label = data[t : t + width].decode("utf-8")
        except UnicodeDecodeError:
            width, label = 1, f"\\x{b:02x}"
        yield t, t + width, label
        t += width


def char_spans(data: bytes) -> list[tuple[int, int, str]]:
    """`iter_char_spans` as a list."""
    return list(iter_char_spans(data))


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
    ("renyi_efficiency_types", "Rényi α=2.5 /log₂types", "{:.3f}"),  # every row has observed types
    ("renyi_efficiency_vocab", "Rényi α=2.5 /log₂V", "{:.3f}"),  # closed vocabularies only: open ones show –
    ("vocabulary_use", "vocab use", "{:.1%}"),
    ("length_p90", "len p90", "{:.0f}"),
    ("word_boundary_f1", "word-boundary F1", "{:.3f}"),
    ("bits_per_unit_mean", "bits/unit", "{:.2f}"),
    ("bits_per_unit_cv", "CV bits/unit", "{:.3f}"),
    ("bits_per_unit_cv_at_reference", "CV @ ref rate", "{:.3f}"),  # --curves: interpolated at the reference rate
    ("bits_per_unit_cv_self", "CV placer-graded", "{:.3f}"),  # --grader: the entropy rows' CV by their own model
    ("encode_mb_per_s", "encode MB/s", "{:.2f}"),
)
OPTIONAL = ("bits_per_unit_cv_at_reference", "bits_per_unit_cv_self")  # columns shown only when a row has a value


def _cell(value: object, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return fmt.format(value)


def matched_cell(row: dict, reference: dict | None) -> str:
    """ref (the reference row), yes (at its rate within 1 %), no (its own rate), no * (could not reach it: see the
    notes), – (no reference)."""
    if reference and row["segmenter"] == reference["segmenter"]:
        return "ref"
    if row.get("matched") is None:
        return "–"
    return "yes" if row["matched"] else "no *" if row.get("match_note") else "no"


def compare_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    rows_in = results["segmenters"]
    columns = [c for c in COLUMNS if c[0] not in OPTIONAL or any(r.get(c[0]) is not None for r in rows_in)]
    headers = ["segmenter", "vocab", columns[0][1], "matched", *(h for _, h, _ in columns[1:])]
    rows = []
    for r in rows_in:
        vocab = str(r["vocab_size"]) if r["vocab_size"] else "open"
        cells = [_cell(r.get(k), f) for k, _, f in columns]
        rows.append([r["segmenter"], vocab, cells[0], matched_cell(r, results.get("reference")), *cells[1:]])
    return headers, rows


# What a narrow terminal keeps, most telling first; the rest need --wide (all are in report.md and results.csv).
NARROW_PRIORITY = (
    "segmenter",
    "vocab",
    "bytes/unit",
    "matched",
    "CV bits/unit",
    "CV @ ref rate",
    "CV placer-graded",
    "bits/unit",
    "units/word",
    "Rényi α=2.5 /log₂types",
    "Rényi α=2.5 /log₂V",
    "split words",
    "word-boundary F1",
    "len p90",
    "vocab use",
    "encode MB/s",
)


def compare_notes(results: dict) -> list[str]:
    """The lines under the table: the reference rate and which rows are at it, rows that could not reach it
    (flagged *), who grades bits/unit, and the byte model's fit."""
    from blt.baselines import fit_line

    rows, ref = results["segmenters"], results.get("reference")
    notes = []
    if ref:
        at = [r["segmenter"] for r in rows if r.get("matched") and r["segmenter"] != ref["segmenter"]]
        off = [r["segmenter"] for r in rows if r.get("matched") is False]
        line = (
            f"reference rate: {ref['segmenter']}'s {ref['bytes_per_unit']:.3f} bytes/unit on the held-out text; "
            f"compression-matched (within 1 %): {', '.join(at) or 'none'}"
        )
        if off:
            curves = (
                "CV @ ref rate interpolates their curves" if results.get("curves") else "--curves compares them there"
            )
            line += f"; at their own rate: {', '.join(off)} (their CV is not comparable at another rate; {curves})"
        notes.append(line)
    notes += [f"* {r['match_note']}" for r in rows if r.get("matched") is False and r.get("match_note")]
    grading = results.get("grading")
    if grading and any(r.get("bits_per_unit_cv") is not None for r in rows):
        if grading["independent"]:
            notes.append(
                f"bits/unit graded by {grading['model']} ({grading['bits_per_byte']:.3f} bits/byte here), not the "
                "model that placed the entropy boundaries; CV placer-graded is what that model says of its own patches"
            )
        else:
            notes.append(
                f"bits/unit graded by the byte model's surprisal on held-out text ({grading['model']}); it also placed "
                "the entropy boundaries, so their CV is graded by their own placer (circular): --grader MODEL grades "
                "with another"
            )
    return notes + fit_line(results.get("byte_model") or {})


def print_compare(results: dict, console: Console, wide: bool = False) -> None:
    """The comparison table: the columns that fit `console`'s width (in `NARROW_PRIORITY` order, each column's
    cells unwrapped) and a note naming the others, or with `wide` every column, however wide the table gets."""
    from rich.measure import Measurement
    from rich.table import Table

    headers, rows = compare_rows(results)
    title = f"{results['eval_documents']} held-out documents, {results['eval_bytes']:,} bytes"

    def table_of(columns: list[int]) -> Table:
        table = Table(*(headers[c] for c in columns), title=title)
        for row in rows:
            table.add_row(*(row[c] for c in columns))
        return table

    def width_of(columns: list[int]) -> int:
        unbounded = console.options.update_width(1 << 16)  # Measurement.get caps at the options' width
        return Measurement.get(console, unbounded, table_of(columns)).maximum

    kept = list(range(len(headers)))
    if not wide:
        kept = []
        for c in sorted(range(len(headers)), key=lambda c: NARROW_PRIORITY.index(headers[c])):
            if len(kept) < 2 or width_of(sorted([*kept, c])) <= console.width:  # the names always show
                kept = sorted([*kept, c])
    table = table_of(kept)
    # Never squeeze the numbers: print at the table's full width (a pipe or CI log does not wrap).
    Console(file=console.file, width=max(console.width, width_of(kept)), soft_wrap=True).print(table)
    dropped = [headers[c] for c in range(len(headers)) if c not in kept]
    if dropped:
        note = f"{len(dropped)} more columns with --wide: {', '.join(dropped)}"
        short = f"{len(dropped)} more columns with --wide (all of them are in report.md)"
        console.print(note if len(note) <= console.width else short, highlight=False)
    for line in compare_notes(results):  # wrapped at words: a terminal would cut them mid-word
        console.print(
            textwrap.fill(line, width=max(console.width, 40), subsequent_indent="  "), highlight=False, markup=False
        )


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def _savefig(fig: object, path: Path) -> None:
    import matplotlib.pyplot as plt

    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]


def write_compare_report(results: dict, out: str | Path, command: str, versions: dict[str, str]) -> Path:
    """`report.md` (tables, plots, the exact command and versions), `results.json` and `results.csv` in `out`."""
    import csv
    import io
    import json

    from blt.compare import finite
    from blt.compare_plots import compare_plots

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
    given = results["config"]["vocab_size"]
    lines.append(
        f"Trained tokenisers: vocabulary size {given} (given)."
        if given
        else f"Trained tokenisers: the largest vocabulary the training split supports, up to {results['vocab_size']} "
        "(the vocab column)."
    )
    ref = results.get("reference")
    if ref:
        lines.append(
            f"Reference rate: {ref['segmenter']}'s {ref['bytes_per_unit']:.3f} bytes/unit on the held-out text "
            f"({'the default reference' if ref['chosen'] == 'auto' else 'given with --match'}); entropy thresholds "
            "are calibrated to it and fixed patches cut at it (compression-matched)."
        )
    if model:
        before = model.get("bits_per_byte_before_adapt")
        adapted = f" (before adaptation: {before:.3f})" if before is not None else ""
        speed = model.get("scoring_mb_per_s")
        device = model.get("scoring_device", "?")
        if speed is not None:
            scored = f"scored at {speed:.3f} MB/s on {device}; the entropy rows' encode MB/s includes this scoring"
        else:
            scored = "scores reused from the cache, so the entropy rows have no end-to-end speed (use --no-cache)"
        lines.append(
            f"Byte model {model['model']} ({model['params']:,} params): {model['bits_per_byte']:.3f} bits/byte on "
            f"the held-out text{adapted}, {scored}."
        )
    notes = compare_notes(results)
    if notes:
        lines += ["", *(("- \\" if line.startswith("*") else "- ") + line for line in notes)]  # "\\*": a literal *
    if model.get("compressed_text"):
        lines.append(
            f"\nCompressors (Python's gzip, bz2, lzma at level 9, xz extreme) ran over {model['compressed_text']}: "
            "8 · compressed bytes / bytes. Calibration gap = (bits/byte paid − mean predicted entropy in bits) / "
            "bits/byte paid, on the same bytes; positive means the model is overconfident."
        )
    lines += [
        "",
        *(f"![{p}]({p})" for p in plots),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
    ]
    write_atomic(out / "report.md", lambda p: p.write_text("\n".join(lines) + "\n"))
    return out / "report.md"
