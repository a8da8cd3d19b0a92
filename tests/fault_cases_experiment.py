"""Bad-input cases: `blt experiment` configs and output directories (one table of `faults.Case`; see test_faults.py).

Each fails before a corpus is scored or a tokeniser trained: config errors when the YAML is read, directory errors
before the inputs are prepared. A directory blt did not write is refused whatever the flags (`--force` included), a
damaged record too, and the runner checks that nothing in it changed.
"""

from __future__ import annotations

import json

from faults import Case, Kit

GOOD = "corpora: [udhr]\nsegmenters: [space]\nmodels: []\n"


def config(k: Kit, text: str = GOOD) -> str:
    return str(k.write("exp.yaml", text))


def record(k: Kit, **fields: object) -> None:
    """An experiment.json as a run writes it (the fields `blt.experiments.outdir` requires), with `fields` changed."""
    meta = {"name": "exp", "config": {}, "config_sha256": "0" * 64, "cells": 1, "complete": True, **fields}
    k.write("out/experiment.json", json.dumps(meta))


def foreign(k: Kit) -> list[str]:
    k.write("out/report.md", "# my own report\n")
    k.write("out/results.csv", "a,b\n1,2\n")
    return [config(k), "--out", "out", "--force"]


def damaged(k: Kit) -> list[str]:
    k.write("out/experiment.json", '{"name": "exp", "config": {"corpora"')
    k.write("out/cells/0123456789abcdef.json", "{}")
    return [config(k), "--out", "out", "--resume"]


def different(k: Kit) -> list[str]:
    record(k)
    return [config(k), "--out", "out", "--resume"]


def experiment(make):  # type: ignore[no-untyped-def]
    return lambda k: ["experiment", *make(k)]


CASES = [
    Case(
        "experiment-unknown-key",
        experiment(lambda k: [config(k, "corpra: [udhr]\nsegmenters: [space]\n")]),
        "unknown key corpra (valid:",
    ),
    Case(
        "experiment-bad-yaml",
        experiment(lambda k: [config(k, "corpora: [udhr\nsegmenters: {space\n")]),
        "is not valid YAML",
    ),
    Case(
        "experiment-missing-corpus-path",
        experiment(
            lambda k: [config(k, "corpora: [{name: c, sources: [nope.txt]}]\nsegmenters: [space]\nmodels: []\n")]
        ),
        "nope.txt",
    ),
    Case(
        "experiment-unknown-segmenter",
        experiment(lambda k: [config(k, "corpora: [udhr]\nsegmenters: [wordpiece]\n")]),
        "unknown segmenter 'wordpiece'",
    ),
    Case(
        "experiment-bad-grid-vocab",
        experiment(lambda k: [config(k, "corpora: [udhr]\nsegmenters: [{kind: bpe, vocab_size: [10]}]\n")]),
        "vocab_size must be ≥ 260",
    ),
    Case(
        "experiment-empty-grid",
        experiment(lambda k: [config(k, "corpora: [udhr]\nsegmenters: [{kind: fixed, patch_size: []}]\n")]),
        "empty grid: segmenters[0].patch_size lists no values",
    ),
    Case(
        "experiment-unknown-metric",
        experiment(lambda k: [config(k, GOOD + "metrics: [speed]\n")]),
        "unknown metric 'speed'",
    ),
    Case(
        "experiment-duplicate-corpus",
        experiment(lambda k: [config(k, "corpora: [udhr, udhr]\nsegmenters: [space]\n")]),
        "corpus names must be unique",
    ),
    Case(
        "experiment-bad-set",
        experiment(lambda k: [config(k), "--set", "max_eval_bytes"]),
        "expected key=value",
    ),
    Case(
        "experiment-grader-missing",
        experiment(lambda k: [config(k, GOOD + "grader: no-such-grader\n")]),
        "grader: model no-such-grader not found",
    ),
    Case(
        "experiment-budget-with-a-threshold",
        experiment(lambda k: [config(k, "corpora: [udhr]\nsegmenters: [{kind: entropy-budget, threshold: 2}]\n")]),
        "unknown parameter 'threshold' (it takes target_bytes_per_patch, budget, max_patch_length)",
    ),
    Case(
        "experiment-zero-workers",
        experiment(lambda k: [config(k), "--workers", "0"]),
        "--workers must be ≥ 1",
    ),
    Case(
        "experiment-resume-without-an-experiment",
        experiment(lambda k: [config(k), "--out", "nothing-here", "--resume"]),
        "holds no experiment to resume; run without --resume",
    ),
    Case(
        "experiment-resume-and-force",
        experiment(lambda k: [config(k), "--out", "out", "--resume", "--force"]),
        "not both",
    ),
    Case(
        "experiment-force-on-a-foreign-dir",
        experiment(foreign),
        "holds files that are not a blt experiment (report.md, results.csv); choose another --out",
    ),
    Case(
        "experiment-damaged-record-on-resume",
        experiment(damaged),
        "is not a blt experiment record (not readable JSON",
    ),
    Case(
        "experiment-resume-a-different-config",
        experiment(different),
        "holds results of a different experiment config",
    ),
]
