"""The bad-input and fault table's machinery (the cases live in `fault_cases_*.py`, the runner in test_faults.py).

A `Case` prepares a user's mistake in an empty directory and names the command line that meets it. The runner checks
what every user mistake must give: a non-zero exit, exactly one line on stderr that starts with "error:" and names
the problem (lines starting "warning:" may precede it), no traceback, every file that was there before unchanged, and
no new file except those the case allows (a failed `blt train` must not leave a config.yaml behind).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Kit:
    """What a case may build on: its own empty directory (the working directory while it runs) and a tiny saved
    byte model (1 layer, d_model 32; seeded) that every command accepts as `--model`."""

    dir: Path
    model: str

    def write(self, name: str, content: bytes | str) -> Path:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode("utf-8")
        path.write_bytes(content)
        return path


@dataclass(frozen=True)
class Case:
    name: str  # the pytest id: command-problem
    make: Callable[[Kit], list[str]]  # builds the inputs under kit.dir, returns the `blt` arguments
    says: str  # the error line must contain this (whitespace-normalised)
    code: int = 1  # expected exit status (130 for an interrupt)
    may_create: tuple[str, ...] = field(default_factory=tuple)  # globs (relative to kit.dir) of allowed new files


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `root`."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
