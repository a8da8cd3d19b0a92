"""The command line through typer's CliRunner: results match the library, and every user mistake gives one
red line and exit code 1, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import lightning  # noqa: F401  imported first so its log handler binds to the real stderr, not a runner buffer
import numpy as np
import pytest
import torch
from conftest import assert_user_error, run_cli

from blt.checkpoint import bundled_model_dir, load_model, save_model_dir
from blt.config import Config, ModelConfig
from blt.entropy import corpus_bits_per_byte, score
from blt.model import ByteLM

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    cfg = Config(model=ModelConfig(n_layers=1, d_model=32, n_heads=2, context=64))
    return save_model_dir(ByteLM(cfg.model), cfg, {"steps": 0}, tmp_path_factory.mktemp("m") / "model")


def test_entropy_json_matches_the_library(model_dir: Path) -> None:
    code, out, _ = run_cli("entropy", "héllo wörld", "--model", str(model_dir), "--json")
    assert code == 0
    got = json.loads(out)
    expected = score(load_model(model_dir), "héllo wörld")[0]
    assert got["bytes"] == len("héllo wörld".encode()) == len(got["entropy_nats"]) == len(got["surprisal_nats"])
    np.testing.assert_allclose(got["entropy_nats"], expected.entropy_nats, atol=1e-5)
    np.testing.assert_allclose(got["surprisal_nats"], expected.surprisal_nats, atol=1e-5)


def test_entropy_table_shows_every_byte_with_characters(model_dir: Path, tmp_path: Path) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes("é".encode() + b"\xff")  # a two-byte character and an invalid byte: bytes are bytes
    code, out, _ = run_cli("entropy", "--file", str(f), "--model", str(model_dir))
    assert code == 0
    assert "é" in out and "·" in out and "\\xff" in out and "3 bytes" in out


def test_eval_json_reports_bits_per_byte_as_a_ratio_of_sums(model_dir: Path, tmp_path: Path) -> None:
    texts = ["first document, a little longer than the second.\n", "second one\n"]
    (tmp_path / "corpus").mkdir()
    for i, t in enumerate(texts):
        (tmp_path / "corpus" / f"{i}.txt").write_text(t)
    code, out, _ = run_cli("eval", "--model", str(model_dir), "--data", str(tmp_path / "corpus"), "--json")
    assert code == 0
    got = json.loads(out)
    expected = corpus_bits_per_byte(score(load_model(model_dir), texts))
    assert got["bits_per_byte"] == pytest.approx(expected, rel=1e-6)
    assert got["bytes"] == sum(len(t) for t in texts) and got["documents"] == 2


def test_info_prints_the_card(model_dir: Path) -> None:
    code, out, _ = run_cli("info", "--model", str(model_dir))
    assert code == 0
    card = json.loads(out)
    assert card["params"] == load_model(model_dir).num_params() and card["model"]["d_model"] == 32


@pytest.mark.skipif(not (bundled_model_dir() / "model.safetensors").is_file(), reason="bundled model not built")
def test_the_default_model_scores_english_well() -> None:
    """The bundled model has read English: a plain sentence costs far less than the 8 bits of raw bytes."""
    code, out, _ = run_cli("entropy", "In the beginning God created the heaven and the earth.", "--json")
    assert code == 0
    assert json.loads(out)["bits_per_byte"] < 3.0


def test_train_from_the_cli(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(30):
        (corpus / f"d{i}.txt").write_text(f"document number {i} says hello to the byte model. " * 3)
    code, out, err = run_cli(
        "train",
        "--config",
        str(REPO / "configs" / "tiny.yaml"),
        "--data",
        str(corpus),
        "--out",
        str(tmp_path / "run"),
        "--set",
        "train.max_steps=4",
        "--set",
        "train.val_every_steps=2",
    )
    assert code == 0, err
    assert "model written to" in out and load_model(tmp_path / "run").card["steps"] == 4


def test_bad_inputs_give_one_clear_line(model_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("model:\n  d_modle: 3\n  n_layers: two\ntrain:\n  lr: fast\n")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.bin").write_bytes(b"\0")
    junk_ckpt = tmp_path / "junk.ckpt"
    junk_ckpt.write_bytes(b"PK\x03\x04 not really a zip")
    tiny = str(REPO / "configs" / "tiny.yaml")
    assert_user_error(["entropy", "--file", str(tmp_path / "missing.txt"), "--model", str(model_dir)], "does not exist")
    assert_user_error(["entropy", "--file", str(empty), "--model", str(model_dir)], "input is empty")
    assert_user_error(["entropy", "x", "--file", str(empty), "--model", str(model_dir)], "exactly one")
    assert_user_error(["entropy", "x", "--model", str(tmp_path)], "is not a blt model")
    assert_user_error(["entropy", "x", "--model", str(junk_ckpt)], "truncated or corrupted")
    assert_user_error(["train", "--config", str(bad_yaml)], "unknown key model.d_modle")
    code, _, err = run_cli("train", "--config", str(bad_yaml))
    assert "model.n_layers must be int" in err and "train.lr must be float" in err  # all problems at once
    assert_user_error(["train", "--config", tiny, "--set", "train.lr"], "expected section.key=value")
    assert_user_error(["train", "--config", tiny, "--set", "model.nope=1"], "valid model keys")
    assert_user_error(
        ["train", "--config", tiny, "--data", str(tmp_path / "notes"), "--out", str(tmp_path / "r")],
        "holds no text files",
    )
    assert_user_error(
        ["train", "--config", tiny, "--data", "someone/some-dataset", "--out", str(tmp_path / "r2")],
        "cannot load HF dataset",
    )
    assert_user_error(["eval", "--model", str(model_dir), "--data", str(tmp_path / "nope.txt")], "does not exist")
    if torch.cuda.device_count() < 2:
        assert_user_error(
            ["train", "--config", tiny, "--set", "train.devices=2", "--out", str(tmp_path / "r3")],
            "train.devices=2 but",
        )
