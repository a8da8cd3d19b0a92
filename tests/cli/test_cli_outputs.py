"""`blt.cli.shared.check_output`, the check every writing command runs first: what it accepts (new paths under
writable directories, created by nobody but the command), what it refuses and that its message names the fix. The
commands' own cases (one per output option) are in fault_cases_outputs.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from blt.cli.shared import check_output
from blt.errors import BltError


def test_new_and_existing_paths_pass_and_nothing_is_created(tmp_path: Path) -> None:
    (tmp_path / "old.png").write_bytes(b"x")
    check_output(None, "--out")
    check_output(tmp_path, "--out")
    check_output(tmp_path / "a" / "b" / "c", "--out")  # made by the command, later, not by the check
    check_output(tmp_path / "a" / "page.html", "--html", "file")
    check_output(tmp_path / "old.png", "--plot", "file", ".png")  # replacing one's own file is fine
    check_output(tmp_path / "x.PNG", "--plot", "file", ".png")
    check_output(Path("relative") / "dir", "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.png"]


@pytest.mark.parametrize(
    ("path", "kind", "says"),
    [
        ("notes.txt", "dir", "--out {tmp}/notes.txt is a file, not a directory; give a directory path"),
        ("notes.txt/sub/deeper", "dir", "lies under {tmp}/notes.txt, which is a file; choose a path outside it"),
        ("notes.txt/page.png", "file", "lies under {tmp}/notes.txt, which is a file"),
        ("folder", "file", "--out {tmp}/folder is a directory; give a file name, e.g. {tmp}/folder/out.png"),
        ("plot.jpg", "file", "the file is written as PNG; use a name ending in .png"),
        ("plot", "file", "use a name ending in .png"),
    ],
)
def test_unwritable_places_are_refused_with_the_fix(tmp_path: Path, path: str, kind: str, says: str) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "folder").mkdir()
    with pytest.raises(BltError) as info:
        check_output(tmp_path / path, "--out", kind, ".png")  # type: ignore[arg-type]
    assert says.format(tmp=tmp_path) in str(info.value)


def test_a_directory_without_write_permission_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """os.access is faked: the tests may run as root, to whom every directory is writable."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and real(p, mode))
    for path, kind in ((locked, "dir"), (locked / "new" / "run", "dir"), (locked / "page.html", "file")):
        with pytest.raises(BltError, match=f"{locked} is not writable; choose a directory you can write to"):
            check_output(path, "--out", kind)  # type: ignore[arg-type]
    check_output(tmp_path / "elsewhere", "--out")
