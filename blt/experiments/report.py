"""Showing a `blt experiment` sweep: one terminal table per (corpus, model), `report.md` with the run's provenance
and one markdown table per (corpus, model), and the trade-off plots on which entropy patching is compared with
tokenisers: information evenness and word-boundary F1 against compression (bytes/unit), overall and per script.

Input is the runner's tidy table, one dict per cell (any value may be None or NaN; such points are left out of
plots and shown as "–" in tables). Files are written atomically.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from blt.compare.config import ENTROPY, PRETRAINED, RULE_BASED, TRAINED
from blt.experiments.config import ORACLES, SCORED
from blt.files import write_atomic
from blt.report.markdown import markdown_table
from blt.report.plots import _savefig

Row = dict[str, Any]  # one cell of the runner's table (or one language of a cell)
KIND_ORDER = (*TRAINED, *PRETRAINED, "hf", *RULE_BASED, *ENTROPY, *ORACLES)  # hf:NAME kinds sort after tiktoken

HEADERS = {  # row key -> column header of the report tables; numbers to 3 decimals unless SPECS says otherwise
    "bytes_per_unit": "bytes/unit",
    "fertility": "units/word",
    "continued_word_rate": "split words",
    "renyi_efficiency_types": "Rényi α=2.5 /log₂types",
    "renyi_efficiency_vocab": "Rényi α=2.5 /log₂V",
    "vocabulary_use": "vocab use",
    "length_p90": "len p90",
    "word_boundary_f1": "word-boundary F1",
    "bits_per_unit_mean": "bits/unit",
    "bits_per_unit_cv": "CV bits/unit",
    "bits_per_unit_cv_grader": "CV by grader",  # shown only when the experiment has a grader
    "encode_mb_per_s": "encode MB/s",
    "train_seconds": "train s",
}
SPECS = {"length_p90": "{:.0f}", "train_seconds": "{:.1f}"}
TERMINAL = (
    *("bytes_per_unit", "bits_per_unit_cv", "bits_per_unit_cv_grader", "word_boundary_f1"),
    *("renyi_efficiency_types", "encode_mb_per_s"),
)
OPTIONAL = ("bits_per_unit_cv_grader",)  # columns shown only when some row has a value
MAX_SCRIPTS = 6
SWEEP_LABELS = {"target_bytes_per_patch": "{:g}", "threshold_nats": "θ{:.2f}", "budget_nats": "B{:.2f}"}
SWEEP_LABELS |= {"vocab_size": "{}", "patch_size": "{}"}
PLOTS = (  # (y key, y label, title, file)
    ("bits_per_unit_cv", "CV of bits per unit (lower = more even)", "evenness vs compression", "tradeoff-evenness.png"),
    ("word_boundary_f1", "word-boundary F1", "word-boundary agreement vs compression", "tradeoff-boundary-f1.png"),
    (
        "bits_per_unit_cv_grader",
        "CV of bits per unit, graded by a second model",
        "evenness graded by a second model vs compression",
        "tradeoff-evenness-grader.png",
    ),
)
PLOT_FILES = (*(plot[3] for plot in PLOTS), "by-language.png")  # every PNG a report can hold


def number(value: Any) -> float | None:
    """`value` as a float, or None when it is missing, NaN or infinite."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):  # numpy too
        return None
    return float(value)


def fmt(value: Any, spec: str = "{:.3f}") -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return "–" if number(value) is None else spec.format(value)
    return "–" if value is None else str(value)


def _column(row: Row, key: str) -> str:
    return fmt(row.get(key), SPECS.get(key, "{:.3f}"))


def kind_rank(kind: str) -> tuple[int, str]:
    base = "hf" if kind.startswith("hf:") else kind
    return (KIND_ORDER.index(base) if base in KIND_ORDER else len(KIND_ORDER), kind)


def sorted_rows(rows: Iterable[Row]) -> list[Row]:
    """By kind (tokenisers, rule-based, entropy), then bytes/unit (missing last), then label."""

    def key(r: Row) -> tuple:
        bpu = number(r.get("bytes_per_unit"))
        return (kind_rank(r.get("kind") or ""), bpu is None, bpu or 0.0, r.get("segmenter") or "")

    return sorted(rows, key=key)


def shown(keys: Iterable[str], rows: list[Row]) -> list[str]:
    """`keys` without the `OPTIONAL` ones no row has a value for (no grader: no "CV by grader" column)."""
    return [k for k in keys if k not in OPTIONAL or any(number(r.get(k)) is not None for r in rows)]


def _groups(rows: Iterable[Row]) -> dict[tuple[str, str | None], list[Row]]:
    """Rows per (corpus, model), in order of first appearance."""
    out: dict[tuple[str, str | None], list[Row]] = {}
    for r in rows:
        out.setdefault((r.get("corpus") or "", r.get("model")), []).append(r)
    return out


def _title(corpus: str, model: str | None) -> str:
    return corpus if model is None else f"{corpus} · {model}"


def print_experiment(rows: list[Row], console: Console) -> None:
    """One table per (corpus, model): the headline metrics of each cell, sorted by kind then bytes/unit."""
    for (corpus, model), group in _groups(rows).items():
        table = Table(title=_title(corpus, model))
        table.add_column("segmenter", no_wrap=True)  # the label is the row's identity: never cut it
        keys = shown(TERMINAL, group)
        for k in keys:
            table.add_column(HEADERS[k], justify="right")
        for r in sorted_rows(group):
            table.add_row(str(r.get("segmenter")), *(_column(r, k) for k in keys))
        console.print(table)


def script_summary(language_rows: list[Row]) -> list[Row]:
    """Per (cell, script): bytes/unit = total bytes / total units over the script's languages (a long language
    weighs by its size, not one vote per language), and the CV of bits/unit as a units-weighted mean over the
    languages whose CV is known (None when none is). Languages missing bytes or units are left out.

    Golden case: one cell, en (300 bytes, 100 units, CV 0.2), fr (100 bytes, 50 units, CV 0.5) in Latn and ru
    (200 bytes, 40 units, CV NaN) in Cyrl give Latn 400 / 150 = 2.667 bytes/unit (not the mean 2.5) with CV
    (100·0.2 + 50·0.5) / 150 = 0.3, and Cyrl 5.0 bytes/unit with CV None.
    """
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in language_rows:
        a = out.setdefault(
            (r["cell"], r["script"]),
            {k: r.get(k) for k in ("cell", "corpus", "model", "segmenter", "kind", "script")}
            | {"languages": 0, "bytes": 0, "units": 0, "cv_units": 0, "cv_sum": 0.0},
        )
        n_bytes, units, cv = number(r.get("bytes")), number(r.get("units")), number(r.get("bits_per_unit_cv"))
        if n_bytes is not None and units is not None:
            a["languages"], a["bytes"], a["units"] = (
                a["languages"] + 1,
                a["bytes"] + int(n_bytes),
                a["units"] + int(units),
            )
            if cv is not None:
                a["cv_units"], a["cv_sum"] = a["cv_units"] + units, a["cv_sum"] + units * cv
    for a in out.values():
        cv_units, cv_sum = a.pop("cv_units"), a.pop("cv_sum")
        a["bytes_per_unit"] = a["bytes"] / a["units"] if a["units"] else None
        a["bits_per_unit_cv"] = cv_sum / cv_units if cv_units else None
    return list(out.values())


def _colours(kinds: Iterable[str]) -> dict[str, Any]:
    """One colour per kind, the same in every panel and plot."""
    import matplotlib.pyplot as plt

    ordered = sorted(set(kinds), key=kind_rank)
    cmap = plt.get_cmap("tab10" if len(ordered) <= 10 else "tab20")
    return {k: cmap(i % cmap.N) for i, k in enumerate(ordered)}


def _sweep_value(r: Row) -> str:
    """The swept parameter of a cell, to label its point on a curve."""
    for key, spec in SWEEP_LABELS.items():
        if r.get(key) is not None:
            return spec.format(r[key])
    return ""


def _point(row: Row, y_key: str) -> tuple[float, float] | None:
    x, y = number(row.get("bytes_per_unit")), number(row.get(y_key))
    return None if x is None or y is None else (x, y)


def _draw_panel(ax: Any, points: list[Row], y_key: str, colours: dict[str, Any]) -> None:
    """Each kind's points sorted by bytes/unit and joined (an entropy sweep at several max patch lengths gives one
    curve per length); a kind with a single point is a labelled marker."""
    series: dict[tuple[str, Any], list[tuple[float, float, Row]]] = {}
    for p in points:
        if xy := _point(p, y_key):
            kind = p.get("kind") or "?"
            split = p.get("max_patch_length") if kind in SCORED else None
            series.setdefault((kind, split), []).append((*xy, p))
    splits = {k: sorted((s for kk, s in series if kk == k), key=lambda s: (s is None, s or 0)) for k, _ in series}
    for kind, split in ((k, s) for k in sorted(splits, key=kind_rank) for s in splits[k]):
        pts = sorted(series[kind, split], key=lambda t: t[0])
        xs, ys = [t[0] for t in pts], [t[1] for t in pts]
        name = f"{kind} (oracle)" if kind in ORACLES else kind
        label = name if len(splits[kind]) == 1 else f"{name} max {'–' if split is None else split}"
        if len(pts) == 1:
            ax.plot(xs, ys, "D", color=colours[kind], markersize=6, label=label)
            ax.annotate(
                str(pts[0][2].get("segmenter")), (xs[0], ys[0]), xytext=(4, 4), textcoords="offset points", fontsize=7
            )
            continue
        style = ":" if kind in ORACLES else ("-", "--", ":", "-.")[splits[kind].index(split) % 4]
        ax.plot(xs, ys, style, marker="o", markersize=4, linewidth=1.2, color=colours[kind], label=label)
        for x, y, p in pts:
            ax.annotate(_sweep_value(p), (x, y), xytext=(3, -9), textcoords="offset points", fontsize=6, alpha=0.8)
    if not series:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.margins(x=0.12, y=0.08)  # room for the point labels
    ax.grid(alpha=0.3)
    top = off_scale_top([y for pts in series.values() for _, y, _ in pts])
    if top is not None:  # a few huge values would squash every other curve into the bottom of the panel
        ax.set_ylim(top=top)
        above = {}
        for (kind, _), pts in series.items():
            if (high := max(y for _, y, _ in pts)) > top:
                above[kind] = max(above.get(kind, high), high)
        note = "off scale: " + ", ".join(f"{k} up to {v:.2f}" for k, v in sorted(above.items()))
        box = {"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 1.5}  # readable over the lines
        ax.text(0.02, 0.98, note, transform=ax.transAxes, va="top", fontsize=7, color="dimgrey", bbox=box)


def off_scale_top(ys: list[float]) -> float | None:
    """A panel's y-axis top when its largest values dwarf the rest: twice the 75th percentile, when the maximum is
    more than 2.5 times it (None: show everything). Golden: [1, 1, 1, 1, 10] → 2.0 (p75 = 1); [1, 2, 2, 2.4] → None
    (p75 = 2.1, and 2.4 < 5.25)."""
    if len(ys) < 4:
        return None
    q = float(np.percentile(ys, 75))
    return 2 * q if q > 0 and max(ys) > 2.5 * q else None


def _figure(panels: list[tuple[str, list[Row]]], ncols: int, plot: tuple[str, ...], colours: dict, out: Path) -> str:
    """Panels in a grid sharing one legend; "" (nothing written) when no panel has a point to show."""
    import matplotlib.pyplot as plt

    y_key, y_label, title, name = plot
    if not any(_point(p, y_key) for _, pts in panels for p in pts):
        return ""
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False, layout="constrained")
    for ax, (panel_title, pts) in zip(axes.flat, panels, strict=False):
        _draw_panel(ax, pts, y_key, colours)
        ax.set_title(panel_title, fontsize=9)
        ax.set_xlabel("bytes per unit (higher = more compression)", fontsize=8)
        ax.set_ylabel(y_label, fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    legend: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    if legend:
        fig.legend(
            legend.values(), legend.keys(), loc="outside lower center", ncols=min(len(legend), 3 * ncols), fontsize=8
        )
    fig.suptitle(title, fontsize=10)
    _savefig(fig, out / name)
    return name


def _script_panels(rows: list[Row], language_rows: list[Row]) -> tuple[list[tuple[str, list[Row]]], int]:
    """Panels of `script_summary` points: one row of panels per (corpus, model), one column per script (the
    `MAX_SCRIPTS` with most bytes, each (corpus, language) counted once however many cells measured it)."""
    params = {r.get("cell"): r for r in rows}  # the sweep parameters, to label the points
    summary = [params.get(s["cell"], {}) | s for s in script_summary(language_rows)]
    size: dict[str, float] = {}
    languages = {(r.get("corpus"), r.get("language")): r for r in language_rows}
    for r in languages.values():
        size[r["script"]] = size.get(r["script"], 0.0) + (number(r.get("bytes")) or 0.0)
    scripts = sorted(size, key=lambda s: -size[s])[:MAX_SCRIPTS]
    panels = []
    for (corpus, model), group in _groups(summary).items():
        for script in scripts:
            n = sum(1 for (c, _), r in languages.items() if c == corpus and r["script"] == script)
            label = f"{script} ({n} language{'s' * (n != 1)}) · {_title(corpus, model)}"
            panels.append((label, [s for s in group if s["script"] == script]))
    return panels, len(scripts)


def experiment_plots(rows: list[Row], language_rows: list[Row], out: Path) -> list[str]:
    """The trade-off plots as PNGs in `out`; returns the names written (a plot with nothing to show is skipped)."""
    import matplotlib

    matplotlib.use("Agg")

    out = Path(out)
    colours = _colours([r.get("kind") or "?" for r in [*rows, *language_rows]])
    panels = [(_title(c, m), g) for (c, m), g in _groups(rows).items()]
    ncols = min(3, len(panels)) or 1
    written = [_figure(panels, ncols, plot, colours, out) for plot in PLOTS] if panels else []
    if language_rows:
        panels, n_scripts = _script_panels(rows, language_rows)
        title = f"per script (top {n_scripts} by bytes): evenness vs compression"
        written.append(_figure(panels, n_scripts, (*PLOTS[0][:2], title, PLOT_FILES[-1]), colours, out))
    return [name for name in written if name]


def _provenance(meta: dict[str, Any]) -> str:
    seconds = number(meta.get("seconds"))
    parts = [f"{meta.get('cells', '?')} cells in {fmt(seconds, '{:.1f}')} s.", ""]
    for name, c in (meta.get("corpora") or {}).items():
        parts.append(
            f"- Corpus `{name}` (sha256 `{str(c.get('sha256') or '')[:12]}`): {fmt(c.get('train_bytes'), '{:,}')} "
            f"training bytes, {fmt(c.get('eval_bytes'), '{:,}')} evaluation bytes in "
            f"{fmt(c.get('eval_documents'), '{:,}')} documents."
        )
    for name, m in (meta.get("models") or {}).items():
        bpb = ", ".join(f"{fmt(v)} on {c}" for c, v in (m.get("bits_per_byte") or {}).items())
        parts.append(
            f"- Byte model `{name}` (sha256 `{str(m.get('sha256') or '')[:12]}`, {fmt(m.get('params'), '{:,}')} "
            f"params): bits/byte {bpb or '–'}."
        )
    if g := meta.get("grader"):
        bpb = ", ".join(f"{fmt(v)} on {c}" for c, v in (g.get("bits_per_byte") or {}).items())
        parts.append(
            f"- Grader `{g.get('name')}` (sha256 `{str(g.get('sha256') or '')[:12]}`, {fmt(g.get('params'), '{:,}')} "
            f'params): bits/byte {bpb or "–"}. "CV by grader" is the CV of bits per unit by its surprisal: a model '
            "that did not place the entropy boundaries (CV bits/unit is graded by the cell's own model)."
        )
    if meta.get("models"):
        parts += ["", "Entropy cells' encode MB/s excludes the byte model's scoring (done once per corpus and model)."]
    return "\n".join(parts)


def write_experiment_report(rows: list[Row], language_rows: list[Row], meta: dict[str, Any], out: str | Path) -> Path:
    """`report.md` in `out`: what was run, one table per (corpus, model), the trade-off plots and versions."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = experiment_plots(rows, language_rows, out)
    lines = [f"# {meta.get('name') or 'blt experiment'}", ""]
    if meta.get("description"):
        lines += [str(meta["description"]).strip(), ""]
    lines += [f"```\n{meta.get('command', '')}\n```", "", "## What was run", "", _provenance(meta), ""]
    if any(r.get("kind") in ORACLES for r in rows):
        lines += [
            "surprisal-budget cells are an oracle, not a segmenter: the budget rule cut on each byte's realised "
            "surprisal (it looks at the byte before cutting), an upper bound on equal-information patches.",
            "",
        ]
    for (corpus, model), group in _groups(rows).items():
        keys = shown(HEADERS, group)
        headers = ["segmenter", "vocab", *(HEADERS[k] for k in keys)]
        table = [
            [
                str(r.get("segmenter")).replace("|", "\\|"),
                fmt(r.get("vocab_size"), "{}") if r.get("vocab_size") else "open",
                *(_column(r, k) for k in keys),
            ]
            for r in sorted_rows(group)
        ]
        lines += [f"## {_title(corpus, model)}", "", markdown_table(headers, table), ""]
    if plots:
        lines += [
            "## Trade-offs",
            "",
            "Lower CV of bits per unit means each unit carries a more even share of the "
            "byte model's information; further right means fewer, longer units. Points of a sweep are joined and "
            "labelled with the swept value (target bytes/patch, vocabulary size, patch size).",
            "",
        ]
        lines += [line for p in plots for line in (f"![{p}]({p})", "")]
    if meta.get("config") is not None:
        config = json.dumps(meta["config"], indent=2, default=str)
        lines += ["<details><summary>resolved config</summary>", "", f"```json\n{config}\n```", "", "</details>", ""]
    versions = meta.get("versions") or {}
    lines.append("Versions: " + (", ".join(f"{k} {v}" for k, v in versions.items()) or "–"))
    return write_atomic(out / "report.md", lambda p: p.write_text("\n".join(lines) + "\n"))


def write_tables(out: Path, rows: list[dict[str, Any]], language_rows: list[dict[str, Any]]) -> None:
    """results.parquet + results.csv (a row per cell); by_language.csv when there are labelled rows."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows)
    write_atomic(out / "results.parquet", lambda p: pq.write_table(table, p))
    write_atomic(out / "results.csv", lambda p: pcsv.write_csv(table, p))
    if language_rows:
        langs = pa.Table.from_pylist(language_rows)
        write_atomic(out / "by_language.csv", lambda p: pcsv.write_csv(langs, p))
