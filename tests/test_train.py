"""Training with Lightning: a tiny run writes checkpoints and a model directory that reloads to identical logits;
an interrupted run resumed from `last.ckpt` ends with exactly the weights of an uninterrupted one."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch

from blt.checkpoint import load_model
from blt.config import Config, load_config
from blt.errors import BltError
from blt.train import LrSchedule, build_trainer, train

REPO = Path(__file__).resolve().parents[1]


def tiny_config(corpus: Path, **train_overrides: object) -> Config:
    overrides = [f"data.sources=[{corpus}]", "train.progress_bar=false"]
    overrides += [f"train.{k}={v}" for k, v in train_overrides.items()]
    return load_config(REPO / "configs" / "tiny.yaml", overrides)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """40 small documents of varied English-like text (enough for a 64-byte context and a validation split)."""
    d = tmp_path / "corpus"
    d.mkdir()
    words = "the quick brown fox jumps over a lazy dog while seven wizards quietly hum".split()
    for i in range(40):
        text = " ".join(words[(i * j) % len(words)] for j in range(60)) + f" doc {i}\n"
        (d / f"doc{i:02d}.txt").write_text(text)
    return d


class Crash(L.Callback):
    """Simulates a crash (kill -9 after the step-`at` checkpoint): raises once `at` steps are done."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step >= self.at:
            raise RuntimeError("simulated crash")


def test_tiny_run_writes_checkpoints_and_model_that_reloads(corpus: Path, tmp_path: Path) -> None:
    cfg = tiny_config(corpus, max_steps=12, val_every_steps=6, ckpt_every_steps=6)
    model_dir = train(cfg, tmp_path / "run")
    run = tmp_path / "run"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert (run / "logs" / "version_0" / "metrics.csv").is_file()
    assert {p.name for p in model_dir.iterdir()} == {"model.safetensors", "config.yaml", "card.json"}
    lm = load_model(model_dir)
    assert lm.card["steps"] == 12
    assert 0 < lm.card["val_bits_per_byte"] < 8.5  # an untrained model sits at log2(260) = 8.02
    # The exported directory, the run directory and the last checkpoint are the same model.
    ids = torch.randint(0, 256, (2, 40))
    with torch.no_grad():
        expected = lm(ids)
        assert torch.equal(load_model(run)(ids), expected)
        assert torch.equal(load_model(run / "checkpoints" / "last.ckpt")(ids), expected)


def test_resume_after_crash_matches_uninterrupted_run(corpus: Path, tmp_path: Path) -> None:
    cfg = tiny_config(corpus, max_steps=10, val_every_steps=5, ckpt_every_steps=4)
    straight = load_model(train(cfg, tmp_path / "a"))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, tmp_path / "b", extra_callbacks=[Crash(at=6)])  # last.ckpt holds step 4
    assert torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    resumed = load_model(train(cfg, tmp_path / "b", resume=True))
    assert resumed.card["steps"] == 10
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_a_fresh_run_refuses_to_overwrite_and_resume_needs_a_run(corpus: Path, tmp_path: Path) -> None:
    cfg = tiny_config(corpus, max_steps=2, val_every_steps=2, ckpt_every_steps=2)
    with pytest.raises(BltError, match="nothing to resume"):
        train(cfg, tmp_path / "run", resume=True)
    train(cfg, tmp_path / "run")
    with pytest.raises(BltError, match="already holds a training run"):
        train(cfg, tmp_path / "run")


def test_corpus_smaller_than_one_window_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("too short\n")
    (tmp_path / "b.txt").write_text("tiny\n")
    cfg = tiny_config(tmp_path, max_steps=2)
    with pytest.raises(BltError, match="fewer than one training window"):
        train(cfg, tmp_path / "run")


def test_two_devices_without_gpus_is_a_clear_error(corpus: Path, tmp_path: Path) -> None:
    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has two GPUs")
    cfg = tiny_config(corpus, devices=2)
    with pytest.raises(BltError, match="train.devices=2 but"):
        build_trainer(cfg, tmp_path)


def test_lr_schedule_warms_up_then_decays_to_the_floor() -> None:
    """warmup 4, total 14, floor 0.1: steps 0..3 give 1/4..4/4; step 9 is half way through the cosine
    (0.1 + 0.9 * 0.5 = 0.55); step 14 and later sit on the floor."""
    s = LrSchedule(warmup=4, total=14, min_ratio=0.1)
    assert [s(i) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert math.isclose(s(9), 0.55)
    assert math.isclose(s(14), 0.1) and math.isclose(s(100), 0.1)
    assert all(s(i) >= s(i + 1) for i in range(4, 20))


@pytest.mark.slow
def test_kill_9_then_resume_from_the_cli_matches_uninterrupted_run(corpus: Path, tmp_path: Path) -> None:
    """A real `blt train` process is killed with SIGKILL once it has written a checkpoint; `--resume` finishes
    the run with the same final weights as an uninterrupted run of the same config."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = [
        "--config",
        str(REPO / "configs" / "tiny.yaml"),
        "--data",
        str(corpus),
        "--set",
        "train.max_steps=400",
        "--set",
        "train.ckpt_every_steps=20",
        "--set",
        "train.val_every_steps=200",
    ]
    cmd = [sys.executable, "-m", "blt.cli", "train", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run([*cmd, "--out", str(tmp_path / "a")], check=True, env=env, capture_output=True)
    proc = subprocess.Popen(
        [*cmd, "--out", str(tmp_path / "b")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = tmp_path / "b" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b" / "model").exists(), "the run finished before it could be killed"
    step = torch.load(last, weights_only=True)["global_step"]
    assert 0 < step < 400
    subprocess.run([*cmd, "--out", str(tmp_path / "b"), "--resume"], check=True, env=env, capture_output=True)
    a, b = load_model(tmp_path / "a"), load_model(tmp_path / "b")
    assert b.card["steps"] == 400
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
