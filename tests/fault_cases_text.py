"""Bad-input cases: reading the user's text (one table of `faults.Case`; see test_faults.py)."""

from __future__ import annotations

from faults import Case

CASES = [
    Case("segment-file-missing", lambda k: ["segment", "--file", "nope.txt", "--rule", "space"], "nope.txt"),
    Case("entropy-empty-text", lambda k: ["entropy", "", "--model", k.model], "empty"),
    Case("segment-text-and-file", lambda k: ["segment", "x", "--file", str(k.write("a.txt", "y"))], "exactly one"),
]
