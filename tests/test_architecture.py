"""The package layout is the one docs/architecture.md draws: every import goes down the table there, no cycles
between packages, every module has a row and every package says what it owns; every module imports on its own; old
module paths still import, with a DeprecationWarning, as the very same objects.

The table format (parsed by `layers`): a Markdown table under "## Packages" with the columns
`| package | owns | may import |`. A row names a package (`blt/name/`), a module (`blt/name.py`) or the top-level
modules (`blt/*.py`), in backticks; "may import" lists such names in backticks, or `—` for none. A module belongs to
the most specific row: an exact file, then the deepest package, then `blt/*.py`.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
import warnings
from fnmatch import fnmatch
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "blt"
DOC = REPO / "docs" / "architecture.md"


def layers() -> dict[str, set[str]]:
    """docs/architecture.md's table: row name → the rows it may import."""
    section = DOC.read_text().split("## Packages", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`blt"):
            continue
        rows[cells[0].strip("`")] = set(re.findall(r"`(blt[^`]*)`", cells[2]))
    return rows


def modules() -> dict[str, Path]:
    """Every module under blt/, dotted name → file."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def row_of(path: Path, rows: dict[str, set[str]]) -> str:
    rel = path.relative_to(REPO).as_posix()
    if rel in rows:
        return rel
    packages = [r for r in rows if r.endswith("/") and rel.startswith(r)]
    if packages:
        return max(packages, key=len)
    globs = [r for r in rows if "*" in r and fnmatch(rel, r) and "/" not in rel[len("blt/") :]]
    assert globs, f"{rel}: no row of docs/architecture.md's table owns it"
    return globs[0]


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every blt import in a file, function-level ones included; the imports inside a module-level
    `__getattr__` (a deprecated name resolved on use) are left out."""
    tree = ast.parse(path.read_text())
    exempt = {
        id(node)
        for fn in tree.body
        if isinstance(fn, ast.FunctionDef) and fn.name == "__getattr__"
        for node in ast.walk(fn)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in exempt:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "blt"]
        elif (
            isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "blt"
        ):
            # `from blt.segment import tokenizers` imports the submodule blt.segment.tokenizers
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def resolve(name: str, known: dict[str, Path]) -> str:
    """`blt.a.b.name` → the longest prefix that is a module (an imported name resolves to its module)."""
    while name not in known:
        name = name.rsplit(".", 1)[0]
    return name


def graph() -> tuple[dict[str, set[str]], list[str]]:
    """Edges between rows actually present in the code, and the imports the table does not allow."""
    rows, known = layers(), modules()
    edges: dict[str, set[str]] = {r: set() for r in rows}
    bad = []
    for path in known.values():
        here = row_of(path, rows)
        for line, target in imports(path):
            there = row_of(known[resolve(target, known)], rows)
            if there == here:
                continue
            edges[here].add(there)
            if there not in rows[here]:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {target} ({here} may not import {there})")
    return edges, bad


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, node])):
                return found
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_the_table_parses_and_names_what_exists() -> None:
    rows = layers()
    assert len(rows) >= 10 and "blt/*.py" in rows and "blt/__init__.py" in rows
    for row, allowed in rows.items():
        assert allowed <= set(rows), f"{row} may import {allowed - set(rows)}: not rows of the table"
        if "*" not in row:
            assert (REPO / row).exists(), f"docs/architecture.md names {row}, which does not exist"
    subpackages = {p.parent.relative_to(REPO).as_posix() + "/" for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages <= set(rows), f"packages without a row: {subpackages - set(rows)}"


def test_the_table_itself_points_down() -> None:
    assert cycle(layers()) is None


def test_imports_follow_the_table() -> None:
    _, bad = graph()
    assert not bad, "imports docs/architecture.md does not allow:\n" + "\n".join(bad)


def test_no_cycles_between_packages() -> None:
    edges, _ = graph()
    assert cycle(edges) is None, f"import cycle: {' → '.join(cycle(edges) or [])}"


def test_every_package_and_module_says_what_it_owns() -> None:
    for name, path in modules().items():
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc, f"{name} has no docstring"
        if path.name == "__init__.py" and name != "blt.cli":
            assert "import" in doc, f"{name}'s docstring does not say what it may import"


def test_every_module_imports_on_its_own() -> None:
    """Each module imported first, in a process where no other blt module is loaded yet (one process: the blt
    modules are dropped from sys.modules between imports, the heavy third-party ones stay)."""
    names = [n for n in modules() if not n.endswith("__main__")]
    script = (
        "import importlib, json, sys, traceback\n"
        "failed = {}\n"
        f"for name in {names!r}:\n"
        "    for m in [m for m in sys.modules if m == 'blt' or m.startswith('blt.')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed[name] = traceback.format_exc(limit=-3)\n"
        "print(json.dumps(failed))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    failed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not failed, "\n".join(f"{k}:\n{v}" for k, v in failed.items())


def test_the_public_api_is_reexported_from_the_top() -> None:
    import blt

    assert set(blt.__all__) <= set(dir(blt))
    for name in ("score", "Patcher", "Patches", "patch_lengths", "patch_starts", "calibrate_threshold", "ByteLM"):
        assert name in blt.__all__


# ---------------------------------------------------------------------------------------------- old module paths
def test_old_module_paths_warn_and_are_the_new_modules() -> None:
    from blt._moved import MOVED

    for old, new in MOVED.items():
        sys.modules.pop(old, None)
        with pytest.warns(DeprecationWarning, match=re.escape(f"{old} moved to {new[0]}")):
            module = importlib.import_module(old)
        parts = [importlib.import_module(n) for n in new]
        if len(parts) == 1:
            assert module is parts[0]
            assert module.__spec__.name == new[0]  # the real module keeps its own spec
        else:
            for name in {n for part in parts for n in vars(part) if not n.startswith("_")}:
                assert getattr(module, name) is next(getattr(p, name) for p in parts if hasattr(p, name))


def test_old_names_in_packages_that_kept_their_path() -> None:
    import blt.compare
    import blt.compare.report
    import blt.compare.run
    import blt.files
    import blt.llm
    import blt.llm.scorers
    import blt.patching
    import blt.patching.rules
    import blt.report
    import blt.report.terminal

    assert blt.compare.run_compare is blt.compare.run.run_compare and blt.compare.finite is blt.files.finite
    assert blt.llm.score_hf is blt.llm.scorers.score_hf
    assert blt.patching.patch_starts is blt.patching.rules.patch_starts
    assert blt.report.render_terminal is blt.report.terminal.render_terminal
    assert blt.report.write_atomic is blt.files.write_atomic
    with pytest.warns(DeprecationWarning, match="blt.report.print_compare moved to blt.compare.report"):
        assert blt.report.print_compare is blt.compare.report.print_compare
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError):
            blt.report.no_such_name  # noqa: B018

    import blt.bytelm.score_cache
    import blt.cache
    import blt.segment.tokenizers

    with pytest.warns(DeprecationWarning, match="blt.cache.scores_path moved to blt.bytelm.score_cache"):
        assert blt.cache.scores_path is blt.bytelm.score_cache.scores_path
    with pytest.warns(DeprecationWarning, match="blt.cache.cached_tokenizer moved to blt.segment.tokenizers"):
        assert blt.cache.cached_tokenizer is blt.segment.tokenizers.cached_tokenizer


def test_python_m_blt_cli_is_the_console_script() -> None:
    proc = subprocess.run([sys.executable, "-m", "blt.cli", "--help"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and "compare" in proc.stdout, proc.stderr
