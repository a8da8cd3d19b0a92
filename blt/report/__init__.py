"""Renderers the jobs share, for patches and scores: the terminal (alternating colours, the entropy table, JSON,
progress: `terminal`), a self-contained HTML page (`html`), text cut into units (tokens or bytes) shaded by entropy
in the terminal and as a page, models side by side (`units`), the entropy plot with patch boundaries, the
entropy–varentropy map and the one way figures are saved (`plots`), Markdown tables and package versions for
report.md (`markdown`) and how bytes read as text (`text`). The names users imported from the old `blt.report`
module are re-exported here; the comparison's table and report.md moved to `blt.compare.report` (the old names still
resolve, with a `DeprecationWarning`).

May import the top-level modules, `blt.bytelm` (scores), `blt.segment` (patches) and `blt.metrics`; never a job
(`blt.compare`, `blt.experiments`, `blt.llm`). See docs/architecture.md.
"""

from __future__ import annotations

from blt._moved import moved_names
from blt.files import write_atomic
from blt.report.html import html_pieces, patches_html, write_patches_html
from blt.report.markdown import markdown_table, package_versions
from blt.report.plots import plot_patches
from blt.report.terminal import (
    ENTROPY_TABLE_MAX_BYTES,
    PATCH_STYLES,
    TERMINAL_MAX_BYTES,
    byte_progress,
    render_entropy_table,
    render_terminal,
    write_json,
)
from blt.report.text import byte_label, char_spans, iter_char_spans, length_stats_line, shown_prefix, summary_line

__all__ = [
    "ENTROPY_TABLE_MAX_BYTES",
    "PATCH_STYLES",
    "TERMINAL_MAX_BYTES",
    "byte_label",
    "byte_progress",
    "char_spans",
    "html_pieces",
    "iter_char_spans",
    "length_stats_line",
    "markdown_table",
    "package_versions",
    "patches_html",
    "plot_patches",
    "render_entropy_table",
    "render_terminal",
    "shown_prefix",
    "summary_line",
    "write_atomic",
    "write_json",
    "write_patches_html",
]

# names of the old blt.report module that now live above this package: resolved on use, with a warning
_MOVED_UP = {
    name: "blt.compare.report"
    for name in (
        "COLUMNS",
        "NARROW_PRIORITY",
        "OPTIONAL",
        "compare_notes",
        "compare_rows",
        "matched_cell",
        "print_compare",
        "write_compare_report",
    )
}


# Deprecated: the comparison's renderers moved to `blt.compare.report` (removed from here in 0.3).
__getattr__ = moved_names("blt.report", _MOVED_UP)
