"""`blt compare` through typer's CliRunner: the table, the report files and the numbers equal the library's
`run_compare` on the same corpus; thresholds come from `--match` or the model card; every user mistake gives one
red line and exit code 1, never a traceback."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import gflanguages
import lightning  # noqa: F401  imported first so its log handler binds to the real stderr, not a runner buffer
import numpy as np
import pytest
import torch
from conftest import assert_user_error, make_spiky_model, run_cli

import blt.segment.pretrained
import blt.segment.tokenizers
from blt.bytelm.checkpoint import load_model, save_model_dir
from blt.bytelm.entropy import score
from blt.compare.config import CompareConfig
from blt.compare.run import run_compare, split_corpus
from blt.config import Config
from blt.errors import BltError
from blt.patching.rules import patch_starts

CARD_THRESHOLDS = {"global": 0.3, "monotonic": 0.05, "budget": 3.0}  # nats (budget: summed entropy per patch)


def save_spiky(path: Path, card: dict) -> Path:
    """The tiny conftest model with logits ×20 (entropies ≈ 0–2.6 nats, so thresholds matter)."""
    model = make_spiky_model(0)
    return save_model_dir(model, Config(model=model.cfg), card, path)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The spiky model with default patch thresholds in its card."""
    return save_spiky(tmp_path_factory.mktemp("m") / "card", {"steps": 0, "patch_thresholds_nats": CARD_THRESHOLDS})


@pytest.fixture(scope="module")
def plain_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The spiky model with no thresholds in its card."""
    return save_spiky(tmp_path_factory.mktemp("m") / "plain", {"steps": 0})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 files of 15–34 words drawn from the English and French UDHR specimens with p ∝ 1/rank: ≈ 10 kB of
    ≈ 50 characters, on which a 400-token BPE reaches ≈ 3 bytes/unit."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(1)
    languages = gflanguages.LoadLanguages()
    for i in range(60):
        words = languages[("en_Latn", "fr_Latn")[i % 2]].sample_text.specimen_16.split()
        p = 1 / np.arange(1, len(words) + 1)
        text = " ".join(rng.choice(words, size=int(rng.integers(15, 35)), p=p / p.sum()))
        (root / f"d{i:02d}.txt").write_text(text)
    return root


def results_of(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_compare_end_to_end_equals_the_library(
    model_dir: Path, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    segs = "bpe,sp-unigram,space,fixed,entropy-global,entropy-monotonic,entropy-budget"
    args = ["compare", "--data", str(corpus), "--model", str(model_dir), "--segmenters", segs]
    args += ["--vocab-size", "400", "--out", str(out), "--by-language"]
    monkeypatch.setattr(sys, "argv", ["blt", *args])  # the report records the command line it was run with
    code, stdout, stderr = run_cli(*args, columns=250)
    assert code == 0, stderr
    assert "Traceback" not in stdout + stderr and "error" not in stderr
    header = next(line for line in stdout.splitlines() if "segmenter" in line)
    assert [c.strip() for c in header.split("┃")[1:6]] == ["segmenter", "vocab", "bytes/unit", "matched", "units/word"]
    assert stdout.strip().splitlines()[-1] == f"report: {out / 'report.md'}"
    cli = results_of(out)
    lib = run_compare(
        CompareConfig(
            sources=[str(corpus)], model=str(model_dir), segmenters=segs.split(","), vocab_size=400, by_language=True
        ),
        warn=lambda m: None if "no language labels" in m else pytest.fail(m),  # a directory corpus has no labels
    )
    names = ["bpe", "sp-unigram", "space", f"fixed-{lib['match_bytes_per_unit']:.2f}"]
    names += ["entropy-global", "entropy-monotonic", "entropy-budget"]
    assert [r["segmenter"] for r in cli["segmenters"]] == [r["segmenter"] for r in lib["segmenters"]] == names
    for mine, theirs in zip(cli["segmenters"], lib["segmenters"], strict=True):
        keys = ("units", "bytes_per_unit", "fertility", "renyi_efficiency_types", "renyi_efficiency_vocab")
        for key in (*keys, "threshold_nats", "budget_nats", "bits_per_unit_cv"):
            a, b = mine.get(key), theirs.get(key)  # None (no threshold) on both sides, or equal numbers
            assert (a is None and b is None) or a == pytest.approx(b, rel=1e-9), (mine["segmenter"], key)
    table = {line.split("│")[1].strip(): line for line in stdout.splitlines() if line.startswith("│")}
    assert list(table) == names
    for r in cli["segmenters"]:
        cells = [c.strip() for c in table[r["segmenter"]].split("│")[1:-1]]
        assert cells[1] == (str(r["vocab_size"]) if r["vocab_size"] else "open")
        assert cells[2] == f"{r['bytes_per_unit']:.2f}" and cells[4] == f"{r['fertility']:.2f}"
        assert cells[3] == (
            "ref" if r["segmenter"] == "bpe" else "yes" if r["matched"] else "no *" if r["match_note"] else "no"
        )
    assert cli["vocab_size"] == 400 and cli["config"]["by_language"] is True
    md = (out / "report.md").read_text()
    assert f"```\nblt {shlex.join(args)}\n```" in md
    for png in ("lengths.png", "evenness.png", "agreement.png"):
        assert f"![{png}]({png})" in md and (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((out / "results.csv").read_text().splitlines()) == 1 + len(names)


def test_the_table_fits_80_columns_and_wide_shows_every_column(corpus: Path, tmp_path: Path) -> None:
    """By default the table keeps the columns that fit the terminal (segmenter, vocab, bytes/unit, matched, CV
    first) and names the rest; --wide prints all fourteen, however wide; the notes wrap at words."""
    args = ["compare", "--data", str(corpus), "--segmenters", "bpe,space", "--vocab-size", "400"]
    code, stdout, stderr = run_cli(*args, "--out", str(tmp_path / "out"), columns=80)
    assert code == 0, stderr
    table = [line for line in stdout.splitlines() if not line.startswith("report: ")]  # a path is as long as it is
    assert max(len(line) for line in table) <= 80, stdout
    header = next(line for line in stdout.splitlines() if "segmenter" in line)
    assert [c.strip() for c in header.split("┃")[1:5]] == ["segmenter", "vocab", "bytes/unit", "matched"]
    assert "more columns with --wide" in stdout and "encode MB/s" not in header
    for r in results_of(tmp_path / "out")["segmenters"]:
        assert r["segmenter"] in stdout and f"{r['bytes_per_unit']:.2f}" in stdout
    code, stdout, stderr = run_cli(*args, "--out", str(tmp_path / "wide"), "--wide", columns=80)
    assert code == 0, stderr
    header = next(line for line in stdout.splitlines() if "segmenter" in line)
    assert len(header.split("┃")) - 2 == 14 and "encode MB/s" in header and "word-boundary F1" in header
    assert "more columns" not in stdout


def test_by_language_on_the_bundled_udhr(tmp_path: Path) -> None:
    """udhr labels each document with its language: per-label bytes/unit, and a plot of them. Space and byte
    need no byte model and no training, so a slice of the real corpus is cheap."""
    out = tmp_path / "out"
    args = ["compare", "--data", "udhr", "--max-bytes", "60000", "--segmenters", "space,byte", "--match", "space"]
    code, _, err = run_cli(*args, "--by-language", "--out", str(out))
    assert code == 0, err
    results = results_of(out)
    by_language = results["by_language"]
    assert len(by_language) == results["eval_documents"] >= 2  # udhr has one document per language
    for lang, values in by_language.items():
        assert "_" in lang and values["byte"] == 1.0 and values["space"] > 1
    assert (out / "by_language.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_match_none_uses_the_card_thresholds(model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    """`--match none`: the entropy segmenters use the card's `patch_thresholds_nats`, and their units are
    `patch_starts` of the held-out documents' entropies at those thresholds; `fixed` falls back to 4 bytes."""
    out = tmp_path / "out"
    segs = "space,fixed,entropy-global,entropy-monotonic,entropy-budget"
    code, _, err = run_cli(
        "compare",
        "--data",
        str(corpus),
        "--model",
        str(model_dir),
        "--segmenters",
        segs,
        "--match",
        "none",
        "--out",
        str(out),
    )
    assert code == 0, err
    results = results_of(out)
    rows = {r["segmenter"]: r for r in results["segmenters"]}
    assert list(rows) == ["space", "fixed-4", "entropy-global", "entropy-monotonic", "entropy-budget"]
    assert results["match_bytes_per_unit"] is None and "calibrated" not in (out / "report.md").read_text()
    assert rows["entropy-global"]["threshold_nats"] == CARD_THRESHOLDS["global"]
    assert rows["entropy-monotonic"]["threshold_nats"] == CARD_THRESHOLDS["monotonic"]
    assert rows["entropy-budget"]["budget_nats"] == CARD_THRESHOLDS["budget"]
    _, eval_docs, _ = split_corpus(CompareConfig(sources=[str(corpus)]))
    entropies = [s.entropy_nats for s in score(load_model(model_dir), eval_docs)]
    global_units = sum(len(patch_starts(e, threshold=CARD_THRESHOLDS["global"])) for e in entropies)
    mono = CARD_THRESHOLDS["monotonic"]
    mono_units = sum(len(patch_starts(e, rule="monotonic", relative_threshold=mono)) for e in entropies)
    assert rows["entropy-global"]["units"] == global_units and rows["entropy-monotonic"]["units"] == mono_units
    budget_units = sum(len(patch_starts(e, rule="budget", budget=CARD_THRESHOLDS["budget"])) for e in entropies)
    assert rows["entropy-budget"]["units"] == budget_units


def test_a_given_budget_means_match_none(plain_model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    """`--budget B` mirrors --threshold: without --match it turns matching off, and the budget row patches the
    held-out entropies at B (a card without a budget is no obstacle). Each budget patch holds at most B nats of
    predicted entropy unless it is one byte; the table's note names the value a budget, in nats and bits."""
    out = tmp_path / "out"
    args = ["compare", "--data", str(corpus), "--model", str(plain_model_dir), "--segmenters", "space,entropy-budget"]
    code, stdout, err = run_cli(*args, "--budget", "2.5", "--out", str(out), columns=250)
    assert code == 0, err
    results = results_of(out)
    row = results["segmenters"][1]
    assert results["match_bytes_per_unit"] is None and row["matched"] is None
    assert row["budget_nats"] == 2.5 and "threshold_nats" not in row
    _, eval_docs, _ = split_corpus(CompareConfig(sources=[str(corpus)]))
    entropies = [s.entropy_nats for s in score(load_model(plain_model_dir), eval_docs)]
    starts = [patch_starts(e, rule="budget", budget=2.5) for e in entropies]
    assert row["units"] == sum(map(len, starts))
    for e, s in zip(entropies, starts, strict=True):
        sums = np.add.reduceat(e.astype(np.float64), s)
        lengths = np.diff(np.append(s, len(e)))
        assert np.all((sums <= 2.5) | (lengths == 1))
    assert "entropy-budget B = 2.5000 nats (3.6067 bits) per patch" in " ".join(stdout.split())
    assert_user_error([*args, "--budget", "-1", "--out", str(tmp_path / "o2")], "--budget must be ≥ 0 nats, got -1.0")


def test_an_unreachable_match_is_a_flagged_row_and_exit_0(model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    """Monotonic patches cannot reach byte's 1 byte/unit: the run still exits 0, with the row flagged `*` in the
    table, its note (the target and the reachable range) under it, and the byte model's fit line; the untrained
    model is worse than the compressors, so the terminal suggests --adapt-minutes."""
    out = tmp_path / "out"
    args = ["compare", "--data", str(corpus), "--model", str(model_dir), "--segmenters", "byte,entropy-monotonic"]
    code, stdout, err = run_cli(*args, "--match", "byte", "--out", str(out), columns=250)
    assert code == 0, err
    rows = {r["segmenter"]: r for r in results_of(out)["segmenters"]}
    assert rows["entropy-monotonic"]["matched"] is False
    row = next(line for line in stdout.splitlines() if line.startswith("│ entropy-monotonic"))
    assert row.split("│")[4].strip() == "no *" and f"* {rows['entropy-monotonic']['match_note']}" in stdout
    assert "cannot reach byte's 1.000 bytes/unit" in stdout and "byte model fit:" in stdout
    assert "--adapt-minutes" in stdout
    model = results_of(out)["byte_model"]
    assert set(model["compressors_bits_per_byte"]) == {"gzip -9", "bzip2 -9", "xz -9e"}


def test_match_none_without_thresholds_is_one_clear_error(plain_model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    assert_user_error(
        [
            "compare",
            "--data",
            str(corpus),
            "--model",
            str(plain_model_dir),
            "--segmenters",
            "space,entropy-global",
            "--match",
            "none",
            "--out",
            str(tmp_path / "out"),
        ],
        "entropy-global needs --match or a threshold",
    )
    assert not (tmp_path / "out").exists()


def test_match_none_accepts_the_thresholds_its_error_names(plain_model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    code, _, err = run_cli(
        "compare",
        "--data",
        str(corpus),
        "--model",
        str(plain_model_dir),
        "--segmenters",
        "space,entropy-global,entropy-monotonic",
        "--match",
        "none",
        "--threshold",
        "0.3",
        "--relative-threshold",
        "0.05",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 0, err


def test_unavailable_tiktoken_is_a_warning(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(*args: object, **kwargs: object) -> None:
        raise BltError("the tiktoken segmenters need the tiktoken extra: pip install 'blt-patcher[tiktoken]'")

    monkeypatch.setattr(blt.segment.pretrained, "TiktokenSegmenter", unavailable)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        "compare",
        "--data",
        str(corpus),
        "--segmenters",
        "bpe,tiktoken-cl100k,space",
        "--vocab-size",
        "400",
        "--out",
        str(out),
    )
    assert code == 0, stderr
    assert "warning: tiktoken-cl100k skipped: the tiktoken segmenters need the tiktoken extra" in " ".join(
        stderr.split()
    )
    assert [r["segmenter"] for r in results_of(out)["segmenters"]] == ["bpe", "space"]
    assert "report:" in stdout


def test_bad_inputs_give_one_clear_line(model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    base = ["compare", "--data", str(corpus), "--model", str(model_dir), "--out", str(tmp_path / "out")]
    err = assert_user_error([*base, "--segmenters", "bpe,wordpiece"], "unknown segmenter 'wordpiece'")
    assert "valid: bpe, sp-unigram, sp-bpe, tiktoken-cl100k" in err and "hf:NAME_OR_PATH" in err
    assert_user_error([*base, "--segmenters", "space,fixed", "--match", "bpe"], "--match bpe is not in this run")
    assert_user_error([*base, "--segmenters", "bpe,space", "--match", "sp-bpe"], "--match sp-bpe is not in this run")
    assert_user_error([*base, "--segmenters", "bpe,entropy-global", "--match", "entropy-global"], "not an entropy one")
    assert_user_error([*base, "--vocab-size", "100"], "--vocab-size must be ≥ 260")
    assert_user_error([*base, "--adapt", "5", "--devices", "2"], "--adapt runs on one device")
    if not torch.cuda.is_available():  # more devices than there are: one line, not a DDP launch
        assert_user_error(
            [*base, "--segmenters", "space,entropy-global", "--devices", "4"], "4 but 0 GPU(s) are visible"
        )
    err = assert_user_error([*base, "--segmenters", "bpe,space", "--vocab-size", "50000"], "too large for this corpus")
    assert "--vocab-size " in err
    missing = ["compare", "--data", str(tmp_path / "missing.txt"), "--segmenters", "space", "--match", "none"]
    assert_user_error(missing, "does not exist")
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.txt").write_text("x")
    tiny = ["compare", "--data", str(tmp_path / "one"), "--segmenters", "space", "--match", "none"]
    assert_user_error([*tiny, "--out", str(tmp_path / "o2")], "too small to hold out documents")
    assert not (tmp_path / "out").exists()


def test_eval_data_is_measured_and_all_of_data_trains(model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    """--eval-data: tokenisers train on every document of --data, the metrics cover exactly the --eval-data
    documents (a fixed test set), and the report says where they came from."""
    held = tmp_path / "held"
    held.mkdir()
    texts = ["a fixed test set, never trained on. " * 5, "zweites Dokument über Entropie und Bytes. " * 4]
    for i, t in enumerate(texts):
        (held / f"{i}.txt").write_text(t)
    out = tmp_path / "out"
    args = ["compare", "--data", str(corpus), "--eval-data", str(held), "--model", str(model_dir)]
    code, _, err = run_cli(*args, "--segmenters", "space,entropy-global", "--match", "space", "--out", str(out))
    assert code == 0, err
    res = results_of(out)
    n_corpus = len([p for p in corpus.rglob("*.txt") if p.stat().st_size])
    assert res["eval_documents"] == 2 and res["eval_bytes"] == sum(len(t.encode()) for t in texts)
    assert res["train_documents"] == n_corpus and res["config"]["eval_sources"] == [str(held)]
    assert f"from {held}." in (out / "report.md").read_text()


def test_saved_patchers_add_rows(model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    """--patcher DIR (repeatable): a row per saved patcher, named after its directory, cutting at its saved value
    (its own model's entropies of the held-out documents through `patch_starts`), beside the calibrated rows; two
    directories of one name are told apart by their paths. A directory that is not a saved patcher is one red line."""
    from blt.segment.patcher import Patcher
    from blt.segment.saved import save_patcher

    model = load_model(model_dir)
    save_patcher(Patcher(model, rule="budget", budget=1.5), tmp_path / "a" / "p")
    save_patcher(Patcher(model, rule="monotonic", relative_threshold=0.2), tmp_path / "b" / "p")
    out = tmp_path / "out"
    args = ["compare", "--data", str(corpus), "--model", str(model_dir), "--segmenters", "space,entropy-budget"]
    args += ["--patcher", str(tmp_path / "a" / "p"), "--patcher", str(tmp_path / "b" / "p"), "--match", "space"]
    code, stdout, err = run_cli(*args, "--out", str(out), columns=250)
    assert code == 0, err
    rows = {r["segmenter"]: r for r in results_of(out)["segmenters"]}
    a, b = f"patcher:{tmp_path / 'a' / 'p'}", f"patcher:{tmp_path / 'b' / 'p'}"
    assert list(rows) == ["space", "entropy-budget", a, b]
    assert rows[a]["budget_nats"] == 1.5 and rows[b]["threshold_nats"] == 0.2 and rows[b]["rule"] == "monotonic"
    _, eval_docs, _ = split_corpus(CompareConfig(sources=[str(corpus)]))
    entropies = [s.entropy_nats for s in score(model, eval_docs)]
    assert rows[a]["units"] == sum(len(patch_starts(e, rule="budget", budget=1.5)) for e in entropies)
    mono = sum(len(patch_starts(e, rule="monotonic", relative_threshold=0.2)) for e in entropies)
    assert rows[b]["units"] == mono and a in stdout
    (tmp_path / "empty").mkdir()
    bad = [*args[:7], "--patcher", str(tmp_path / "empty"), "--out", str(tmp_path / "o2")]
    assert_user_error(bad, "is not a saved patcher: it has no patcher.json")
    assert not (tmp_path / "o2").exists()


def test_online_is_recorded_and_equals_the_library(model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    """--online: the held-out text is scored online at the default step size (ONLINE_LR; --online-lr changes it),
    results.json records it in the config and the byte model's facts, the fit and the entropy row equal the library's
    run with `online_lr`, the static bits/byte sits beside the online one, and the notes say online. --online-lr
    without --online, or out of (0, 1), is one red line."""
    from blt.bytelm.online import ONLINE_LR

    base = ["compare", "--data", str(corpus), "--model", str(model_dir), "--segmenters", "space,entropy-global"]
    base += ["--match", "space"]
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(*base, "--online", "--out", str(out), columns=250)
    assert code == 0, stderr
    cli = results_of(out)
    assert cli["config"]["online_lr"] == ONLINE_LR == cli["byte_model"]["online_lr"]
    cfg = CompareConfig(
        sources=[str(corpus)], model=str(model_dir), segmenters=["space", "entropy-global"], match="space",
        online_lr=ONLINE_LR,
    )  # fmt: skip
    lib = run_compare(cfg)
    assert lib is not None
    for key in ("bits_per_byte", "mean_entropy_bits", "calibration_gap"):
        assert cli["byte_model"][key] == pytest.approx(lib["byte_model"][key], rel=1e-9), key
        assert cli["byte_model"]["static"][key] == pytest.approx(lib["byte_model"]["static"][key], rel=1e-9), key
    assert cli["byte_model"]["bits_per_byte"] != cli["byte_model"]["static"]["bits_per_byte"]
    mine, theirs = (next(r for r in res["segmenters"] if r["segmenter"] == "entropy-global") for res in (cli, lib))
    assert (mine["units"], mine["threshold_nats"]) == (theirs["units"], pytest.approx(theirs["threshold_nats"]))
    text = " ".join(stdout.split())
    assert f"byte model fit, scored online (Adam lr {ONLINE_LR:g}" in text
    assert f"(static {cli['byte_model']['static']['bits_per_byte']:.3f};" in text
    assert "scored online: a copy of it read the held-out documents in order" in (out / "report.md").read_text()
    code, _, stderr = run_cli(*base, "--online", "--online-lr", "1e-3", "--out", str(tmp_path / "o2"))
    assert code == 0, stderr
    assert results_of(tmp_path / "o2")["byte_model"]["online_lr"] == 1e-3
    assert_user_error([*base, "--online-lr", "1e-3"], "--online-lr sets the step size of --online: add --online")
    assert_user_error([*base, "--online", "--online-lr", "0"], "--online-lr must be in (0, 1), got 0.0")
