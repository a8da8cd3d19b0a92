"""Should the budget rule cut at entropy spikes too? The budget rule against the global rule and hybrids of the two,
at matched bytes/patch, on held-out text: evenness of information per patch and agreement with word boundaries.

    OMP_NUM_THREADS=1 python scripts/budget_hybrid.py [--corpora /tmp/corpora] [--grader /tmp/grader/model]
    OMP_NUM_THREADS=1 python scripts/budget_hybrid.py --targets 4.5 --theta-rates 4.5 9 18 36 --ratios 0 0.25 0.5

The hybrid (`blt.patching.budget.budget_scan`'s `spike`/`spike_min`, unshipped): byte t starts a patch when the
open patch's summed entropy would pass B_max (`acc + H_t > B_max`, the budget rule), or when H_t > θ (a spike, the
global rule) and the open patch already holds ≥ B_min = r·B_max nats. θ is the global rule's threshold at the same
rate (`--theta-rates`: at other rates, for fewer, higher spikes); B_max is found by bisection so the rate is within
one patch of the target (the count is not monotone in B_max, since B_min moves with it, so the search keeps the
closest count it saw). The budget and global rules are calibrated exactly (`calibrate_threshold`). Every rule is
calibrated per corpus, on the text it is measured on.

Metrics per corpus (ratios of sums over its documents, `blt.metrics`): the CV of bits per patch (`unit_information`
then `evenness_stats`: each patch's summed surprisal in bits), graded by the model that placed the boundaries and
by a second byte model trained with another seed (which did not place them); boundary F1 (`boundary_counts`)
against the space rule's patch starts (SpaceByte's boundaries: after each run of spacelike bytes) and against
whitespace-word boundaries (`word_boundaries`, as in docs/experiments.md). Corpora: the first `--max-bytes` of each
folder's documents (sorted by name, the last one cut at a newline), each document scored alone from its BOS.
Byte-model scores are cached in $BLT_CACHE, so a second run scores nothing. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blt.bytelm.checkpoint import load_model
from blt.bytelm.entropy import score_cached
from blt.metrics import BoundaryCounts, boundary_counts, evenness_stats, unit_information, word_boundaries
from blt.patching.budget import budget_scan
from blt.patching.calibration import calibrate_threshold
from blt.patching.rules import patch_starts

CORPORA = ("val/kjv", "val/shakespeare", "val/python_docs", "val/stdlib", "unseen/licenses")


@dataclass
class Corpus:
    """Documents of one corpus with both models' per-byte scores, and the flat layout the kernel reads."""

    name: str
    docs: list[bytes]
    entropies: list[np.ndarray]  # [D] of [n_d] float32 nats, the placing model's
    surprisal: list[np.ndarray]  # [D] of [n_d] nats, the placing model's
    grader_surprisal: list[np.ndarray]  # [D] of [n_d] nats, the second model's
    space_starts: list[np.ndarray]  # [D] the space rule's patch starts
    words: list[np.ndarray]  # [D] whitespace-word boundaries

    @property
    def n_bytes(self) -> int:
        return sum(map(len, self.docs))

    def flat(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lengths = np.array([len(d) for d in self.docs], dtype=np.int64)  # [D]
        return np.concatenate(self.entropies), np.cumsum(lengths) - lengths, lengths


def read_corpus(folder: Path, max_bytes: int) -> list[bytes]:
    """The first `max_bytes` of the folder's documents, in name order; the last one cut after a newline."""
    docs: list[bytes] = []
    left = max_bytes
    for path in sorted(folder.glob("*.txt")):
        data = path.read_bytes()
        if len(data) > left:
            cut = data.rfind(b"\n", 0, left)
            data = data[: cut + 1 if cut > 0 else left]
        if data:
            docs.append(data)
        left -= len(data)
        if left <= 0:
            break
    return docs


def load_corpus(name: str, root: Path, max_bytes: int, placer: Any, grader: Any) -> Corpus:
    docs = read_corpus(root / name, max_bytes)
    placed, graded = score_cached(placer, docs), score_cached(grader, docs)
    return Corpus(
        name=name.split("/")[-1],
        docs=docs,
        entropies=[s.entropy_nats for s in placed],
        surprisal=[s.surprisal_nats for s in placed],
        grader_surprisal=[s.surprisal_nats for s in graded],
        space_starts=list(patch_starts(data=docs, rule="space")),
        words=[word_boundaries(d) for d in docs],
    )


def hybrid_starts(c: Corpus, b_max: float, theta: float, ratio: float) -> list[np.ndarray]:
    """Per document, the hybrid's patch starts (budget B_max, spikes above θ once the patch holds ≥ ratio·B_max)."""
    e, row_starts, row_lengths = c.flat()
    mask = np.zeros(e.size, dtype=bool)
    budget_scan(e, row_starts, row_lengths, b_max, out=mask, spike=theta, spike_min=ratio * b_max)
    return [np.flatnonzero(mask[s : s + n]) for s, n in zip(row_starts, row_lengths, strict=True)]


def calibrate_hybrid(c: Corpus, target: float, theta: float, ratio: float, steps: int = 200) -> float:
    """B_max whose patch count is closest to n_bytes / target: bisection between 0 (every byte with H > 0 starts)
    and the largest document sum / ratio (no cut at all: B_min is out of reach; ratio 0: only the spikes cut),
    stopping within one patch."""
    e, row_starts, row_lengths = c.flat()
    want = c.n_bytes / target

    def count(b: float) -> int:
        return budget_scan(e, row_starts, row_lengths, b, spike=theta, spike_min=ratio * b)[2]

    lo, hi = 0.0, max(float(x.sum(dtype=np.float64)) for x in c.entropies) / (ratio or 1.0) + 1.0
    best = min((abs(count(b) - want), b) for b in (lo, hi))
    for _ in range(steps):
        mid = (lo + hi) / 2
        k = count(mid)
        best = min(best, (abs(k - want), mid))
        if best[0] <= 1 or mid in (lo, hi):
            break
        lo, hi = (mid, hi) if k > want else (lo, mid)
    return best[1]


def measure(c: Corpus, starts: list[np.ndarray]) -> dict[str, float]:
    """bytes/patch, CV of bits per patch (placing model, second model), boundary F1 vs space-rule starts and words."""
    placer = np.concatenate([unit_information(s, st) for s, st in zip(c.surprisal, starts, strict=True)])
    grader = np.concatenate([unit_information(s, st) for s, st in zip(c.grader_surprisal, starts, strict=True)])
    space, words = BoundaryCounts(), BoundaryCounts()
    for doc, st, gold_space, gold_words in zip(c.docs, starts, c.space_starts, c.words, strict=True):
        space += boundary_counts(st, gold_space, len(doc))
        words += boundary_counts(st, gold_words, len(doc))
    return {
        "bytes_per_patch": c.n_bytes / placer.size,
        "cv_placer": evenness_stats(placer)["cv"],
        "cv_grader": evenness_stats(grader)["cv"],
        "f1_space": space.prf()[2],
        "f1_words": words.prf()[2],
    }


def variants(c: Corpus, target: float, ratios: list[float], theta_rates: list[float] | None) -> list[dict[str, Any]]:
    """The global rule, the budget rule and one hybrid per ratio (and per θ: the global rule's threshold at each
    of `theta_rates` bytes/patch, or at `target` when None), each at `target` bytes/patch on `c`."""
    theta = calibrate_threshold(c.entropies, target, rule="global")
    budget = calibrate_threshold(c.entropies, target, rule="budget")
    by_budget = patch_starts(c.entropies, rule="budget", budget=budget)
    rows = [
        {"rule": "global", "params": f"θ={theta:.3f}", **measure(c, patch_starts(c.entropies, threshold=theta))},
        {"rule": "budget", "params": f"B={budget:.3f}", **measure(c, by_budget)},
    ]
    for rate in theta_rates or [target]:
        spike = theta if rate == target else calibrate_threshold(c.entropies, rate, rule="global")
        for r in ratios:
            b_max = calibrate_hybrid(c, target, spike, r)
            name = f"hybrid r={r:g}" if theta_rates is None else f"hybrid θ@{rate:g} r={r:g}"
            params = f"θ={spike:.3f}, B_max={b_max:.3f}, B_min={r * b_max:.3f}"
            rows.append({"rule": name, "params": params, **measure(c, hybrid_starts(c, b_max, spike, r))})
    return [{"corpus": c.name, "target": target, **row} for row in rows]


METRICS = ("cv_placer", "cv_grader", "f1_space", "f1_words")
BETTER = {"cv_placer": -1, "cv_grader": -1, "f1_space": 1, "f1_words": 1}  # the sign of an improvement


def verdict(rows: list[dict[str, Any]], rule: str, against: str, target: float) -> dict[str, Any]:
    """`rule` vs `against` at one rate over the corpora: mean difference and corpora improved, per metric."""
    at = {(r["rule"], r["corpus"]): r for r in rows if r["target"] == target}
    pairs = [(a, at[(against, corpus)]) for (name, corpus), a in at.items() if name == rule]
    out: dict[str, Any] = {}
    for m in METRICS:
        diff = np.array([a[m] - b[m] for a, b in pairs])
        out[m] = (float(diff.mean()), int((BETTER[m] * diff > 0).sum()), len(pairs))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", type=Path, default=Path("/tmp/corpora"))
    ap.add_argument("--model", default="default", help="the placing byte model")
    ap.add_argument("--grader", default="/tmp/grader/model", help="the second byte model, for grading only")
    ap.add_argument("--max-bytes", type=int, default=200_000, help="bytes per corpus")
    ap.add_argument("--targets", type=float, nargs="+", default=[4.5, 3.0, 6.0], help="bytes/patch")
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5, 0.75], help="B_min / B_max")
    ap.add_argument(
        "--theta-rates", type=float, nargs="+", default=None,
        help="spike threshold θ: the global rule's at each of these bytes/patch (default: at the target)",
    )  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    placer, grader = load_model(args.model), load_model(args.grader)
    corpora = [load_corpus(name, args.corpora, args.max_bytes, placer, grader) for name in CORPORA]
    t_scored = time.perf_counter()
    rows = [
        row for target in args.targets for c in corpora for row in variants(c, target, args.ratios, args.theta_rates)
    ]
    sizes = ", ".join(f"{c.name} {c.n_bytes / 1e3:.0f} kB ({len(c.docs)} docs)" for c in corpora)
    print(f"placer {args.model}, grader {args.grader}; {sizes}")
    print(f"scored in {t_scored - t0:.0f} s, patched and measured in {time.perf_counter() - t_scored:.0f} s\n")

    names = [c.name for c in corpora]
    rules = list(dict.fromkeys(r["rule"] for r in rows))
    print("Means over the corpora (each corpus at the target rate; achieved bytes/patch: the range over corpora).\n")
    print("| bytes/patch | rule | achieved | CV bits/patch, placer | CV, grader | F1 vs space rule | F1 vs words |")
    print("|---|---|---|---:|---:|---:|---:|")
    for target in args.targets:
        for rule in rules:
            sel = [r for r in rows if r["target"] == target and r["rule"] == rule]
            got = [r["bytes_per_patch"] for r in sel]
            cells = " | ".join(f"{np.mean([r[m] for r in sel]):.4f}" for m in METRICS)
            print(f"| {target:g} | {rule} | {min(got):.3f}–{max(got):.3f} | {cells} |")
    print("\nEach hybrid against the budget rule and the global rule: mean difference over the corpora "
          "(corpora where the hybrid is better). CV: lower is better; F1: higher is better.\n")  # fmt: skip
    print("| bytes/patch | hybrid | vs | Δ CV placer | Δ CV grader | Δ F1 space | Δ F1 words |")
    print("|---|---|---|---:|---:|---:|---:|")
    for target in args.targets:
        for rule in (r for r in rules if r.startswith("hybrid")):
            for against in ("budget", "global"):
                v = verdict(rows, rule, against, target)
                cells = " | ".join(f"{v[m][0]:+.4f} ({v[m][1]}/{v[m][2]})" for m in METRICS)
                print(f"| {target:g} | {rule} | {against} | {cells} |")
    print("\nPer corpus.\n")
    print(
        "| corpus | bytes/patch | rule | parameters (nats) | achieved | CV placer | CV grader | F1 space | F1 words |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for target in args.targets:
        for name in names:
            for r in (r for r in rows if r["target"] == target and r["corpus"] == name):
                cells = " | ".join(f"{r[m]:.4f}" for m in METRICS)
                print(f"| {name} | {target:g} | {r['rule']} | {r['params']} | {r['bytes_per_patch']:.3f} | {cells} |")
    if any(math.isnan(r[m]) for r in rows for m in METRICS):
        print("\nnan: a metric was undefined (no boundaries) somewhere")


if __name__ == "__main__":
    main()
