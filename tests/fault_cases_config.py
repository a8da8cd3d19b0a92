"""Bad-input cases: configs, `--set`, `--devices` and the sizes commands take (one table of `faults.Case`; see
test_faults.py).

Every Trainer-bound mistake is caught by config validation, before Lightning sees it and before `blt train` writes
anything: the runner checks that no file (no config.yaml, no run directory) is left behind.
"""

from __future__ import annotations

from pathlib import Path

from faults import Case, Kit

TINY = str(Path(__file__).parents[1] / "configs" / "tiny.yaml")


def _train(*extra: str) -> list[str]:
    return ["train", "--config", TINY, "--out", "run", *extra]


def _set(value: str) -> list[str]:
    return _train("--set", value)


def _compare(k: Kit, *extra: str) -> list[str]:
    k.write("corpus/a.txt", "the cat sat on the mat. " * 20)
    return ["compare", "--data", str(k.dir / "corpus"), "--model", k.model, "--segmenters", "space",
            "--match", "none", "--out", "report", *extra]  # fmt: skip


def _segment(k: Kit, devices: str) -> list[str]:
    k.write("corpus/a.txt", "the cat sat on the mat. " * 20)
    return ["segment", "--data", str(k.dir / "corpus"), "--out", "out", "--model", k.model, "--threshold", "0.3",
            "--devices", devices]  # fmt: skip


CASES = [
    # Trainer-bound fields: one line naming the override, nothing written
    Case(
        "train-max-time-abc",
        lambda k: _set("train.max_time=abc"),
        "--set train.max_time=abc: train.max_time must be DD:HH:MM:SS",
    ),
    Case(
        "train-max-time-zero", lambda k: _set("train.max_time=00:00:00:00"), "train.max_time must be longer than zero"
    ),
    Case(
        "train-precision-bogus", lambda k: _set("train.precision=bogus"), "train.precision must be one of auto, 32-true"
    ),
    Case(
        "train-accelerator-tpu", lambda k: _set("train.accelerator=tpu"), "train.accelerator must be one of auto, cpu"
    ),
    Case("train-strategy-bogus", lambda k: _set("train.strategy=bogus"), "train.strategy must be one of auto, ddp"),
    Case("train-devices-zero", lambda k: _set("train.devices=0"), "train.devices must be a number or 'auto'"),
    Case("train-devices-word", lambda k: _set("train.devices=many"), "--set train.devices=many: train.devices must"),
    Case("train-val-every-zero", lambda k: _set("train.val_every_steps=0"), "train.val_every_steps must be ≥ 1, got 0"),
    Case("train-batch-negative", lambda k: _set("train.batch_size=-4"), "train.batch_size must be ≥ 1, got -4"),
    Case("train-lr-zero", lambda k: _set("train.lr=0"), "train.lr must be > 0, got 0.0"),
    Case("train-heads-do-not-divide", lambda k: _set("model.n_heads=3"), "must be divisible by model.n_heads (3)"),
    Case(
        "train-all-problems-at-once",
        lambda k: _train("--set", "train.precision=bogus", "--set", "train.lr=-1", "--set", "model.context=0"),
        "model.context must be ≥ 1, got 0; --set train.lr=-1: train.lr must be > 0",
    ),
    # --set mistakes name --set, not the YAML file
    Case(
        "train-set-unknown-key",
        lambda k: _set("train.lrate=1"),
        "--set train.lrate=1: unknown key train.lrate (valid train keys:",
    ),
    Case("train-set-unknown-section", lambda k: _set("optim.lr=1"), "--set optim.lr=1: unknown section 'optim'"),
    Case("train-set-without-equals", lambda k: _set("train.lr"), "bad --set 'train.lr': expected section.key=value"),
    Case(
        "train-set-wrong-type",
        lambda k: _set("train.lr=fast"),
        "--set train.lr=fast: train.lr must be float, got 'fast'",
    ),
    # the config file
    Case("train-config-missing", lambda k: ["train", "--config", "nope.yaml"], "config file nope.yaml does not exist"),
    Case(
        "train-config-is-a-directory",
        lambda k: ["train", "--config", str(k.write("configs/x", "").parent)],
        "is a directory; pass a YAML file",
    ),
    Case(
        "train-config-not-a-mapping",
        lambda k: ["train", "--config", str(k.write("c.yaml", "- model\n- train\n"))],
        "expected a mapping with sections model, data, train, got list",
    ),
    Case(
        "train-config-bad-yaml",
        lambda k: ["train", "--config", str(k.write("c.yaml", "model:\n  n_layers: 2\n d_model: 3\n"))],
        "is not valid YAML: line 3, column 2: expected <block end>",
    ),
    Case(
        "train-config-unknown-key-in-file",
        lambda k: ["train", "--config", str(k.write("c.yaml", "model:\n  n_layer: 2\n")), "--set", "train.lr=0"],
        "c.yaml: unknown key model.n_layer (valid model keys:",
    ),
    # --resume and --out
    Case(
        "train-resume-no-run",
        lambda k: ["train", "--out", "runs/none", "--resume"],
        "no run in runs/none (no checkpoints/last.ckpt or config.yaml); start one with `blt train --config",
    ),
    Case("train-resume-without-out", lambda k: ["train", "--resume"], "--resume needs --out RUN"),
    Case(
        "train-corpus-smaller-than-a-window",
        lambda k: _train("--data", str(k.write("small.txt", "too short\n"))),
        "fewer than one training window",
    ),
    # --devices, on every command that takes it
    Case(
        "compare-devices-abc",
        lambda k: _compare(k, "--devices", "abc"),
        "--devices must be a number of devices ≥ 1 or 'auto', got 'abc'",
    ),
    Case("compare-devices-zero", lambda k: _compare(k, "--devices", "0"), "--devices must be a number of devices ≥ 1"),
    Case("compare-devices-minus-one", lambda k: _compare(k, "--devices", "-1"), "got '-1'"),
    Case("segment-devices-abc", lambda k: _segment(k, "abc"), "--devices must be a number of devices ≥ 1 or 'auto'"),
    # sizes and fractions of blt compare
    Case(
        "compare-max-eval-bytes-negative",
        lambda k: _compare(k, "--max-eval-bytes", "-5"),
        "--max-eval-bytes must be ≥ 0 (0: all held-out bytes), got -5",
    ),
    Case("compare-max-bytes-negative", lambda k: _compare(k, "--max-bytes", "-1"), "--max-bytes must be ≥ 1, got -1"),
    Case(
        "compare-eval-fraction-1.5",
        lambda k: _compare(k, "--eval-fraction", "1.5"),
        "--eval-fraction must be in (0, 1), got 1.5",
    ),
    Case("compare-vocab-size-10", lambda k: _compare(k, "--vocab-size", "10"), "--vocab-size must be ≥ 260"),
    Case("compare-adapt-negative", lambda k: _compare(k, "--adapt", "-1"), "--adapt must be ≥ 0 steps"),
    Case(
        "compare-adapt-minutes-negative",
        lambda k: _compare(k, "--adapt-minutes", "-1"),
        "--adapt-minutes must be a time > 0, got -1.0",
    ),
    Case(
        "compare-fit-temperature-devices",
        lambda k: _compare(k, "--fit-temperature", "--devices", "2"),
        "--fit-temperature runs on one device; drop --devices",
    ),
    Case(
        "compare-online-lr-without-online",
        lambda k: _compare(k, "--online-lr", "1e-3"),
        "--online-lr sets the step size of --online: add --online",
    ),
    Case(
        "compare-online-lr-zero",
        lambda k: _compare(k, "--online", "--online-lr", "0"),
        "--online-lr must be in (0, 1), got 0.0",
    ),
    Case(
        "compare-online-devices-2",
        lambda k: _compare(k, "--online", "--devices", "2"),
        "--online reads the held-out documents in order on one device; drop --devices",
    ),
    Case(
        "compare-several-problems-at-once",
        lambda k: _compare(k, "--eval-fraction", "0", "--max-eval-bytes", "-5"),
        "--eval-fraction must be in (0, 1), got 0.0; --max-eval-bytes must be ≥ 0",
    ),
]
