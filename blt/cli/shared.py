"""What every `blt` command shares: the consoles, the one-red-line handling of user mistakes, reading TEXT or
--file, and printing JSON. Kept apart from `blt.cli` so the command modules (`blt.cli`, `blt.cli.llm`) can both
import it.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from blt.errors import BltError

out_console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


def print_error(message: str) -> None:
    """One red `error:` line on stderr: the message escaped for rich ("[llm]" is text, not markup) and kept on one
    line (a path with a newline shows it as \\n). Every command's failure goes through here."""
    line = message.replace("\r", "\\r").replace("\n", "\\n")
    err_console.print(f"[red]error:[/red] {escape(line)}", markup=True, highlight=False)


def user_errors(fn: F) -> F:
    """Turn the library's errors for bad input into one red line and exit code 1 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (BltError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            print_error(str(exc))
            raise typer.Exit(1) from None
        except KeyboardInterrupt as exc:  # Ctrl-C; a message (blt.bytelm.train.TrainingInterrupted) says what was saved
            print_error(str(exc) or "interrupted")
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
        if file.exists():  # a directory, a pipe, /dev/null: reading it would fail, block or give nothing
            raise BltError(f"file {file} is not a file (a directory, pipe or device); pass a text file")
        raise BltError(f"file {file} does not exist or is not a file")
    return file.read_bytes()


def parse_devices(devices: str) -> int | str:
    """`--devices` as typed: a count ≥ 1 ("2" -> 2) or "auto"; anything else (0, -1, "abc", a GPU list) is a
    user error here, before Lightning sees it."""
    value = devices.strip()
    if value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise BltError(f"--devices must be a number of devices ≥ 1 or 'auto', got {devices!r}")
    return int(value)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


# typer ≥ 0.22 vendors click (typer._click), older typer uses click itself: take the classes from the one in use
_CLICK_ERRORS = sys.modules[typer.BadParameter.__module__]


class OneLineErrors(typer.core.TyperGroup):
    """The top-level group: click's own usage errors (an unknown option, `--adapt abc`, a missing value) become one
    red line naming the problem and the help command, exit 2, like the library's errors, instead of a usage panel."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.pop("standalone_mode", True):
            return super().main(*args, standalone_mode=False, **kwargs)
        no_args = getattr(_CLICK_ERRORS, "NoArgsIsHelpError", ())
        aborts = tuple({typer.Abort, getattr(_CLICK_ERRORS, "Abort", typer.Abort)})
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except no_args as exc:  # bare `blt` / `blt llm`: the help, as usual
            exc.show()
            sys.exit(exc.exit_code)
        except _CLICK_ERRORS.UsageError as exc:
            where = f"; see '{exc.ctx.command_path} --help'" if exc.ctx is not None else ""
            print_error(exc.format_message().rstrip(".") + where)
            sys.exit(exc.exit_code)
        except _CLICK_ERRORS.ClickException as exc:
            print_error(exc.format_message())
            sys.exit(exc.exit_code)
        except aborts:
            print_error("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def check_output(path: Path | None, option: str, kind: Literal["dir", "file"] = "dir", suffix: str = "") -> None:
    """Fail before any work when `path` (the value of `option`) cannot be written: `kind` "dir" needs a directory
    there (existing or new), "file" a file (a directory there is wrong; `suffix`, when given, is the one it must
    end in). What must exist — the path itself or its nearest existing ancestor (for a file: its parent's) — has
    to be a writable directory. Nothing is created: a command that fails later leaves no empty folders behind."""
    if path is None:
        return
    if kind == "dir" and path.exists() and not path.is_dir():
        raise BltError(f"{option} {path} is a file, not a directory; give a directory path (new or existing)")
    if kind == "file":
        if path.is_dir():
            raise BltError(f"{option} {path} is a directory; give a file name, e.g. {path / ('out' + suffix)}")
        if suffix and path.suffix.lower() != suffix:
            fmt = suffix[1:].upper()
            raise BltError(f"{option} {path}: the file is written as {fmt}; use a name ending in {suffix}")
    anchor = Path(os.path.abspath(path if kind == "dir" else path.parent))
    while not anchor.exists() and anchor != anchor.parent:  # exists() is False under a file too (ENOTDIR)
        anchor = anchor.parent
    if not anchor.is_dir():
        raise BltError(f"{option} {path} lies under {anchor}, which is a file; choose a path outside it")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise BltError(f"{option} {path}: {anchor} is not writable; choose a directory you can write to")


ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="'default' or 'quality' (bundled), a model/run directory, a .ckpt, or hf:NAME (BLT's entropy model)",
    ),
]


SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override a config value: section.key=value")]


class Precision(str, Enum):
    auto = "auto"
    fp32 = "32"
    bf16 = "bf16"


class Rule(str, Enum):
    global_ = "global"
    monotonic = "monotonic"
    combined = "combined"
    budget = "budget"
    space = "space"
    fixed = "fixed"
    byte = "byte"


class Split(str, Enum):
    all = "all"
    train = "train"
    val = "val"


RuleOpt = Annotated[Rule, typer.Option("--rule", "-r", help="boundary rule")]


ThresholdOpt = Annotated[float | None, typer.Option("--threshold", "-t", help="global threshold (nats)")]


RelativeOpt = Annotated[float | None, typer.Option("--relative-threshold", help="monotonic threshold (nats)")]


TargetOpt = Annotated[
    float | None, typer.Option("--target-bytes-per-patch", help="calibrate the threshold to this mean patch size")
]


MaxLenOpt = Annotated[int | None, typer.Option("--max-patch-length", help="cut longer patches (bytes)")]


OnlineOpt = Annotated[
    bool,
    typer.Option(
        "--online", help="the byte model learns as it scores (dynamic evaluation: each window scored, then learnt)"
    ),
]


OnlineLrOpt = Annotated[
    float | None, typer.Option("--online-lr", help="Adam step size for --online [default: 3e-4, ONLINE_LR]")
]


def online_lr_for(online: bool, online_lr: float | None) -> float | None:
    """The step size `--online [--online-lr X]` asks for (None: not online), checked."""
    if online_lr is not None and not online:  # else it would be ignored without a word
        raise BltError("--online-lr sets the step size of --online: add --online")
    if not online:
        return None
    from blt.bytelm.online import ONLINE_LR

    lr = ONLINE_LR if online_lr is None else online_lr
    if not 0 < lr < 1:  # NaN too; 0 would be the static score again
        raise BltError(f"--online-lr must be in (0, 1), got {lr}")
    return lr


PatcherOpt = Annotated[
    Path | None,
    typer.Option("--patcher", help="a saved patcher directory (blt calibrate --save DIR): its model, rule and values"),
]


BudgetOpt = Annotated[
    float | None, typer.Option("--budget", help="budget rule: the summed entropy (nats) a patch may hold")
]


MinLenOpt = Annotated[
    int | None, typer.Option("--min-patch-length", help="budget rule: a shorter patch never ends by budget (bytes)")
]


SizeOpt = Annotated[
    float | None, typer.Option("--patch-size", help="bytes per patch for --rule fixed (2.5: unit i starts at ⌊2.5·i⌋)")
]


class JobProgress:
    """A transient progress line on stderr for the sweep jobs (`blt experiment`, `blt downstream`): `stage(text)`
    while preparing, then `count(done, total)` over the cells or runs (named `unit`); `warn` prints a yellow line."""

    def __init__(self, unit: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.unit = unit
        self.bar = Progress(*columns, TimeRemainingColumn(), console=err_console, transient=True)
        self.task = self.bar.add_task("preparing", total=None)

    def __enter__(self) -> JobProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def stage(self, text: str) -> None:
        self.bar.update(self.task, description=text)

    def count(self, done: int, total: int) -> None:
        self.bar.update(self.task, description=self.unit, completed=done, total=total)

    @staticmethod
    def warn(message: str) -> None:
        err_console.print(f"[yellow]warning:[/yellow] {message}")
