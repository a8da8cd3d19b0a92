"""Matplotlib figures shared by the jobs: the entropy plot with patch boundaries (the BLT paper's Figure 4) and the one
way every figure is saved (atomically, headless).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from blt.bytelm.entropy import LN2
from blt.errors import BltError
from blt.files import write_atomic
from blt.report.text import char_spans, summary_line
from blt.segment.patcher import Patches


def plot_patches(patches: Patches, path: str | Path, max_bytes: int = 400) -> Path:
    """Per-byte entropy (bits) with the threshold and patch boundaries, characters on the x axis (the BLT paper's
    Figure 4, for the user's text). Long inputs show their first `max_bytes` bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if patches.entropies_nats is None:
        raise BltError("plots need an entropy rule (global, monotonic, combined or budget)")
    n = min(len(patches.data), max_bytes)
    bits = patches.entropies_nats[:n] / LN2
    fig, ax = plt.subplots(figsize=(max(8.0, n * 0.18), 3.6))
    ax.plot(np.arange(n), bits, marker="o", markersize=3, linewidth=1, color="#1d3557")
    if patches.rule == "budget" and patches.threshold_nats is not None:  # what the rule compares: each patch's sum
        bits_all = patches.entropies_nats / LN2
        total = np.cumsum(bits_all)
        starts = np.asarray(patches.starts)
        held = total - np.repeat(total[starts] - bits_all[starts], np.diff(np.append(starts, len(bits_all))))
        ax.step(np.arange(n), held[:n], where="mid", color="#457b9d", linewidth=1, label="patch's summed entropy")
        ax.axhline(patches.threshold_nats / LN2, color="#e63946", linestyle="--", linewidth=1, label="budget")
        ax.legend(loc="upper right")
    elif patches.threshold_nats is not None:
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


def _savefig(fig: object, path: Path) -> None:
    import matplotlib.pyplot as plt

    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]


def plot_entropy_varentropy(
    panels: list[tuple[str, np.ndarray, np.ndarray]],
    path: str | Path,
    *,
    entropy_cut_bits: float,
    varentropy_cut_bits2: float,
    regions: dict[str, tuple[bool, bool]],
) -> Path:
    """The entropy–varentropy map: one panel per (name, entropy [T] bits, varentropy [T] bits²), a dot per token
    (NaN dropped), dashed lines at the two cuts, and each region of `regions` ({name: (high H?, high V?)}) labelled
    in its corner with its share of the panel's tokens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False, sharey=True)
    tops = [(float(np.nanmax(h, initial=0)), float(np.nanmax(v, initial=0))) for _, h, v in panels]
    h_top = max(max((t[0] for t in tops), default=0) * 1.05, entropy_cut_bits * 2)
    v_top = max(max((t[1] for t in tops), default=0) * 1.05, varentropy_cut_bits2 * 2)
    for ax, (name, h, v) in zip(axes[0], panels, strict=True):
        ok = np.isfinite(h) & np.isfinite(v)
        ax.scatter(h[ok], v[ok], s=6, alpha=0.5, color="#1d3557", linewidths=0)
        ax.axvline(entropy_cut_bits, color="#e63946", ls="--", lw=1)
        ax.axhline(varentropy_cut_bits2, color="#e63946", ls="--", lw=1)
        high_h, high_v = h[ok] > entropy_cut_bits, v[ok] > varentropy_cut_bits2
        for region, (hh, hv) in regions.items():
            share = float(((high_h == hh) & (high_v == hv)).mean()) if ok.any() else 0.0
            x, y = (h_top * 0.98, "right") if hh else (h_top * 0.02, "left")
            ax.text(x, v_top * (0.95 if hv else 0.02), f"{region} {share:.0%}", ha=y, va="top" if hv else "bottom")
        ax.set(xlim=(0, h_top), ylim=(0, v_top), xlabel="entropy (bits)", title=f"{name}\n{int(ok.sum())} tokens")
    axes[0][0].set_ylabel("varentropy (bits²)")
    fig.suptitle(
        f"entropy–varentropy map (cuts: {entropy_cut_bits:g} bits, {varentropy_cut_bits2:g} bits²)", fontsize=10
    )
    fig.tight_layout()
    _savefig(fig, Path(path))
    return Path(path)
