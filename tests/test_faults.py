"""The bad-input and fault table: every case of `fault_cases_*.py` through the real `blt` app (typer's CliRunner).

For each: non-zero exit (the case's code), one "error:" line naming the problem, no traceback, nothing overwritten,
lost or left behind (see `faults.py`). Kill -9 and resume faults, and caches, have their own tests beside the code
they exercise; this table is about what a user sees.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import lightning  # noqa: F401  imported first so its log handler binds to the real stderr, not a runner buffer
import pytest
from conftest import make_model, run_cli
from faults import Case, Kit, snapshot

from blt.bytelm.checkpoint import save_model_dir
from blt.config import Config, ModelConfig

TABLES = sorted(p.stem for p in Path(__file__).parent.glob("fault_cases_*.py"))
CASES: list[Case] = [case for name in TABLES for case in importlib.import_module(name).CASES]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = Config(model=ModelConfig(n_layers=1, d_model=32, n_heads=2, context=64))
    return save_model_dir(make_model(0), cfg, {"steps": 0}, tmp_path_factory.mktemp("m") / "model")


def test_the_table_is_large_and_names_are_unique() -> None:
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input(case: Case, tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    args = case.make(Kit(work, str(model_dir)))
    before = snapshot(work)
    code, out, err = run_cli(*args)
    assert code == case.code, (code, out, err)
    assert "Traceback" not in out + err, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert case.says in " ".join(err.split()), err
    after = snapshot(work)
    changed = [p for p, h in before.items() if after.get(p) != h]
    assert not changed, f"overwritten or lost: {changed}"
    new = [p for p in set(after) - set(before) if not any(Path(p).match(g) for g in case.may_create)]
    assert not new, f"left behind: {new}"
