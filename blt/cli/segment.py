"""Commands that patch text: `blt segment` (text, files, whole corpora to Parquet) and `blt calibrate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from blt.cli.shared import (
    BudgetOpt,
    MaxLenOpt,
    MinLenOpt,
    ModelOpt,
    OnlineLrOpt,
    OnlineOpt,
    PatcherOpt,
    Precision,
    RelativeOpt,
    Rule,
    RuleOpt,
    SizeOpt,
    TargetOpt,
    ThresholdOpt,
    check_output,
    err_console,
    online_lr_for,
    out_console,
    parse_devices,
    print_json,
    read_input,
    user_errors,
)
from blt.errors import BltError


@user_errors
def segment(
    text: Annotated[str | None, typer.Argument(help="text to segment (or --file / --data)")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="file to segment (raw bytes)")] = None,
    data: Annotated[list[str] | None, typer.Option("--data", "-d", help="segment a whole corpus into --out")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="output directory for --data")] = None,
    model: ModelOpt = "default",
    patcher_dir: PatcherOpt = None,
    rule: Annotated[Rule | None, typer.Option("--rule", "-r", help="boundary rule [default: global]")] = None,
    threshold: ThresholdOpt = None,
    relative_threshold: RelativeOpt = None,
    target_bytes_per_patch: TargetOpt = None,
    max_patch_length: MaxLenOpt = None,
    budget: BudgetOpt = None,
    min_patch_length: MinLenOpt = None,
    patch_size: SizeOpt = None,
    reset_at_newlines: Annotated[bool, typer.Option(help="score each line from BOS (entropy drift fix)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print lengths, starts, entropies as JSON")] = False,
    html_out: Annotated[Path | None, typer.Option("--html", help="write a self-contained HTML page")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="write the entropy plot (PNG)")] = None,
    devices: Annotated[str, typer.Option(help="devices for --data scoring (number or auto)")] = "auto",
    precision: Annotated[Precision, typer.Option(help="32, bf16 autocast, or auto")] = Precision.fp32,
    online: OnlineOpt = False,
    online_lr: OnlineLrOpt = None,
) -> None:
    """Cut text into patches at entropy spikes (or by space/fixed/byte rules) and show them."""
    check_output(out, "--out")
    check_output(html_out, "--html", "file")
    check_output(plot, "--plot", "file", ".png")
    from blt.report.html import write_patches_html
    from blt.report.plots import plot_patches
    from blt.report.terminal import byte_progress, render_terminal, write_json
    from blt.segment.patcher import Patcher

    rule_options = {
        "threshold": threshold,
        "relative_threshold": relative_threshold,
        "target_bytes_per_patch": target_bytes_per_patch,
        "max_patch_length": max_patch_length,
        "budget": budget,
        "min_patch_length": min_patch_length,
        "patch_size": patch_size,
    }
    if patcher_dir is not None:
        given = [f"--{k.replace('_', '-')}" for k, v in rule_options.items() if v is not None]
        given += ["--model"] * (model != "default") + ["--rule"] * (rule is not None)
        given += ["--reset-at-newlines"] * reset_at_newlines + ["--online"] * online
        if given:
            raise BltError(f"--patcher DIR carries its model, rule and values; drop {', '.join(given)}")
        patcher = Patcher.load(patcher_dir, precision=precision.value)
    else:
        patcher = Patcher(
            model,
            rule=(rule or Rule.global_).value,
            reset_at_newlines=reset_at_newlines,
            precision=precision.value,
            online_lr=online_lr_for(online, online_lr),
            **rule_options,
        )
    if data:
        if text is not None or file is not None:  # else the text would be dropped without a word
            raise BltError("give TEXT / --file (one text) or --data (a corpus into --out), not both")
        if out is None:
            raise BltError("--data needs --out DIR for the Parquet output")
        summary = segment_corpus_cli(patcher, data, out, devices)
        out_console.print(
            f"{summary['documents']:,} documents, {summary['bytes']:,} bytes -> {summary['patches']:,}"
            f" patches ({summary['bytes_per_patch']:.2f} bytes/patch) written to {out}"
        )
        return
    raw = read_input(text, file)
    with byte_progress(err_console, "scoring", len(raw) if patcher.model is not None else 0) as advance:
        patcher.progress = advance
        patches = patcher.patch([raw])[0]
    if html_out:
        write_patches_html(patches, html_out)
    if plot:
        plot_patches(patches, plot)
    if as_json:  # streamed: per-byte arrays of a long input never become one list of floats or one string
        write_json(
            {
                "rule": patches.rule,
                "lengths": patches.lengths,
                "starts": patches.starts,
                "entropies_nats": patches.entropies_nats,
                "threshold_nats": None if patches.rule == "budget" else patches.threshold_nats,
                "relative_threshold_nats": patches.relative_threshold_nats,
                "budget_nats": patches.threshold_nats if patches.rule == "budget" else None,
                "bytes_per_patch": patches.bytes_per_patch,
            }
        )
    else:
        render_terminal(patches, out_console)  # long inputs: their start and a summary


def segment_corpus_cli(patcher: Any, sources: list[str], out: Path, devices: str) -> dict[str, Any]:
    from blt.config import DataConfig
    from blt.segment.corpus import segment_corpus

    return segment_corpus(patcher, DataConfig(sources=sources), out, devices=parse_devices(devices))


@user_errors
def calibrate(
    data: Annotated[list[str], typer.Option("--data", "-d", help="corpus: file, dir, glob, udhr, stdlib, HF name")],
    target_bytes_per_patch: Annotated[float, typer.Option("--target-bytes-per-patch", help="mean patch size")],
    model: ModelOpt = "default",
    rule: RuleOpt = Rule.global_,
    max_patch_length: MaxLenOpt = None,
    min_patch_length: MinLenOpt = None,
    max_bytes: Annotated[int, typer.Option(help="calibrate on at most this many bytes")] = 4_000_000,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    precision: Annotated[Precision, typer.Option(help="32, bf16 autocast, or auto")] = Precision.fp32,
    cache: Annotated[bool, typer.Option(help="reuse byte-model scores cached in $BLT_CACHE")] = True,
    save: Annotated[
        Path | None, typer.Option("--save", help="keep the calibrated patcher in this directory (use: --patcher DIR)")
    ] = None,
    online: OnlineOpt = False,
    online_lr: OnlineLrOpt = None,
) -> None:
    """Find the threshold (--rule budget: the budget) that gives a corpus the target mean bytes per patch (exact,
    not trial and error); scores
    are cached, so calibrating the same corpus again (another target) reads them back."""
    from blt.bytelm.sources import iter_documents
    from blt.config import DataConfig
    from blt.report.terminal import byte_progress
    from blt.segment.patcher import Patcher

    if rule.value not in ("global", "monotonic", "budget"):
        raise BltError(f"calibration supports --rule global, monotonic or budget, not {rule.value}")
    if max_bytes < 1:
        raise BltError(f"--max-bytes must be ≥ 1 (bytes to calibrate on), got {max_bytes}")
    check_output(save, "--save")
    if save is not None:
        from blt.segment.saved import check_save_target

        check_save_target(save)
    docs, size = [], 0
    for doc in iter_documents(DataConfig(sources=data)):
        docs.append(doc.data[: max_bytes - size])
        size += len(docs[-1])
        if size >= max_bytes:
            break
    if not docs:
        raise BltError(f"data {data} contains no text")
    with byte_progress(err_console, "scoring", size) as advance:
        patcher = Patcher(
            model,
            rule=rule.value,
            target_bytes_per_patch=target_bytes_per_patch,
            max_patch_length=max_patch_length,
            min_patch_length=min_patch_length,
            precision=precision.value,
            cache=cache,
            online_lr=online_lr_for(online, online_lr),
            progress=advance,
        )
        result = patcher.fit(docs)
    if save is not None:
        patcher.save(save)
        result["saved"] = str(save)
    if as_json:  # the budget rule's value is a budget, named so
        named = {k.replace("threshold", "budget") if rule.value == "budget" else k: v for k, v in result.items()}
        print_json({"rule": rule.value, **named})
    else:
        what = "budget" if rule.value == "budget" else "threshold"
        out_console.print(
            f"{rule.value} rule: {what} {result['threshold_nats']:.6f} nats "
            f"({result['threshold_bits']:.6f} bits): {result['bytes_per_patch']:.3f} bytes/patch "
            f"over {result['bytes']:,} bytes (target {target_bytes_per_patch})"
        )
        if save is not None:
            out_console.print(f"patcher saved to {save} (use it with --patcher {save})")
