"""Running experiments end to end with the tiny model: one tidy row per cell with every parameter, values equal to
a direct computation, scoring and tokeniser training once per key (counted), resume after an interruption (a real
SIGKILL included) giving the same table, workers giving the same table, and the output-directory guards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import REPO, assert_user_error, make_model, run_cli, save_spiky, zipf_documents

import blt.bytelm.corpus
import blt.bytelm.sources
import blt.experiments.run
import blt.segment.pretrained
import blt.segment.tokenizers
from blt.errors import BltError
from blt.experiments.config import METRICS, PARAM_COLUMNS, TIMINGS, expand, experiment_from_dict
from blt.experiments.run import run_experiment
from blt.metrics import SegmentationStats

DOCS = zipf_documents(per_language=12)


def grid(model: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": "tiny",
        "corpora": ["udhr"],
        "models": [str(model)],
        "segmenters": [
            {"kind": "bpe", "vocab_size": [300, 320]},
            {"kind": "sp-unigram", "vocab_size": [400]},
            "space",
            {"kind": "fixed", "patch_size": [3, 5]},
            {"kind": "entropy-global", "target_bytes_per_patch": [3, 5]},
            {"kind": "entropy-monotonic", "threshold": [0.1], "max_patch_length": [None, 4]},
        ],
        "eval_fraction": 0.25,
        **extra,
    }


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return save_spiky(tmp_path / "spiky")


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The bundled corpus replaced by labelled Zipf documents; byte-model score and tokeniser train calls counted."""
    counted = {"score": 0, "bpe": 0, "sp": 0}
    real_score, real_bpe, real_sp = (
        blt.bytelm.corpus.score,
        blt.segment.tokenizers.ByteBPE.train,
        blt.segment.tokenizers.SentencePieceSegmenter.train,
    )

    def score(*a: Any, **k: Any) -> Any:
        counted["score"] += 1
        return real_score(*a, **k)

    def bpe(*a: Any, **k: Any) -> Any:
        counted["bpe"] += 1
        return real_bpe(*a, **k)

    def sp(*a: Any, **k: Any) -> Any:
        counted["sp"] += 1
        return real_sp(*a, **k)

    monkeypatch.setattr(blt.bytelm.sources, "udhr_documents", lambda: iter(DOCS))
    monkeypatch.setattr(blt.bytelm.corpus, "score", score)
    monkeypatch.setattr(blt.segment.tokenizers.ByteBPE, "train", bpe)
    monkeypatch.setattr(blt.segment.tokenizers.SentencePieceSegmenter, "train", sp)
    return counted


def table(out: Path) -> list[dict[str, Any]]:
    """results.parquet without the timing columns (the only ones allowed to differ between runs)."""
    return [
        {k: v for k, v in r.items() if k not in TIMINGS} for r in pq.read_table(out / "results.parquet").to_pylist()
    ]


def test_one_row_per_cell_with_every_parameter_and_metric(tmp_path: Path, model: Path, counts: dict) -> None:
    cfg = experiment_from_dict(grid(model))
    result = run_experiment(cfg, tmp_path / "out", warn=pytest.fail)
    assert result is not None
    rows = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()
    cells = expand(cfg)
    assert [r["cell"] for r in rows] == [c.id for c in cells] and len(rows) == 10
    for r in rows:
        assert set(r) == {"cell", "corpus", "model", "segmenter", "kind", *PARAM_COLUMNS, *METRICS}
    by = {r["segmenter"]: r for r in rows}
    assert by["bpe-300"]["vocab_size"] == 300 and by["fixed-5"]["patch_size"] == 5
    assert by["entropy-monotonic θ0.1/max4"]["max_patch_length"] == 4
    assert by["entropy-monotonic θ0.1"]["threshold_nats"] == pytest.approx(0.1)
    for target in (3, 5):  # calibrated thresholds land on the target bytes/patch (≈: the count is a step function)
        row = by[f"entropy-global@{target}"]
        assert row["target_bytes_per_patch"] == target and row["bytes_per_unit"] == pytest.approx(target, rel=0.05)
    assert by["entropy-monotonic θ0.1/max4"]["length_max"] <= 4
    assert counts == {"score": 1, "bpe": 2, "sp": 1}  # one corpus × one model; one training per (kind, vocab)
    docs = _held_out()
    meta = json.loads((tmp_path / "out" / "experiment.json").read_text())
    assert meta["complete"] and meta["config_sha256"] == cfg.digest() and meta["cells"] == 10
    assert len(meta["models"][str(model)]["sha256"]) == 64 and meta["corpora"]["udhr"]["eval_documents"] == len(docs)
    assert (tmp_path / "out" / "results.csv").read_text().count("\n") == 11
    assert (tmp_path / "out" / "report.md").is_file() and (tmp_path / "out" / "by_language.csv").is_file()


def _held_out() -> list[bytes]:
    """The held-out documents of the grid's split of the udhr stand-in."""
    from blt.compare.config import CompareConfig
    from blt.compare.run import split_corpus

    return split_corpus(CompareConfig(sources=["udhr"], eval_fraction=0.25, max_eval_bytes=1_000_000))[1]


def test_a_row_equals_a_direct_computation(tmp_path: Path, model: Path, counts: dict) -> None:
    """space and fixed-3: bytes/unit, F1 and the CV of bits per unit equal SegmentationStats fed by hand."""
    from blt.bytelm.checkpoint import load_model
    from blt.bytelm.entropy import score
    from blt.patching.rules import patch_starts

    run_experiment(experiment_from_dict(grid(model)), tmp_path / "out")
    docs = _held_out()
    labels = {d.label for d in DOCS if d.data in set(docs)}
    scores = score(load_model(model), docs)
    rows = {r["segmenter"]: r for r in table(tmp_path / "out")}
    for name, size in (("space", 1), ("fixed", 3)):
        stats = SegmentationStats()
        for data, s in zip(docs, scores, strict=True):
            arr = np.frombuffer(data, np.uint8)
            stats.add(
                data,
                patch_starts(np.zeros(len(data), np.float32), rule=name, patch_size=size, data=arr),
                s.surprisal_nats,
            )
        want = stats.summary()
        got = rows["space" if name == "space" else "fixed-3"]
        for key in ("bytes_per_unit", "word_boundary_f1", "bits_per_unit_cv", "units", "bytes"):
            assert got[key] == pytest.approx(want[key], rel=1e-9), key
    by_lang = (tmp_path / "out" / "by_language.csv").read_text().splitlines()
    assert len(by_lang) == 1 + 10 * len(labels) and len(labels) == 4  # a row per cell and language


def test_second_run_uses_the_caches_and_gives_the_same_table(tmp_path: Path, model: Path, counts: dict) -> None:
    cfg = experiment_from_dict(grid(model))
    run_experiment(cfg, tmp_path / "a")
    first = dict(counts)
    run_experiment(cfg, tmp_path / "b")
    assert counts == first  # no scoring, no tokeniser training: every input came from $BLT_CACHE
    assert table(tmp_path / "a") == table(tmp_path / "b")


def test_resume_after_an_interruption_computes_only_missing_cells(
    tmp_path: Path, model: Path, counts: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = experiment_from_dict(grid(model))
    run_experiment(cfg, tmp_path / "whole")
    real = blt.experiments.run.evaluate_cell
    evaluated: list[str] = []

    def interrupted(cell: Any, ctx: Any) -> Any:
        if len(evaluated) == 4:
            raise KeyboardInterrupt
        evaluated.append(cell.id)
        return real(cell, ctx)

    monkeypatch.setattr(blt.experiments.run, "evaluate_cell", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path / "out")
    assert len(list((tmp_path / "out" / "cells").glob("*.json"))) == 4
    assert not (tmp_path / "out" / "results.parquet").exists()
    with pytest.raises(BltError, match="pass --resume to finish it or --force"):
        run_experiment(cfg, tmp_path / "out")
    evaluated.clear()

    def counting(cell: Any, ctx: Any) -> Any:
        evaluated.append(cell.id)
        return real(cell, ctx)

    monkeypatch.setattr(blt.experiments.run, "evaluate_cell", counting)
    run_experiment(cfg, tmp_path / "out", resume=True)
    assert len(evaluated) == 6  # only the missing cells
    assert table(tmp_path / "out") == table(tmp_path / "whole")


def test_resume_after_kill_9(tmp_path: Path, model: Path) -> None:
    """A child process runs the experiment and SIGKILLs itself right after its third cell is written; --resume in
    the CLI then finishes the run, and the table equals an uninterrupted run's."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, d in enumerate(DOCS):
        (corpus / f"{i:03d}.txt").write_bytes(d.data)
    spec = grid(model, corpora=[{"name": "c", "sources": [str(corpus)]}])
    (tmp_path / "exp.yaml").write_text(json.dumps(spec))
    script = textwrap.dedent(
        f"""
        import os, signal
        from blt.experiments.config import load_experiment
        from blt.experiments.run import run_experiment
        def on_cell(done, total):
            if done == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        run_experiment(load_experiment({str(tmp_path / "exp.yaml")!r}), {str(tmp_path / "out")!r}, on_cell=on_cell)
        """
    )
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, env=os.environ.copy(), timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    assert len(list((tmp_path / "out" / "cells").glob("*.json"))) == 3
    assert not list((tmp_path / "out" / "cells").glob(".*"))  # no half-written cell file
    code, out, err = run_cli("experiment", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "out"), "--resume")
    assert code == 0, err
    code, out, err = run_cli("experiment", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "whole"))
    assert code == 0, err
    assert table(tmp_path / "out") == table(tmp_path / "whole")


def test_workers_give_the_same_table(tmp_path: Path, model: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, d in enumerate(DOCS[::2]):
        (corpus / f"{i:03d}.txt").write_bytes(d.data)
    cfg = experiment_from_dict(grid(model, corpora=[{"name": "c", "sources": [str(corpus)]}]))
    run_experiment(cfg, tmp_path / "one")
    run_experiment(cfg, tmp_path / "two", workers=2)
    assert table(tmp_path / "one") == table(tmp_path / "two")


def test_output_directory_guards(tmp_path: Path, model: Path, counts: dict) -> None:
    cfg = experiment_from_dict(grid(model, segmenters=["space", {"kind": "fixed", "patch_size": [2]}]))
    run_experiment(cfg, tmp_path / "out")
    other = experiment_from_dict(grid(model, segmenters=["space"]))
    with pytest.raises(BltError, match="holds results of a different experiment config"):
        run_experiment(other, tmp_path / "out", resume=True)
    assert (tmp_path / "out" / "by-language.png").is_file()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    run_experiment(other, tmp_path / "out", force=True, on_cell=lambda d, t: None)
    assert [r["segmenter"] for r in table(tmp_path / "out")] == ["space"]
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"  # --force removes only what a run writes
    assert len(list((tmp_path / "out" / "cells").glob("*.json"))) == 1
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    with pytest.raises(BltError, match="holds files that are not a blt experiment"):
        run_experiment(cfg, tmp_path / "stuff", force=True)
    assert (tmp_path / "stuff" / "notes.txt").read_text() == "mine"


def test_a_vocabulary_the_corpus_cannot_support_names_the_cell(tmp_path: Path, model: Path, counts: dict) -> None:
    cfg = experiment_from_dict(grid(model, segmenters=[{"kind": "bpe", "vocab_size": [300, 60000]}]))
    with pytest.raises(BltError) as info:
        run_experiment(cfg, tmp_path / "out")
    msg = str(info.value)
    assert msg.startswith("cell bpe-60000 on corpus udhr: vocab_size 60000 is too large") and "vocab_size ≤ " in msg


def test_unavailable_pretrained_tokeniser_is_skipped_with_a_warning(
    tmp_path: Path, model: Path, counts: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(*a: Any, **k: Any) -> Any:
        raise BltError("tiktoken is not installed; pip install 'blt-patcher[tiktoken]'")

    monkeypatch.setattr(blt.segment.pretrained, "TiktokenSegmenter", unavailable)
    warnings: list[str] = []
    cfg = experiment_from_dict(grid(model, segmenters=["space", "tiktoken-cl100k"]))
    run_experiment(cfg, tmp_path / "out", warn=warnings.append)
    assert [r["segmenter"] for r in table(tmp_path / "out")] == ["space"]
    assert warnings == ["tiktoken-cl100k skipped: tiktoken is not installed; pip install 'blt-patcher[tiktoken]'"]


def test_cli_list_and_bad_input(tmp_path: Path) -> None:
    code, out, err = run_cli("experiment", "--list", columns=200)
    assert code == 0 and all(n in out for n in ("patch-size-sweep", "multilingual", "code-vs-prose"))
    assert_user_error(["experiment", str(tmp_path / "none.yaml")], "does not exist; pass a YAML path")
    bad = tmp_path / "bad.yaml"
    bad.write_text("corpora: []\nsegmenters: [space]\n")
    assert_user_error(["experiment", str(bad)], "empty grid: no corpora")
    assert_user_error(["experiment"], "pass an experiment config")
    good = tmp_path / "good.yaml"
    good.write_text("corpora: [udhr]\nsegmenters: [{kind: space}]\nmodels: []\n")
    assert_user_error(["experiment", str(good), "--set", "segmenters.0.vocab_size=1"], "unknown parameter 'vocab_size'")


def test_an_unreachable_target_fails_before_any_training(tmp_path: Path, model: Path, counts: dict) -> None:
    """The monotonic rule cuts only where entropy rises, so ~1 byte/patch is out of its reach: the run stops with
    the cell and the reachable range, before a tokeniser trains or a cell runs."""
    segs = [{"kind": "bpe", "vocab_size": [300]}, {"kind": "entropy-monotonic", "target_bytes_per_patch": [1.01]}]
    with pytest.raises(BltError) as info:
        run_experiment(experiment_from_dict(grid(model, segmenters=segs)), tmp_path / "out")
    msg = str(info.value)
    assert msg.startswith("cell entropy-monotonic@1.01 on corpus udhr: target_bytes_per_patch=1.01 is out of reach")
    assert "remove that target from the grid" in msg and counts["bpe"] == 0
    assert not list((tmp_path / "out").glob("cells/*.json"))


def test_several_models_score_corpora_once_each_and_devices_need_one_model(
    tmp_path: Path, model: Path, counts: dict
) -> None:
    """Two corpora, two models: each model scores both corpora in one predict run (one Trainer, so a multi-device
    run launches once per model) and the per-corpus caches serve the next run; --devices > 1 with two models is
    refused before anything runs."""
    other = save_spiky(tmp_path / "other")  # same weights: a separate directory, the same content hash
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, d in enumerate(DOCS[::3]):
        (corpus / f"{i:03d}.txt").write_bytes(d.data)
    spec = grid(
        model,
        corpora=["udhr", {"name": "files", "sources": [str(corpus)]}],
        models=[str(model), str(other)],
        segmenters=["space", {"kind": "entropy-global", "target_bytes_per_patch": [3]}],
    )
    cfg = experiment_from_dict(spec)
    with pytest.raises(BltError, match="--devices 2 scores one byte model per run"):
        run_experiment(cfg, tmp_path / "out", devices=2)
    run_experiment(cfg, tmp_path / "out")
    assert counts["score"] == 1  # one predict batch over both corpora; the second model (same weights) hits the cache
    rows = table(tmp_path / "out")
    assert len(rows) == 8 and {r["model"] for r in rows} == {str(model), str(other)}
    first = {(r["corpus"], r["segmenter"]): r for r in rows if r["model"] == str(model)}
    for r in rows:  # equal weights, equal numbers
        assert {k: v for k, v in r.items() if k not in ("cell", "model")} == {
            k: v for k, v in first[r["corpus"], r["segmenter"]].items() if k not in ("cell", "model")
        }


def test_budget_cells_the_surprisal_oracle_and_a_second_grader(tmp_path: Path, model: Path, counts: dict) -> None:
    """entropy-budget cells cut the held-out entropies at their budget (given, or calibrated to the target: within
    one patch of it), reported as `budget_nats`, never a threshold; the surprisal-budget oracle runs the same rule
    on each byte's realised surprisal, so each of its patches holds at most B nats of the surprisal it is graded by
    (unless it is one byte). With a grader every cell is graded twice: CV bits/unit by its own model, CV by grader
    by the second model's surprisal (SegmentationStats fed by hand, both ways)."""
    from blt.bytelm.checkpoint import load_model, save_model_dir
    from blt.bytelm.entropy import score
    from blt.config import load_config
    from blt.patching.rules import patch_starts

    grader = save_model_dir(make_model(seed=7), load_config(REPO / "configs" / "tiny.yaml", []), {}, tmp_path / "g")
    segs = [
        {"kind": "entropy-budget", "target_bytes_per_patch": [3]},
        {"kind": "entropy-budget", "budget": [2.0]},
        {"kind": "surprisal-budget", "target_bytes_per_patch": [4]},
        {"kind": "fixed", "patch_size": [3]},
    ]
    result = run_experiment(experiment_from_dict(grid(model, segmenters=segs, grader=str(grader))), tmp_path / "out")
    assert result is not None and result["meta"]["grader"]["name"] == str(grader)
    rows = {r["segmenter"]: r for r in table(tmp_path / "out")}
    assert list(rows) == ["entropy-budget@3", "entropy-budget B2", "surprisal-budget@4", "fixed-3"]
    docs = _held_out()
    placer, second = score(load_model(model), docs), score(load_model(grader), docs)
    n_bytes = sum(map(len, docs))
    cases = (("entropy-budget@3", "entropy"), ("entropy-budget B2", "entropy"), ("surprisal-budget@4", "surprisal"))
    for name, cuts_on in cases:
        row = rows[name]
        budget = row["budget_nats"]
        assert row["threshold_nats"] is None and budget > 0
        values = [s.entropy_nats if cuts_on == "entropy" else s.surprisal_nats for s in placer]
        starts = [patch_starts(v, rule="budget", budget=budget) for v in values]
        assert row["units"] == sum(map(len, starts))
        if row["target_bytes_per_patch"] is not None:
            assert abs(row["units"] - n_bytes / row["target_bytes_per_patch"]) <= 1
        if cuts_on == "surprisal":  # the oracle: every multi-byte patch holds ≤ B nats of the surprisal that grades it
            for v, s in zip(values, starts, strict=True):
                held = np.add.reduceat(v.astype(np.float64), s)
                assert np.all((held <= budget) | (np.diff(np.append(s, len(v))) == 1))
        mine, theirs = SegmentationStats(), SegmentationStats()
        for data, s, p, g in zip(docs, starts, placer, second, strict=True):
            mine.add(data, s, p.surprisal_nats)
            theirs.add(data, s, g.surprisal_nats)
        assert row["bits_per_unit_cv"] == pytest.approx(mine.summary()["bits_per_unit_cv"], rel=1e-9)
        assert row["bits_per_unit_cv_grader"] == pytest.approx(theirs.summary()["bits_per_unit_cv"], rel=1e-9)
        assert row["bits_per_unit_mean_grader"] == pytest.approx(theirs.summary()["bits_per_unit_mean"], rel=1e-9)
    assert rows["entropy-budget B2"]["budget_nats"] == 2.0
    assert rows["fixed-3"]["bits_per_unit_cv_grader"] is not None and rows["fixed-3"]["budget_nats"] is None
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| CV by grader |" in report and f"- Grader `{grader}`" in report and "an upper bound" in report
    assert (tmp_path / "out" / "tradeoff-evenness-grader.png").read_bytes()[:4] == b"\x89PNG"


def test_budget_cells_without_a_value_fall_back_to_the_card_but_the_oracle_cannot() -> None:
    """Neither budget nor target: entropy-budget takes the model card's budget (for predicted entropies); the
    surprisal oracle refuses it (a budget for entropies is not one for realised surprisal) and names the fix."""
    from blt.experiments.config import Cell
    from blt.experiments.run import cell_threshold

    card = {"global": 2.0, "budget": 6.3}
    assert cell_threshold(Cell("c", "m", "entropy-budget", ()), None, card) == 6.3  # type: ignore[arg-type]
    with pytest.raises(BltError, match="the surprisal oracle has no stored budget; give budget or a target"):
        cell_threshold(Cell("c", "m", "surprisal-budget", ()), None, card)  # type: ignore[arg-type]
    with pytest.raises(BltError, match="model m has no budget; give budget or a target"):
        cell_threshold(Cell("c", "m", "entropy-budget", ()), None, {"global": 2.0})  # type: ignore[arg-type]
