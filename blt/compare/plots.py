"""The PNG plots beside `blt compare`'s report.md: unit-length CDFs, evenness of bits per unit, the boundary-agreement
matrix, bytes/unit per language grouped by script, and (when the run swept rates) evenness against compression.

Input is `run_compare`'s results dict; any number may be NaN or missing (such points are left out, cells are shown
grey). Each segmenter keeps one colour in every plot: tokenisers cool colours, rule-based greys and browns, entropy
patches warm colours. Files are written atomically through `blt.report.terminal._savefig`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blt.report.plots import _savefig

MAX_LENGTH = 32  # lengths.png's x axis ends here; longer units count as 32 ("32+")
TOKENISER_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#bcbd22", "#393b79", "#637939", "#7b4173")
RULE_COLOURS = ("#7f7f7f", "#8c6d31", "#000000")
ENTROPY_COLOURS = ("#d62728", "#ff7f0e", "#e377c2", "#843c39")
OTHER_SCRIPT = "other"  # the group of language labels without an ISO 15924 script suffix


def family(name: str) -> str:
    """The family of a segmenter: entropy (entropy-RULE, patcher:DIR), rule (space, byte, fixed-N) or tokeniser
    (trained, tiktoken, hf:...)."""
    if name.startswith(("entropy", "patcher:")):
        return "entropy"
    return "rule" if name in ("space", "byte") or name.startswith("fixed") else "tokeniser"


def segmenter_styles(names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Colour, line style and width per segmenter: one palette per family, so entropy rows stand out in every plot."""
    palettes = {"tokeniser": TOKENISER_COLOURS, "rule": RULE_COLOURS, "entropy": ENTROPY_COLOURS}
    lines = {"tokeniser": ("-", 1.4), "rule": ("--", 1.4), "entropy": ("-", 2.4)}
    seen = {f: 0 for f in palettes}
    styles = {}
    for name in names:
        f = family(name)
        linestyle, linewidth = lines[f]
        colour = palettes[f][seen[f] % len(palettes[f])]
        styles[name] = {"color": colour, "linestyle": linestyle, "linewidth": linewidth}
        seen[f] += 1
    return styles


def script_of(label: str) -> str:
    """The ISO 15924 script of a language label ("azb_Arab" -> "Arab"), or "other" without one ("en", "pt_BR")."""
    _, sep, suffix = label.rpartition("_")
    return suffix if sep and len(suffix) == 4 and suffix.isalpha() and suffix.istitle() else OTHER_SCRIPT


def _finite(value: object) -> float | None:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def language_order(per_lang: Mapping[str, Mapping[str, float]], by: str) -> list[tuple[str, list[str]]]:
    """Language labels grouped by script: scripts with more languages first (ties by script name, "other" last),
    and within a script by `by`'s value ascending (missing or NaN last, ties by label).

    >>> language_order({"b_Latn": {"x": 2.0}, "a_Cyrl": {"x": 1.0}, "c_Latn": {"x": 1.5}, "d": {}}, "x")
    [('Latn', ['c_Latn', 'b_Latn']), ('Cyrl', ['a_Cyrl']), ('other', ['d'])]
    """
    groups: dict[str, list[str]] = {}
    for label in per_lang:
        groups.setdefault(script_of(label), []).append(label)

    def within(label: str) -> tuple[bool, float, str]:
        v = _finite(per_lang[label].get(by))
        return (v is None, v or 0.0, label)

    order = sorted(groups, key=lambda s: (s == OTHER_SCRIPT, -len(groups[s]), s))
    return [(s, sorted(groups[s], key=within)) for s in order]


def reference_segmenter(results: Mapping[str, Any], names: Sequence[str]) -> str | None:
    """The segmenter the run matched rates to (`results["reference"]`, else the config's match), else the first."""
    reference = results.get("reference") or {}
    for candidate in (reference.get("segmenter"), (results.get("config") or {}).get("match")):
        if candidate in names:
            return candidate
    return names[0] if names else None


def compare_plots(results: dict, out: Path) -> list[str]:
    """Write the comparison plots into `out`; return the file names written (plots without data are skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    names = [r["segmenter"] for r in results["segmenters"]]
    styles = segmenter_styles(names)
    out = Path(out)
    plots = (
        ("lengths.png", lambda p: plot_lengths(results, names, styles, p)),
        ("evenness.png", lambda p: plot_evenness(results, names, styles, p)),
        ("agreement.png", lambda p: plot_agreement(results, names, p)),
        ("by_language.png", lambda p: plot_by_language(results, names, p)),
        ("evenness_curve.png", lambda p: plot_evenness_curve(results, names, styles, p)),
    )
    return [name for name, plot in plots if plot(out / name)]


def _cdf(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x = 1..MAX_LENGTH bytes, y = share of units of at most x bytes (units longer than MAX_LENGTH count at it)."""
    xs = np.arange(1, MAX_LENGTH + 1)
    counts = np.bincount(np.clip(lengths, 1, MAX_LENGTH), minlength=MAX_LENGTH + 1)[1:]
    return xs, np.cumsum(counts) / max(len(lengths), 1)


def plot_lengths(results: dict, names: list[str], styles: dict, path: Path) -> bool:
    """Small multiples, one panel per segmenter: its length CDF in colour over every other segmenter's in grey.
    Nine CDFs in one axes all step at the same integer lengths, so their lines overlap and cross into a tangle;
    a panel each reads alone, and the grey pack keeps the comparison (same axes everywhere)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    if not names:
        return False
    lengths = {n: np.asarray((results.get("_lengths") or {}).get(n, []), dtype=np.int64) for n in names}
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.4 * ncols, 2.4 * nrows + 0.6), sharex=True, sharey=True, squeeze=False
    )
    curves = {n: _cdf(v) for n, v in lengths.items() if len(v)}
    ticks = [1, 2, 4, 8, 16, MAX_LENGTH]
    for ax, name in zip(axes.flat, names, strict=False):
        for other, (xs, ys) in curves.items():
            if other != name:
                ax.step(xs, ys, where="post", color="0.82", linewidth=1.0)
        if name in curves:
            xs, ys = curves[name]
            style = {**styles[name], "linestyle": "-"}
            ax.step(xs, ys, where="post", **style)
            v = lengths[name]
            ax.text(
                0.97,
                0.06,
                f"median {np.median(v):.0f} B · p90 {np.percentile(v, 90):.0f} B\nmean {v.mean():.2f} B",
                transform=ax.transAxes,
                ha="right",
                va="bottom",
                fontsize=7.5,
            )
        else:
            ax.text(0.5, 0.5, "no units", transform=ax.transAxes, ha="center", va="center", color="grey")
        ax.set_title(name, fontsize=9.5, color=styles[name]["color"], fontweight="bold")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([str(t) for t in ticks[:-1]] + [f"{MAX_LENGTH}+"])
        ax.set_xlim(1, MAX_LENGTH)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("unit length (bytes, log scale)", fontsize=8.5)
    for ax in axes[:, 0]:
        ax.set_ylabel("share of units ≤ x", fontsize=8.5)
    fig.suptitle(
        "Unit lengths: each segmenter (colour) against all others (grey); curve further right = longer units",
        fontsize=10,
    )
    fig.tight_layout()
    _savefig(fig, path)
    return True


def _cv(row: Mapping[str, Any], bits: np.ndarray) -> float | None:
    cv = _finite(row.get("bits_per_unit_cv"))
    if cv is None and len(bits) and bits.mean() > 0:
        cv = _finite(bits.std() / bits.mean())
    return cv


def plot_evenness(results: dict, names: list[str], styles: dict, path: Path) -> bool:
    """One horizontal box per segmenter (box: quartiles, whiskers: 5th–95th percentile, dot: mean), most even
    (lowest coefficient of variation) on top, CV and bytes/unit written beside each box."""
    import matplotlib.pyplot as plt

    rows = {r["segmenter"]: r for r in results["segmenters"]}
    bits = {n: np.asarray((results.get("_bits_per_unit") or {}).get(n, []), dtype=float) for n in names}
    bits = {n: b[np.isfinite(b)] for n, b in bits.items()}
    shown = [n for n in names if len(bits[n])]
    if not shown:
        return False
    cvs = {n: _cv(rows[n], bits[n]) for n in shown}
    shown.sort(key=lambda n: (cvs[n] is None, cvs[n] or 0.0))
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.42 * len(shown)))
    for i, name in enumerate(shown):
        y = len(shown) - 1 - i  # most even on top
        p5, p25, p50, p75, p95 = np.percentile(bits[name], [5, 25, 50, 75, 95])
        colour = styles[name]["color"]
        ax.hlines(y, p5, p95, color=colour, linewidth=1.2)
        ax.vlines([p5, p95], y - 0.12, y + 0.12, color=colour, linewidth=1.2)
        ax.barh(y, p75 - p25, left=p25, height=0.55, color=colour, alpha=0.35, edgecolor=colour)
        ax.vlines(p50, y - 0.275, y + 0.275, color=colour, linewidth=2)
        ax.plot(bits[name].mean(), y, "o", color="black", markersize=3.5)
        cv = "–" if cvs[name] is None else f"{cvs[name]:.3f}"
        bpu = _finite(rows[name].get("bytes_per_unit"))
        note = f"CV {cv}" + ("" if bpu is None else f" · {bpu:.2f} B/unit")
        ax.annotate(note, (1.01, y), xycoords=("axes fraction", "data"), va="center", fontsize=8)
    ax.set_yticks(range(len(shown)), shown[::-1], fontsize=8.5)
    ax.set_ylim(-0.6, len(shown) - 0.4)
    ax.set_xlim(left=-0.01 * ax.get_xlim()[1])  # a whisker at 0 bits stays visible
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("bits per unit, graded by the byte model (box: quartiles, whiskers: 5–95%, dot: mean)", fontsize=8.5)
    ax.set_title(
        "Information evenness, most even first: lower CV = information spread more evenly over units\n"
        "(CV changes with the rate: compare rows at similar bytes/unit)",
        fontsize=9.5,
    )
    fig.tight_layout()
    _savefig(fig, path)
    return True


def plot_agreement(results: dict, names: list[str], path: Path) -> bool:
    """Boundary F1 between every pair of segmenters, as an annotated matrix."""
    import matplotlib.pyplot as plt

    if not names:
        return False
    f1 = results.get("agreement_f1") or {}
    matrix = np.array([[_finite(f1.get(a, {}).get(b)) or np.nan for b in names] for a in names], dtype=float)
    fig, ax = plt.subplots(figsize=(max(4.5, 1 + 0.7 * len(names)), max(3.5, 0.8 + 0.6 * len(names))))
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap=plt.get_cmap("viridis").with_extremes(bad="0.88"))
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            if math.isfinite(matrix[i, j]):
                colour = "black" if matrix[i, j] > 0.6 else "white"  # viridis turns yellow at the top
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7, color=colour)
    fig.colorbar(im, ax=ax, label="boundary F1")
    ax.set_title("Boundary agreement (F1, 1 = same boundaries)", fontsize=9)
    fig.tight_layout()
    _savefig(fig, path)
    return True


def plot_by_language(results: dict, names: list[str], path: Path) -> bool:
    """A heatmap, languages (rows) × segmenters (columns), of bytes/unit on a log colour scale with each cell's
    value written in it. Rows are grouped by script (separator lines, script and count on the right) and sorted
    within a script by the reference segmenter (its column is marked). Rows, not columns, carry the languages:
    the figure grows down, and a tall image keeps its labels legible in report.md where a wide one is shrunk."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    per_lang = results.get("by_language") or {}
    by = reference_segmenter(results, names)
    if not per_lang or by is None:
        return False
    groups = language_order(per_lang, by)
    labels = [lab for _, labs in groups for lab in labs]
    matrix = np.array([[_finite(per_lang[lab].get(n)) or np.nan for n in names] for lab in labels], dtype=float)
    values = matrix[np.isfinite(matrix) & (matrix > 0)]
    if not len(values):
        return False
    vmin, vmax = max(float(values.min()), 0.5), max(float(values.max()), 2.0)
    norm = LogNorm(vmin=vmin, vmax=max(vmax, vmin * 1.01))
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.88")
    row_h, col_w = 0.17, 0.62  # inches per cell
    top, bottom, left, right = 1.5, 1.0, 1.3, 1.2  # margins, inches: titles and column names, colourbar, labels
    width = left + col_w * len(names) + right
    height = top + row_h * len(labels) + bottom
    fig = plt.figure(figsize=(max(width, 6.5), height))
    fw, fh = fig.get_size_inches()
    ax = fig.add_axes((left / fw, bottom / fh, col_w * len(names) / fw, row_h * len(labels) / fh))
    masked = np.ma.masked_invalid(np.where(matrix > 0, matrix, np.nan))
    ax.imshow(masked, aspect="auto", cmap=cmap, norm=norm, interpolation="nearest")
    for i in range(len(labels)):
        for j in range(len(names)):
            v = matrix[i, j]
            text = "–" if not math.isfinite(v) else f"{v:.0f}" if v >= 9.95 else f"{v:.1f}"
            dark = math.isfinite(v) and v > 0 and sum(cmap(norm(v))[:3]) < 1.6  # light text on dark cells
            ax.text(j, i, text, ha="center", va="center", fontsize=6.5, color="white" if dark else "black")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.xaxis.tick_top()
    columns = [f"{n}\n(sorted by)" if n == by else n for n in names]
    ax.set_xticks(range(len(names)), columns, rotation=40, ha="left", va="bottom", rotation_mode="anchor", fontsize=8)
    for tick in ax.get_xticklabels():
        if tick.get_text().startswith(f"{by}\n"):
            tick.set_fontweight("bold")
    ax.tick_params(length=0)
    gap = 0.07 / (col_w * len(names))  # 0.07 in right of the heatmap, in axes fraction
    start = 0
    for script, labs in groups:
        end = start + len(labs)
        if start:
            ax.axhline(start - 0.5, color="white", linewidth=2.5)
        ax.annotate(
            f"{script} ({len(labs)})" if len(labs) > 1 else script,
            (1 + 2 * gap, (start + end - 1) / 2),
            xycoords=("axes fraction", "data"),
            va="center",
            fontsize=7.5,
            fontweight="bold" if len(labs) > 1 else "normal",
        )
        if len(labs) > 1:
            ax.plot(
                [1 + gap, 1 + gap],
                [start - 0.35, end - 0.65],
                transform=ax.get_yaxis_transform(),
                color="black",
                linewidth=1,
                clip_on=False,
            )
        start = end
    cax = fig.add_axes((left / fw, 0.5 / fh, max(col_w * len(names), 4.0) / fw, 0.14 / fh))  # room for its label
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), cax=cax, orientation="horizontal")
    _log_ticks(bar.ax.xaxis, norm.vmin, norm.vmax)
    bar.ax.tick_params(labelsize=7)
    bar.set_label("bytes per unit (log colour scale; higher = longer units, fewer of them)", fontsize=8)
    fig.text(
        0.5 / fw,
        1 - 0.25 / fh,
        "Bytes per unit by language, grouped by script (most languages first)",
        fontsize=10,
        va="top",
    )
    fig.text(
        0.5 / fw,
        1 - 0.5 / fh,
        f"within a script sorted by {by}; higher = fewer units for the same text",
        fontsize=8,
        va="top",
        color="0.3",
    )
    _savefig(fig, path)
    return True


def plot_evenness_curve(results: dict, names: list[str], styles: dict, path: Path) -> bool:
    """CV of bits/unit against bytes/unit, one line per segmenter over its swept rates (a single point: a marker),
    and a dashed vertical line at the reference rate: at equal bytes/unit, the lower curve is more even."""
    import matplotlib.pyplot as plt

    curves = results.get("curves") or {}
    series: dict[str, list[tuple[float, float]]] = {}
    for name in [*(n for n in names if n in curves), *(n for n in curves if n not in names)]:
        points = [(_finite(p.get("bytes_per_unit")), _finite(p.get("bits_per_unit_cv"))) for p in curves[name] or []]
        if finite := sorted((x, y) for x, y in points if x is not None and y is not None and x > 0):
            series[name] = finite
    if not series:
        return False
    styles = {**segmenter_styles(list(series)), **styles}
    fig, ax = plt.subplots(figsize=(9, 5.2))
    for name, points in series.items():
        xs, ys = [x for x, _ in points], [y for _, y in points]
        style = styles[name]
        if len(points) == 1:
            ax.plot(xs, ys, "D", color=style["color"], markersize=7, label=name)
            continue
        # No point labels: the swept parameters ("θ=2.6300 nats") pile up where the curves meet near the
        # reference rate; results.json has them.
        ax.plot(xs, ys, marker="o", markersize=4, label=name, **style)
    reference = results.get("reference") or {}
    ref_rate = _finite(reference.get("bytes_per_unit"))
    xs = [x for points in series.values() for x, _ in points] + ([ref_rate] if ref_rate and ref_rate > 0 else [])
    if max(xs) / min(xs) > 3:  # a sweep over rates: equal ratios get equal room
        ax.set_xscale("log")
        ax.set_xlim(min(xs) / 1.08, max(xs) * 1.08)
        _log_ticks(ax.xaxis, min(xs) / 1.08, max(xs) * 1.08)
    if ref_rate is not None:
        ax.axvline(ref_rate, color="0.25", linestyle="--", linewidth=1)
        ax.annotate(  # above the axes: inside, it would sit on some segmenter's marker
            f"reference: {reference.get('segmenter') or '?'}, {ref_rate:.2f} B/unit",
            (ref_rate, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
            color="0.25",
        )
    ax.set_xlabel("bytes per unit (higher = longer units, more compression)", fontsize=9)
    ax.set_ylabel("CV of bits per unit (lower = more even)", fontsize=9)
    ax.set_title("Evenness against compression: at the same bytes/unit, lower is more even", fontsize=10, pad=16)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    _savefig(fig, path)
    return True


def _log_ticks(axis: Any, lo: float, hi: float) -> None:
    """Plain labels (1.5, 2, 3, not 2×10⁰) at round values between `lo` and `hi` on a log-scaled axis."""
    from matplotlib.ticker import FixedLocator, NullLocator

    nice = [m * 10**e for e in range(-1, 3) for m in (1, 1.5, 2, 3, 4, 6, 8)]
    ticks = [t for t in nice if lo <= t <= hi]
    if len(ticks) < 2:  # a narrow range: label its ends too
        ticks = sorted({*ticks, lo, hi})
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(lambda x, _pos: f"{x:.3g}")
