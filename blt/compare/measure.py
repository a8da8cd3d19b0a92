"""Measuring segmenters on the held-out text: every unit's bytes and information, per-language and per-script summaries,
boundary agreement, and the check that units tile each document.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from blt.bytelm.entropy import LN2
from blt.compare.config import ENTROPY, CompareConfig
from blt.compare.segmenters import Segmenter
from blt.errors import BltError
from blt.metrics import BoundaryCounts, SegmentationStats, boundary_counts, unit_information


def measure(
    segmenters: list[Segmenter],
    docs: Sequence[bytes],
    labels: Sequence[str | None],
    surprisal: Sequence[np.ndarray] | None,
    cfg: CompareConfig,
    model_info: dict[str, Any],
    match_bpu: float | None,
    n_train_docs: int,
    placer_surprisal: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Every metric for every segmenter over the evaluation documents (streamed one document at a time); bits/unit
    graded by `surprisal` [n] nats per document, and with `placer_surprisal` (a separate grader's run) the entropy
    rows' CV also as graded by the model that placed their boundaries (`bits_per_unit_cv_self`)."""
    names = [s.name for s in segmenters]
    stats = {n: SegmentationStats() for n in names}
    per_label: dict[str, dict[str, SegmentationStats]] = {}
    agreement = {(a, b): BoundaryCounts() for a in names for b in names}
    bits: dict[str, list[np.ndarray]] = {n: [] for n in names}
    self_graded = {n: SegmentationStats() for n in names if n in ENTROPY and placer_surprisal is not None}
    lengths: dict[str, list[np.ndarray]] = {n: [] for n in names}
    seconds = {s.name: s.prepare_seconds for s in segmenters}
    for i, data in enumerate(docs):
        sur = surprisal[i] if surprisal is not None else None
        doc_starts = {}
        for seg in segmenters:
            t = time.perf_counter()
            starts = np.asarray(seg.starts(data), dtype=np.int64)
            seconds[seg.name] += time.perf_counter() - t
            check_lossless(seg.name, data, starts)
            doc_starts[seg.name] = starts
            stats[seg.name].add(data, starts, sur)
            if seg.name in self_graded:
                self_graded[seg.name].add(data, starts, placer_surprisal[i])  # type: ignore[index]
            if cfg.by_language and labels[i] is not None:
                per_label.setdefault(labels[i], {}).setdefault(seg.name, SegmentationStats()).add(data, starts)
            lengths[seg.name].append(np.diff(np.append(starts, len(data))))
            if sur is not None:
                bits[seg.name].append(unit_information(sur, starts))
        for a in names:
            for b in names:
                agreement[a, b] = agreement[a, b] + boundary_counts(doc_starts[a], doc_starts[b][1:], len(data))
    n_bytes = sum(map(len, docs))
    rows = []
    for seg in segmenters:
        row = {
            "segmenter": seg.name,
            "vocab_size": seg.vocab_size,
            **stats[seg.name].summary(vocab_size=seg.vocab_size),
            "encode_mb_per_s": n_bytes / 1e6 / max(seconds[seg.name], 1e-9),
            "train_seconds": seg.train_seconds,
        }
        if seg.name in ENTROPY:  # end to end, as a user pays it: the byte model's scoring of these bytes + patching
            scoring, patching = model_info.get("scoring_seconds"), seconds[seg.name]
            row["patching_mb_per_s"] = row["encode_mb_per_s"]
            row["encode_mb_per_s"] = n_bytes / 1e6 / (scoring + patching) if scoring is not None else None
            row["scoring_share"] = scoring / (scoring + patching) if scoring is not None else None
        if seg.patch_size is not None:
            row["patch_size"] = seg.patch_size
        if seg.rule is not None:
            row["rule"] = seg.rule
        if seg.threshold_nats is not None:
            row["threshold_nats"] = seg.threshold_nats
            row["threshold_bits"] = seg.threshold_nats / LN2
        if seg.budget_nats is not None:  # a budget, not a threshold: the summed entropy a patch may hold
            row["budget_nats"] = seg.budget_nats
            row["budget_bits"] = seg.budget_nats / LN2
        if seg.name in self_graded:
            row["bits_per_unit_cv_self"] = self_graded[seg.name].summary()["bits_per_unit_cv"]
        row["matched"] = seg.matched
        row["match_note"] = seg.match_note
        rows.append(row)
    return {
        "config": asdict(cfg),
        "eval_documents": len(docs),
        "eval_bytes": n_bytes,
        "train_documents": n_train_docs,
        "match_bytes_per_unit": match_bpu,
        "byte_model": model_info,
        "segmenters": rows,
        "agreement_f1": {a: {b: agreement[a, b].prf()[2] for b in names} for a in names},
        "by_language": {lab: {n: s.summary()["bytes_per_unit"] for n, s in d.items()} for lab, d in per_label.items()},
        "_bits_per_unit": {n: np.concatenate(v) if v else np.zeros(0) for n, v in bits.items()},
        "_lengths": {n: np.concatenate(v) if v else np.zeros(0, np.int64) for n, v in lengths.items()},
    }


def check_lossless(name: str, data: bytes, starts: np.ndarray) -> None:
    """Units must tile the document exactly: start at 0, strictly increase, stay inside it."""
    n = len(data)
    if n == 0:
        ok = len(starts) == 0
    else:
        ok = len(starts) > 0 and starts[0] == 0 and starts[-1] < n and bool(np.all(np.diff(starts) > 0))
    if not ok:
        raise BltError(f"segmenter {name} is not lossless on a {n}-byte document (starts {starts[:8].tolist()}...)")
