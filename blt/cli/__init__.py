"""The `blt` command line: a typer shell over library calls. Each command parses its options, calls one library
function and prints or saves the result; user mistakes become one red line on stderr and exit status 1.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from blt.cli_experiment import experiment
from blt.cli_llm import llm_app
from blt.cli_shared import (
    OneLineErrors,
    check_output,
    err_console,
    out_console,
    parse_devices,
    print_error,
    print_json,
    read_input,
    user_errors,
)
from blt.errors import BltError

app = typer.Typer(
    cls=OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Entropy-based byte patching and tokenisation experiments.",
)
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="'default' (bundled), a model/run directory or .ckpt")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override a config value: section.key=value")]
app.add_typer(llm_app, name="llm", help="Entropy of full LLMs' next-token distributions (HF, GGUF, API logprobs).")
app.command()(experiment)


class Precision(str, Enum):
    auto = "auto"
    fp32 = "32"
    bf16 = "bf16"


class Rule(str, Enum):
    global_ = "global"
    monotonic = "monotonic"
    combined = "combined"
    space = "space"
    fixed = "fixed"
    byte = "byte"


class Split(str, Enum):
    all = "all"
    train = "train"
    val = "val"


@app.command()
@user_errors
def train(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (see configs/)")] = None,
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data", "-d", help="corpus: file, dir, glob, udhr, stdlib, HF name (repeatable; replaces data.sources)"
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="run directory (default runs/<config>)")] = None,
    set_: SetOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --out from last.ckpt")] = False,
) -> None:
    """Train a byte language model with Lightning (GPU if present, CPU otherwise).

    Ctrl-C finishes the current step, saves checkpoints/last.ckpt and exits 130; `--out RUN --resume` continues.
    On CPU, torch uses the idle cores (1 on a busy machine); BLT_THREADS=N or OMP_NUM_THREADS=N overrides."""
    check_output(out, "--out")
    from blt.config import load_config
    from blt.train import train as run_training

    overrides = list(set_ or [])
    if data:
        overrides.append("data.sources=" + json.dumps(data))
    if config is None and resume:
        if out is None:
            raise BltError("--resume needs --out RUN, the run directory to continue")
        if not (out / "config.yaml").is_file():
            raise BltError(
                f"no run in {out} (no checkpoints/last.ckpt or config.yaml); start one with "
                f"`blt train --config CONFIG.yaml --out {out}` (configs/ has examples)"
            )
        config = out / "config.yaml"  # resuming: the run's own resolved config
    if config is None:
        raise BltError("pass --config PATH (e.g. configs/tiny.yaml) to start a run, or --out RUN --resume to go on")
    cfg = load_config(config, overrides)
    out = out or Path("runs") / config.stem
    model_dir = run_training(cfg, out, resume=resume)
    card = json.loads((model_dir / "card.json").read_text())
    out_console.print(
        f"model written to {model_dir}: {card['steps']} steps, validation {card['val_bits_per_byte']:.4f} bits/byte"
    )


@app.command()
@user_errors
def entropy(
    text: Annotated[str | None, typer.Argument(help="text to score (or --file)")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="file to score (raw bytes)")] = None,
    model: ModelOpt = "default",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (nats) instead of a table (bits)")] = False,
    precision: Annotated[Precision, typer.Option(help="32, bf16 autocast, or auto")] = Precision.fp32,
) -> None:
    """Per-byte next-byte entropy and surprisal of a text under the byte model (long inputs: the table shows their
    start; --json has every byte)."""
    from blt.checkpoint import load_model
    from blt.entropy import score
    from blt.report import byte_progress, render_entropy_table, write_json

    data = read_input(text, file)
    if not data:
        raise BltError("the input is empty; nothing to score")
    lm = load_model(model)
    with byte_progress(err_console, "scoring", len(data)) as advance:
        s = score(lm, data, precision=precision.value, progress=advance)[0]
    if as_json:  # streamed: a long input's values never sit in memory as one list of floats or one string
        fields = {"bytes": len(data), "bits_per_byte": s.bits_per_byte}
        write_json({**fields, "entropy_nats": s.entropy_nats, "surprisal_nats": s.surprisal_nats})
    else:
        render_entropy_table(s, out_console)


@app.command(name="eval")
@user_errors
def eval_(
    data: Annotated[list[str], typer.Option("--data", "-d", help="corpus: file, dir, glob, udhr, stdlib, HF name")],
    model: ModelOpt = "default",
    split: Annotated[Split, typer.Option(help="all documents, or the train/val split the model's config makes")] = (
        Split.all
    ),
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    precision: Annotated[Precision, typer.Option(help="32, bf16 autocast, or auto")] = Precision.fp32,
    cache: Annotated[bool, typer.Option(help="reuse byte-model scores cached in $BLT_CACHE")] = True,
) -> None:
    """Corpus bits per byte under the byte model (ratio of sums, lm-eval convention); scores are cached, so
    evaluating the same corpus again reads them back."""
    from blt.checkpoint import load_model
    from blt.entropy import evaluate_corpus
    from blt.report import byte_progress

    lm = load_model(model, device="auto")
    docs = corpus_documents(lm, data, split.value)
    with byte_progress(err_console, "scoring") as advance:
        scored = evaluate_corpus(lm, docs, precision=precision.value, cache=cache, progress=advance)
    result = {"model": model, "data": data, "split": split.value, **scored}
    if as_json:
        print_json(result)
    else:
        out_console.print(
            f"{result['bits_per_byte']:.4f} bits/byte over {result['bytes']:,} bytes "
            f"in {result['documents']:,} documents ({split.value})"
        )


def corpus_documents(lm: Any, sources: list[str], split: str) -> Any:
    """The documents of `sources` as a stream of bytes: all of them, or the train/val split that the model's own
    data config makes of them."""
    from dataclasses import replace

    from blt.data import build_cache
    from blt.sources import iter_documents

    cfg = replace(lm.full_config.data, sources=sources, max_bytes=None, cache_dir=None)
    if split == "all":
        return (d.data for d in iter_documents(cfg))
    stream = getattr(build_cache(cfg), split)
    return (stream.document(i) for i in range(stream.n_docs))


RuleOpt = Annotated[Rule, typer.Option("--rule", "-r", help="boundary rule")]
ThresholdOpt = Annotated[float | None, typer.Option("--threshold", "-t", help="global threshold (nats)")]
RelativeOpt = Annotated[float | None, typer.Option("--relative-threshold", help="monotonic threshold (nats)")]
TargetOpt = Annotated[
    float | None, typer.Option("--target-bytes-per-patch", help="calibrate the threshold to this mean patch size")
]
MaxLenOpt = Annotated[int | None, typer.Option("--max-patch-length", help="cut longer patches (bytes)")]
SizeOpt = Annotated[
    float | None, typer.Option("--patch-size", help="bytes per patch for --rule fixed (2.5: unit i starts at ⌊2.5·i⌋)")
]


@app.command()
@user_errors
def segment(
    text: Annotated[str | None, typer.Argument(help="text to segment (or --file / --data)")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="file to segment (raw bytes)")] = None,
    data: Annotated[list[str] | None, typer.Option("--data", "-d", help="segment a whole corpus into --out")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="output directory for --data")] = None,
    model: ModelOpt = "default",
    rule: RuleOpt = Rule.global_,
    threshold: ThresholdOpt = None,
    relative_threshold: RelativeOpt = None,
    target_bytes_per_patch: TargetOpt = None,
    max_patch_length: MaxLenOpt = None,
    patch_size: SizeOpt = None,
    reset_at_newlines: Annotated[bool, typer.Option(help="score each line from BOS (entropy drift fix)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print lengths, starts, entropies as JSON")] = False,
    html_out: Annotated[Path | None, typer.Option("--html", help="write a self-contained HTML page")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="write the entropy plot (PNG)")] = None,
    devices: Annotated[str, typer.Option(help="devices for --data scoring (number or auto)")] = "auto",
    precision: Annotated[Precision, typer.Option(help="32, bf16 autocast, or auto")] = Precision.fp32,
) -> None:
    """Cut text into patches at entropy spikes (or by space/fixed/byte rules) and show them."""
    check_output(out, "--out")
    check_output(html_out, "--html", "file")
    check_output(plot, "--plot", "file", ".png")
    from blt.report import byte_progress, plot_patches, render_terminal, write_json, write_patches_html
    from blt.segmenters import Patcher

    patcher = Patcher(
        model,
        rule=rule.value,
        threshold=threshold,
        relative_threshold=relative_threshold,
        target_bytes_per_patch=target_bytes_per_patch,
        max_patch_length=max_patch_length,
        patch_size=patch_size,
        reset_at_newlines=reset_at_newlines,
        precision=precision.value,
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
                "lengths": patches.lengths,
                "starts": patches.starts,
                "entropies_nats": patches.entropies_nats,
                "threshold_nats": patches.threshold_nats,
                "relative_threshold_nats": patches.relative_threshold_nats,
                "bytes_per_patch": patches.bytes_per_patch,
            }
        )
    else:
        render_terminal(patches, out_console)  # long inputs: their start and a summary


def segment_corpus_cli(patcher: Any, sources: list[str], out: Path, devices: str) -> dict[str, Any]:
    from blt.config import DataConfig
    from blt.corpus import segment_corpus

    return segment_corpus(patcher, DataConfig(sources=sources), out, devices=parse_devices(devices))


@app.command()
@user_errors
def calibrate(
    data: Annotated[list[str], typer.Option("--data", "-d", help="corpus: file, dir, glob, udhr, stdlib, HF name")],
    target_bytes_per_patch: Annotated[float, typer.Option("--target-bytes-per-patch", help="mean patch size")],
    model: ModelOpt = "default",
    rule: RuleOpt = Rule.global_,
    max_patch_length: MaxLenOpt = None,
    max_bytes: Annotated[int, typer.Option(help="calibrate on at most this many bytes")] = 4_000_000,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    precision: Annotated[Precision, typer.Option(help="32, bf16 autocast, or auto")] = Precision.fp32,
    cache: Annotated[bool, typer.Option(help="reuse byte-model scores cached in $BLT_CACHE")] = True,
) -> None:
    """Find the threshold that gives a corpus the target mean bytes per patch (exact, not trial and error); scores
    are cached, so calibrating the same corpus again (another target) reads them back."""
    from blt.config import DataConfig
    from blt.report import byte_progress
    from blt.segmenters import Patcher
    from blt.sources import iter_documents

    if rule.value not in ("global", "monotonic"):
        raise BltError("calibration supports --rule global or monotonic")
    if max_bytes < 1:
        raise BltError(f"--max-bytes must be ≥ 1 (bytes to calibrate on), got {max_bytes}")
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
            precision=precision.value,
            cache=cache,
            progress=advance,
        )
        result = patcher.fit(docs)
    if as_json:
        print_json({"rule": rule.value, **result})
    else:
        out_console.print(
            f"{rule.value} threshold {result['threshold_nats']:.6f} nats "
            f"({result['threshold_bits']:.6f} bits): {result['bytes_per_patch']:.3f} bytes/patch "
            f"over {result['bytes']:,} bytes (target {target_bytes_per_patch})"
        )


@app.command()
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
    fixed_size: SizeOpt = None,
    eval_fraction: Annotated[float, typer.Option(help="share of documents held out for measuring")] = 0.1,
    eval_data: Annotated[
        list[str] | None, typer.Option("--eval-data", help="measure on these documents (train on all of --data)")
    ] = None,
    max_eval_bytes: Annotated[int, typer.Option(help="measure at most this many held-out bytes (0: all)")] = 4_000_000,
    by_language: Annotated[bool, typer.Option(help="metrics per language label (udhr)")] = False,
    adapt_steps: Annotated[int, typer.Option("--adapt", help="fine-tune the byte model N steps on the corpus")] = 0,
    adapt_minutes: Annotated[float | None, typer.Option(help="... or for this many minutes (or both)")] = None,
    max_bytes: Annotated[int | None, typer.Option(help="read at most this many bytes")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="report directory")] = Path("blt-compare"),
    precision: Annotated[Precision, typer.Option(help="byte-model precision")] = Precision.fp32,
    devices: Annotated[str, typer.Option(help="devices for byte-model scoring (number or auto; >1: DDP)")] = "1",
    cache: Annotated[bool, typer.Option(help="reuse byte-model scores cached in $BLT_CACHE")] = True,
    wide: Annotated[bool, typer.Option("--wide", help="print every metric column (default: those that fit)")] = False,
) -> None:
    """Entropy patches vs BPE, SentencePiece, tiktoken and rule-based segmenters on one corpus."""
    check_output(out, "--out")  # before the run: the report is written after it
    import shlex

    from blt.compare import DEFAULT_SEGMENTERS, CompareConfig, run_compare
    from blt.report import package_versions, print_compare, write_compare_report

    names = list(DEFAULT_SEGMENTERS) if segmenters is None else [n.strip() for n in segmenters.split(",") if n.strip()]
    if not names:  # "" or ",": a run with nothing to compare would print an empty table and exit 0
        raise BltError(
            f"--segmenters {segmenters!r} names no segmenter; give a comma-separated list such as space,bpe "
            "(or drop --segmenters for the default set)"
        )
    if match is None:  # default: the reference chosen from what runs, unless thresholds are given
        match = "none" if threshold is not None or relative_threshold is not None else "auto"
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
        max_bytes=max_bytes,
        precision=precision.value,
        threshold=threshold,
        relative_threshold=relative_threshold,
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


@app.command()
@user_errors
def info(model: ModelOpt = "default") -> None:
    """Show a model's card: data, steps, validation bits per byte, size."""
    from blt.checkpoint import load_model

    lm = load_model(model)
    card = {**lm.card, "params": lm.num_params(), "model": lm.full_config.to_dict()["model"]}
    print_json(card)


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


if __name__ == "__main__":
    main()
