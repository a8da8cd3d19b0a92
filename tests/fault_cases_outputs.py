"""Bad-input cases: output paths that cannot be written (one table of `faults.Case`; see test_faults.py).

Every command that writes checks its --out/--html/--plot first (`blt.cli.shared.check_output`), before a model
loads or a corpus is read: a file where a directory is needed, a path under a file, a directory where a file is
needed, a plot name that is not .png. The inputs are otherwise fine or never reached: the check comes first.
"""

from __future__ import annotations

from pathlib import Path

from faults import Case, Kit

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")
EXPERIMENT = "corpora: [udhr]\nsegmenters: [space]\nmodels: []\n"


def notes(k: Kit) -> str:
    """A file of the user's, under which nothing can be written."""
    return str(k.write("notes.txt", "mine").name)


def folder(k: Kit) -> str:
    """A directory of the user's, where a file is wanted."""
    return str(k.write("pages/mine.txt", "mine").parent.name)


def llm(k: Kit) -> list[str]:
    return ["--model", f"blt:{k.model}", "--text", "hello world"]


CASES = [
    Case(
        "segment-html-under-a-file",
        lambda k: ["segment", "hi there", "--rule", "space", "--html", f"{notes(k)}/page.html"],
        "notes.txt, which is a file; choose a path outside it",
    ),
    Case(
        "segment-html-is-a-directory",
        lambda k: ["segment", "hi there", "--rule", "space", "--html", folder(k)],
        "--html pages is a directory; give a file name",
    ),
    Case(
        "segment-plot-not-png",
        lambda k: ["segment", "hi there", "--rule", "space", "--plot", "entropy.pdf"],
        "use a name ending in .png",
    ),
    Case(
        "segment-plot-under-a-file",
        lambda k: ["segment", "hi there", "--model", k.model, "--plot", f"{notes(k)}/sub/plot.png"],
        "which is a file",
    ),
    Case(
        "segment-out-is-a-file",
        lambda k: [
            "segment",
            "--data",
            str(k.write("corpus.txt", "hello world")),
            "--rule",
            "space",
            "--out",
            notes(k),
        ],
        "--out notes.txt is a file, not a directory",
    ),
    Case(
        "compare-out-is-a-file",
        lambda k: ["compare", "--segmenters", "space", "--out", str(k.write("report.md", "# mine").name)],
        "--out report.md is a file, not a directory",
    ),
    Case(
        "compare-out-under-a-file",
        lambda k: ["compare", "--model", k.model, "--segmenters", "space", "--out", f"{notes(k)}/report"],
        "which is a file",
    ),
    Case(
        "experiment-out-is-a-file",
        lambda k: ["experiment", str(k.write("exp.yaml", EXPERIMENT)), "--out", notes(k)],
        "--out notes.txt is a file, not a directory",
    ),
    Case(
        "experiment-out-under-a-file",
        lambda k: ["experiment", str(k.write("exp.yaml", EXPERIMENT)), "--out", f"{notes(k)}/run"],
        "which is a file",
    ),
    Case(
        "llm-score-out-is-a-file",
        lambda k: ["llm", "score", *llm(k), "--out", notes(k)],
        "--out notes.txt is a file, not a directory",
    ),
    Case(
        "llm-compare-out-under-a-file",
        lambda k: ["llm", "compare", *llm(k), "--model", f"blt:{k.model}", "--out", f"{notes(k)}/cmp"],
        "which is a file",
    ),
    Case(
        "llm-segment-html-is-a-directory",
        lambda k: ["llm", "segment", *llm(k), "--html", folder(k)],
        "--html pages is a directory",
    ),
    Case(
        "llm-segment-plot-not-png",
        lambda k: ["llm", "segment", *llm(k), "--plot", "tokens.svg"],
        "use a name ending in .png",
    ),
    Case(
        "train-out-is-a-file",
        lambda k: ["train", "--config", TINY, "--out", notes(k)],
        "--out notes.txt is a file, not a directory",
    ),
    Case(
        "train-out-under-a-file",
        lambda k: ["train", "--config", TINY, "--out", f"{notes(k)}/run"],
        "which is a file",
    ),
]
