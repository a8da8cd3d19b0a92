"""Patches and scores in the terminal: patches in alternating colours, the per-byte entropy table of
`blt entropy`, JSON on stdout in chunks, and a byte-counting progress bar.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import numpy as np
from rich.console import Console
from rich.text import Text

from blt.bytelm.entropy import LN2, ByteScores
from blt.report.text import byte_label, char_spans, length_stats_line, shown_prefix, summary_line
from blt.segment.patcher import Patches

PATCH_STYLES = ("black on #ffd166", "black on #8ecae6")


TERMINAL_MAX_BYTES = 1 << 16  # longer inputs show their first 64 KiB: the renderer holds ~1 kB per character shown
ENTROPY_TABLE_MAX_BYTES = 512  # rows of `blt entropy`'s table (one per byte; rich takes ~2 ms a row); --json: all


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


# ---------------------------------------------------------------------------------------------- comparison
