"""Bad-input cases: click's own usage errors (wrong type, unknown option, missing value, bad choice) print one line
and exit 2 through `blt.cli.shared.OneLineErrors`, like the library's errors (exit 1)."""

from __future__ import annotations

from faults import Case

CASES = [
    Case("compare-adapt-not-an-int", lambda k: ["compare", "--adapt", "abc"], "Invalid value for '--adapt'", code=2),
    Case("compare-unknown-option", lambda k: ["compare", "--nope"], "No such option: --nope", code=2),
    Case("eval-missing-data", lambda k: ["eval"], "Missing option '--data'", code=2),
    Case("segment-bad-rule-choice", lambda k: ["segment", "x", "--rule", "entropy"], "'--rule'", code=2),
    Case("segment-option-without-value", lambda k: ["segment", "x", "--threshold"], "--threshold", code=2),
    Case("unknown-command", lambda k: ["patch", "x"], "No such command", code=2),
    Case("llm-score-unknown-option", lambda k: ["llm", "score", "--bogus"], "No such option: --bogus", code=2),
    Case("llm-spans-choice", lambda k: ["llm", "score", "--text", "x", "--spans", "word"], "'--spans'", code=2),
    Case("entropy-precision-choice", lambda k: ["entropy", "x", "--precision", "fp8"], "'--precision'", code=2),
]
