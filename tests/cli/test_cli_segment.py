"""`blt segment` and `blt calibrate` through typer's CliRunner: results match the library, files are written, and
every user mistake gives one red line and exit code 1, never a traceback."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import lightning  # noqa: F401  imported first so its log handler binds to the real stderr, not a runner buffer
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import assert_user_error, make_model, make_spiky_model, run_cli

from blt.bytelm.checkpoint import load_model, save_model_dir
from blt.bytelm.entropy import score
from blt.config import Config
from blt.report.terminal import TERMINAL_MAX_BYTES
from blt.report.text import shown_prefix
from blt.segment.patcher import Patcher

TEXT = "Hello, wörld! 日本語 😀 entropy patches.\nline two"
CARD_THRESHOLDS = {"global": 0.2, "monotonic": 0.05}  # nats


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny conftest model with logits ×20 (varied entropies, ≈ 0–2.6 nats), saved with default thresholds in
    its card."""
    model = make_spiky_model(0)
    card = {"steps": 0, "patch_thresholds_nats": CARD_THRESHOLDS}
    return save_model_dir(model, Config(model=model.cfg), card, tmp_path_factory.mktemp("m") / "model")


@pytest.fixture(scope="module")
def plain_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The untrained tiny model, with no thresholds in its card."""
    model = make_model(0)
    return save_model_dir(model, Config(model=model.cfg), {"steps": 0}, tmp_path_factory.mktemp("m") / "plain")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five documents, ≈ 1.5 kB of non-repeating multilingual words."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    vocab = "the quick brown fox jumps over lazy dog naïve café 日本語 текст 😀 data byte patch entropy".split()
    for i in range(5):
        (root / f"d{i}.txt").write_text(" ".join(rng.choice(vocab, size=30 + 10 * i)))
    return root


def segment_json(*args: str) -> dict:
    code, out, err = run_cli("segment", *args, "--json")
    assert code == 0, err
    return json.loads(out)


# ---------------------------------------------------------------- blt segment


def test_segment_json_matches_the_library(model_dir: Path) -> None:
    got = segment_json(TEXT, "--model", str(model_dir), "--threshold", "0.1", "--max-patch-length", "6")
    data = TEXT.encode()
    expected = Patcher(load_model(model_dir), threshold=0.1, max_patch_length=6).patch([data])[0]
    assert got["lengths"] == expected.lengths.tolist() and got["starts"] == expected.starts.tolist()
    assert sum(got["lengths"]) == len(data) and max(got["lengths"]) <= 6
    assert got["starts"] == np.concatenate(([0], np.cumsum(got["lengths"])[:-1])).tolist()
    np.testing.assert_allclose(got["entropies_nats"], score(load_model(model_dir), data)[0].entropy_nats, atol=1e-5)
    assert got["threshold_nats"] == 0.1
    assert got["bytes_per_patch"] == pytest.approx(len(data) / len(got["lengths"]))


@pytest.mark.parametrize("rule, option", [("monotonic", "--relative-threshold"), ("combined", "--threshold")])
def test_segment_json_for_the_other_entropy_rules(model_dir: Path, rule: str, option: str) -> None:
    extra = ["--relative-threshold", "0.0"] if rule == "combined" else []
    got = segment_json(TEXT, "--model", str(model_dir), "--rule", rule, option, "0.05", *extra)
    kw = {"relative_threshold": 0.05} if rule == "monotonic" else {"threshold": 0.05, "relative_threshold": 0.0}
    expected = Patcher(load_model(model_dir), rule=rule, **kw).patch([TEXT])[0]
    assert got["lengths"] == expected.lengths.tolist() and got["threshold_nats"] == 0.05


def test_segment_target_lands_within_one_patch(model_dir: Path) -> None:
    data = TEXT.encode()
    got = segment_json(TEXT, "--model", str(model_dir), "--target-bytes-per-patch", "3")
    assert abs(len(got["lengths"]) - len(data) / 3) <= 1
    fixed = segment_json(TEXT, "--model", str(model_dir), "--threshold", repr(got["threshold_nats"]))
    assert fixed["lengths"] == got["lengths"]


def test_segment_file_with_the_space_rule_needs_no_model(tmp_path: Path) -> None:
    """No --model: "default" (not bundled in a source checkout) is never loaded for a rule-based rule.
    b"ok \\xff end": ␠ \\xff ␠ form one spacelike run, so one start after byte 2 -> lengths [3, 5]."""
    f = tmp_path / "in.bin"
    f.write_bytes(b"ok \xff end")
    got = segment_json("--file", str(f), "--rule", "space")
    assert got == {
        "rule": "space",
        "lengths": [3, 5],
        "starts": [0, 3],
        "entropies_nats": None,
        "threshold_nats": None,
        "relative_threshold_nats": None,
        "budget_nats": None,
        "bytes_per_patch": 4.0,
    }


def test_segment_prints_the_text_and_the_summary(model_dir: Path) -> None:
    """θ = 0.5 nats is 0.7213 bits. Without colours (a pipe), │ marks each boundary, before the character a patch
    starts in (several starts inside one character share one mark)."""
    code, out, err = run_cli("segment", TEXT, "--model", str(model_dir), "--threshold", "0.5")
    assert code == 0, err
    text = out[: out.rindex("\n", 0, out.index(" patches, "))]  # what precedes the summary line
    starts = set(Patcher(load_model(model_dir), threshold=0.5).patch([TEXT])[0].starts.tolist())
    chars_with_a_start = sum(
        any(s in starts for s in range(o, o + len(c.encode())))
        for o, c in zip(np.cumsum([0] + [len(c.encode()) for c in TEXT[:-1]]), TEXT, strict=True)
    )
    assert text.replace("│", "") == TEXT and text.count("│") == chars_with_a_start - 1  # not before the first
    n = len(TEXT.encode())
    assert re.search(rf"\d+ patches, {n} bytes, [\d.]+ bytes/patch, threshold 0\.5000 nats \(0\.7213 bits\)", out), out


def test_segment_empty_text_is_zero_patches(model_dir: Path) -> None:
    got = segment_json("", "--model", str(model_dir), "--threshold", "0.1")
    assert got["lengths"] == [] and got["starts"] == [] and got["bytes_per_patch"] == 0.0


@pytest.mark.filterwarnings("ignore:Glyph .* missing from font:UserWarning")  # CJK glyphs, not in DejaVu Sans
def test_segment_writes_html_and_plot(model_dir: Path, tmp_path: Path) -> None:
    html, png = tmp_path / "out" / "p.html", tmp_path / "out" / "p.png"
    code, out, err = run_cli(
        "segment", TEXT, "--model", str(model_dir), "--threshold", "0.1", "--html", str(html), "--plot", str(png)
    )
    assert code == 0, err
    starts = set(Patcher(load_model(model_dir), threshold=0.1).patch([TEXT])[0].starts.tolist())
    page = html.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "http" not in page and "<script" not in page
    # One hover per character, or per byte of a character that a patch boundary cuts; one box per patch.
    offset, hovers = 0, 0
    for ch in TEXT:
        width = len(ch.encode())
        hovers += width if starts & set(range(offset + 1, offset + width)) else 1
        offset += width
    assert page.count("title='") == hovers
    assert page.count("class='patch'") == len(starts)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in png.parent.iterdir()) == ["p.html", "p.png"]
    assert "patches" in out  # the terminal view is printed too


def test_segment_plot_needs_an_entropy_rule(tmp_path: Path) -> None:
    assert_user_error(["segment", "a b", "--rule", "space", "--plot", str(tmp_path / "p.png")], "entropy rule")


def test_segment_corpus_writes_parquet(model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "patched"
    code, stdout, err = run_cli(
        "segment",
        "--data",
        str(corpus),
        "--out",
        str(out),
        "--model",
        str(model_dir),
        "--threshold",
        "0.1",
        "--devices",
        "1",
    )
    assert code == 0, err
    rows = pq.read_table(out / "patches-0.parquet").to_pylist()
    docs = [p.read_bytes() for p in sorted(corpus.glob("*.txt"))]
    expected = Patcher(load_model(model_dir), threshold=0.1).patch(docs)
    assert [r["patch_lengths"] for r in rows] == [p.lengths.tolist() for p in expected]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["documents"] == 5 and summary["bytes"] == sum(map(len, docs))
    assert f"{summary['documents']} documents" in stdout


@pytest.mark.parametrize("rule", ["global", "monotonic"])
def test_segment_uses_the_card_thresholds_by_default(model_dir: Path, rule: str) -> None:
    code, out, err = run_cli("segment", TEXT, "--model", str(model_dir), "--rule", rule, "--json")
    assert code == 0, err
    option = "--relative-threshold" if rule == "monotonic" else "--threshold"
    explicit = segment_json(TEXT, "--model", str(model_dir), "--rule", rule, option, str(CARD_THRESHOLDS[rule]))
    assert json.loads(out) == explicit


def test_a_long_file_prints_a_bounded_view_and_streams_its_json(model_dir: Path, tmp_path: Path) -> None:
    """≈ 70 kB: the terminal shows the first 64 KiB, the length statistics and the summary (its output stops
    growing there, whatever the file's size), and the streamed --json is exactly the library's patching."""
    f = tmp_path / "long.txt"
    rng = np.random.default_rng(0)
    words = "the quick brown fox jumps over a lazy dog naïve café 日本語 текст 😀\n".split(" ")
    f.write_text(" ".join(rng.choice(words, size=12_000)), encoding="utf-8")
    data = f.read_bytes()
    assert 1 << 16 < len(data) < 80_000
    code, out, err = run_cli("segment", "--file", str(f), "--rule", "space")
    assert code == 0, err
    n = shown_prefix(data, TERMINAL_MAX_BYTES)  # 64 KiB, less the start of a character it would cut
    shown = out[: out.index("\n… the first")]
    assert shown.replace("│", "") == data[:n].decode()
    assert len(out) < 2 * 65536 and len(out.splitlines()) < 2_000
    assert f"the first {n:,} of {len(data):,} bytes shown; every patch: --json, or --html FILE" in out
    assert re.search(r"^patch lengths \(bytes\): min 1, median \d+, mean [\d.]+, p90 \d+, max \d+$", out, re.M), out
    space = Patcher(rule="space").patch([data])[0]
    summary = f"{len(space.starts)} patches, {len(data)} bytes, {space.bytes_per_patch:.2f} bytes/patch"
    assert out.splitlines()[-1] == summary
    args = ("--file", str(f), "--model", str(model_dir), "--threshold", "0.5")
    got = segment_json(*args)
    expected = Patcher(load_model(model_dir), threshold=0.5).patch([data])[0]
    assert got["lengths"] == expected.lengths.tolist() and got["starts"] == expected.starts.tolist()
    np.testing.assert_allclose(got["entropies_nats"], expected.entropies_nats, atol=1e-5)
    assert got["bytes_per_patch"] == pytest.approx(expected.bytes_per_patch)


def test_binary_input_works_in_every_command(model_dir: Path, tmp_path: Path) -> None:
    """Bytes are bytes: a file of no text at all (every byte value, NULs, invalid UTF-8) is scored, patched,
    evaluated and calibrated like any other."""
    f = tmp_path / "blob.bin"
    f.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes() + bytes(range(256)))
    m = ("--model", str(model_dir))
    got = segment_json("--file", str(f), *m, "--target-bytes-per-patch", "4")
    assert sum(got["lengths"]) == 3256 and abs(len(got["lengths"]) - 3256 / 4) <= 1
    code, out, err = run_cli("segment", "--file", str(f), *m, "--threshold", "0.5")
    assert code == 0 and "\\x00" in out and "3256 bytes" in out, err
    code, out, err = run_cli("entropy", "--file", str(f), *m, "--json")
    assert code == 0 and len(json.loads(out)["entropy_nats"]) == 3256, err
    code, out, err = run_cli("eval", "--data", str(f), *m, "--json")
    assert code == 0 and json.loads(out)["bytes"] == 3256, err
    code, out, err = run_cli("calibrate", "--data", str(f), *m, "--target-bytes-per-patch", "4", "--json")
    assert code == 0 and json.loads(out)["bytes"] == 3256, err


# ---------------------------------------------------------------- blt calibrate


@pytest.mark.parametrize("rule", ["global", "monotonic"])
def test_calibrate_lands_within_one_patch_of_the_target(model_dir: Path, corpus: Path, rule: str) -> None:
    code, out, err = run_cli(
        "calibrate",
        "--data",
        str(corpus),
        "--target-bytes-per-patch",
        "4",
        "--rule",
        rule,
        "--model",
        str(model_dir),
        "--json",
    )
    assert code == 0, err
    got = json.loads(out)
    docs = [p.read_bytes() for p in sorted(corpus.glob("*.txt"))]
    total = sum(map(len, docs))
    assert got["rule"] == rule and got["bytes"] == total and got["target_bytes_per_patch"] == 4
    assert abs(got["patches"] - total / 4) <= 1
    assert got["bytes_per_patch"] == pytest.approx(total / got["patches"])
    assert got["threshold_bits"] == pytest.approx(got["threshold_nats"] / math.log(2))
    key = "relative_threshold" if rule == "monotonic" else "threshold"
    patched = Patcher(load_model(model_dir), rule=rule, **{key: got["threshold_nats"]}).patch(docs)
    assert sum(len(p.starts) for p in patched) == got["patches"]


def test_calibrate_prints_nats_and_bits(model_dir: Path, corpus: Path) -> None:
    code, out, err = run_cli(
        "calibrate", "--data", str(corpus), "--target-bytes-per-patch", "4", "--model", str(model_dir)
    )
    assert code == 0, err
    m = re.search(r"global rule: threshold ([\d.]+) nats \(([\d.]+) bits\): ([\d.]+) bytes/patch", out)
    assert m, out
    assert float(m[2]) == pytest.approx(float(m[1]) / math.log(2), abs=1e-5)
    assert float(m[3]) == pytest.approx(4, abs=0.1)


def test_a_second_calibration_reads_the_score_cache(
    model_dir: Path, corpus: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another target on the same corpus: the scores come from $BLT_CACHE, nothing is scored again, and the
    threshold is the one a fresh calibration finds."""
    args = ["calibrate", "--data", str(corpus), "--model", str(model_dir), "--json", "--target-bytes-per-patch"]
    code, out, err = run_cli(*args, "4")
    assert code == 0, err
    assert any((isolated_env / "scores").iterdir())
    code, fresh, err = run_cli(*args, "5", "--no-cache")
    assert code == 0, err

    def no_scoring(*a: object, **k: object) -> None:
        raise AssertionError("scored again")

    monkeypatch.setattr("blt.bytelm.entropy.score", no_scoring)
    code, cached, err = run_cli(*args, "5")
    assert code == 0, err
    assert json.loads(cached) == json.loads(fresh)


# ---------------------------------------------------------------- bad input


def test_bad_input_gives_one_clear_line(model_dir: Path, plain_model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    m = ["--model", str(model_dir)]
    assert_user_error(["segment", TEXT, *m, "--threshold", "1", "--target-bytes-per-patch", "4"], "not both")
    assert_user_error(["segment", TEXT, *m, "--threshold", "-1"], "threshold must be ≥ 0 nats, got -1.0")
    assert_user_error(["segment", TEXT, *m, "--threshold", "1", "--max-patch-length", "0"], "integer ≥ 1, got 0")
    assert_user_error(["segment", TEXT, *m, "--target-bytes-per-patch", "0.5"], "out of reach")
    assert_user_error(["segment", TEXT, *m, "--target-bytes-per-patch", "100"], "out of reach")  # 55 bytes
    assert_user_error(["segment", "--data", str(corpus), *m, "--threshold", "1"], "--data needs --out")
    if torch.cuda.device_count() < 2:
        out = ["--out", str(tmp_path / "o")]
        assert_user_error(["segment", "--data", str(corpus), *m, "-t", "1", *out, "--devices", "2"], "use --devices 1")
    assert_user_error(["segment", "--file", str(tmp_path / "missing.txt"), *m, "--threshold", "1"], "does not exist")
    assert_user_error(["segment", TEXT, "--file", str(corpus / "d0.txt"), "--rule", "byte"], "exactly one")
    assert_user_error(["segment", TEXT, *m, "--rule", "fixed"], "patch_size must be an integer ≥ 1")
    assert_user_error(["segment", TEXT, *m, "--budget", "3"], "add --rule budget")
    assert_user_error(["segment", TEXT, *m, "--min-patch-length", "2"], "applies to the budget rule")
    assert_user_error(["segment", TEXT, *m, "--rule", "budget", "--budget", "-1"], "budget must be ≥ 0 nats")
    assert_user_error(["segment", TEXT, *m, "-r", "budget", "--budget", "3", "--min-patch-length", "0"], "≥ 1, got 0")
    assert_user_error(["segment", TEXT, "--model", str(plain_model_dir)], "--threshold")  # no card thresholds either
    assert_user_error(["segment", TEXT, "--model", str(tmp_path / "nope"), "--threshold", "1"], "not found")
    assert_user_error(
        ["calibrate", "--data", str(corpus), "--target-bytes-per-patch", "4", "--rule", "space", *m],
        "monotonic or budget, not space",
    )
    assert_user_error(["calibrate", "--data", str(corpus), "--target-bytes-per-patch", "0.5", *m], "out of reach")
    assert_user_error(
        ["calibrate", "--data", str(tmp_path / "nope.txt"), "--target-bytes-per-patch", "4", *m], "does not exist"
    )


def test_monotonic_with_threshold_names_the_cli_option(model_dir: Path) -> None:
    assert_user_error(
        ["segment", TEXT, "--model", str(model_dir), "--rule", "monotonic", "--threshold", "0.05"],
        "--relative-threshold",
    )


def test_fixed_patches_at_a_non_integer_size_from_the_cli() -> None:
    """10 bytes at L = 2.5: unit i starts at ⌊2.5·i⌋ → 0, 2, 5, 7 (lengths 2, 3, 2, 3; exactly 2.5 bytes/patch)."""
    code, out, err = run_cli("segment", "abcdefghij", "--rule", "fixed", "--patch-size", "2.5", "--json")
    assert code == 0, err
    got = json.loads(out)
    assert got["starts"] == [0, 2, 5, 7] and got["lengths"] == [2, 3, 2, 3] and got["bytes_per_patch"] == 2.5
