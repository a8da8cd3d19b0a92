"""`blt experiment`: run a config-driven sweep (blt.experiments.run) with a progress bar over cells, or list the
shipped experiments."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from blt.cli.shared import JobProgress, check_output, out_console, parse_devices, user_errors
from blt.errors import BltError


@user_errors
def experiment(
    config: Annotated[str | None, typer.Argument(help="experiment YAML, or a shipped name (see --list)")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="results directory (default runs/exp-NAME)")] = None,
    resume: Annotated[bool, typer.Option(help="finish an interrupted run in --out (only missing cells run)")] = False,
    force: Annotated[bool, typer.Option(help="discard the results a previous run wrote in --out; start over")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override key=value (YAML), e.g. models=[m]")] = None,
    workers: Annotated[int, typer.Option(help="processes measuring cells")] = 1,
    devices: Annotated[str, typer.Option(help="devices for byte-model scoring (number or auto; >1: DDP)")] = "1",
    list_: Annotated[bool, typer.Option("--list", help="list the shipped experiments and exit")] = False,
) -> None:
    """Sweep corpora × byte models × segmenters × parameters into one tidy table and a report."""
    from blt.experiments.config import load_experiment, shipped_experiments
    from blt.experiments.report import print_experiment
    from blt.experiments.run import run_experiment

    if list_:
        for name, path in shipped_experiments().items():
            cfg = load_experiment(path)
            out_console.print(f"[bold]{name}[/bold] ({len(cfg.corpora)} corpora): {cfg.description}")
        return
    if config is None:
        raise BltError("pass an experiment config (a YAML path or a shipped name; see blt experiment --list)")
    cfg = load_experiment(config, set_ or [])
    out = out or Path("runs") / f"exp-{cfg.name}"
    check_output(out, "--out")
    with JobProgress("cells") as progress:
        result = run_experiment(
            cfg,
            out,
            resume=resume,
            force=force,
            workers=workers,
            devices=parse_devices(devices),
            command="blt " + shlex.join(sys.argv[1:]),
            warn=progress.warn,
            stage=progress.stage,
            on_cell=progress.count,
        )
    if result is None:
        return  # a non-zero rank of a multi-device run: rank 0 reports
    print_experiment(result["rows"], out_console)
    out_console.print(f"{len(result['rows'])} cells in {result['meta']['seconds']:.1f} s; report: {out / 'report.md'}")
