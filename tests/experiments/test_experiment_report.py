"""Reporting a `blt experiment` sweep: the per-script aggregation, the terminal tables, the trade-off curves and
report.md, from a hand-built table of cells (two corpora, an entropy sweep, a BPE sweep, space without bits, a
NaN)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from rich.console import Console  # noqa: E402

from blt.experiments.report import (  # noqa: E402
    _draw_panel,
    fmt,
    number,
    print_experiment,
    script_summary,
    sorted_rows,
    write_experiment_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAN = float("nan")
COMMAND = "blt experiment configs/experiments/sweep.yaml --set name=unit"


def cell(corpus: str, segmenter: str, kind: str, bpu: float, cv: float | None, f1: float, **params: Any) -> dict:
    return {
        "cell": f"{corpus}/{segmenter}",
        "corpus": corpus,
        "model": "tiny",
        "segmenter": segmenter,
        "kind": kind,
        "vocab_size": params.get("vocab_size"),
        "target_bytes_per_patch": params.get("target"),
        "threshold_nats": None,
        "max_patch_length": params.get("max_patch_length"),
        "patch_size": None,
        "bytes_per_unit": bpu,
        "bits_per_unit_cv": cv,
        "word_boundary_f1": f1,
        "renyi_efficiency_types": 0.5,
        "renyi_efficiency_vocab": 0.25 if params.get("vocab_size") else None,  # an open vocabulary has no V
        "encode_mb_per_s": 12.0,
        "fertility": 1.5,
        "train_seconds": None,
    }


def make_rows() -> list[dict]:
    rows = []
    for corpus, shift in (("wiki", 0.0), ("flores", 0.25)):
        # Listed out of order on purpose: tables and curves must sort by kind, then bytes/unit.
        rows += [
            cell(corpus, "entropy-global@4", "entropy-global", 4.1 + shift, 0.30, 0.55, target=4.0),
            cell(corpus, "space", "space", 5.6 + shift, None, 1.0),
            cell(corpus, "entropy-global@2", "entropy-global", 2.05 + shift, 0.50, 0.35, target=2.0),
            cell(corpus, "bpe-512", "bpe", 3.14159 + shift, 0.61, 0.8, vocab_size=512),
            cell(corpus, "entropy-global@3", "entropy-global", 3.02 + shift, 0.40, NAN, target=3.0),
            cell(corpus, "bpe-256", "bpe", 2.71 + shift, 0.72, 0.7, vocab_size=256),
        ]
    return rows


def language_row(corpus: str, segmenter: str, kind: str, language: str, n_bytes: int, units: int, cv: float) -> dict:
    return {
        "cell": f"{corpus}/{segmenter}",
        "corpus": corpus,
        "model": "tiny",
        "segmenter": segmenter,
        "kind": kind,
        "language": language,
        "script": language.split("_")[1],
        "bytes": n_bytes,
        "units": units,
        "bytes_per_unit": n_bytes / units,
        "bits_per_unit_cv": cv,
    }


def make_language_rows() -> list[dict]:
    out = []
    for segmenter, kind, k in (("bpe-256", "bpe", 1), ("entropy-global@2", "entropy-global", 2)):
        out += [
            language_row("flores", segmenter, kind, "en_Latn", 300, 100 // k, 0.2),
            language_row("flores", segmenter, kind, "fr_Latn", 100, 50 // k, 0.5),
            language_row("flores", segmenter, kind, "ru_Cyrl", 200, 40 // k, NAN),
        ]
    return out


META = {
    "name": "unit sweep",
    "description": "Entropy patching against BPE on two corpora.",
    "command": COMMAND,
    "versions": {"blt": "0.1.0", "torch": "2.0"},
    "corpora": {
        "wiki": {"sha256": "ab" * 32, "train_bytes": 1_000_000, "eval_bytes": 50_000, "eval_documents": 20},
        "flores": {"sha256": "cd" * 32, "train_bytes": 2_000, "eval_bytes": 600, "eval_documents": 6},
    },
    "models": {"tiny": {"sha256": "ef" * 32, "params": 12_345, "bits_per_byte": {"wiki": 2.5, "flores": NAN}}},
    "cells": 12,
    "seconds": 3.21,
    "config": {"name": "unit sweep", "segmenters": ["bpe", "entropy-global", "space"]},
}


def table_lines(report: str, heading: str) -> list[str]:
    """The markdown table rows (no header, no rule) under `## heading`."""
    section = report.split(f"## {heading}\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return section[2:]


# ---------------------------------------------------------------- script_summary


def test_script_summary_golden() -> None:
    """The docstring's case: Latn 400 / 150 = 2.667 bytes/unit with units-weighted CV (100·0.2 + 50·0.5) / 150 =
    0.3; Cyrl's only CV is NaN, so its CV is None while its bytes/unit (200 / 40) stays."""
    rows = [
        language_row("flores", "bpe-256", "bpe", *x)
        for x in (("en_Latn", 300, 100, 0.2), ("fr_Latn", 100, 50, 0.5), ("ru_Cyrl", 200, 40, NAN))
    ]
    latn, cyrl = script_summary(rows)
    assert (latn["script"], latn["languages"], latn["bytes"], latn["units"]) == ("Latn", 2, 400, 150)
    assert latn["bytes_per_unit"] == pytest.approx(400 / 150)
    assert latn["bits_per_unit_cv"] == pytest.approx(0.3)
    assert (cyrl["script"], cyrl["bytes_per_unit"], cyrl["bits_per_unit_cv"]) == ("Cyrl", 5.0, None)
    assert latn["cell"] == "flores/bpe-256" and latn["kind"] == "bpe"


def test_script_summary_per_cell_and_missing_sizes() -> None:
    """Cells are summarised separately; a language without a unit count is left out of both totals."""
    rows = make_language_rows() + [{**language_row("flores", "bpe-256", "bpe", "de_Latn", 50, 10, 0.9), "units": None}]
    summary = {(s["cell"], s["script"]): s for s in script_summary(rows)}
    assert set(summary) == {(c, s) for c in ("flores/bpe-256", "flores/entropy-global@2") for s in ("Latn", "Cyrl")}
    assert summary["flores/bpe-256", "Latn"]["bytes"] == 400  # de_Latn left out
    assert summary["flores/entropy-global@2", "Latn"]["bytes_per_unit"] == pytest.approx(400 / 75)
    assert script_summary([]) == []


# ---------------------------------------------------------------- tables


def test_fmt_and_sort() -> None:
    assert [fmt(3.14159), fmt(None), fmt(NAN), fmt(math.inf), fmt(512, "{}")] == ["3.142", "–", "–", "–", "512"]
    assert (fmt(np.int64(512), "{}"), number(np.float32(2.5)), number(True), number("3")) == ("512", 2.5, None, None)
    labels = [r["segmenter"] for r in sorted_rows(make_rows()[:6])]
    assert labels == ["bpe-256", "bpe-512", "space", "entropy-global@2", "entropy-global@3", "entropy-global@4"]


def test_print_experiment_one_table_per_corpus() -> None:
    console = Console(record=True, width=200)
    print_experiment(make_rows(), console)
    text = console.export_text()
    assert "wiki · tiny" in text and "flores · tiny" in text
    for label in ("bpe-256", "bpe-512", "space", "entropy-global@2", "entropy-global@3", "entropy-global@4"):
        assert text.count(label) == 2
    first = text.split("flores · tiny")[0]
    assert first.index("bpe-512") < first.index("space") < first.index("entropy-global@2")
    assert "3.142" in first and "–" in first  # bpe-512's bytes/unit; space's CV and @3's F1 are missing


# ---------------------------------------------------------------- plots and report.md


def test_write_experiment_report(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    path = write_experiment_report(make_rows(), make_language_rows(), META, out)
    assert path == out / "report.md"
    report = path.read_text()
    assert report.startswith("# unit sweep\n") and META["description"] in report
    assert f"```\n{COMMAND}\n```" in report
    assert (
        "12 cells in 3.2 s." in report
        and "- Corpus `wiki`" in report
        and "`abababababab`" in report
        and "1,000,000 training bytes" in report
    )
    assert "12,345 params" in report and "2.500 on wiki" in report and "– on flores" in report
    for corpus in ("wiki", "flores"):
        lines = table_lines(report, f"{corpus} · tiny")
        assert len(lines) == 6
        assert lines[0].startswith("| bpe-256 | 256 |") and lines[2].startswith("| space | open |")
    assert "| bpe-512 | 512 | 3.142 | 1.500 |" in report  # wiki: 3.14159 bytes/unit, 1.5 units/word
    assert "| bpe-512 | 512 | 3.392 |" in report  # flores: 3.14159 + 0.25
    assert "| Rényi α=2.5 /log₂types | Rényi α=2.5 /log₂V |" in report  # one normalisation per column
    assert "| 0.500 | 0.250 |" in lines[0] and "| 0.500 | – |" in lines[2]  # bpe has a V, space has none
    assert "Versions: blt 0.1.0, torch 2.0" in report
    plots = {"tradeoff-evenness.png", "tradeoff-boundary-f1.png", "by-language.png"}
    for name in plots:
        assert f"![{name}]({name})" in report
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
    assert {p.name for p in out.iterdir()} == {"report.md", *plots}  # no temp files left behind


def test_report_without_model_or_languages(tmp_path: Path) -> None:
    """No byte model: no CV anywhere, so the evenness plot is skipped (not drawn empty); F1 is still plotted."""
    rows = [{**r, "model": None, "bits_per_unit_cv": None} for r in make_rows()]
    report = write_experiment_report(rows, [], {"name": "no model", "command": "blt experiment x.yaml"}, tmp_path)
    text = report.read_text()
    assert "## wiki\n" in text and "![tradeoff-boundary-f1.png](tradeoff-boundary-f1.png)" in text
    assert "tradeoff-evenness.png" not in text and "by-language.png" not in text
    assert {p.name for p in tmp_path.iterdir()} == {"report.md", "tradeoff-boundary-f1.png"}


def test_draw_panel_joins_sweeps_sorted_and_labels_single_points() -> None:
    """A kind's points become one line sorted by bytes/unit (the NaN F1 point dropped); space is a lone labelled
    marker; an entropy sweep at two max patch lengths gives two curves of the same colour."""
    rows = make_rows()[:6]
    rows.append({**rows[0], "segmenter": "entropy-global@4/16", "max_patch_length": 16, "bytes_per_unit": 4.5})
    colours = {"bpe": "C0", "space": "C1", "entropy-global": "C2"}
    fig, ax = plt.subplots()
    _draw_panel(ax, rows, "word_boundary_f1", colours)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"bpe", "space", "entropy-global max –", "entropy-global max 16"}
    assert list(lines["bpe"].get_xdata()) == [2.71, 3.14159]
    assert list(lines["entropy-global max –"].get_xdata()) == [2.05, 4.1]  # @3 has F1 NaN
    assert lines["entropy-global max 16"].get_color() == lines["entropy-global max –"].get_color()
    assert "space" in [t.get_text() for t in ax.texts]
    plt.close(fig)


def test_off_scale_values_clip_the_panel_and_are_named() -> None:
    """p75 of [0.5, 0.6, 0.6, 0.7, 0.8, 4.3] is 0.775 and 4.3 > 2.5 × 0.775, so the axis stops at 1.55 and the panel
    names the kind that goes above it (with its largest value); the oracle kind is drawn dotted; without an outlier
    ([1, 2, 2, 2.4]: 2.4 < 2.5 × 2.1) nothing is clipped."""
    from blt.experiments.report import off_scale_top

    assert off_scale_top([1, 1, 1, 1, 10]) == 2.0 and off_scale_top([1, 2, 2, 2.4]) is None
    base = {"corpus": "c", "model": "m", "max_patch_length": None}
    rows = [
        {**base, "kind": "fixed", "segmenter": f"fixed-{x}", "bytes_per_unit": x, "bits_per_unit_cv": y}
        for x, y in ((2, 0.5), (4, 0.6))
    ]
    rows += [
        {**base, "kind": "entropy-global", "segmenter": f"g{x}", "bytes_per_unit": x, "bits_per_unit_cv": y}
        for x, y in ((2, 0.7), (8, 4.3))
    ]
    rows += [
        {**base, "kind": "surprisal-budget", "segmenter": f"o{x}", "bytes_per_unit": x, "bits_per_unit_cv": y}
        for x, y in ((2, 0.6), (4, 0.8))
    ]
    fig, ax = plt.subplots()
    _draw_panel(ax, rows, "bits_per_unit_cv", {"fixed": "C0", "entropy-global": "C1", "surprisal-budget": "C2"})
    assert ax.get_ylim()[1] == pytest.approx(2 * 0.775)
    assert "off scale: entropy-global up to 4.30" in [t.get_text() for t in ax.texts]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["surprisal-budget (oracle)"].get_linestyle() == ":" and lines["fixed"].get_linestyle() == "-"
    plt.close(fig)
