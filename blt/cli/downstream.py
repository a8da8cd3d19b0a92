"""`blt downstream`: train a patch-level LM per segmentation and seed at matched FLOPs per byte (blt.downstream.run),
with a progress bar over runs; the config is a shipped one (cpu, gpu), a YAML path, or `--data` with the cpu config's
model and training."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from blt.cli.shared import JobProgress, check_output, out_console, user_errors
from blt.errors import BltError


@user_errors
def downstream(
    config: Annotated[str, typer.Argument(help="downstream YAML, or a shipped name (cpu, gpu; see --list)")] = "cpu",
    data: Annotated[
        list[str] | None, typer.Option("--data", help="corpus to train on (files, dirs, globs, udhr, stdlib)")
    ] = None,
    eval_data: Annotated[
        list[str] | None, typer.Option("--eval-data", help="held-out documents (default: a share of --data)")
    ] = None,
    segmenters: Annotated[
        str | None, typer.Option(help="comma-separated kinds, e.g. byte,fixed,space,bpe,entropy-global")
    ] = None,
    seeds: Annotated[str | None, typer.Option(help="comma-separated seeds, e.g. 0,1,2")] = None,
    steps: Annotated[int | None, typer.Option(help="training steps per run (the same for every run)")] = None,
    budget_minutes: Annotated[
        float | None, typer.Option(help="wall-clock cap per run in minutes; a capped run sees fewer bytes")
    ] = None,
    match_flops: Annotated[
        bool | None, typer.Option("--match-flops/--no-match-flops", help="size each latent model to equal FLOPs/byte")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="results directory (default runs/down-NAME)")] = None,
    resume: Annotated[bool, typer.Option(help="finish an interrupted run in --out (only missing runs train)")] = False,
    force: Annotated[bool, typer.Option(help="discard the results a previous run wrote in --out; start over")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override key=value (YAML): train.lr=1e-3")] = None,
    workers: Annotated[int, typer.Option(help="processes training runs side by side")] = 1,
    list_: Annotated[bool, typer.Option("--list", help="list the shipped configs and exit")] = False,
) -> None:
    """Which segmentation gives a small patch-level LM the lowest held-out bits/byte at matched compute?"""
    from blt.downstream.config import load_downstream, shipped_downstream
    from blt.downstream.report import print_downstream
    from blt.downstream.run import run_downstream

    if list_:
        for name, path in shipped_downstream().items():
            out_console.print(f"[bold]{name}[/bold]: {load_downstream(path).description}")
        return
    overrides: list[str] = []  # the options first: --set overrides them (e.g. --set corpora.0.max_bytes=N)
    if eval_data and not data:
        raise BltError("--eval-data needs --data (the text to train on)")
    if data:
        corpus = {"name": Path(data[0]).stem or "data", "sources": data, "eval_sources": eval_data or None}
        overrides.append(f"corpora=[{json.dumps(corpus)}]")  # JSON is YAML
    if segmenters:
        overrides.append(f"segmenters=[{', '.join(s.strip() for s in segmenters.split(','))}]")
    if seeds:
        overrides.append(f"seeds=[{seeds}]")
    for key, value in (("train.max_steps", steps), ("train.budget_minutes", budget_minutes)):
        if value is not None:
            overrides.append(f"{key}={value}")
    if match_flops is not None:
        overrides.append(f"match_flops={str(match_flops).lower()}")
    cfg = load_downstream(config, [*overrides, *(set_ or [])])
    out = out or Path("runs") / f"down-{cfg.name}"
    check_output(out, "--out")
    with JobProgress("runs") as progress:
        result = run_downstream(
            cfg,
            out,
            resume=resume,
            force=force,
            workers=workers,
            command="blt " + shlex.join(sys.argv[1:]),
            warn=progress.warn,
            stage=progress.stage,
            on_run=progress.count,
        )
    print_downstream(result["summary"], out_console)
    out_console.print(f"{len(result['rows'])} runs in {result['meta']['seconds']:.1f} s; report: {out / 'report.md'}")
