"""The output directory of `blt experiment` (blt.experiments.outdir): a user's own files are never overwritten, not even
with --force; damaged cells are computed again on --resume; a damaged record is refused with nothing changed; and a
run killed while writing its tables or report resumes to the same table, leaving no temp file behind.

The grids here have no byte model (rule-based cells only), so each run takes well under a second."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import assert_user_error, run_cli, zipf_documents
from faults import snapshot

import blt.experiments.run
from blt.errors import BltError
from blt.experiments.config import TIMINGS, expand, experiment_from_dict
from blt.experiments.outdir import check_out_dir, clear_out_dir
from blt.experiments.run import run_experiment

DOCS = zipf_documents(per_language=6)


def spec(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """Five rule-based cells on a directory corpus; no byte model."""
    corpus = tmp_path / "corpus"
    if not corpus.is_dir():
        corpus.mkdir()
        for i, d in enumerate(DOCS):
            (corpus / f"{i:03d}.txt").write_bytes(d.data)
    segmenters = ["space", "byte", {"kind": "fixed", "patch_size": [2, 3, 4]}]
    corpora = [{"name": "c", "sources": [str(corpus)]}]
    return {"name": "small", "corpora": corpora, "models": [], "segmenters": segmenters, "eval_fraction": 0.25, **extra}


def table(out: Path) -> list[dict[str, Any]]:
    rows = pq.read_table(out / "results.parquet").to_pylist()
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]


def test_force_never_touches_a_directory_blt_did_not_write(tmp_path: Path) -> None:
    """The user's report.md and results.csv are names a run writes; without blt's record beside them they are the
    user's, and neither --force nor --resume may touch them; the refusal suggests another --out, not --force."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("# my notes\n")
    (mine / "results.csv").write_bytes(b"a,b\n1,2\n")
    before = snapshot(mine)
    cfg = experiment_from_dict(spec(tmp_path))
    for flags in ({"force": True}, {"resume": True}, {}):
        with pytest.raises(BltError) as info:
            run_experiment(cfg, mine, **flags)
        assert "choose another --out" in str(info.value) and "--force" not in str(info.value)
        assert "report.md, results.csv" in str(info.value)
    (tmp_path / "exp.yaml").write_text(json.dumps(spec(tmp_path)))
    err = assert_user_error(["experiment", str(tmp_path / "exp.yaml"), "--out", str(mine), "--force"], "another --out")
    assert "--force" not in err
    assert snapshot(mine) == before


def test_force_removes_only_what_a_run_wrote(tmp_path: Path) -> None:
    """In a directory blt's record proves to be an experiment, --force removes the cells, tables, report, plots and
    a killed run's temp files, and nothing else: not the user's notes, not a file of theirs inside cells/."""
    out = tmp_path / "out"
    cfg = experiment_from_dict(spec(tmp_path))
    run_experiment(cfg, out)
    (out / "notes.txt").write_text("mine")
    (out / "cells" / "mine.txt").write_text("mine")
    (out / ".report.md.abcd_123.md").write_text("half")  # a temp file of a run killed while writing report.md
    (out / ".notes.txt.abcd_123.txt").write_text("mine")  # looks like one, but of a file blt never writes
    cell = expand(cfg)[0].id
    (out / "cells" / f".{cell}.json.zz9_zz9z.json").write_text("{")
    clear_out_dir(out, cells=True)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        ".notes.txt.abcd_123.txt", "cells", "cells/mine.txt", "experiment.json", "notes.txt"
    ]  # fmt: skip
    other = experiment_from_dict(spec(tmp_path, segmenters=["space"]))
    run_experiment(other, out, force=True)
    assert [r["segmenter"] for r in table(out)] == ["space"]
    assert (out / "notes.txt").read_text() == (out / "cells" / "mine.txt").read_text() == "mine"


def test_resume_needs_an_experiment_and_excludes_force(tmp_path: Path) -> None:
    cfg = experiment_from_dict(spec(tmp_path))
    with pytest.raises(BltError, match="holds no experiment to resume; run without --resume"):
        run_experiment(cfg, tmp_path / "new", resume=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BltError, match="holds no experiment to resume"):
        run_experiment(cfg, tmp_path / "empty", resume=True)
    with pytest.raises(BltError, match="not both"):
        run_experiment(cfg, tmp_path / "new", resume=True, force=True)
    assert not (tmp_path / "new").exists() and not any((tmp_path / "empty").iterdir())


def test_damaged_cells_are_computed_again_on_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Truncated, not JSON, not an object, missing fields, another cell's row, a metric that is text: each such
    cell file is reported once in a warning and its cell computed again; the table equals the first run's."""
    out = tmp_path / "out"
    cfg = experiment_from_dict(spec(tmp_path))
    run_experiment(cfg, out)
    whole = table(out)
    cells = [out / "cells" / f"{c.id}.json" for c in expand(cfg)]
    row = json.loads(cells[4].read_text())
    damage = {
        0: cells[0].read_bytes()[:40],
        1: b"\x00\xffnot json",
        2: json.dumps({"cell": expand(cfg)[2].id}).encode(),
        3: cells[4].read_bytes(),  # another cell's row
        4: json.dumps({**row, "bytes_per_unit": "many"}).encode(),
    }
    for i, content in damage.items():
        cells[i].write_bytes(content)
    cells[1].with_name("extra.json").write_text("[]")  # not a cell of this grid: ignored, left alone
    json.loads((out / "experiment.json").read_text())  # the record stays valid
    evaluated: list[str] = []
    real = blt.experiments.run.evaluate_cell
    monkeypatch.setattr(blt.experiments.run, "evaluate_cell", lambda c, ctx: evaluated.append(c.id) or real(c, ctx))
    warnings: list[str] = []
    run_experiment(cfg, out, resume=True, warn=warnings.append)
    assert len(warnings) == 5 and all("is damaged" in w and "computing that cell again" in w for w in warnings)
    reasons = " ".join(warnings)
    assert all(r in reasons for r in ("not readable JSON", "it lacks", "it holds another cell", "is not a number"))
    assert len(evaluated) == 5 and table(out) == whole
    assert cells[1].with_name("extra.json").read_text() == "[]"
    code, _, err = run_cli("experiment", str(_yaml(tmp_path)), "--out", str(out), "--resume")
    assert code == 0 and "warning" not in err, err  # the rewritten cells read back whole


def _yaml(tmp_path: Path) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(json.dumps(spec(tmp_path)))
    return path


@pytest.mark.parametrize(
    "record",
    [b'{"name": "small", "config": {', b"\x89PNG", b"[1, 2]", b'{"name": "small"}'],
    ids=["truncated", "binary", "not-an-object", "missing-fields"],
)
def test_a_damaged_record_is_refused_and_nothing_changes(tmp_path: Path, record: bytes) -> None:
    out = tmp_path / "out"
    run_experiment(experiment_from_dict(spec(tmp_path)), out)
    (out / "experiment.json").write_bytes(record)
    before = snapshot(out)
    for flags in (["--resume"], ["--force"], []):
        err = assert_user_error(["experiment", str(_yaml(tmp_path)), "--out", str(out), *flags], "is not a blt")
        assert "choose another --out" in err
    assert snapshot(out) == before


def test_check_out_dir_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(BltError, match="is a file, not a directory"):
        check_out_dir(tmp_path / "f", experiment_from_dict(spec(tmp_path)), resume=False, force=True)


KILL_WHILE_WRITING = """
import os, signal, sys
import blt.experiments.report, blt.report.plots
from blt.experiments.config import load_experiment
from blt.experiments.run import run_experiment

real = blt.report.plots.write_atomic

def write_atomic(path, write):
    if path.name != sys.argv[2]:
        return real(path, write)
    def half(tmp):  # half a file in the temp name, then SIGKILL: what a kill mid-write leaves
        tmp.write_bytes(b"half")
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, half)

blt.report.plots.write_atomic = blt.experiments.report.write_atomic = write_atomic
run_experiment(load_experiment(sys.argv[1]), sys.argv[3])
"""


@pytest.mark.slow  # a child process (imports torch and Lightning): 10-30 s on a busy machine
@pytest.mark.parametrize("victim", ["results.csv", "report.md"])
def test_kill_9_while_writing_the_report_resumes(tmp_path: Path, victim: str) -> None:
    """SIGKILL in the middle of writing the tables (results.csv) or the report (after the plots): the file being
    written is still absent (atomic writes), --resume finishes the run without computing a cell, removes the
    temp file the kill left, and gives the same table and a complete record."""
    out = tmp_path / "out"
    run_experiment(experiment_from_dict(spec(tmp_path)), tmp_path / "whole")
    args = [sys.executable, "-c", KILL_WHILE_WRITING, str(_yaml(tmp_path)), victim, str(out)]
    child = subprocess.run(args, capture_output=True, env=os.environ.copy(), timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    assert not (out / victim).exists() and len(list(out.glob(f".{victim}.*"))) == 1
    assert not json.loads((out / "experiment.json").read_text())["complete"]
    code, _, err = run_cli("experiment", str(_yaml(tmp_path)), "--out", str(out), "--resume")
    assert code == 0, err
    assert table(out) == table(tmp_path / "whole")
    assert json.loads((out / "experiment.json").read_text())["complete"]
    assert not list(out.glob(".*")) and not list(out.glob("cells/.*"))
    assert (out / "report.md").read_text().startswith("# small")
    for png in out.glob("*.png"):
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
