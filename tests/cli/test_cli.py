"""The command line through typer's CliRunner: results match the library, and every user mistake gives one
red line and exit code 1, never a traceback."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import lightning  # noqa: F401  imported first so its log handler binds to the real stderr, not a runner buffer
import numpy as np
import pytest
import torch
from conftest import assert_user_error, run_cli

from blt.bytelm.checkpoint import bundled_model_dir, load_model, save_model_dir
from blt.bytelm.entropy import corpus_bits_per_byte, score
from blt.bytelm.model import ByteLM
from blt.config import Config, ModelConfig
from blt.errors import BltError

REPO = Path(__file__).resolve().parents[2]


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


def test_entropy_shade_and_html_use_the_token_renderer(model_dir: Path, tmp_path: Path) -> None:
    """--shade prints one unit per byte (a character's bytes shown whole on its first), --html writes one span per byte
    whose hover holds its entropy; --shade with --json is refused."""
    code, out, err = run_cli("entropy", "hé!", "--model", str(model_dir), "--shade", "--html", str(tmp_path / "e.html"))
    assert code == 0, err
    assert out.splitlines()[0] == "h│é│!" and "entropy (bits):" in out  # no colours under the test runner
    page = (tmp_path / "e.html").read_text()
    expected = score(load_model(model_dir), "hé!")[0].entropy_nats / math.log(2)
    titles = re.findall(
        r'class="u[^"]*" data-i="\d+" data-bits="[^"]+" title="byte \d \(0x..\): H ([0-9.]+) bits', page
    )
    np.testing.assert_allclose([float(x) for x in titles], expected, atol=1e-3)
    code, _, err = run_cli("entropy", "x", "--model", str(model_dir), "--shade", "--json")
    assert code == 1 and "--shade prints to the terminal" in err


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


def test_a_second_eval_reads_the_score_cache(
    model_dir: Path, tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first eval scores and stores the scores under $BLT_CACHE/scores; the second gets the same result with
    scoring switched off; --no-cache scores again (and so fails here)."""
    (tmp_path / "corpus").mkdir()
    for i, t in enumerate(["one document\n", "and another, a little longer\n"]):
        (tmp_path / "corpus" / f"{i}.txt").write_text(t)
    args = ("eval", "--model", str(model_dir), "--data", str(tmp_path / "corpus"), "--json")
    code, first, err = run_cli(*args)
    assert code == 0, err
    assert any((isolated_env / "scores").iterdir())

    def no_scoring(*a: object, **k: object) -> None:
        raise AssertionError("scored again")

    monkeypatch.setattr("blt.bytelm.entropy.score", no_scoring)
    code, second, err = run_cli(*args)
    assert code == 0, err
    assert json.loads(second) == json.loads(first)
    code, _, _ = run_cli(*args, "--no-cache")
    assert code != 0


def test_entropy_of_a_long_input_is_bounded_and_its_json_streams(model_dir: Path, tmp_path: Path) -> None:
    """10 kB: the table shows the first 512 bytes and says so; --json (streamed) has all 10,000 values."""
    f = tmp_path / "long.txt"
    data = (b"all work and no play makes jack a dull boy. " * 250)[:10_000]
    f.write_bytes(data)
    code, out, err = run_cli("entropy", "--file", str(f), "--model", str(model_dir))
    assert code == 0, err
    assert sum(line.startswith("│") for line in out.splitlines()) == 512
    assert "the first 512 of 10,000 bytes shown; every byte: --json" in out and "10,000 bytes, mean" in out
    code, out, err = run_cli("entropy", "--file", str(f), "--model", str(model_dir), "--json")
    assert code == 0, err
    got, expected = json.loads(out), score(load_model(model_dir), data)[0]
    assert got["bytes"] == 10_000 and got["bits_per_byte"] == pytest.approx(expected.bits_per_byte, rel=1e-6)
    np.testing.assert_allclose(got["entropy_nats"], expected.entropy_nats, atol=1e-5)
    np.testing.assert_allclose(got["surprisal_nats"], expected.surprisal_nats, atol=1e-5)


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


def test_cpu_threads_respects_the_user_and_leaves_busy_cores_alone() -> None:
    """BLT_THREADS wins, OMP/MKL_NUM_THREADS are left to torch; otherwise the idle cores, 1 to torch's default."""
    from blt.cli import cpu_threads

    assert cpu_threads({"BLT_THREADS": "3"}, 2, 5.0, 2) == 3
    assert cpu_threads({"OMP_NUM_THREADS": "4"}, 2, 0.0, 4) is None
    assert cpu_threads({"MKL_NUM_THREADS": "4"}, 2, 0.0, 4) is None
    assert cpu_threads({}, 2, 3.7, 2) == 1  # a busy 2-core machine: one thread (measured 3x faster than two)
    assert cpu_threads({}, 2, 0.1, 2) == 2  # idle: both
    assert cpu_threads({}, 16, 4.2, 16) == 12
    assert cpu_threads({}, 16, 0.0, 8) == 8  # never above torch's default (physical cores)
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(BltError, match="BLT_THREADS must be a number of threads ≥ 1"):
            cpu_threads({"BLT_THREADS": bad}, 2, 0.0, 2)


def test_resume_without_a_run_says_how_to_start_one(tmp_path: Path) -> None:
    err = assert_user_error(["train", "--out", str(tmp_path / "none"), "--resume"], "no run in")
    assert f"start one with `blt train --config CONFIG.yaml --out {tmp_path / 'none'}`" in " ".join(err.split())
    assert not (tmp_path / "none").exists()


SLOW_SCORING = """
import pathlib, sys, time
import blt.bytelm.corpus
flag = pathlib.Path(sys.argv.pop(1))
def predict_step(self, batch, batch_idx):  # scoring that takes long enough for Ctrl-C to land inside it
    flag.touch()
    time.sleep(120)
blt.bytelm.corpus.ScoringModule.predict_step = predict_step
sys.argv[0] = "blt"
from blt.cli import main
main()
"""


@pytest.mark.slow
def test_ctrl_c_while_compare_scores_in_the_predict_loop_exits_130(model_dir: Path, tmp_path: Path) -> None:
    """A real `blt compare` process gets SIGINT inside Lightning's predict loop: exit 130 and the project's line,
    not Lightning's exit 1, no traceback, no report."""
    import os
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "corpus").mkdir()
    for i in range(8):
        (tmp_path / "corpus" / f"{i}.txt").write_text(f"document {i}: the cat sat on the mat. " * 10)
    (tmp_path / "wrapper.py").write_text(SLOW_SCORING)
    flag = tmp_path / "scoring-started"
    args = ["compare", "--data", str(tmp_path / "corpus"), "--model", str(model_dir), "--segmenters",
            "space,entropy-global", "--match", "none", "--threshold", "0.3", "--no-cache", "--out", "rep"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "BLT_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "wrapper.py"), str(flag), *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while not flag.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert flag.exists(), proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "Detected KeyboardInterrupt" not in err, err
    assert [line for line in err.splitlines() if line.strip()][-1] == "error: interrupted", err
    assert not (tmp_path / "rep").exists()
