"""The downstream experiment's outputs: the summary over seeds (mean ± sample std of held-out bits/byte per corpus and
segmentation), results.csv / summary.csv, report.md with the table per corpus, and the plot of bits/byte against
forward FLOPs per byte (one panel per corpus, a point per segmentation, error bars over seeds)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from blt.files import write_atomic

Row = dict[str, Any]
# Per-run columns that are the same for every seed of a segmentation (taken from its first run).
SHARED = ("kind", "boundaries", "bytes_per_unit", "d_latent", "params")
SHARED_FLOPS = ("flops_per_byte", "train_flops_per_byte", "latent_flops_share")


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value). Golden: [1, 2, 3] -> (2.0, 1.0)."""
    arr = np.asarray(values, dtype=np.float64)
    if not arr.size:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def summarise(rows: Sequence[Row]) -> list[Row]:
    """One row per (corpus, segmenter), in run order: mean ± std over seeds of bits/byte (and its byte and boundary
    parts), mean training seconds, the seeds, and the columns every seed shares."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r["corpus"], r["segmenter"]), []).append(r)
    out = []
    for (corpus, segmenter), group in groups.items():
        row: Row = {"corpus": corpus, "segmenter": segmenter, **{k: group[0].get(k) for k in (*SHARED, *SHARED_FLOPS)}}
        for key in ("bits_per_byte", "byte_bits_per_byte", "boundary_bits_per_byte"):
            row[key], row[f"{key}_std"] = mean_std([g[key] for g in group])
        row["train_seconds"] = float(np.mean([g["train_seconds"] for g in group]))
        row["train_pflops"] = float(np.mean([g["train_pflops"] for g in group]))
        row["seeds"] = len(group)
        out.append(row)
    return out


def _csv(rows: Sequence[Row]) -> str:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


HEADERS = {
    "segmenter": "segmenter",
    "bits_per_byte": "bits/byte ± std",
    "boundary_bits_per_byte": "boundary bits/byte",
    "bytes_per_unit": "bytes/unit",
    "train_flops_per_byte": "train MFLOP/byte",
    "flops_per_byte": "infer MFLOP/byte",
    "d_latent": "latent width",
    "params": "params",
    "train_seconds": "train s",
}


def _cells(r: Row) -> list[str]:
    return [
        str(r["segmenter"]),
        f"{r['bits_per_byte']:.4f} ± {r['bits_per_byte_std']:.4f}",
        f"{r['boundary_bits_per_byte']:.4f}" if r["boundaries"] == "paid" else "free",
        f"{r['bytes_per_unit']:.2f}",
        f"{r['train_flops_per_byte'] / 1e6:.2f}",
        f"{r['flops_per_byte'] / 1e6:.2f}",
        str(r["d_latent"]),
        f"{r['params'] / 1e6:.2f} M",
        f"{r['train_seconds']:.0f}",
    ]


def by_corpus(summary: Sequence[Row]) -> dict[str, list[Row]]:
    """The summary rows of each corpus, best (lowest bits/byte) first."""
    out: dict[str, list[Row]] = {}
    for r in summary:
        out.setdefault(r["corpus"], []).append(r)
    return {c: sorted(rs, key=lambda r: r["bits_per_byte"]) for c, rs in out.items()}


def markdown(summary: Sequence[Row], meta: Row) -> str:
    lines = [f"# Downstream: {meta['name']}", ""]
    if meta.get("command"):
        lines += [f"`{meta['command']}`", ""]
    cfg = meta["config"]
    t = cfg["train"]
    lines += [
        f"Held-out bits per byte of a patch-level LM trained on each segmentation ({t['max_steps']} steps of "
        f"{t['batch_size']} × {cfg['model']['context']} bytes; mean ± sample std over seeds "
        f"{', '.join(map(str, cfg['seeds']))}). FLOPs/byte: forward, per byte of text"
        + (
            f", training FLOPs/byte matched by sizing the latent width (reference: {cfg['reference_bytes_per_unit']:g}"
            " bytes/unit)."
            if cfg["match_flops"]
            else " (not matched: one model for all)."
        )
        + " Training FLOPs/byte: 3 × forward on the training split's units; inference: forward on the scored text's."
        " Boundary bits/byte: what announcing where units end costs, included in bits/byte (segmentations whose"
        " boundaries depend on bytes not yet seen); 'free': boundaries follow from the bytes before them.",
        "",
    ]
    for corpus, rows in by_corpus(summary).items():
        facts = meta["corpora"].get(corpus, {})
        lines += [
            f"## {corpus}",
            "",
            f"{facts.get('train_bytes', 0):,} training bytes, {facts.get('eval_bytes', 0):,} held-out bytes in "
            f"{facts.get('eval_documents', 0)} documents.",
            "",
            "| " + " | ".join(HEADERS.values()) + " |",
            "|" + "---|" * len(HEADERS),
        ]
        lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
        lines.append("")
    lines.append("![bits/byte against FLOPs/byte](bits_vs_flops.png)")
    return "\n".join(lines) + "\n"


def plot(summary: Sequence[Row], path: Path) -> None:
    """Bits/byte against forward FLOPs per byte, one panel per corpus, error bars: std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = by_corpus(summary)
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.2), squeeze=False)
    for ax, (corpus, rows) in zip(axes[0], groups.items(), strict=True):
        for r in rows:
            ax.errorbar(
                r["flops_per_byte"] / 1e6,
                r["bits_per_byte"],
                yerr=r["bits_per_byte_std"],
                fmt="o",
                capsize=3,
                label=f"{r['segmenter']} ({r['bytes_per_unit']:.1f} B/unit)",
            )
        ax.set_title(corpus)
        ax.set_xlabel("forward FLOPs per byte (millions)")
        ax.set_ylabel("held-out bits per byte")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    write_atomic(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)


def write_outputs(out: Path, rows: Sequence[Row], summary: Sequence[Row], meta: Row) -> None:
    write_atomic(out / "results.csv", lambda p: p.write_text(_csv(rows)))
    write_atomic(out / "summary.csv", lambda p: p.write_text(_csv(summary)))
    write_atomic(out / "report.md", lambda p: p.write_text(markdown(summary, meta)))
    plot(summary, out / "bits_vs_flops.png")


def print_downstream(summary: Sequence[Row], console: Console) -> None:
    """One table per corpus, best first, narrow enough for 80 columns (report.md has every column); `*` marks
    rate-matched rows."""
    marked = False
    for corpus, rows in by_corpus(summary).items():
        table = Table(title=f"{corpus}: held-out bits/byte", title_justify="left")
        for i, h in enumerate(("segmenter", "bits/byte", "±", "boundary", "B/unit", "train MFLOP/B")):
            table.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
        for r in rows:
            name = str(r["segmenter"]).replace(" (rate-matched)", "*")
            marked |= name.endswith("*")
            table.add_row(
                name,
                f"{r['bits_per_byte']:.4f}",
                f"{r['bits_per_byte_std']:.4f}",
                f"{r['boundary_bits_per_byte']:.3f}" if r["boundaries"] == "paid" else "free",
                f"{r['bytes_per_unit']:.2f}",
                f"{r['train_flops_per_byte'] / 1e6:.2f}",
            )
        console.print(table)
    if marked:
        console.print("* rate-matched: cut at the rate segmenter's bytes/unit")
