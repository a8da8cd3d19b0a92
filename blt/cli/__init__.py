"""The `blt` command line (a typer shell over library calls), one module per command group: `model` (train, entropy,
eval, info), `segment` (segment, calibrate), `compare`, `experiment`, `downstream`, `llm` (a sub-app), and `shared`
(consoles, one-red-line errors, option types, input and output checks). Each command parses its options, calls one
library function and prints or saves the result; user mistakes become one red line on stderr and exit status 1. This
module builds the app in the order `blt --help` lists the commands and owns the console script `main`.

May import everything in blt; nothing in blt imports it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import typer

from blt.cli import compare as compare_cmd
from blt.cli import downstream as downstream_cmd
from blt.cli import experiment as experiment_cmd
from blt.cli import model as model_cmds
from blt.cli import segment as segment_cmds
from blt.cli.llm import llm_app
from blt.cli.shared import OneLineErrors, print_error
from blt.errors import BltError

app = typer.Typer(
    cls=OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Entropy-based byte patching and tokenisation experiments.",
)
app.add_typer(llm_app, name="llm", help="Entropy of full LLMs' next-token distributions (HF, GGUF, API logprobs).")
app.command()(experiment_cmd.experiment)
app.command()(model_cmds.train)
app.command()(model_cmds.entropy)
app.command(name="eval")(model_cmds.eval_)
app.command()(segment_cmds.segment)
app.command()(segment_cmds.calibrate)
app.command()(compare_cmd.compare)
app.command()(downstream_cmd.downstream)
app.command()(model_cmds.info)


def busy_cpus() -> float:
    """Other processes running right now: the runnable count of /proc/loadavg less this one, the least of three
    looks 20 ms apart (a passing process is not a busy core). Not the 1-minute load average: that still counts the
    user's previous command for a minute, and halved the threads of back-to-back runs on an idle machine (the
    bundled `blt compare --by-language`, cold: 41 s on 1 thread against 23 s on 2). Elsewhere: the load average."""
    import time

    try:
        seen = []
        for _ in range(3):
            with open("/proc/loadavg") as f:
                seen.append(int(f.read().split()[3].split("/")[0]) - 1)
            time.sleep(0.02)
        return float(max(0, min(seen)))
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def cpu_threads(environ: Mapping[str, str], usable_cpus: int, busy: float, default: int) -> int | None:
    """How many intra-op threads torch should use on CPU; None leaves torch's own choice.

    BLT_THREADS=N wins; an OMP_NUM_THREADS or MKL_NUM_THREADS the user set is respected (torch already read it).
    Otherwise: the cores that other running processes leave idle (`busy_cpus`), at least 1, at most torch's default.
    Measured on a 2-core machine under load 6-8 from other jobs, scoring 200 kB with the bundled model took 23-52 s
    on 1 thread and 111-163 s on 2 (4 alternating runs each; 3x the CPU time, spent by threads waiting for ones the
    busy cores did not run); on idle cores the extra threads are a plain gain."""
    if "BLT_THREADS" in environ:
        value = environ["BLT_THREADS"].strip()
        if not value.isdigit() or int(value) < 1:
            raise BltError(f"BLT_THREADS must be a number of threads ≥ 1, got {value!r}")
        return int(value)
    if "OMP_NUM_THREADS" in environ or "MKL_NUM_THREADS" in environ:
        return None
    return max(1, min(default, int(usable_cpus - busy + 0.5)))


def main() -> None:
    """The `blt` console script: chooses torch's CPU threads (see `cpu_threads`), then runs the app. Tests drive
    `app` directly, so their thread setting (conftest) stays theirs."""
    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = cpu_threads(os.environ, usable, busy_cpus(), torch.get_num_threads())
    except BltError as exc:
        print_error(str(exc))
        sys.exit(1)
    if threads is not None:
        torch.set_num_threads(threads)
    app()
