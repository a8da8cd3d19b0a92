"""`run_compare` with `online_lr` (`blt compare --online`): the held-out text is scored by one online learner
(`blt.bytelm.online`) reading the documents in order, and everything downstream sees those scores.

Each reported number is recomputed outside the run: the entropy rows' thresholds and boundaries from `score_online`'s
entropies of the held-out documents, the fit (bits/byte, predicted entropy, calibration gap) from its surprisal and
entropy, the static bits/byte beside it from `score`. Online scores never enter the static score cache; a grader
stays static; with adaptation the learner starts from the adapted model.

The corpus: conftest's Zipf documents (four languages, a 50-character alphabet), served as `udhr`; the model: the
tiny spiky one (entropies ≈ 0–2.6 nats), which learns the alphabet within a few windows, so online is far cheaper.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import compare_with_probes, make_model, save_spiky, zipf_documents

import blt.bytelm.checkpoint
import blt.bytelm.online
import blt.bytelm.sources
import blt.compare.run
from blt.bytelm.checkpoint import load_model, save_model_dir
from blt.bytelm.entropy import LN2, ByteScores, corpus_bits_per_byte, score
from blt.bytelm.online import OnlineScorer, score_online
from blt.cache import cache_dir
from blt.compare.config import CompareConfig, validate
from blt.compare.report import compare_notes, write_compare_report
from blt.config import load_config
from blt.errors import BltError
from blt.metrics import SegmentationStats
from blt.patching.calibration import calibrate_threshold
from blt.patching.rules import patch_starts

REPO = Path(__file__).resolve().parents[2]
DOCS = zipf_documents(per_language=10)
LR = 1e-3  # large enough that the tiny model's online scores move well away from its static ones in a few windows
SEGMENTERS = ["space", "entropy-global", "entropy-budget"]


def compare(cfg: CompareConfig, mp: pytest.MonkeyPatch) -> dict[str, Any]:
    """conftest's `compare_with_probes` on DOCS."""
    return compare_with_probes(cfg, mp, DOCS)


def config(model_dir: Path, **changes: Any) -> CompareConfig:
    fields: dict[str, Any] = dict(
        sources=["udhr"], segmenters=SEGMENTERS, model=str(model_dir), match="space", eval_fraction=0.25
    )
    return CompareConfig(**(fields | changes))


def starts_of(probe: dict[str, Any], name: str) -> list[np.ndarray]:
    return [np.asarray(probe["segmenters"][name].starts(d), np.int64) for d in probe["eval_docs"]]


@pytest.fixture(scope="module")
def online_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One online comparison (space as the reference rate), with a private cache (module fixtures run before
    conftest's autouse one)."""
    model_dir = save_spiky(tmp_path_factory.mktemp("m") / "spiky")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BLT_CACHE", str(tmp_path_factory.mktemp("cache")))
        probe = compare(config(model_dir, online_lr=LR), mp)
    probe["model"] = load_model(model_dir)
    probe["online"] = score_online(probe["model"], probe["eval_docs"], lr=LR)
    probe["static"] = score(probe["model"], probe["eval_docs"])
    return probe


def test_the_entropy_rows_are_placed_on_the_online_entropies(online_run: dict[str, Any]) -> None:
    """Each entropy row's value is `calibrate_threshold` of the online entropies to space's rate, and its boundaries
    are `patch_starts` of those entropies at that value, document by document; they are not the static ones."""
    eval_docs, results = online_run["eval_docs"], online_run["results"]
    online = [s.entropy_nats for s in online_run["online"]]
    static = [s.entropy_nats for s in online_run["static"]]
    rate = results["match_bytes_per_unit"]
    rows = {r["segmenter"]: r for r in results["segmenters"]}
    for name, key, kw in (
        ("entropy-global", "threshold_nats", "threshold"),
        ("entropy-budget", "budget_nats", "budget"),
    ):
        rule = name.removeprefix("entropy-")
        value = calibrate_threshold(online, rate, rule=rule)
        assert rows[name][key] == value, name
        expected = [patch_starts(e, rule=rule, **{kw: value}) for e in online]
        assert all(np.array_equal(a, b) for a, b in zip(expected, starts_of(online_run, name), strict=True)), name
        assert rows[name]["units"] == sum(map(len, expected)) and rows[name]["matched"] is True
        assert value != calibrate_threshold(static, rate, rule=rule), name  # the static entropies cut elsewhere
    assert len(eval_docs) == results["eval_documents"] >= 5


def test_the_fit_is_the_online_one_with_the_static_one_beside_it(online_run: dict[str, Any]) -> None:
    """bits/byte, mean predicted entropy and calibration gap are `score_online`'s (Σ over all held-out bytes);
    `static` holds `score`'s; both face the same compressor figures; online learnt and pays less; the scoring cost
    reported is the online one (never cached)."""
    model, online, static = online_run["results"]["byte_model"], online_run["online"], online_run["static"]
    n = sum(map(len, online_run["eval_docs"]))
    paid = sum(float(s.surprisal_nats.sum(dtype=np.float64)) for s in online) / (LN2 * n)
    predicted = sum(float(s.entropy_nats.sum(dtype=np.float64)) for s in online) / (LN2 * n)
    assert model["online_lr"] == LR
    assert model["bits_per_byte"] == pytest.approx(corpus_bits_per_byte(online), rel=1e-6) == pytest.approx(paid)
    assert model["mean_entropy_bits"] == pytest.approx(predicted, rel=1e-6)
    assert model["calibration_gap"] == pytest.approx((paid - predicted) / paid, rel=1e-5)
    assert model["static"]["bits_per_byte"] == pytest.approx(corpus_bits_per_byte(static), rel=1e-6)
    static_paid = corpus_bits_per_byte(static)
    static_predicted = sum(float(s.entropy_nats.sum(dtype=np.float64)) for s in static) / (LN2 * n)
    assert model["static"]["calibration_gap"] == pytest.approx((static_paid - static_predicted) / static_paid, rel=1e-5)
    assert model["bits_per_byte"] < 0.9 * model["static"]["bits_per_byte"]  # ≈ 17.5 -> ≈ 6.5 here
    comp = model["compressors_bits_per_byte"]
    assert model["worse_than"] == [k for k, v in comp.items() if model["bits_per_byte"] > v]
    assert model["static"]["worse_than"] == [k for k, v in comp.items() if model["static"]["bits_per_byte"] > v]
    assert model["scores_cached"] is False and model["scoring_seconds"] > 0
    assert model["scoring_mb_per_s"] == pytest.approx(n / 1e6 / model["scoring_seconds"])
    assert online_run["results"]["config"]["online_lr"] == LR
    grading = online_run["results"]["grading"]
    assert grading == {"model": model["model"], "independent": False, "bits_per_byte": model["bits_per_byte"]} | {
        "online_lr": LR
    }


def test_bits_per_unit_are_graded_by_the_online_surprisal(online_run: dict[str, Any]) -> None:
    """Without a grader the placer grades (circular, as static): every row's bits/unit is SegmentationStats fed the
    online surprisal."""
    for row in online_run["results"]["segmenters"]:
        stats = SegmentationStats()
        for data, starts, s in zip(
            online_run["eval_docs"], starts_of(online_run, row["segmenter"]), online_run["online"], strict=True
        ):
            stats.add(data, starts, s.surprisal_nats)
        assert row["bits_per_unit_cv"] == pytest.approx(stats.summary()["bits_per_unit_cv"], rel=1e-6)
        assert row["bits_per_unit_mean"] == pytest.approx(stats.summary()["bits_per_unit_mean"], rel=1e-6)


def test_the_report_says_online_with_the_lr_the_cost_and_the_static_figure(
    online_run: dict[str, Any], tmp_path: Path
) -> None:
    model = online_run["results"]["byte_model"]
    notes = compare_notes(online_run["results"])
    fit = next(line for line in notes if line.startswith("byte model fit"))
    assert fit.startswith(f"byte model fit, scored online (Adam lr {LR:g}, one step on each window after scoring it)")
    assert f"{model['bits_per_byte']:.3f} bits/byte (static {model['static']['bits_per_byte']:.3f};" in fit
    assert f"online scoring took {model['scoring_seconds']:.1f} s" in fit
    assert any(f"the byte model's online (Adam lr {LR:g}) surprisal" in line for line in notes)
    write_compare_report(online_run["results"], tmp_path, "blt compare --online", {})
    md = (tmp_path / "report.md").read_text()
    assert "scored online: a copy of it read the held-out documents in order" in md
    assert f"{model['bits_per_byte']:.3f} bits/byte on the held-out text against " in md
    assert f"{model['static']['bits_per_byte']:.3f} static" in md and "Online scores are never cached" in md
    saved = json.loads((tmp_path / "results.json").read_text())["byte_model"]
    assert saved["online_lr"] == LR and saved["static"]["bits_per_byte"] == pytest.approx(
        model["static"]["bits_per_byte"]
    )


def test_online_scores_never_enter_the_static_score_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An online run caches only its static scores (one entry, equal to `score`'s); a second online run reads those
    back (`static.scores_cached`) and scores online again; a static run after it finds the static entry, and its
    bits/byte is the static one, not the online one."""
    model_dir = save_spiky(tmp_path / "spiky")
    online_calls: list[int] = []
    real = OnlineScorer.score

    def counting(self: OnlineScorer, texts: Any, progress: Any = None) -> list[ByteScores]:
        online_calls.append(1)
        return real(self, texts, progress)

    monkeypatch.setattr(blt.bytelm.online.OnlineScorer, "score", counting)
    first = compare(config(model_dir, online_lr=LR), monkeypatch)
    entries = sorted(p for p in cache_dir("scores").iterdir() if not p.name.startswith("."))
    assert len(entries) == 1 and len(online_calls) == 1
    second = compare(config(model_dir, online_lr=LR), monkeypatch)
    assert len(online_calls) == 2 and second["results"]["byte_model"]["static"]["scores_cached"] is True
    assert first["results"]["byte_model"]["static"]["scores_cached"] is False
    static = compare(config(model_dir), monkeypatch)["results"]["byte_model"]
    assert len(online_calls) == 2 and static["scores_cached"] is True and static["online_lr"] is None
    assert static["bits_per_byte"] == pytest.approx(
        corpus_bits_per_byte(score(load_model(model_dir), first["eval_docs"]))
    )
    assert static["bits_per_byte"] == second["results"]["byte_model"]["static"]["bits_per_byte"]
    assert static["bits_per_byte"] != second["results"]["byte_model"]["bits_per_byte"]
    assert sorted(p for p in cache_dir("scores").iterdir() if not p.name.startswith(".")) == entries


def test_a_grader_stays_static(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--grader with --online: the grader's bits/byte is its static `score`; bits/unit are its surprisal over the
    online placer's units; the entropy rows' CV placer-graded uses the online surprisal."""
    placer_dir = save_spiky(tmp_path / "placer")
    grader_dir = save_model_dir(make_model(seed=7), load_config(REPO / "configs" / "tiny.yaml", []), {}, tmp_path / "g")
    probe = compare(config(placer_dir, online_lr=LR, grader=str(grader_dir)), monkeypatch)
    docs = probe["eval_docs"]
    grader_scores = score(load_model(grader_dir), docs)
    online = score_online(load_model(placer_dir), docs, lr=LR)
    assert probe["results"]["grading"] == {
        "model": str(grader_dir),
        "independent": True,
        "bits_per_byte": pytest.approx(corpus_bits_per_byte(grader_scores), rel=1e-6),
    }
    row = next(r for r in probe["results"]["segmenters"] if r["segmenter"] == "entropy-global")
    by_grader, by_placer = SegmentationStats(), SegmentationStats()
    for data, starts, g, p in zip(docs, starts_of(probe, "entropy-global"), grader_scores, online, strict=True):
        by_grader.add(data, starts, g.surprisal_nats)
        by_placer.add(data, starts, p.surprisal_nats)
    assert row["bits_per_unit_cv"] == pytest.approx(by_grader.summary()["bits_per_unit_cv"], rel=1e-6)
    assert row["bits_per_unit_cv_self"] == pytest.approx(by_placer.summary()["bits_per_unit_cv"], rel=1e-6)


def test_adapt_first_then_online_from_the_adapted_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """adapt_steps with online_lr: the model is adapted on the training split, then a copy of the adapted model
    scores online: bits/byte = `score_online(adapted)`, static = `score(adapted)`, before adaptation =
    `score(original)`; the entropy rows are placed on the adapted model's online entropies."""
    loaded: list[Any] = []
    real_load = blt.bytelm.checkpoint.load_model

    def recording_load(*args: Any, **kw: Any) -> Any:
        loaded.append(real_load(*args, **kw))
        return loaded[-1]

    monkeypatch.setattr(blt.bytelm.checkpoint, "load_model", recording_load)
    probe = compare(config(save_spiky(tmp_path / "spiky"), online_lr=LR, adapt_steps=2), monkeypatch)
    model, docs = probe["results"]["byte_model"], probe["eval_docs"]
    original, adapted = loaded
    assert adapted.card["steps"] == 2 and model["adapt_steps"] == 2
    online = score_online(adapted, docs, lr=LR)
    assert model["bits_per_byte"] == pytest.approx(corpus_bits_per_byte(online), rel=1e-6)
    assert model["static"]["bits_per_byte"] == pytest.approx(corpus_bits_per_byte(score(adapted, docs)), rel=1e-6)
    assert model["bits_per_byte_before_adapt"] == pytest.approx(corpus_bits_per_byte(score(original, docs)), rel=1e-6)
    row = next(r for r in probe["results"]["segmenters"] if r["segmenter"] == "entropy-global")
    expected = [patch_starts(s.entropy_nats, threshold=row["threshold_nats"]) for s in online]
    assert all(np.array_equal(a, b) for a, b in zip(expected, starts_of(probe, "entropy-global"), strict=True))
    assert not torch.equal(adapted.embed.weight, original.embed.weight)


def test_online_without_an_entropy_segmenter_still_scores_and_grades(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--online with only space: the model is loaded to score online (else the flag would do nothing), and space's
    bits/unit are graded by the online surprisal."""
    model_dir = save_spiky(tmp_path / "spiky")
    probe = compare(config(model_dir, online_lr=LR, segmenters=["space"], match=None), monkeypatch)
    online = score_online(load_model(model_dir), probe["eval_docs"], lr=LR)
    row = probe["results"]["segmenters"][0]
    units = sum(len(s) for s in starts_of(probe, "space"))
    bits = sum(float(s.surprisal_nats.sum(dtype=np.float64)) for s in online) / LN2
    assert row["bits_per_unit_mean"] == pytest.approx(bits / units, rel=1e-6)
    assert probe["results"]["byte_model"]["online_lr"] == LR


def test_validation_of_the_online_step_size() -> None:
    for lr in (0.0, 1.0, -1e-3, math.nan):
        with pytest.raises(BltError, match=r"--online-lr must be in \(0, 1\)"):
            validate(CompareConfig(online_lr=lr))
    with pytest.raises(BltError, match="--online reads the held-out documents in order on one device"):
        validate(CompareConfig(online_lr=LR, devices=2))
    validate(CompareConfig(online_lr=LR, adapt_minutes=1.0))  # adapt, then online: a valid combination


def test_repeated_held_out_documents_are_warned_about(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Online, a repeated document scores differently from its first copy, but the entropy rows find scores by a
    document's bytes: the run says so (static scores of a repeat are identical, so a static run does not)."""
    held = tmp_path / "held"
    held.mkdir()
    for i, text in enumerate(["the same words again. " * 6, "other words here. " * 5, "the same words again. " * 6]):
        (held / f"{i}.txt").write_text(text)
    cfg = config(save_spiky(tmp_path / "spiky"), online_lr=LR, eval_sources=[str(held)])
    probe = compare(cfg, monkeypatch)
    assert any("1 held-out documents repeat an earlier one" in w for w in probe["warnings"])
    static = compare(config(Path(cfg.model), eval_sources=[str(held)]), monkeypatch)
    assert not any("repeat" in w for w in static["warnings"])
