"""What every `blt` command shares: the consoles, the one-red-line handling of user mistakes, reading TEXT or
--file, and printing JSON. Kept apart from `blt.cli` so the command modules (`blt.cli`, `blt.cli_llm`) can both
import it.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from blt.errors import BltError

out_console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Turn the library's errors for bad input into one red line and exit code 1 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (BltError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            err_console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("[red]interrupted[/red]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def read_input(text: str | None, file: Path | None) -> bytes:
    """Exactly one of TEXT or --file; the file is read as raw bytes (invalid UTF-8 is data, not an error)."""
    if (text is None) == (file is None):
        raise BltError("give either TEXT or --file PATH (exactly one)")
    if file is None:
        assert text is not None
        return text.encode("utf-8", errors="surrogateescape")
    if not file.is_file():
        raise BltError(f"file {file} does not exist or is not a file")
    return file.read_bytes()


def parse_devices(devices: str) -> int | str:
    """`--devices` as typed: a count ("2" -> 2) or a Lightning keyword such as "auto"."""
    return int(devices) if devices.isdigit() else devices


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
