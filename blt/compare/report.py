"""The comparison's report: the terminal table (columns chosen to fit the width), notes under it, and report.md with its
plots and results.json.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from rich.console import Console

from blt.files import write_atomic
from blt.report.markdown import markdown_table

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
    from blt.compare.baselines import fit_line

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
    if cuts := cut_values(rows):
        notes.append("cut at: " + "; ".join(cuts))
    grading = results.get("grading")
    if grading and any(r.get("bits_per_unit_cv") is not None for r in rows):
        if grading["independent"]:
            notes.append(
                f"bits/unit graded by {grading['model']} ({grading['bits_per_byte']:.3f} bits/byte here), not the "
                "model that placed the entropy boundaries; CV placer-graded is what that model says of its own patches"
            )
        else:
            online = f"online (Adam lr {grading['online_lr']:g}) " if grading.get("online_lr") is not None else ""
            notes.append(
                f"bits/unit graded by the byte model's {online}surprisal on held-out text ({grading['model']}); it "
                "also placed the entropy boundaries, so their CV is graded by their own placer (circular): --grader "
                "MODEL grades with another"
            )
    return notes + fit_line(results.get("byte_model") or {})


def cut_values(rows: list[dict]) -> list[str]:
    """What each entropy row (and saved patcher) cuts at: a threshold θ for global and monotonic patches (monotonic:
    on the rise from the previous byte), a budget B for the budget rule (the summed entropy a patch may hold)."""
    out = []
    for r in rows:
        saved = " (saved)" if r["segmenter"].startswith("patcher:") else ""
        rule = f"{r['rule']} rule{saved}, " if saved else ""
        if r.get("budget_nats") is not None:
            out.append(
                f"{r['segmenter']} {rule}B = {r['budget_nats']:.4f} nats ({r['budget_bits']:.4f} bits) per patch"
            )
        elif r.get("threshold_nats") is not None:
            what = "θ rise" if r.get("rule") == "monotonic" else "θ"
            nats, bits = r["threshold_nats"], r["threshold_bits"]
            out.append(f"{r['segmenter']} {rule}{what} = {nats:.4f} nats ({bits:.4f} bits)")
    return out


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
    said = calibration_lines(results["byte_model"]) if results.get("byte_model") else []  # --adapt: before → after
    for line in [*said, *compare_notes(results)]:  # wrapped at words: a terminal would cut them mid-word
        console.print(
            textwrap.fill(line, width=max(console.width, 40), subsequent_indent="  "), highlight=False, markup=False
        )


def write_compare_report(results: dict, out: str | Path, command: str, versions: dict[str, str]) -> Path:
    """`report.md` (tables, plots, the exact command and versions), `results.json` and `results.csv` in `out`."""
    import csv
    import io
    import json

    from blt.compare.plots import compare_plots
    from blt.files import finite

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
            "and budgets are calibrated to it and fixed patches cut at it (compression-matched); saved patchers "
            "(patcher:DIR) keep their saved values."
        )
    if model:
        before = model.get("bits_per_byte_before_adapt")
        adapted = f" (before adaptation: {before:.3f})" if before is not None else ""
        speed = model.get("scoring_mb_per_s")
        device = model.get("scoring_device", "?")
        if model.get("online_lr") is not None:
            lines.append(online_paragraph(model, adapted))
        else:
            if speed is not None:
                scored = f"scored at {speed:.3f} MB/s on {device}; the entropy rows' encode MB/s includes this scoring"
            else:
                scored = "scores reused from the cache, so the entropy rows have no end-to-end speed (use --no-cache)"
            lines.append(
                f"Byte model {model['model']} ({model['params']:,} params): {model['bits_per_byte']:.3f} bits/byte on "
                f"the held-out text{adapted}, {scored}."
            )
        lines += calibration_lines(model)
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


def calibration_lines(model: dict) -> list[str]:
    """What --adapt and --fit-temperature did to the byte model, in a sentence each."""
    lines = []
    if (rec := model.get("adapt")) is not None:
        stop = "stopped early: no gain in" if rec["stopped_early"] else "ran its budget;"
        lines.append(
            f"Adapted on the training split: {rec['steps_run']} steps in {rec['seconds']:.0f} s ({stop} "
            f"{rec['validations']} validations); kept the weights of step {rec['best_step']}, the best on a held-out "
            f"slice of it ({rec['heldout_bytes']:,} bytes: {rec['heldout_bits_per_byte_before']:.3f} → "
            f"{rec['heldout_bits_per_byte_after']:.3f} bits/byte)."
        )
    if (fit := model.get("temperature_fit")) is not None:
        b, a = fit["before"], fit["after"]
        lines.append(
            f"Temperature {fit['temperature']:.3f} fitted on the {fit['fitted_on']} ({fit['fit_bytes']:,} bytes; "
            "logits ÷ T): scored statically, the "
            f"held-out text costs {b['bits_per_byte']:.3f} → {a['bits_per_byte']:.3f} bits/byte, calibration gap "
            f"{b['calibration_gap']:+.1%} → {a['calibration_gap']:+.1%}; the entropy rows patch the tempered "
            "entropies."
        )
    return lines


def online_paragraph(model: dict, adapted: str) -> str:
    """report.md's sentence on a byte model that scored the held-out text online: the online and static bits/byte
    and what each scoring cost."""
    static = model["static"]
    if static["scoring_seconds"] is not None:
        static_cost = f"static scoring took {static['scoring_seconds']:.1f} s"
    else:
        static_cost = "the static scores came from the cache"
    speed, device = model["scoring_mb_per_s"] * 1e3, model.get("scoring_device", "?")
    return (
        f"Byte model {model['model']} ({model['params']:,} params), scored online: a copy of it read the held-out "
        f"documents in order, scoring each window and then taking one Adam step (lr {model['online_lr']:g}) on it, "
        f"so no byte was predicted after it was seen; {model['bits_per_byte']:.3f} bits/byte on the held-out text "
        f"against {static['bits_per_byte']:.3f} static{adapted}. Online scoring took {model['scoring_seconds']:.1f} s "
        f"({speed:.1f} kB/s on {device}; {static_cost}); the entropy rows are placed on the online entropies and "
        "their encode MB/s includes the online scoring. Online scores are never cached."
    )
