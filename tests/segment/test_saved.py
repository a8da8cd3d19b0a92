"""A patcher you can keep: `Patcher.save` / `Patcher.load` round trips for every kind of rule, the calibration record,
refusals that keep files safe, and `blt calibrate --save` + `blt segment --patcher` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import assert_user_error, make_spiky_model, run_cli, save_spiky

import blt.segment.saved as saved
from blt.cache import documents_hash
from blt.errors import BltError
from blt.patching import patch_starts
from blt.segment.patcher import Patcher

CALIBRATION = [b"In the beginning God created the heaven and the earth. " * 8, b"def f(x):\n    return x * 2\n" * 6]
OTHER = "Not the calibration text: caf\u00e9, \u65e5\u672c\u8a9e, and b\xe2ad bytes".encode() + b"\xff\xfe end"


@pytest.mark.parametrize(
    ("rule", "kw"),
    [
        ("global", {"target_bytes_per_patch": 3.0}),
        ("monotonic", {"target_bytes_per_patch": 3.0, "max_patch_length": 6}),
        ("budget", {"target_bytes_per_patch": 4.0, "min_patch_length": 2}),
        ("combined", {"threshold": 0.5, "relative_threshold": 0.1}),
        ("fixed", {"patch_size": 2.5}),
    ],
)
def test_saved_patcher_gives_the_same_patches(tmp_path: Path, rule: str, kw: dict) -> None:
    patcher = Patcher(make_spiky_model(), rule=rule, **kw)
    if "target_bytes_per_patch" in kw:
        fit = patcher.fit(CALIBRATION)
        assert abs(fit["bytes_per_patch"] - kw["target_bytes_per_patch"]) < 0.1
    patcher.save(tmp_path / "p")
    loaded = Patcher.load(tmp_path / "p")
    assert (loaded.rule, loaded.rule_threshold, loaded.max_patch_length) == (
        rule,
        patcher.rule_threshold,
        patcher.max_patch_length,
    )
    assert loaded.target_bytes_per_patch is None  # never recalibrated on what it patches next
    mine, theirs = patcher.patch([OTHER])[0], loaded.patch([OTHER])[0]
    assert mine.starts.tolist() == theirs.starts.tolist() and b"".join(theirs.segments) == OTHER
    if rule == "budget":  # and the same as the kernel at the stored budget on the loaded model's entropies
        expected = patch_starts(theirs.entropies_nats, rule="budget", budget=loaded.budget, min_patch_length=2)
        assert theirs.starts.tolist() == expected.tolist()


def test_the_record_names_what_it_was_calibrated_on(tmp_path: Path) -> None:
    patcher = Patcher(make_spiky_model(), rule="budget", target_bytes_per_patch=4.0)
    patcher.fit(CALIBRATION)
    record = json.loads((patcher.save(tmp_path / "p") / "patcher.json").read_text())
    assert record["format"] == "blt-patcher" and record["rule"] == "budget" and record["budget_nats"] == patcher.budget
    assert record["calibration"]["sha256"] == documents_hash(CALIBRATION)
    assert record["calibration"]["bytes"] == sum(map(len, CALIBRATION)) and record["calibration"]["documents"] == 2
    assert (tmp_path / "p" / "model" / "model.safetensors").is_file()


def test_a_rule_without_a_model_saves_no_model(tmp_path: Path) -> None:
    Patcher("default", rule="space").save(tmp_path / "s")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["patcher.json"]
    assert Patcher.load(tmp_path / "s").segment(b"a b") == [b"a ", b"b"]


def test_refusals_keep_files_safe(tmp_path: Path) -> None:
    with pytest.raises(BltError, match="not calibrated yet"):
        Patcher(make_spiky_model(), rule="budget", target_bytes_per_patch=4.0).save(tmp_path / "p")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(BltError, match="not a saved patcher"):
        Patcher("default", rule="byte").save(tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    with pytest.raises(BltError, match="no saved patcher at"):
        Patcher.load(tmp_path / "missing")
    with pytest.raises(BltError, match="has no patcher.json"):
        Patcher.load(tmp_path / "other")


def test_an_interrupted_save_leaves_the_old_patcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = Patcher(make_spiky_model(), rule="budget", budget=2.0).save(tmp_path / "p")
    before = (target / "patcher.json").read_text()

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("blt.bytelm.checkpoint.save_model_dir", broken)
    with pytest.raises(BltError, match="No space left"):
        Patcher(make_spiky_model(), rule="budget", budget=3.0).save(target)
    assert (target / "patcher.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]  # no temp directory left behind


def test_damaged_newer_or_tampered_files_are_errors(tmp_path: Path) -> None:
    path = Patcher(make_spiky_model(), rule="budget", budget=2.0).save(tmp_path / "p")
    record = json.loads((path / "patcher.json").read_text())
    (path / "patcher.json").write_text(json.dumps({**record, "format_version": 99}))
    with pytest.raises(BltError, match="newer than this blt reads"):
        Patcher.load(path)
    (path / "patcher.json").write_text("{ not json")
    with pytest.raises(BltError, match="damaged"):
        Patcher.load(path)
    path = Patcher(make_spiky_model(), rule="budget", budget=2.0).save(tmp_path / "q")
    model = make_spiky_model()
    with torch.no_grad():
        model.norm.weight.mul_(2.0)  # other weights, same shapes: only the hash tells
    from blt.bytelm.checkpoint import save_model_dir

    save_model_dir(model, Patcher.load(path).model.full_config, {}, path / "model")
    with pytest.raises(BltError, match="hash mismatch"):
        Patcher.load(path)
    with pytest.raises(BltError, match="cannot override"):
        saved.load_patcher(tmp_path / "q", budget=1.0)


def test_calibrate_save_then_segment_patcher(tmp_path: Path) -> None:
    """`blt calibrate --rule budget --save DIR` then `blt segment --patcher DIR` gives the patches of
    `blt segment --rule budget --budget B` with the stored B and the same model."""
    model_dir = save_spiky(tmp_path / "m")
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"".join(CALIBRATION))
    m = ["--model", str(model_dir)]
    args = ["calibrate", "--data", str(corpus), "--rule", "budget", "--target-bytes-per-patch", "4", *m]
    code, out, err = run_cli(*args, "--save", str(tmp_path / "p"), "--json")
    assert code == 0, err
    budget = json.loads(out)["budget_nats"]
    assert json.loads((tmp_path / "p" / "patcher.json").read_text())["budget_nats"] == budget
    code, out, err = run_cli("segment", "--patcher", str(tmp_path / "p"), "--json", "Some new text to patch.")
    assert code == 0, err
    code2, out2, _ = run_cli(
        "segment", *m, "-r", "budget", "--budget", repr(budget), "--json", "Some new text to patch."
    )
    assert code2 == 0 and json.loads(out)["starts"] == json.loads(out2)["starts"]
    assert json.loads(out)["budget_nats"] == budget and json.loads(out)["threshold_nats"] is None
    code, out, err = run_cli(
        "segment", "--data", str(corpus), "--out", str(tmp_path / "o"), "--patcher", str(tmp_path / "p")
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["rule"] == "budget" and summary["budget_nats"] == budget and "threshold_nats" not in summary
    assert summary["calibrated_on_bytes"] is None  # a kept patcher is never recalibrated
    assert_user_error(["segment", "--patcher", str(tmp_path / "p"), "--rule", "global", "x"], "drop --rule")
    assert_user_error(["segment", "--patcher", str(tmp_path / "p"), *m, "--budget", "1", "x"], "drop --budget, --model")
    assert_user_error(["segment", "--patcher", str(tmp_path / "nope"), "x"], "no saved patcher at")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    assert_user_error([*args, "--save", str(tmp_path / "full")], "not a saved patcher (nor empty)")
