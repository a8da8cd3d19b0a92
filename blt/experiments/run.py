"""Running an experiment (`blt experiment`): prepare every input once, then measure every cell, resumably.

1. Corpora are split (or read with their own evaluation sources); each corpus is scored once per byte model (and
   once by the `grader`, if any) through `blt.bytelm.corpus.score_corpus` (Lightning predict loop, cached by model
   weights and corpus bytes), and each trained tokeniser is trained once per corpus and vocabulary size (cached
   likewise, in `$BLT_CACHE/tokenizers`). Every cell's units are graded by its model's surprisal and, with a grader,
   by the grader's too (the `…_grader` metrics: a model that did not place the entropy boundaries).
2. Cells run inline or in `workers` processes; each finished cell is written to `OUT/cells/<id>.json` atomically,
   so an interrupted run (kill -9 included) resumes with `resume=True` and computes only the missing (or damaged)
   cells. What a run may write or remove in `OUT` is `blt.experiments.outdir`'s to decide.
3. The tidy table (`results.parquet`, `results.csv`: a row per cell, every parameter and metric), per-language rows,
   `experiment.json` (resolved config, versions, model and corpus hashes) and the report are written last.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from blt.bytelm.entropy import corpus_bits_per_byte
from blt.bytelm.score_cache import load_scores
from blt.cache import documents_hash, model_hash
from blt.compare.config import RULE_VALUE, TRAINED, CompareConfig
from blt.compare.measure import check_lossless
from blt.compare.run import split_corpus
from blt.compare.segmenters import choose_vocab_size, rule_segmenter
from blt.errors import BltError
from blt.experiments.config import METRICS, ORACLES, PARAM_COLUMNS, SCORED, Cell, CorpusSpec, ExperimentConfig, expand
from blt.experiments.outdir import RECORD, check_out_dir, clear_out_dir, read_cell
from blt.files import finite, write_atomic
from blt.metrics import SegmentationStats
from blt.patching.calibration import calibrate_threshold
from blt.patching.rules import patch_starts
from blt.report.markdown import package_versions
from blt.segment.tokenizers import cached_tokenizer


@dataclass
class Context:
    """Everything a cell needs, picklable (sent once to each worker): documents, and paths of cached inputs."""

    eval_docs: dict[str, list[bytes]]  # corpus -> held-out documents
    labels: dict[str, list[str | None]]  # corpus -> their language labels
    scores: dict[tuple[str, str], Path]  # (corpus, model) -> cached scores
    model_bpb: dict[tuple[str, str], float]  # (corpus, model) -> bits/byte on the held-out documents
    thresholds: dict[str, float]  # scored cell id -> the threshold or budget it cuts at (nats; calibrated or given)
    tokenizers: dict[tuple[str, str, int | None], tuple[Path, int, float]]  # -> (file, vocab size, train seconds)
    metrics: list[str] | None
    by_language: bool
    grader: dict[str, Path] = field(default_factory=dict)  # corpus -> the grading model's cached scores
    _memo: dict[Any, Any] = field(default_factory=dict)

    def cell_scores(self, corpus: str, model: str) -> list[Any]:
        return self._load(("scores", corpus, model), self.scores[corpus, model], corpus, model)

    def grader_scores(self, corpus: str) -> list[Any] | None:
        """The grading model's scores of `corpus`'s held-out documents; None without a grader."""
        return self._load(("grader", corpus), self.grader[corpus], corpus, "the grader") if self.grader else None

    def _load(self, key: tuple[str, ...], path: Path, corpus: str, model: str) -> list[Any]:
        if key not in self._memo:
            self._memo[key] = load_scores(path, self.eval_docs[corpus])
            if self._memo[key] is None:
                raise BltError(f"the cached scores of {model} on {corpus} are missing; run again")
        return self._memo[key]


# ------------------------------------------------------------------------------------------- preparing inputs
def split_spec(
    spec: CorpusSpec, *, eval_fraction: float, max_eval_bytes: int | None, split_seed: int
) -> tuple[Sequence[bytes], list[bytes], list[str | None]]:
    """(training documents, held-out documents, their labels) of one corpus, split as `blt compare` splits (also
    `blt downstream`'s split)."""
    split = CompareConfig(
        sources=spec.sources,
        eval_sources=spec.eval_sources,
        eval_fraction=eval_fraction,
        max_eval_bytes=max_eval_bytes,
        split_seed=split_seed,
        max_bytes=spec.max_bytes,
    )
    return split_corpus(split)


def _corpus(spec: CorpusSpec, cfg: ExperimentConfig) -> tuple[Sequence[bytes], list[bytes], list[str | None]]:
    return split_spec(
        spec, eval_fraction=cfg.eval_fraction, max_eval_bytes=cfg.max_eval_bytes, split_seed=cfg.split_seed
    )


def prepare(
    cfg: ExperimentConfig,
    cells: list[Cell],
    *,
    devices: int | str = 1,
    warn: Callable[[str], None] = print,
    stage: Callable[[str], None] = lambda _: None,
) -> tuple[Context, dict[str, Any], list[Cell]] | None:
    """Split, score and train everything the cells need; returns the context, the input facts for
    experiment.json and the cells that can run (unavailable pretrained tokenisers are skipped with a warning).
    A rank other than 0 of a multi-device scoring run returns None once its share is scored."""
    from blt.bytelm.checkpoint import load_model

    ctx = Context({}, {}, {}, {}, {}, {}, cfg.metrics, cfg.by_language)
    cards: dict[str, dict[str, float]] = {}
    facts: dict[str, Any] = {"corpora": {}, "models": {}}
    train_docs: dict[str, Sequence[bytes]] = {}
    for spec in cfg.corpora:
        stage(f"reading corpus {spec.name}")
        train, docs, labels = _corpus(spec, cfg)
        train_docs[spec.name], ctx.eval_docs[spec.name], ctx.labels[spec.name] = train, docs, labels
        train_sha, eval_sha = documents_hash(train), documents_hash(docs)
        facts["corpora"][spec.name] = {
            "sha256": hashlib.sha256(f"{train_sha}:{eval_sha}".encode()).hexdigest(),
            "train_sha256": train_sha,
            "eval_sha256": eval_sha,
            "train_bytes": sum(map(len, train)),
            "eval_bytes": sum(map(len, docs)),
            "eval_documents": len(docs),
        }
    for name in cfg.models:
        stage(f"scoring with {name}")
        lm = load_model(name, device="auto")
        facts["models"][name] = {"sha256": model_hash(lm), "params": lm.num_params(), "bits_per_byte": {}}
        cards[name] = dict(lm.card.get("patch_thresholds_nats", {}))
        per_corpus = _score_corpora(lm, facts["models"][name]["sha256"], ctx.eval_docs, cfg.precision, devices)
        if per_corpus is None:
            return None  # a rank other than 0 of a multi-device run: its share is on disk for rank 0
        for corpus, (path, scores) in per_corpus.items():
            ctx.scores[corpus, name] = path
            ctx.model_bpb[corpus, name] = facts["models"][name]["bits_per_byte"][corpus] = corpus_bits_per_byte(scores)
    if cfg.grader:
        stage(f"scoring with the grader {cfg.grader}")
        try:
            grader = load_model(cfg.grader, device="auto")
        except BltError as exc:
            raise BltError(f"grader: {exc}") from None
        sha = model_hash(grader)
        facts["grader"] = {"name": cfg.grader, "sha256": sha, "params": grader.num_params(), "bits_per_byte": {}}
        graded = _score_corpora(grader, sha, ctx.eval_docs, cfg.precision, devices)
        if graded is None:
            return None
        for corpus, (path, scores) in graded.items():
            ctx.grader[corpus] = path
            facts["grader"]["bits_per_byte"][corpus] = corpus_bits_per_byte(scores)
    for cell in cells:  # before any tokeniser trains: an unreachable target fails the run in seconds
        if cell.kind in SCORED:
            ctx.thresholds[cell.id] = cell_threshold(cell, ctx, cards[str(cell.model)])
    for cell in cells:
        if cell.kind not in TRAINED:
            continue
        vocab = cell.param.get("vocab_size")
        key = (cell.corpus, cell.kind, vocab)
        if key in ctx.tokenizers:
            continue
        stage(f"training {cell.label} on {cell.corpus}")
        docs = train_docs[cell.corpus]
        size = vocab or choose_vocab_size(CompareConfig(segmenters=[cell.kind]), docs)
        try:
            sha = facts["corpora"][cell.corpus]["train_sha256"]
            _, path, seconds = cached_tokenizer(cell.kind, size, docs, train_sha=sha)
        except BltError as exc:
            raise BltError(f"cell {cell.label} on corpus {cell.corpus}: {exc}") from None
        ctx.tokenizers[key] = (path, size, seconds)
    runnable = []
    for cell in cells:
        try:
            if cell.kind.startswith(("tiktoken-", "hf:")):
                _segmenter(cell, ctx)  # load once here: an unavailable one is skipped with a warning
        except BltError as exc:
            warn(f"{cell.label} skipped: {exc}")
            continue
        runnable.append(cell)
    return ctx, facts, runnable


def _score_corpora(
    lm: Any, model_sha: str, eval_docs: dict[str, list[bytes]], precision: str, devices: int | str
) -> dict[str, tuple[Path, list[Any]]] | None:
    """Every corpus's held-out documents scored by `lm`, each cached under its own key (`scores_path`). What is not
    cached yet is scored in one Lightning predict run over all corpora together, so a multi-device run launches
    its processes once per model. None on ranks other than 0."""
    from blt.bytelm.corpus import score_corpus
    from blt.bytelm.score_cache import save_scores, scores_path

    paths = {c: scores_path(lm, docs, precision=precision, model_sha=model_sha) for c, docs in eval_docs.items()}
    hits = {c: load_scores(paths[c], docs) for c, docs in eval_docs.items()}
    todo = [c for c, hit in hits.items() if hit is None]
    if todo:
        joined = [d for c in todo for d in eval_docs[c]]
        scores = score_corpus(lm, joined, precision=precision, devices=devices, cache=False, model_sha=model_sha)
        if scores is None:
            return None
        for c in todo:
            hits[c], scores = scores[: len(eval_docs[c])], scores[len(eval_docs[c]) :]
            save_scores(paths[c], hits[c])
    return {c: (paths[c], hits[c]) for c in eval_docs}  # type: ignore[misc]


# ------------------------------------------------------------------------------------------- one cell
def _segmenter(cell: Cell, ctx: Context) -> tuple[Callable[[bytes], np.ndarray], int | None, dict[str, Any]]:
    """(bytes -> starts, vocabulary size, parameter columns) of a cell."""
    from blt.segment import pretrained
    from blt.segment import tokenizers as tk

    p, kind = cell.param, cell.kind
    cols: dict[str, Any] = dict.fromkeys(PARAM_COLUMNS)
    cols.update(max_patch_length=p.get("max_patch_length"), target_bytes_per_patch=p.get("target_bytes_per_patch"))
    if kind in TRAINED:
        path, size, seconds = ctx.tokenizers[cell.corpus, kind, p.get("vocab_size")]
        cls = tk.ByteBPE if kind == "bpe" else tk.SentencePieceSegmenter
        if ("tok", path) not in ctx._memo:
            ctx._memo["tok", path] = cls.load(path)
        seg: Any = ctx._memo["tok", path]
        return seg.starts, size, {**cols, "vocab_size": size, "train_seconds": seconds}
    if kind.startswith(("tiktoken-", "hf:")):
        if ("pre", kind) not in ctx._memo:
            if kind.startswith("hf:"):
                spec, _, gguf = kind.removeprefix("hf:").partition("#")
                ctx._memo["pre", kind] = pretrained.HFTokenizerSegmenter(spec, gguf_file=gguf or None)
            else:
                ctx._memo["pre", kind] = pretrained.TiktokenSegmenter(
                    kind.removeprefix("tiktoken-") + "_base", name=kind
                )
        seg = ctx._memo["pre", kind]
        return seg.starts, seg.vocab_size, {**cols, "vocab_size": seg.vocab_size}
    if kind in ("space", "byte", "fixed"):
        size = p.get("patch_size", 4)
        return rule_segmenter(kind, size).starts, None, {**cols, "patch_size": size if kind == "fixed" else None}
    assert kind in SCORED and cell.model is not None
    rule, limit, value = cell_rule(kind), p.get("max_patch_length"), ctx.thresholds[cell.id]
    by_data = {s.data: _cut_scores(kind, s) for s in ctx.cell_scores(cell.corpus, cell.model)}
    cut = {RULE_VALUE[rule]: value}

    def starts(data: bytes) -> np.ndarray:
        return patch_starts(by_data[data], rule=rule, max_patch_length=limit, **cut)

    return starts, None, {**cols, "budget_nats" if rule == "budget" else "threshold_nats": float(value)}


def cell_rule(kind: str) -> str:
    """The boundary rule of a scored kind: `entropy-RULE`'s RULE; the surprisal oracle runs the budget rule."""
    return "budget" if kind in ORACLES else kind.removeprefix("entropy-")


def _cut_scores(kind: str, scores: Any) -> np.ndarray:
    """What a scored kind cuts on [n] nats: predicted entropy, or for the oracle the realised surprisal of each
    byte (known only once the byte is seen: hence an oracle)."""
    return scores.surprisal_nats if kind in ORACLES else scores.entropy_nats


def cell_threshold(cell: Cell, ctx: Context, card: dict[str, float]) -> float:
    """A scored cell's threshold or budget (nats): its own, or calibrated so its corpus's held-out documents average
    the target bytes/patch (as `blt compare` calibrates), or the model card's."""
    p, rule = cell.param, cell_rule(cell.kind)
    given = p.get("budget") if rule == "budget" else p.get("threshold")
    if given is not None:
        return float(given)
    if p.get("target_bytes_per_patch") is None:
        if cell.kind in ORACLES:  # a card's budget is one for predicted entropies, not for realised surprisal
            raise BltError(f"cell {cell.label}: the surprisal oracle has no stored budget; give budget or a target")
        if rule not in card:
            what, stored = ("budget", "budget") if rule == "budget" else ("threshold", f"{rule} threshold")
            raise BltError(f"cell {cell.label}: model {cell.model} has no {stored}; give {what} or a target")
        return float(card[rule])
    rows = [_cut_scores(cell.kind, s) for s in ctx.cell_scores(cell.corpus, str(cell.model)) if len(s)]
    try:
        limit = p.get("max_patch_length")
        return calibrate_threshold(rows, p["target_bytes_per_patch"], rule=rule, max_patch_length=limit)
    except BltError as exc:
        raise BltError(f"cell {cell.label} on corpus {cell.corpus}: {exc}; remove that target from the grid") from None


def evaluate_cell(cell: Cell, ctx: Context) -> dict[str, Any]:
    """Every metric of one cell over its corpus's held-out documents; `_languages` holds the per-label rows."""
    starts_of, vocab, cols = _segmenter(cell, ctx)
    docs, labels = ctx.eval_docs[cell.corpus], ctx.labels[cell.corpus]
    scores = ctx.cell_scores(cell.corpus, cell.model) if cell.model is not None else None
    graded = ctx.grader_scores(cell.corpus)
    total, by_grader, per_label, seconds = SegmentationStats(), SegmentationStats(), {}, 0.0
    per_label_graded: dict[str, SegmentationStats] = {}
    for i, data in enumerate(docs):
        t = time.perf_counter()
        starts = np.asarray(starts_of(data), dtype=np.int64)
        seconds += time.perf_counter() - t
        check_lossless(cell.label, data, starts)
        surprisal = scores[i].surprisal_nats if scores is not None else None
        total.add(data, starts, surprisal)
        if graded is not None:
            by_grader.add(data, starts, graded[i].surprisal_nats)
        if ctx.by_language and labels[i] is not None:
            per_label.setdefault(labels[i], SegmentationStats()).add(data, starts, surprisal)
            if graded is not None:
                per_label_graded.setdefault(labels[i], SegmentationStats()).add(data, starts, graded[i].surprisal_nats)
    summary = total.summary(vocab_size=vocab)
    metrics = {m: summary.get(m) for m in METRICS}
    second = by_grader.summary() if graded is not None else {}
    metrics["bits_per_unit_mean_grader"] = second.get("bits_per_unit_mean")
    metrics["bits_per_unit_cv_grader"] = second.get("bits_per_unit_cv")
    metrics["model_bits_per_byte"] = ctx.model_bpb.get((cell.corpus, cell.model)) if cell.model else None
    metrics["encode_mb_per_s"] = summary["bytes"] / 1e6 / max(seconds, 1e-9)
    metrics["train_seconds"] = cols.pop("train_seconds", None)
    keep = ctx.metrics or list(METRICS)
    head = {"cell": cell.id, "corpus": cell.corpus, "model": cell.model, "segmenter": cell.label, "kind": cell.kind}
    row = {**head, **cols, **{m: metrics[m] for m in keep}}
    row["_languages"] = [
        {
            **head,
            "language": lab,
            "script": lab.split("_")[1] if lab.count("_") else None,
            "bytes": (s := st.summary())["bytes"],
            "units": s["units"],
            "bytes_per_unit": s["bytes_per_unit"],
            "bits_per_unit_cv": s["bits_per_unit_cv"],
            "bits_per_unit_cv_grader": per_label_graded[lab].summary()["bits_per_unit_cv"] if graded else None,
        }
        for lab, st in sorted(per_label.items())
    ]
    return row


_WORKER: dict[str, Context] = {}


def _init_worker(ctx: Context) -> None:
    import torch

    torch.set_num_threads(1)  # cells are numpy work; one thread per process keeps N workers on N cores
    _WORKER["ctx"] = ctx


def _run_in_worker(cell: Cell) -> dict[str, Any]:
    return evaluate_cell(cell, _WORKER["ctx"])


# ------------------------------------------------------------------------------------------- the run
def _write_json(path: Path, obj: Any) -> str:
    text = json.dumps(finite(obj), indent=1, default=str, allow_nan=False) + "\n"
    write_atomic(path, lambda p: p.write_text(text))
    return text


def run_experiment(
    cfg: ExperimentConfig,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    workers: int = 1,
    devices: int | str = 1,
    command: str = "",
    warn: Callable[[str], None] = print,
    stage: Callable[[str], None] = lambda _: None,
    on_cell: Callable[[int, int], None] = lambda done, total: None,
) -> dict[str, Any] | None:
    """Run every cell of `cfg` into `out`; returns {rows, language_rows, meta}. None on non-zero ranks."""
    out = Path(out)
    if workers < 1:
        raise BltError(f"--workers must be ≥ 1, got {workers}")
    if devices not in (1, "1") and len(cfg.models) > 1:  # a multi-device run launches its processes once
        raise BltError(
            f"--devices {devices} scores one byte model per run; run once per model with --set 'models=[M]' (the "
            f"scores are cached), then the whole experiment on one device"
        )
    record = check_out_dir(out, cfg, resume=resume, force=force)
    cells = expand(cfg)
    t0 = time.perf_counter()
    prepared = prepare(cfg, cells, devices=devices, warn=warn, stage=stage)
    if prepared is None:
        return None
    ctx, facts, runnable = prepared
    versions = {k: v for k, v in package_versions().items() if k != "threads"}  # threads differ between machines
    meta = {"name": cfg.name, "description": cfg.description, "command": command, "config": cfg.to_dict()}
    meta.update(config_sha256=cfg.digest(), versions=versions, **facts)
    if resume and record is not None:
        changed = [k for k in ("corpora", "models", "grader") if record.get(k) != json.loads(json.dumps(facts.get(k)))]
        if changed:
            raise BltError(f"the {' and '.join(changed)} changed since {out} was started; pass --force to start over")
    if record is not None:  # only now, once the inputs are ready: a run that fails early leaves `out` as it was
        clear_out_dir(out, cells=not resume)
    _write_json(out / RECORD, {**meta, "cells": len(cells), "complete": False})  # first: it marks `out` as blt's
    (out / "cells").mkdir(exist_ok=True)
    rows: dict[str, dict[str, Any]] = {}
    for cell in runnable:
        path = out / "cells" / f"{cell.id}.json"
        try:
            if path.is_file():
                rows[cell.id] = read_cell(path, cell, cfg.metrics)
        except ValueError as exc:
            warn(f"{path} ({cell.label} on {cell.corpus}) is damaged ({exc}); computing that cell again")
    todo = [c for c in runnable if c.id not in rows]
    on_cell(len(rows), len(runnable))

    def finish(cell: Cell, row: dict[str, Any]) -> None:
        rows[cell.id] = json.loads(_write_json(out / "cells" / f"{cell.id}.json", row))  # as a resume reads it
        on_cell(len(rows), len(runnable))

    if workers == 1 or len(todo) < 2:
        for cell in todo:
            finish(cell, evaluate_cell(cell, ctx))
    else:
        ctx._memo.clear()
        with ProcessPoolExecutor(
            workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(ctx,)
        ) as pool:
            futures = {pool.submit(_run_in_worker, c): c for c in todo}
            for fut in as_completed(futures):
                finish(futures[fut], fut.result())
    table = [rows[c.id] for c in runnable]
    language_rows = [lang for r in table for lang in r.pop("_languages")]
    meta.update(cells=len(runnable), seconds=time.perf_counter() - t0, complete=True)
    from blt.experiments.report import write_experiment_report, write_tables

    # Every file below is written atomically and the record last: a kill in between leaves complete=False, and
    # --resume (every cell already on disk) writes them all again.
    write_tables(out, table, language_rows)
    write_experiment_report(table, language_rows, meta, out)
    _write_json(out / RECORD, meta)
    return {"rows": table, "language_rows": language_rows, "meta": meta}
