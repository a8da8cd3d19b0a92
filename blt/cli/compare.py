"""`blt compare`: entropy patching next to trained, pretrained and rule-based tokenisers on one corpus."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from blt.cli.shared import (
    BudgetOpt,
    ModelOpt,
    OnlineLrOpt,
    OnlineOpt,
    Precision,
    RelativeOpt,
    SizeOpt,
    ThresholdOpt,
    check_output,
    err_console,
    online_lr_for,
    out_console,
    parse_devices,
    user_errors,
)
from blt.errors import BltError


@user_errors
def compare(
    data: Annotated[list[str] | None, typer.Option("--data", "-d", help="corpus (default: the bundled udhr)")] = None,
    model: ModelOpt = "default",
    segmenters: Annotated[str | None, typer.Option(help="comma-separated list (default: all but byte)")] = None,
    vocab_size: Annotated[
        int | None,
        typer.Option(help="trained tokenisers' vocabulary size (default: the largest the data supports ≤ 32k)"),
    ] = None,
    match: Annotated[
        str | None,
        typer.Option(help="reference rate: this segmenter's bytes/unit (default auto: tiktoken-o200k, else bpe); none"),
    ] = None,
    grader: Annotated[
        str | None, typer.Option(help="byte model that grades bits/unit (default: --model, circular for entropy rows)")
    ] = None,
    curves: Annotated[bool, typer.Option("--curves", help="evenness curves over 2–8 bytes/unit (slower)")] = False,
    threshold: ThresholdOpt = None,
    relative_threshold: RelativeOpt = None,
    budget: BudgetOpt = None,
    fixed_size: SizeOpt = None,
    patchers: Annotated[
        list[Path] | None,
        typer.Option(
            "--patcher",
            help="a saved patcher (blt calibrate --save DIR): one more row, its rule and values as saved (repeatable)",
        ),
    ] = None,
    eval_fraction: Annotated[float, typer.Option(help="share of documents held out for measuring")] = 0.1,
    eval_data: Annotated[
        list[str] | None, typer.Option("--eval-data", help="measure on these documents (train on all of --data)")
    ] = None,
    max_eval_bytes: Annotated[int, typer.Option(help="measure at most this many held-out bytes (0: all)")] = 4_000_000,
    by_language: Annotated[bool, typer.Option(help="metrics per language label (udhr)")] = False,
    adapt_steps: Annotated[int, typer.Option("--adapt", help="fine-tune the byte model N steps on the corpus")] = 0,
    adapt_minutes: Annotated[float | None, typer.Option(help="... or for this many minutes (or both)")] = None,
    fit_temperature: Annotated[
        bool,
        typer.Option(
            help="calibrate the byte model: divide its logits by a temperature fitted on the training split (after "
            "--adapt, on the adaptation's held-out slice)"
        ),
    ] = False,
    online: OnlineOpt = False,
    online_lr: OnlineLrOpt = None,
    max_bytes: Annotated[int | None, typer.Option(help="read at most this many bytes")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="report directory")] = Path("blt-compare"),
    precision: Annotated[Precision, typer.Option(help="byte-model precision")] = Precision.fp32,
    devices: Annotated[str, typer.Option(help="devices for byte-model scoring (number or auto; >1: DDP)")] = "1",
    cache: Annotated[bool, typer.Option(help="reuse byte-model scores cached in $BLT_CACHE")] = True,
    wide: Annotated[bool, typer.Option("--wide", help="print every metric column (default: those that fit)")] = False,
) -> None:
    """Entropy patches vs BPE, SentencePiece, tiktoken and rule-based segmenters on one corpus. --online scores the
    held-out text with the byte model learning as it reads (after --adapt, when given): the entropy rows are placed
    on those scores, and the model's fit is reported online beside static."""
    check_output(out, "--out")  # before the run: the report is written after it
    import shlex

    from blt.compare.config import DEFAULT_SEGMENTERS, CompareConfig
    from blt.compare.report import print_compare, write_compare_report
    from blt.compare.run import run_compare
    from blt.report.markdown import package_versions

    names = list(DEFAULT_SEGMENTERS) if segmenters is None else [n.strip() for n in segmenters.split(",") if n.strip()]
    if not names:  # "" or ",": a run with nothing to compare would print an empty table and exit 0
        raise BltError(
            f"--segmenters {segmenters!r} names no segmenter; give a comma-separated list such as space,bpe "
            "(or drop --segmenters for the default set)"
        )
    if match is None:  # default: the reference chosen from what runs, unless thresholds are given
        given = (threshold, relative_threshold, budget)
        match = "none" if any(v is not None for v in given) else "auto"
    cfg = CompareConfig(
        sources=data or ["udhr"],
        model=model,
        grader=grader,
        curves=curves,
        vocab_size=vocab_size,
        match=None if match == "none" else match,
        segmenters=names,
        by_language=by_language,
        adapt_steps=adapt_steps,
        adapt_minutes=adapt_minutes,
        fit_temperature=fit_temperature,
        online_lr=online_lr_for(online, online_lr),
        max_bytes=max_bytes,
        precision=precision.value,
        threshold=threshold,
        relative_threshold=relative_threshold,
        budget=budget,
        patchers=[str(p) for p in patchers or []],
        fixed_size=fixed_size,
        eval_fraction=eval_fraction,
        eval_sources=eval_data,
        max_eval_bytes=max_eval_bytes or None,
        devices=parse_devices(devices),
        cache=cache,
    )
    with err_console.status("starting") as status:
        results = run_compare(
            cfg, warn=lambda m: err_console.print(f"[yellow]warning:[/yellow] {m}"), progress=lambda m: status.update(m)
        )
    if results is None:
        return  # a non-zero rank of a multi-device run: rank 0 reports
    print_compare(results, out_console, wide=wide)
    report = write_compare_report(results, out, "blt " + shlex.join(sys.argv[1:]), package_versions())
    out_console.print(f"report: {report}")
