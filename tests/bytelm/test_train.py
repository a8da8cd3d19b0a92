"""Training with Lightning: a tiny run writes checkpoints and a model directory that reloads to identical logits;
an interrupted run resumed from `last.ckpt` ends with exactly the weights of an uninterrupted one."""

from __future__ import annotations

import math
import signal
from pathlib import Path

import lightning as L
import pytest
import torch

from blt.bytelm.adapt import adapt
from blt.bytelm.checkpoint import load_model
from blt.bytelm.train import LrSchedule, ReportProgress, TrainingInterrupted, build_trainer, train
from blt.config import Config, load_config
from blt.errors import BltError

REPO = Path(__file__).resolve().parents[2]


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
    assert not (tmp_path / "run").exists()  # checked before --out is touched


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


class SendSigint(L.Callback):
    """Presses Ctrl-C (a real SIGINT to this process) once `at` steps are done."""

    def __init__(self, at: int) -> None:
        self.at, self.sent = at, False

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step >= self.at and not self.sent:
            self.sent = True
            signal.raise_signal(signal.SIGINT)


class RaiseKeyboardInterrupt(L.Callback):
    """A KeyboardInterrupt inside Lightning (what a second Ctrl-C is): Lightning catches it and calls sys.exit(1)."""

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step >= 2:
            raise KeyboardInterrupt


def test_ctrl_c_saves_a_checkpoint_after_the_step_and_resume_matches_an_uninterrupted_run(
    corpus: Path, tmp_path: Path
) -> None:
    """Ctrl-C at step 6 (checkpoints every 4): the run stops after step 7 (the handler's callback runs before the
    one that pressed it), saves last.ckpt at step 7, says so with the resume command, and restores the SIGINT
    handler. Resuming ends with exactly the weights of a run that was never interrupted."""
    cfg = tiny_config(corpus, max_steps=10, val_every_steps=5, ckpt_every_steps=4)
    straight = load_model(train(cfg, tmp_path / "a"))
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as info:
        train(cfg, tmp_path / "b", extra_callbacks=[SendSigint(at=6)])
    assert signal.getsignal(signal.SIGINT) is handler
    last = tmp_path / "b" / "checkpoints" / "last.ckpt"
    assert info.value.step == 7 and info.value.checkpoint == last
    assert str(info.value) == (
        f"interrupted at step 7/10; saved {last}; continue with: blt train --out {tmp_path / 'b'} --resume"
    )
    assert torch.load(last, weights_only=True)["global_step"] == 7
    assert not (tmp_path / "b" / "model").exists()
    resumed = load_model(train(cfg, tmp_path / "b", resume=True))
    assert resumed.card["steps"] == 10
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_an_interrupt_lightning_catches_is_still_an_interrupt_and_a_fresh_run_leaves_nothing(
    corpus: Path, tmp_path: Path
) -> None:
    """Lightning turns a KeyboardInterrupt into sys.exit(1) and ignores SIGINT from then on; train() raises
    TrainingInterrupted instead, restores the handler, and removes the run that has no checkpoint yet."""
    cfg = tiny_config(corpus, max_steps=10, val_every_steps=5, ckpt_every_steps=8)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match=r"interrupted at step 2/10, before the first checkpoint"):
        train(cfg, tmp_path / "run", extra_callbacks=[RaiseKeyboardInterrupt()])
    assert signal.getsignal(signal.SIGINT) is handler
    assert not (tmp_path / "run").exists()


def test_a_fresh_run_that_crashes_before_its_first_checkpoint_leaves_nothing(corpus: Path, tmp_path: Path) -> None:
    """A directory the user made stays (empty); everything train() wrote goes."""
    cfg = tiny_config(corpus, max_steps=10, val_every_steps=5, ckpt_every_steps=8)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, tmp_path / "new", extra_callbacks=[Crash(at=2)])
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, tmp_path / "mine", extra_callbacks=[Crash(at=2)])
    assert list((tmp_path / "mine").iterdir()) == []


def test_progress_line_gives_step_rate_and_the_sooner_eta() -> None:
    """100 of 2000 steps in 50 s: 2 steps/s, 1900 steps left = 15m50s; with a 10-minute budget, 9m10s is sooner."""
    messages: list[str] = []
    report = ReportProgress(messages.append, "adapting", 2000, None)
    assert report.message(100, 50.0) == "adapting: step 100/2000, 2.0 steps/s, ETA 15m50s"
    assert report.message(1200, 10.0) == "adapting: step 1200/2000, 120 steps/s, ETA 6s"
    assert ReportProgress(messages.append, "adapting", 2000, 600.0).message(100, 50.0).endswith("ETA 9m10s")
    assert ReportProgress(messages.append, "adapting", None, 7200.0).message(30, 60.0) == (
        "adapting: step 30, 0.5 steps/s, ETA 1h59m"
    )


def test_adapt_reports_progress_and_lightning_stays_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """adapt's progress callback gets "step i/N, x steps/s, ETA"; Lightning prints nothing (no device banner, no
    summary, no bar) that would break the caller's spinner."""
    from conftest import make_model

    from blt.bytelm.checkpoint import save_model_dir

    monkeypatch.setattr("blt.bytelm.train.PROGRESS_EVERY_S", 0.0)
    cfg = load_config(REPO / "configs" / "tiny.yaml", [])
    lm = load_model(save_model_dir(make_model(0), cfg, {"steps": 0}, tmp_path / "model"))
    docs = [(f"document {i} says hello to the byte model. " * 5).encode() for i in range(60)]
    messages: list[str] = []
    tuned = adapt(lm, docs, 4, progress=messages.append)
    assert tuned.card["steps"] == 4
    assert len(messages) == 4 and messages[-1].startswith("adapting the byte model: step 4/4, ")
    assert "steps/s, ETA 0s" in messages[-1]
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out, err)


@pytest.mark.slow
def test_ctrl_c_in_a_real_blt_train_saves_a_checkpoint_and_exits_130(corpus: Path, tmp_path: Path) -> None:
    """A real `blt train` process gets SIGINT once training runs: it finishes the step, saves last.ckpt at that
    step, prints the step and the resume command as its last line (not Lightning's), and exits 130."""
    import os
    import re
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "blt.cli", "train", "--config", str(REPO / "configs" / "tiny.yaml"),
           "--data", str(corpus), "--out", str(run), "--set", "train.max_steps=100000",
           "--set", "train.ckpt_every_steps=20", "--set", "train.val_every_steps=100000"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "BLT_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert last.exists(), proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "Detected KeyboardInterrupt" not in err, err
    line = [x for x in err.splitlines() if x.strip()][-1]
    resume = f"continue with: blt train --out {run} --resume"
    match = re.fullmatch(rf"error: interrupted at step (\d+)/100000; saved {re.escape(str(last))}; {resume}", line)
    assert match, err
    assert torch.load(last, weights_only=True)["global_step"] == int(match[1]) >= 20
    assert not (run / "model").exists()


def test_auto_precision_is_bf16_only_where_it_is_native(monkeypatch: pytest.MonkeyPatch) -> None:
    """precision=auto: bf16-mixed on a CUDA GPU or a CPU with native bf16 (avx512_bf16/amx), else fp32 — emulated
    bf16 autocast ran the small config 7x slower than fp32 on a 2-core CPU without it. A given precision is kept."""
    import blt.bytelm.train

    cfg = Config()
    cfg.train.precision, cfg.train.accelerator = "auto", "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for native, expected in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(blt.bytelm.train, "cpu_has_bf16", lambda native=native: native)
        assert blt.bytelm.train.resolve_precision(cfg) == expected
    cfg.train.accelerator = "mps"
    monkeypatch.setattr(blt.bytelm.train, "cpu_has_bf16", lambda: True)
    assert blt.bytelm.train.resolve_precision(cfg) == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg.train.accelerator = "auto"
    monkeypatch.setattr(blt.bytelm.train, "cpu_has_bf16", lambda: False)
    assert blt.bytelm.train.resolve_precision(cfg) == "bf16-mixed"
    cfg.train.precision = "16-mixed"
    assert blt.bytelm.train.resolve_precision(cfg) == "16-mixed"
