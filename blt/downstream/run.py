"""Running a downstream experiment (`blt downstream`): one patch-level LM per corpus × segmentation × seed.

1. Each corpus is split as `blt compare` splits it (or read with its own evaluation sources). Every segmenter cuts
   the training and the held-out documents: trained tokenisers learn on the training split (cached), entropy
   segmenters cut on the entropy model's causal scores (cached) at a given value or at one calibrated to the `rate`
   segmenter's bytes/unit, fixed patches at that rate too: on the training split for training, and on a share of
   the held-out documents kept for calibration (never scored) for scoring.
2. Each run's latent width is sized (`match_flops`) so every segmentation costs the same forward FLOPs per byte, then
   a `PatchLM` is trained for the same steps on the same number of training bytes and scored on every held-out byte.
   Runs go inline or to `workers` processes; each finished run is written to `OUT/runs/<id>.json` atomically, so an
   interrupted experiment resumes (`resume=True`) with only the missing runs.
3. `results.csv` (a row per run), `summary.csv` (mean ± std over seeds), `report.md`, `bits_vs_flops.png` and
   `downstream.json` (resolved config, inputs, versions) are written last.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from blt.bytelm.data import split_head
from blt.cache import documents_hash
from blt.compare.config import RULE_VALUE, CompareConfig
from blt.compare.run import reachable_bytes_per_patch
from blt.compare.segmenters import build_tokenisers, fixed_size_for, rule_segmenter
from blt.downstream.config import DownstreamConfig, is_causal, label
from blt.downstream.model import PatchLMConfig, flops_per_byte, match_latent_width
from blt.downstream.train import DownstreamTrainConfig, Split, build_split, evaluate, fit
from blt.errors import BltError
from blt.experiments.config import CorpusSpec, SegmenterSpec
from blt.experiments.run import split_spec
from blt.files import write_atomic
from blt.patching.calibration import calibrate_threshold
from blt.patching.rules import patch_starts
from blt.report.markdown import package_versions

RECORD = "downstream.json"
# What cut each segmentation: entropy values on the held-out split (and the training split's), fixed size, vocabulary.
VALUES = (
    *("threshold_nats", "train_threshold_nats", "budget_nats", "train_budget_nats", "patch_size", "train_patch_size"),
    *("vocab_size", "calibration_bytes_per_unit"),
)
OUTPUTS = ("results.csv", "summary.csv", "report.md", "bits_vs_flops.png")


@dataclass
class Segmentation:
    """One segmenter's units over one corpus: both splits, and how they were made."""

    label: str
    kind: str
    causal: bool  # boundaries are a function of the bytes before them: the model gets them free
    train: Split
    eval: Split
    value: dict[str, float | None]  # threshold_nats / budget_nats / patch_size / vocab_size


@dataclass
class Run:
    """One training run: everything a worker needs (picklable)."""

    id: str
    corpus: str
    segmentation: Segmentation
    seed: int
    model: PatchLMConfig
    train: DownstreamTrainConfig


# ------------------------------------------------------------------------------------------------ segmentations
def _docs(spec: CorpusSpec, cfg: DownstreamConfig) -> tuple[list[bytes], list[bytes]]:
    """Non-empty training and held-out documents of one corpus, split as `blt compare` and `blt experiment` split."""
    train, evaluation, _ = split_spec(
        spec, eval_fraction=cfg.eval_fraction, max_eval_bytes=cfg.max_eval_bytes, split_seed=cfg.split_seed
    )
    return [bytes(d) for d in train if d], [d for d in evaluation if d]


def calibration_split(docs: Sequence[bytes], fraction: float) -> tuple[list[bytes], list[bytes]]:
    """(calibration documents, scored documents): held-out documents in SHA-256 order go to calibration until it
    holds `fraction` of their bytes; at least one document is always scored. A single held-out document (one big
    file) is cut instead: its first `fraction` of bytes, at the nearest line break, calibrates and the rest is scored.
    Golden: sizes 10, 10, 10, 10 at 0.25 -> one calibration document (10 ≥ 0.25 · 40), three scored; one document
    b"ab\ncd\nef\ngh\n" at 0.25 -> b"ab\n" calibrates (the break nearest byte 3), b"cd\nef\ngh\n" is scored."""
    if len(docs) == 1 and fraction > 0:
        return split_head(list(docs), fraction)
    order = sorted(range(len(docs)), key=lambda i: hashlib.sha256(docs[i]).digest())
    total, size, picked = sum(map(len, docs)), 0, set()
    for i in order[:-1]:
        if size >= fraction * total:
            break
        picked.add(i)
        size += len(docs[i])
    return [d for i, d in enumerate(docs) if i in picked], [d for i, d in enumerate(docs) if i not in picked]


def _entropies(model: Any, docs: Sequence[bytes]) -> dict[bytes, np.ndarray]:
    from blt.bytelm.corpus import score_corpus

    scores = score_corpus(model, docs, precision="32", accelerator="auto")
    assert scores is not None  # single process
    return {s.data: s.entropy_nats for s in scores}


def _calibrated(
    rows: list[np.ndarray], target: float, rule: str, longest: int | None, name: str, warn: Callable[[str], None]
) -> float:
    """The value of `rule` giving `target` bytes/unit over `rows`; an unreachable target gives the nearest reachable
    rate's value (as `blt compare` does), with a warning."""
    lo, hi = reachable_bytes_per_patch(rows, rule) if longest is None else (1.0, target)
    if not lo <= target <= hi:
        warn(f"{name} cannot reach {target:.3f} bytes/unit on this text ({lo:.3f}–{hi:.3f}); cut at the nearest")
        target = min(max(target, lo), hi)
    return calibrate_threshold(rows, target, rule=rule, max_patch_length=longest)


def _entropy_cut(ents: dict[bytes, np.ndarray], rule: str, cut: dict[str, Any]) -> Callable[[bytes], np.ndarray]:
    def starts(data: bytes) -> np.ndarray:
        return np.asarray(patch_starts(ents[data], rule=rule, **cut))

    return starts


def segmentations(
    cfg: DownstreamConfig,
    train_docs: list[bytes],
    calibration_docs: list[bytes],
    eval_docs: list[bytes],
    warn: Callable[[str], None],
) -> list[Segmentation]:
    """Every segmenter of `cfg` over one corpus's training and scored documents.

    A rate-matched segmenter (entropy or fixed without a value) matches the `rate` segmenter's bytes/unit twice:
    on the training split, for the units it trains on, and on the calibration documents (held out, never scored),
    for the units it is scored on. One value for both would leave the held-out rates apart (a tokeniser compresses
    its own training text better; the entropy model is surer of text like its training data), and a value
    calibrated on the scored text would make every boundary depend on bytes after it. Without calibration
    documents the training split's value is used for both, with a warning."""
    out: dict[str, Segmentation] = {}
    scored: dict[bytes, np.ndarray] = {}
    if not calibration_docs:
        warn("no held-out documents to calibrate rates on: rate-matched segmenters use the training split's values")
    calib = calibration_docs or train_docs

    def entropies() -> dict[bytes, np.ndarray]:
        if not scored:
            from blt.bytelm.checkpoint import load_model

            model = load_model(cfg.entropy_model, device="auto")
            scored.update(_entropies(model, [*train_docs, *calibration_docs, *eval_docs]))
        return scored

    def make(spec: SegmenterSpec, rates: tuple[float, float] | None) -> Segmentation | None:
        p = {k: v[0] for k, v in spec.params.items()}
        name, kind = label(spec), spec.kind
        value: dict[str, float | None] = {}
        cuts: list[Callable[[bytes], np.ndarray]]  # for the training split, and for the calibrated/scored documents
        if kind in ("space", "byte"):
            cuts = [rule_segmenter(kind, 1).starts] * 2
        elif kind == "fixed":
            if p.get("patch_size"):
                sizes = [float(p["patch_size"])] * 2
            else:
                sizes = [fixed_size_for(d, r) for d, r in zip((train_docs, calib), rates or (4.0, 4.0), strict=True)]
                name = "fixed (rate-matched)"
            cuts = [rule_segmenter("fixed", size).starts for size in sizes]
            value = {"patch_size": sizes[1], "train_patch_size": sizes[0]}
        elif kind.startswith("entropy-"):
            rule, ents = kind.removeprefix("entropy-"), entropies()
            longest = p.get("max_patch_length")
            given = p.get("budget") if rule == "budget" else p.get("threshold")
            values = []
            for i, docs in enumerate((train_docs, calib)):
                if given is not None:
                    values.append(float(given))
                    continue
                target = p.get("target_bytes_per_patch") or (rates[i] if rates else None)
                if target is None:
                    raise BltError(f"{name}: no target_bytes_per_patch and no rate segmenter to match")
                values.append(_calibrated([ents[d] for d in docs], float(target), rule, longest, name, warn))
            if given is None and not p.get("target_bytes_per_patch"):
                name = f"{kind} (rate-matched)"
            cuts = [_entropy_cut(ents, rule, {RULE_VALUE[rule]: v, "max_patch_length": longest}) for v in values]
            key = "budget_nats" if rule == "budget" else "threshold_nats"
            value = {key: values[1], f"train_{key}": values[0]}
        else:
            tokenisers, vocab = build_tokenisers(
                CompareConfig(segmenters=[kind], vocab_size=p.get("vocab_size")), train_docs, warn
            )
            if not tokenisers:
                return None
            cuts = [tokenisers[0].starts] * 2
            value = {"vocab_size": tokenisers[0].vocab_size or vocab}
        train, evaluation = build_split(train_docs, cuts[0]), build_split(eval_docs, cuts[1])
        value["calibration_bytes_per_unit"] = build_split(calib, cuts[1]).bytes_per_unit
        return Segmentation(name, kind, is_causal(kind), train, evaluation, value)

    reference = next((s for s in cfg.segmenters if cfg.rate in (s.kind, label(s))), None)
    rates = None
    if reference is not None:
        ref = make(reference, None)
        if ref is None:
            raise BltError(f"the rate segmenter {cfg.rate} is unavailable; set rate: null and give values")
        out[label(reference)] = ref
        rates = (ref.train.bytes_per_unit, float(ref.value["calibration_bytes_per_unit"] or 0))
    for spec in cfg.segmenters:
        if label(spec) not in out:
            seg = make(spec, rates)
            if seg is not None:
                out[label(spec)] = seg
    return [out[label(s)] for s in cfg.segmenters if label(s) in out]


# ------------------------------------------------------------------------------------------------------- runs
def sized_model(cfg: DownstreamConfig, bytes_per_unit: float) -> PatchLMConfig:
    """The model of a segmentation: `cfg.model`, or with `match_flops` its latent width sized so the forward
    FLOPs/byte at `bytes_per_unit` equal `cfg.model`'s at `reference_bytes_per_unit`."""
    if not cfg.match_flops:
        return cfg.model
    target = flops_per_byte(cfg.model, cfg.reference_bytes_per_unit)["total"]
    return match_latent_width(cfg.model, bytes_per_unit, target)


def run_id(corpus_sha: str, seg: Segmentation, seed: int, model: PatchLMConfig, train: DownstreamTrainConfig) -> str:
    blob = json.dumps([corpus_sha, seg.label, seg.value, seed, asdict(model), asdict(train)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def execute(run: Run, threads: int | None = None) -> dict[str, Any]:
    """Train and score one run; its result row."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    seg = run.segmentation
    t = time.perf_counter()
    module, facts = fit(run.model, run.train, seg.train, seed=run.seed, pays_boundaries=not seg.causal)
    scored_at = time.perf_counter()
    result = evaluate(
        module.model,
        seg.eval,
        pays_boundaries=not seg.causal,
        batch_size=run.train.eval_batch_size,
        precision=facts["precision"],
    )
    return {
        "corpus": run.corpus,
        "segmenter": seg.label,
        "kind": seg.kind,
        "seed": run.seed,
        "boundaries": "free (causal)" if seg.causal else "paid",
        "bytes_per_unit": round(seg.eval.bytes_per_unit, 4),
        "bytes_per_unit_train": round(seg.train.bytes_per_unit, 4),
        **{k: seg.value.get(k) for k in VALUES},
        "d_latent": run.model.d_latent,
        "params": facts["params"],
        "steps": facts["steps"],
        "train_bytes": facts["train_bytes"],
        "bits_per_byte": result["bits_per_byte"],
        "byte_bits_per_byte": result["byte_bits_per_byte"],
        "boundary_bits_per_byte": result["boundary_bits_per_byte"],
        "eval_bytes": result["eval_bytes"],
        "train_seconds": facts["train_seconds"],
        "wall_seconds": round(time.perf_counter() - t, 2),
        "eval_seconds": round(time.perf_counter() - scored_at, 2),
        "precision": facts["precision"],
    }


def with_flops(row: dict[str, Any], model: PatchLMConfig) -> dict[str, Any]:
    """`row` with its FLOPs, computed from the model it trained (`model` at the row's latent width) and its units'
    mean lengths: inference (forward) on the scored text's units; training (3 × forward) on the training split's,
    the figure `match_flops` equalises; the training total in PFLOPs; the latent transformer's share."""
    sized = replace(model, d_latent=int(row["d_latent"]))
    infer = flops_per_byte(sized, float(row["bytes_per_unit"]))
    train = flops_per_byte(sized, float(row["bytes_per_unit_train"]), training=True)["total"]
    return {
        **row,
        "flops_per_byte": round(infer["total"]),
        "train_flops_per_byte": round(train),
        "train_pflops": row["train_bytes"] * train / 1e15,
        "latent_flops_share": round(infer["latent"] / infer["total"], 4),
    }


def _check_out(out: Path, cfg: DownstreamConfig, *, resume: bool, force: bool) -> None:
    record = out / RECORD
    if out.exists() and not out.is_dir():
        raise BltError(f"--out {out} is a file; give a directory for the results")
    if not out.exists() or not any(out.iterdir()):
        return
    if not record.is_file():
        raise BltError(f"--out {out} holds files that are not a blt downstream run; choose an empty or new directory")
    try:
        old = json.loads(record.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        old = {}
    if force:
        for name in (*OUTPUTS, RECORD):
            (out / name).unlink(missing_ok=True)
        for path in (out / "runs").glob("*.json"):
            path.unlink()
        return
    if not resume:
        raise BltError(f"{out} already holds a downstream run; pass --resume to finish it or --force to start over")
    if old.get("config_sha256") != cfg.digest():
        raise BltError(f"{out} holds a run of a different config; --force starts over there, or choose another --out")


def _read_run(path: Path) -> dict[str, Any] | None:
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # damaged (never by blt: writes are atomic): computed again
    return row if isinstance(row, dict) and "bits_per_byte" in row else None


def run_downstream(
    cfg: DownstreamConfig,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    workers: int = 1,
    command: str = "",
    warn: Callable[[str], None] = print,
    stage: Callable[[str], None] = lambda _: None,
    on_run: Callable[[int, int], None] = lambda done, total: None,
) -> dict[str, Any]:
    """Train and score every run of `cfg` into `out`; returns {"rows", "summary", "meta"}."""
    from blt.downstream.report import summarise, write_outputs

    out = Path(out)
    _check_out(out, cfg, resume=resume, force=force)
    if workers < 1:
        raise BltError(f"--workers must be ≥ 1, got {workers}")
    started = time.perf_counter()
    runs: list[Run] = []
    inputs: dict[str, Any] = {}
    for spec in cfg.corpora:
        stage(f"reading and segmenting {spec.name}")
        train_docs, held_out = _docs(spec, cfg)
        if not train_docs or not held_out:
            raise BltError(f"corpus {spec.name}: its training or held-out split is empty; give it more documents")
        calibration_docs, eval_docs = calibration_split(held_out, cfg.calibration_fraction)
        sha = hashlib.sha256(f"{documents_hash(train_docs)}:{documents_hash(eval_docs)}".encode()).hexdigest()
        segs = segmentations(cfg, train_docs, calibration_docs, eval_docs, warn)
        inputs[spec.name] = {
            "sha256": sha,
            "train_bytes": sum(map(len, train_docs)),
            "eval_bytes": sum(map(len, eval_docs)),
            "eval_documents": len(eval_docs),
            "calibration_bytes": sum(map(len, calibration_docs)),
            "calibration_documents": len(calibration_docs),
        }
        for seg in segs:
            model = sized_model(cfg, seg.train.bytes_per_unit)
            for seed in cfg.seeds:
                runs.append(Run(run_id(sha, seg, seed, model, cfg.train), spec.name, seg, seed, model, cfg.train))
    (out / "runs").mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "name": cfg.name,
        "command": command,
        "config": cfg.to_dict(),
        "config_sha256": cfg.digest(),
        "corpora": inputs,
        "versions": package_versions(),
        "complete": False,
    }
    write_atomic(out / RECORD, lambda p: p.write_text(json.dumps(meta, indent=2, default=str)))
    rows: dict[str, dict[str, Any]] = {}
    for r in runs:
        row = _read_run(out / "runs" / f"{r.id}.json") if resume else None
        if row is not None:  # FLOPs follow from the config: recomputed, never trusted from the file
            rows[r.id] = with_flops(row, r.model)
    todo = [r for r in runs if r.id not in rows]
    on_run(len(rows), len(runs))

    def keep(r: Run, row: dict[str, Any]) -> None:
        rows[r.id] = row = with_flops(row, r.model)
        write_atomic(out / "runs" / f"{r.id}.json", lambda p: p.write_text(json.dumps(row, indent=2)))
        on_run(len(rows), len(runs))

    stage("training")
    try:
        if workers == 1 or len(todo) <= 1:
            for r in todo:
                keep(r, execute(r))
        else:
            threads = max(1, (os.cpu_count() or 1) // workers)
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(execute, r, threads): r for r in todo}
                for f in as_completed(futures):
                    keep(futures[f], f.result())
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f"interrupted: {len(rows)} of {len(runs)} runs are saved in {out / 'runs'}; the same command with "
            "--resume trains only the rest"
        ) from None
    ordered = [rows[r.id] for r in runs]
    summary = summarise(ordered)
    meta.update(
        complete=True,
        seconds=round(time.perf_counter() - started, 1),  # this invocation (a resume reads finished runs back)
        run_seconds=round(sum(float(r.get("wall_seconds", 0)) for r in ordered), 1),  # every run's wall time, summed
        runs=len(ordered),
    )
    write_outputs(out, ordered, summary, meta)
    write_atomic(out / RECORD, lambda p: p.write_text(json.dumps(meta, indent=2, default=str)))
    return {"rows": ordered, "summary": summary, "meta": meta}
