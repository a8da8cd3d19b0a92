"""What a `blt experiment` output directory holds, and what a run may change in it.

A run writes `experiment.json` (the record: resolved config, its digest, inputs' hashes) before anything else, then
`cells/<id>.json`, one per finished cell, then the tables, report and plots, and the record again (complete). The
record is the proof that a directory is blt's: without one, a non-empty directory is the user's and is refused
whatever the flags; with one, `--force` removes only the files a run writes, and `--resume` keeps the cells that
read back whole (a damaged one is computed again).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blt.errors import BltError
from blt.experiments.config import METRICS, PARAM_COLUMNS, Cell, ExperimentConfig
from blt.experiments.report import PLOT_FILES

# Everything a run writes, so all that --force may remove: the record, cells/<id>.json, the tables, report and
# plots, and write_atomic's temp files (.NAME.<random>SUFFIX) of those that a kill -9 left behind.
RECORD = "experiment.json"
OUTPUTS = ("results.parquet", "results.csv", "by_language.csv", "report.md", *PLOT_FILES)
RECORD_KEYS = ("name", "config", "config_sha256", "cells", "complete")
CELL_FILE = re.compile(r"[0-9a-f]{16}\.json")
TEMP_FILE = re.compile(r"\.(?P<name>.+)\.\w{8}(?P<suffix>\.\w+)")  # tempfile.mkstemp's 8 random characters


def read_record(out: Path) -> dict[str, Any] | None:
    """OUT/experiment.json, the proof that OUT is a blt experiment; None when there is none. A file that is not a
    record a run wrote (writes are atomic: never truncated by blt) is refused, and nothing in OUT is touched."""
    path = out / RECORD
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        missing = [k for k in RECORD_KEYS if k not in record] if isinstance(record, dict) else ["a JSON object"]
        problem = f"it lacks {', '.join(missing)}" if missing else ""
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problem = f"not readable JSON: {exc}"
    if problem:
        raise BltError(
            f"{path} is not a blt experiment record ({problem}), so blt cannot tell which files in {out} are its "
            f"own and changes none; choose another --out, or delete {out} yourself if it only holds an old run"
        )
    return record


def check_out_dir(out: Path, cfg: ExperimentConfig, *, resume: bool, force: bool) -> dict[str, Any] | None:
    """Whether `cfg` may run into `out`; returns the previous run's record (None for a new or empty directory).
    A directory is reused only when its record proves a blt experiment wrote it: for the same config with
    `resume`, or for any config with `force` (then `clear_out_dir` removes only what a run writes). A directory
    holding anything else is refused whatever the flags, so a user's own files are never overwritten."""
    if resume and force:
        raise BltError("pass --resume (finish the run in --out) or --force (start it over), not both")
    if out.exists() and not out.is_dir():
        raise BltError(f"--out {out} is a file, not a directory; give a directory path (new or existing)")
    record = read_record(out) if out.is_dir() else None
    if record is None:
        found = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
        if found:
            shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
            raise BltError(
                f"{out} holds files that are not a blt experiment ({shown}); choose another --out (a new or empty "
                f"directory) so that they are left alone"
            )
        if resume:
            raise BltError(f"{out} holds no experiment to resume; run without --resume to start one there")
        return None
    if force:
        return record
    if record["config_sha256"] != cfg.digest():
        raise BltError(f"{out} holds results of a different experiment config; choose another --out or pass --force")
    if not resume:
        raise BltError(f"{out} already holds this experiment; pass --resume to finish it or --force to start over")
    return record


def clear_out_dir(out: Path, *, cells: bool) -> None:
    """Remove what a run writes from `out`, a directory `check_out_dir` proved to be blt's: the temp files a kill
    left behind and, with `cells` (starting over), the finished cells, tables, report and plots. Anything else in
    `out` is left alone."""

    def temps(folder: Path, ours: Callable[[str], bool]) -> list[Path]:
        found = (TEMP_FILE.fullmatch(p.name) for p in folder.glob(".*"))
        return [folder / t[0] for t in found if t and Path(t["name"]).suffix == t["suffix"] and ours(t["name"])]

    doomed = temps(out, lambda name: name in (RECORD, *OUTPUTS))
    doomed += temps(out / "cells", lambda name: CELL_FILE.fullmatch(name) is not None)
    if cells:
        doomed += [out / name for name in OUTPUTS]
        doomed += [p for p in (out / "cells").glob("*") if CELL_FILE.fullmatch(p.name)]
    for path in doomed:
        if path.is_file():
            path.unlink()
    if cells and (out / "cells").is_dir() and not any((out / "cells").iterdir()):
        (out / "cells").rmdir()


def read_cell(path: Path, cell: Cell, metrics: list[str] | None) -> dict[str, Any]:
    """A finished cell's row from OUT/cells/<id>.json; ValueError saying what is wrong when the file is not one."""
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not readable JSON: {exc}") from None
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    want = ("cell", "corpus", "model", "kind", "segmenter", "_languages", *PARAM_COLUMNS, *(metrics or METRICS))
    if missing := [k for k in want if k not in row]:
        raise ValueError(f"it lacks {', '.join(missing[:3])}{', ...' * (len(missing) > 3)}")
    if [row["cell"], row["corpus"], row["model"], row["kind"]] != [cell.id, cell.corpus, cell.model, cell.kind]:
        raise ValueError("it holds another cell")
    if not isinstance(row["_languages"], list) or any(
        not isinstance(lang, dict) or lang.get("cell") != cell.id for lang in row["_languages"]
    ):
        raise ValueError("its per-language rows are not this cell's")
    if bad := [m for m in metrics or METRICS if row[m] is not None and not _is_number(row[m])]:
        raise ValueError(f"{bad[0]} is not a number")
    return row


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
