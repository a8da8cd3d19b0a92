"""Bad-input cases: `blt segment`, `entropy`, `eval` and `calibrate` options (one table of `faults.Case`; see
test_faults.py). The test model's card stores no thresholds, so entropy rules get `-t` or a target. A binary file
is not a mistake: test_cli_segment.py checks that every command takes one."""

from __future__ import annotations

from faults import Case, Kit

TEXT = "the cat sat on the mat, and the dog sat on the log."


def corpus(k: Kit) -> str:
    k.write("corpus/a.txt", TEXT)
    k.write("corpus/b.txt", TEXT.upper())
    return "corpus"


def empty_dir(k: Kit) -> str:
    (k.dir / "empty").mkdir()
    return "empty"


def seg(k: Kit, *args: str) -> list[str]:
    """`blt segment TEXT` with the test model and `args`."""
    return ["segment", TEXT, "-m", k.model, *args]


def cal(k: Kit, *args: str, data: str | None = None) -> list[str]:
    """`blt calibrate` of a two-document corpus (or `data`) to 4 bytes/patch, then `args`."""
    return ["calibrate", "-d", data or corpus(k), "--target-bytes-per-patch", "4", "-m", k.model, *args]


CASES = [
    # segment: the rules' numbers
    Case("segment-target-zero", lambda k: seg(k, "--target-bytes-per-patch", "0"), "must be > 0"),
    Case("segment-target-negative", lambda k: seg(k, "--target-bytes-per-patch", "-2"), "must be > 0"),
    Case("segment-fixed-size-zero", lambda k: seg(k, "--rule", "fixed", "--patch-size", "0"), "patch_size"),
    Case("segment-fixed-size-negative", lambda k: seg(k, "--rule", "fixed", "--patch-size", "-3"), "≥ 1, got -3"),
    Case("segment-max-length-zero", lambda k: seg(k, "--rule", "space", "--max-patch-length", "0"), "≥ 1, got 0"),
    Case("segment-max-length-negative", lambda k: seg(k, "-t", "1", "--max-patch-length", "-1"), "≥ 1, got -1"),
    Case("segment-threshold-negative", lambda k: seg(k, "-t", "-0.5"), "≥ 0 nats, got -0.5"),
    Case("segment-relative-negative", lambda k: seg(k, "--rule", "monotonic", "--relative-threshold", "-1"), "≥ 0"),
    Case("segment-threshold-nan", lambda k: seg(k, "-t", "nan"), "threshold"),
    # segment: where the bytes come from
    Case("segment-file-is-a-dir", lambda k: ["segment", "--file", empty_dir(k), "--rule", "space"], "not a file"),
    Case(
        "segment-data-empty-dir",
        lambda k: ["segment", "--data", empty_dir(k), "--out", "o", "--rule", "space"],
        "holds no text files",
    ),
    # entropy
    Case("entropy-file-is-a-dir", lambda k: ["entropy", "--file", empty_dir(k), "-m", k.model], "not a file"),
    Case("entropy-no-input", lambda k: ["entropy", "-m", k.model], "exactly one"),
    # eval
    Case("eval-data-empty-dir", lambda k: ["eval", "--data", empty_dir(k), "-m", k.model], "holds no text files"),
    Case("eval-data-missing", lambda k: ["eval", "--data", "nope.txt", "-m", k.model], "nope.txt"),
    # calibrate
    Case("calibrate-max-bytes-zero", lambda k: cal(k, "--max-bytes", "0"), "--max-bytes must be ≥ 1"),
    Case("calibrate-max-length-zero", lambda k: cal(k, "--max-patch-length", "0"), "≥ 1, got 0"),
    Case("calibrate-data-empty-dir", lambda k: cal(k, data=empty_dir(k)), "holds no text files"),
    Case(
        "calibrate-target-zero",
        lambda k: ["calibrate", "-d", corpus(k), "--target-bytes-per-patch", "0", "-m", k.model],
        "must be > 0",
    ),
]
