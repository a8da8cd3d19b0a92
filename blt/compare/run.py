"""Running the comparison: entropy patches next to BPE, SentencePiece, tiktoken, HF tokenisers and rule-based
segmenters, on one corpus, with the same metrics for all (`blt compare`); `run_compare` strings the steps together.

Flow: the corpus is split by document (`blt.bytelm.data`); trainable tokenisers learn on the training split (by default
at the largest vocabulary it supports, up to 32k); the byte model (optionally adapted to the training split first)
scores the evaluation split once, and every entropy segmenter reuses those scores (with `online_lr`, the scores of a
copy of it that learns as it reads the evaluation documents in order: `blt.bytelm.online`); a reference segmenter's
bytes/unit on the evaluation text (by default a pretrained tokeniser's, `blt.compare.rates`) is the rate entropy
thresholds (and the budget rule's budget) are calibrated to and fixed patches are cut at (compression-matched);
saved patchers (`patchers`, `blt calibrate --save DIR`) add a row each at their saved values, never recalibrated;
metrics accumulate document by document, bits/unit graded by the byte model's surprisal or, with `grader`, by a
second model's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from blt.bytelm.data import ByteStream, build_cache
from blt.bytelm.entropy import ByteScores, corpus_bits_per_byte
from blt.bytelm.sources import iter_documents
from blt.compare.baselines import fit_facts
from blt.compare.config import ENTROPY, RULE_BASED, RULE_VALUE, CompareConfig, validate
from blt.compare.measure import measure
from blt.compare.rates import choose_reference, evenness_curves, is_matched
from blt.compare.segmenters import Segmenter, build_tokenisers, fixed_size_for, rule_segmenter
from blt.config import DataConfig
from blt.errors import BltError
from blt.patching.calibration import calibrate_threshold
from blt.patching.rules import patch_starts


class StreamDocuments(Sequence[bytes]):
    """A split's documents read from the memmap cache on demand: tokenisers train from it without the corpus
    being held in memory."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream

    def __len__(self) -> int:
        return self.stream.n_docs

    def __getitem__(self, i: int) -> bytes:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self.stream.document(i % len(self))


def split_corpus(cfg: CompareConfig) -> tuple[Sequence[bytes], list[bytes], list[str | None]]:
    """Training documents (streamed from the cache) and the held-out documents to measure (at most
    `max_eval_bytes` of them, in corpus order, so memory stays flat however large the corpus): a content-hash
    split of `sources`, or, with `eval_sources`, all of `sources` to train on and those documents to measure."""
    if cfg.eval_sources:
        train = build_cache(DataConfig(sources=cfg.sources, val_fraction=0, max_bytes=cfg.max_bytes)).train
        evaluation, labels, size = [], [], 0
        for doc in iter_documents(DataConfig(sources=cfg.eval_sources)):
            if evaluation and cfg.max_eval_bytes is not None and size + len(doc.data) > cfg.max_eval_bytes:
                break
            evaluation.append(doc.data)
            labels.append(doc.label)
            size += len(doc.data)
        if not evaluation:
            raise BltError(f"--eval-data {cfg.eval_sources} holds no text")
        return StreamDocuments(train), evaluation, labels
    data_cfg = DataConfig(
        sources=cfg.sources, val_fraction=cfg.eval_fraction, split_seed=cfg.split_seed, max_bytes=cfg.max_bytes
    )
    cache = build_cache(data_cfg)
    evaluation = []
    size = 0
    for i in range(cache.val.n_docs):
        if evaluation and cfg.max_eval_bytes is not None and size + cache.val.doc_length(i) > cfg.max_eval_bytes:
            break
        evaluation.append(cache.val.document(i))
        size += len(evaluation[-1])
    labels = cache.labels[cache.train.n_docs : cache.train.n_docs + len(evaluation)]
    if not evaluation or cache.train.n_docs == 0:
        raise BltError(f"{cfg.sources} is too small to hold out documents for evaluation; add documents")
    return StreamDocuments(cache.train), evaluation, labels


def run_compare(
    cfg: CompareConfig, *, warn: Callable[[str], None] = print, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any] | None:
    """The whole comparison; returns results (per segmenter, per language, agreement, byte-model facts).

    With `devices` > 1 the byte-model scoring runs on every rank; ranks other than 0 return None after it."""
    from blt.bytelm.checkpoint import load_model

    validate(cfg)
    progress("reading and splitting the corpus")
    train_docs, eval_docs, labels = split_corpus(cfg)
    binary = sum(b"\0" in d for d in train_docs) + sum(b"\0" in d for d in eval_docs)
    if binary:
        warn(f"{binary} documents contain NUL bytes (binary files?); every segmenter sees them as raw bytes")
    repeats = len(eval_docs) - len(set(eval_docs))
    if cfg.online_lr is not None and repeats:  # entropy rows look their scores up by a document's bytes
        warn(
            f"{repeats} held-out documents repeat an earlier one; scored online, a repeat costs less than its first "
            "copy, and the entropy rows patch every copy on the last copy's entropies"
        )
    model_info: dict[str, Any] = {}
    scores: list[ByteScores] | None = None
    wants_model = any(s in ENTROPY for s in cfg.segmenters) or cfg.online_lr is not None
    adapting = bool(cfg.adapt_steps or cfg.adapt_minutes)
    lm = load_model(cfg.model, device="auto") if wants_model or adapting or cfg.fit_temperature else None
    if cfg.fit_temperature:  # before any work: an hf: model cannot be tempered
        from blt.bytelm.temperature import require_fittable

        require_fittable(lm)
    grader = _load_grader(cfg.grader) if cfg.grader else None  # a bad name fails before any work
    patchers = load_patchers(cfg)
    for name in ENTROPY:  # before any scoring or training: a missing threshold is known now
        if name in cfg.segmenters and cfg.match is None:
            _given_threshold(name, cfg, lm)
    adapt_slice: list[bytes] = []  # the adaptation's held-out slice: the temperature is fitted there
    if lm is not None:
        progress("scoring the evaluation split with the byte model")
        scores, model_info = _score(lm, eval_docs, cfg)
        if scores is None:
            return None  # a rank other than 0 of a multi-device run: its share is on disk for rank 0
        if adapting:
            progress("adapting the byte model on the training split")
            from blt.bytelm.adapt import adapt

            lm = adapt(
                lm, train_docs, cfg.adapt_steps, minutes=cfg.adapt_minutes, progress=progress, heldout=adapt_slice
            )
            scores, after = _score(lm, eval_docs, cfg)
            assert scores is not None
            model_info.update(
                after,
                bits_per_byte_before_adapt=model_info["bits_per_byte"],
                adapt_steps=lm.card.get("steps"),
                adapt=lm.card.get("adapt"),
            )
        if cfg.fit_temperature:  # after adapting: calibrate the model that will score
            # on text the scoring model never trained on: the adaptation's held-out slice, else the training split
            fit_docs = adapt_slice or train_docs
            fitted_on = "adaptation held-out slice" if adapt_slice else "training split"
            progress(f"fitting a temperature on the {fitted_on}")
            from blt.bytelm.temperature import FIT_MAX_BYTES, fit_temperature, with_temperature

            lm = with_temperature(lm, fit_temperature(lm, fit_docs))
            facts = ("bits_per_byte", "calibration_gap", "mean_entropy_bits")
            before = {k: model_info[k] for k in facts}
            scores, after = _score(lm, eval_docs, cfg)
            assert scores is not None
            fit = {
                "temperature": lm.cfg.temperature,
                "fitted_on": fitted_on,
                "fit_bytes": min(sum(map(len, fit_docs)), FIT_MAX_BYTES),
                "before": before,
                "after": {k: after[k] for k in facts},
            }
            model_info.update(after, temperature_fit=fit)
        if cfg.online_lr is not None:  # from the adapted model, when adapting: adapt to the corpus, then to the text
            scores, model_info = _score_online(lm, eval_docs, cfg, model_info, progress)
    grading, grader_info = scores, None
    if grader is not None:
        progress("scoring the evaluation split with the grading model")
        grading, grader_info = _score(grader, eval_docs, cfg, name=cfg.grader)
        if grading is None:
            return None
        from blt.cache import model_hash

        grader_info["same_weights"] = lm is not None and model_hash(grader) == model_hash(lm)
    progress("training tokenisers")
    segmenters, vocab = build_tokenisers(cfg, train_docs, warn)
    # Compression matching: entropy thresholds and the fixed size follow the reference segmenter's bytes/unit.
    by_name = {s.name: s for s in segmenters}
    by_name.update({n: rule_segmenter(n, 1) for n in ("space", "byte") if n in cfg.segmenters})
    reference = choose_reference(cfg.match, list(by_name))
    match_bpu = _bytes_per_unit(by_name[reference], eval_docs) if reference in by_name else None
    if cfg.match not in (None, "auto") and match_bpu is None:
        raise BltError(f"--match {cfg.match} is unavailable in this run (skipped above); choose another")
    # fixed patches at exactly the reference rate over these documents (any rate ≥ 1, not a rounded size)
    if cfg.fixed_size or not match_bpu:
        by_name["fixed"] = rule_segmenter("fixed", cfg.fixed_size or 4)
    else:
        by_name["fixed"] = rule_segmenter("fixed", fixed_size_for(eval_docs, match_bpu), rate=match_bpu)
    segmenters += [by_name[n] for n in RULE_BASED if n in cfg.segmenters]
    for name in ENTROPY:
        if name in cfg.segmenters:
            assert scores is not None
            segmenters.append(_entropy_segmenter(name, scores, reference, match_bpu, cfg, lm))
    for path, patcher in zip(cfg.patchers, patchers, strict=True):
        progress(f"patching with the saved patcher {path}")
        segmenters.append(saved_patcher_segmenter(patcher_name(path, cfg.patchers), patcher, eval_docs))
    if cfg.by_language and not any(lab is not None for lab in labels):
        warn("--by-language: this corpus has no language labels (only udhr has them); per-language tables skipped")
    if not segmenters:
        raise BltError(
            f"no segmenter could run ({', '.join(cfg.segmenters)}: all skipped above); "
            "add one that works offline, e.g. --segmenters bpe,space"
        )
    progress("measuring")
    surprisal = [g.surprisal_nats for g in grading] if grading is not None else None
    own = [s.surprisal_nats for s in scores] if grader is not None and scores is not None else None
    results = measure(segmenters, eval_docs, labels, surprisal, cfg, model_info, match_bpu, len(train_docs), own)
    results["vocab_size"] = vocab
    results["reference"] = _reference_facts(cfg, reference, match_bpu)
    results["grading"] = _grading_facts(cfg, model_info, grader_info)
    for row in results["segmenters"]:
        if row["matched"] is not False:  # False: a calibration that could not reach the rate (its note says why)
            row["matched"] = is_matched(row["bytes_per_unit"], match_bpu)
    if cfg.curves and surprisal is not None:
        entropies = [s.entropy_nats for s in scores] if scores is not None else None
        results["curves"] = evenness_curves(
            results["segmenters"], eval_docs, surprisal, entropies, train_docs,
            reference_bpu=match_bpu, cache=cfg.cache, progress=progress,
        )  # fmt: skip
    return results


def _load_grader(name: str) -> Any:
    from blt.bytelm.checkpoint import load_model

    try:
        return load_model(name, device="auto")
    except BltError as e:
        raise BltError(f"--grader: {e}") from None


def _reference_facts(cfg: CompareConfig, reference: str | None, bpu: float | None) -> dict[str, Any] | None:
    if reference is None or bpu is None:
        return None
    return {"segmenter": reference, "bytes_per_unit": bpu, "chosen": "auto" if cfg.match == "auto" else "given"}


def _grading_facts(cfg: CompareConfig, placer: dict[str, Any], grader: dict[str, Any] | None) -> dict[str, Any]:
    """Which model's surprisal grades bits/unit, and whether it is the one that placed the entropy boundaries."""
    if grader is None:
        facts = {"model": cfg.model, "independent": False, "bits_per_byte": placer.get("bits_per_byte")}
        return facts | ({"online_lr": cfg.online_lr} if cfg.online_lr is not None else {})
    independent = not grader.get("same_weights")
    return {"model": cfg.grader, "independent": independent, "bits_per_byte": grader["bits_per_byte"]}


def _score(
    lm: Any, docs: list[bytes], cfg: CompareConfig, name: str | None = None
) -> tuple[list[ByteScores] | None, dict[str, Any]]:
    """The byte model's scores of `docs` (Lightning predict loop, disk cache) and what the report says of them."""
    from blt.bytelm.corpus import score_corpus
    from blt.bytelm.score_cache import load_scores, save_scores, scores_path
    from blt.cache import model_hash

    sha = model_hash(lm)  # once, for the cache check and the scoring
    path = scores_path(lm, docs, precision=cfg.precision, model_sha=sha)
    # only a verified hit counts as cached (load_scores discards a damaged entry): results.json says which it was
    scores = load_scores(path, docs) if cfg.cache else None
    cached = scores is not None
    t = time.perf_counter()
    if scores is None:
        scores = score_corpus(lm, docs, precision=cfg.precision, devices=cfg.devices, cache=False, model_sha=sha)
        if scores is None:
            return None, {}  # a rank other than 0 of a multi-device run
        if cfg.cache:
            save_scores(path, scores)
    seconds = time.perf_counter() - t
    return scores, {
        "model": name or cfg.model,
        "params": lm.num_params(),
        "bits_per_byte": corpus_bits_per_byte(scores),
        "scores_cached": cached,
        "scoring_mb_per_s": None if cached else sum(map(len, docs)) / 1e6 / seconds,
        "scoring_seconds": None if cached else seconds,  # entropy rows' end-to-end speed includes it
        "scoring_device": str(next(lm.parameters()).device),
        "online_lr": None,
        **fit_facts(docs, [s.surprisal_nats for s in scores], [s.entropy_nats for s in scores]),
    }


def _score_online(
    lm: Any, docs: list[bytes], cfg: CompareConfig, static: dict[str, Any], progress: Callable[[str], None]
) -> tuple[list[ByteScores], dict[str, Any]]:
    """`docs` scored online: one learner, a copy of `lm`, reads them in order and takes an Adam step (`online_lr`)
    on each window after scoring it (`blt.bytelm.online`). The fit facts become the online ones, the static facts
    stay beside them (`static`), and the scoring cost is the online one (the entropy rows are placed on these
    scores). Never cached: the scores depend on the step size and on every document read before them."""
    from blt.bytelm.online import OnlineScorer

    assert cfg.online_lr is not None
    total, done, shown = sum(map(len, docs)), 0, -1

    def advance(n: int) -> None:  # a percentage, not one message per window
        nonlocal done, shown
        done += n
        percent = 100 * done // max(total, 1)
        if percent != shown:
            shown = percent
            progress(f"scoring the evaluation split online (Adam lr {cfg.online_lr:g}): {shown}%")

    t = time.perf_counter()
    scores = OnlineScorer(lm, lr=cfg.online_lr, precision=cfg.precision).score(docs, advance)
    seconds = time.perf_counter() - t
    kept = ("bits_per_byte", "mean_entropy_bits", "calibration_gap", "worse_than", "scores_cached", "scoring_seconds")
    surprisal, entropy = [s.surprisal_nats for s in scores], [s.entropy_nats for s in scores]
    return scores, {
        **static,
        "bits_per_byte": corpus_bits_per_byte(scores),
        "scores_cached": False,
        "scoring_mb_per_s": total / 1e6 / seconds,
        "scoring_seconds": seconds,
        "online_lr": cfg.online_lr,
        **fit_facts(docs, surprisal, entropy, compressors=static["compressors_bits_per_byte"]),  # compressed once
        "static": {k: static[k] for k in kept},
    }


def _bytes_per_unit(seg: Segmenter, docs: Sequence[bytes]) -> float:
    return sum(map(len, docs)) / sum(len(seg.starts(d)) for d in docs)


def _entropy_segmenter(
    name: str, scores: Sequence[ByteScores], reference: str | None, match_bpu: float | None, cfg: CompareConfig, lm: Any
) -> Segmenter:
    """Entropy patches over the scored evaluation documents, at a calibrated or given value (a threshold, or for
    entropy-budget a budget). A matched rate the rule cannot reach gives the nearest reachable one, flagged
    (`matched` False and a `match_note`)."""
    rule = name.removeprefix("entropy-")
    ents = [s.entropy_nats for s in scores]
    matched, note = None, None
    if match_bpu is not None:
        rows = [e for e in ents if len(e)]
        lo, hi = reachable_bytes_per_patch(rows, rule)
        target = min(max(match_bpu, lo), hi)
        matched = target == match_bpu
        if not matched:
            note = (
                f"{name} cannot reach {reference}'s {match_bpu:.3f} bytes/unit on this text (it reaches "
                f"{lo:.3f}–{hi:.3f}); shown at the nearest, {target:.3f}"
            )
        value = calibrate_threshold(rows, target, rule=rule)
    else:
        value = _given_threshold(name, cfg, lm)
    by_data = {s.data: e for s, e in zip(scores, ents, strict=True)}
    cut = {RULE_VALUE[rule]: value}

    def starts(data: bytes) -> np.ndarray:
        return patch_starts(by_data[data], rule=rule, **cut)

    values = {"budget_nats": value} if rule == "budget" else {"threshold_nats": value}
    return Segmenter(name, None, starts, rule=rule, matched=matched, match_note=note, **values)


def reachable_bytes_per_patch(entropies: Sequence[np.ndarray], rule: str) -> tuple[float, float]:
    """The bytes/patch an entropy rule can give over these (non-empty) rows for values ≥ 0: from 0 (every rise, every
    positive entropy, or for the budget rule every byte of positive entropy starts) to ∞ (only each row's first
    byte)."""
    total = sum(map(len, entropies))
    most = sum(map(len, patch_starts(list(entropies), rule=rule, **{RULE_VALUE[rule]: 0.0})))  # one batched call
    return total / most, total / len(entropies)


def _given_threshold(name: str, cfg: CompareConfig, lm: Any) -> float:
    """An unmatched entropy segmenter's value (threshold or budget, nats): given, else the model card's; none is an
    error."""
    rule = name.removeprefix("entropy-")
    given = {"global": cfg.threshold, "monotonic": cfg.relative_threshold, "budget": cfg.budget}[rule]
    card = lm.card.get("patch_thresholds_nats", {}) if lm is not None else {}
    value = given if given is not None else card.get(rule)
    if value is None:
        if rule == "budget":
            raise BltError(f"{name} needs --match or a budget (--budget NATS: the summed entropy a patch may hold)")
        raise BltError(f"{name} needs --match or a threshold (--threshold / --relative-threshold)")
    return value


def patcher_name(path: str, paths: Sequence[str]) -> str:
    """A saved patcher's row: `patcher:DIRNAME`, or `patcher:PATH` when another of `paths` has the same name."""
    from pathlib import Path

    names = [Path(p).name for p in paths]
    return f"patcher:{Path(path).name if names.count(Path(path).name) == 1 else path}"


def load_patchers(cfg: CompareConfig) -> list[Any]:
    """Every `--patcher DIR` loaded (rule, values and model as saved; a bad directory fails before any work)."""
    from blt.segment.saved import load_patcher

    out = []
    for path in cfg.patchers:
        try:
            out.append(load_patcher(path, cache=cfg.cache))
        except BltError as e:
            raise BltError(f"--patcher {path}: {e}") from None
    return out


def saved_patcher_segmenter(name: str, patcher: Any, docs: Sequence[bytes]) -> Segmenter:
    """A saved patcher's row: its own patches of `docs` (its model scores them, at its saved rule and values: never
    recalibrated, so it sits at whatever rate those give here and is matched only when that is within 1 %)."""
    t = time.perf_counter()
    patches = patcher.patch(list(docs))
    seconds = time.perf_counter() - t
    by_data = {p.data: p.starts for p in patches}
    rule, value = patcher.rule, patcher.rule_threshold
    values = {"budget_nats": value} if rule == "budget" else {"threshold_nats": value}
    return Segmenter(name, None, by_data.__getitem__, rule=rule, prepare_seconds=seconds, **values)
