"""The `blt` command line: a typer shell over library calls. Each command parses its options, calls one library
function and prints or saves the result; user mistakes become one red line on stderr and exit status 1.
"""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from blt.cli_experiment import experiment
from blt.cli_llm import llm_app
from blt.cli_shared import err_console, out_console, parse_devices, print_json, read_input, user_errors
from blt.errors import BltError

app = typer.Typer(
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
    """Train a byte language model with Lightning (GPU if present, CPU otherwise)."""
    from blt.config import load_config
    from blt.train import train as run_training

    overrides = list(set_ or [])
    if data:
        overrides.append("data.sources=" + json.dumps(data))
    if config is None and resume and out is not None and (out / "config.yaml").is_file():
        config = out / "config.yaml"  # resuming: the run's own resolved config
    if config is None:
        raise BltError("pass --config PATH (e.g. configs/tiny.yaml), or --resume --out RUN_DIR")
    cfg = load_config(config, overrides)
    out = out or Path("runs") / config.stem
    model_dir = run_training(cfg, out, resume=resume)
    card = json.loads((model_dir / "card.json").read_text())
    out_console.print(
        f"model written to {model_dir}: {card['steps']} steps, validation {card['val_bits_per_byte']:.4f} bits/byte"
    )


def _display(data: bytes, t: int) -> str:
    """The character that byte t starts (continuation bytes show as '·', undecodable ones as hex)."""
    b = data[t]
    if 0x80 <= b < 0xC0:
        return "·"
    width = 1 if b < 0x80 else 2 if b < 0xE0 else 3 if b < 0xF0 else 4
    try:
        ch = data[t : t + width].decode("utf-8")
    except UnicodeDecodeError:
        return f"\\x{b:02x}"
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r", " ": "␠"}.get(ch, ch if ch.isprintable() else repr(ch)[1:-1])


@app.command()
@user_errors
def entropy(
    text: Annotated[str | None, typer.Argument(help="text to score (or --file)")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="file to score (raw bytes)")] = None,
    model: ModelOpt = "default",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (nats) instead of a table (bits)")] = False,
    precision: Annotated[Precision, typer.Option(help="32, bf16 autocast, or auto")] = Precision.fp32,
) -> None:
    """Per-byte next-byte entropy and surprisal of a text under the byte model."""
    from blt.checkpoint import load_model
    from blt.entropy import LN2, score

    data = read_input(text, file)
    if not data:
        raise BltError("the input is empty; nothing to score")
    s = score(load_model(model), data, precision=precision.value)[0]
    if as_json:
        print_json(
            {
                "bytes": len(data),
                "bits_per_byte": s.bits_per_byte,
                "entropy_nats": [round(float(x), 6) for x in s.entropy_nats],
                "surprisal_nats": [round(float(x), 6) for x in s.surprisal_nats],
            }
        )
        return
    table = Table("pos", "byte", "char", "entropy (bits)", "surprisal (bits)")
    for t in range(len(data)):
        table.add_row(
            str(t),
            f"{data[t]:02x}",
            _display(data, t),
            f"{s.entropy_nats[t] / LN2:.3f}",
            f"{s.surprisal_nats[t] / LN2:.3f}",
        )
    out_console.print(table)
    out_console.print(
        f"{len(data)} bytes, mean entropy {s.entropy_nats.mean() / LN2:.3f} bits, {s.bits_per_byte:.3f} bits/byte"
    )


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
) -> None:
    """Corpus bits per byte under the byte model (ratio of sums, lm-eval convention)."""
    from blt.checkpoint import load_model
    from blt.entropy import evaluate_corpus

    lm = load_model(model, device="auto")
    result = {
        "model": model,
        "data": data,
        "split": split.value,
        **evaluate_corpus(lm, corpus_documents(lm, data, split.value), precision=precision.value),
    }
    if as_json:
        print_json(result)
    else:
        out_console.print(
            f"{result['bits_per_byte']:.4f} bits/byte over {result['bytes']:,} bytes "
            f"in {result['documents']:,} documents ({split.value})"
        )


def corpus_documents(lm: Any, sources: list[str], split: str) -> Any:
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
SizeOpt = Annotated[int | None, typer.Option("--patch-size", help="bytes per patch for --rule fixed")]


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
    from blt.report import patches_html, plot_patches, render_terminal, write_atomic
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
        if out is None:
            raise BltError("--data needs --out DIR for the Parquet output")
        summary = segment_corpus_cli(patcher, data, out, devices)
        out_console.print(
            f"{summary['documents']:,} documents, {summary['bytes']:,} bytes -> {summary['patches']:,}"
            f" patches ({summary['bytes_per_patch']:.2f} bytes/patch) written to {out}"
        )
        return
    patches = patcher.patch([read_input(text, file)])[0]
    if html_out:
        write_atomic(html_out, lambda p: p.write_text(patches_html(patches), encoding="utf-8"))
    if plot:
        plot_patches(patches, plot)
    if as_json:
        ent = patches.entropies_nats
        print_json(
            {
                "lengths": patches.lengths.tolist(),
                "starts": patches.starts.tolist(),
                "entropies_nats": None if ent is None else [round(float(x), 6) for x in ent],
                "threshold_nats": patches.threshold_nats,
                "relative_threshold_nats": patches.relative_threshold_nats,
                "bytes_per_patch": patches.bytes_per_patch,
            }
        )
    else:
        render_terminal(patches, out_console)


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
) -> None:
    """Find the threshold that gives a corpus the target mean bytes per patch (exact, not trial and error)."""
    from blt.config import DataConfig
    from blt.segmenters import Patcher
    from blt.sources import iter_documents

    if rule.value not in ("global", "monotonic"):
        raise BltError("calibration supports --rule global or monotonic")
    docs, size = [], 0
    for doc in iter_documents(DataConfig(sources=data)):
        docs.append(doc.data[: max_bytes - size])
        size += len(docs[-1])
        if size >= max_bytes:
            break
    if not docs:
        raise BltError(f"data {data} contains no text")
    patcher = Patcher(
        model,
        rule=rule.value,
        target_bytes_per_patch=target_bytes_per_patch,
        max_patch_length=max_patch_length,
        precision=precision.value,
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
    vocab_size: Annotated[int | None, typer.Option(help="trained tokenisers' vocabulary size")] = None,
    match: Annotated[
        str | None, typer.Option(help="calibrate entropy patches to this segmenter's bytes/unit (default bpe); none")
    ] = None,
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
) -> None:
    """Entropy patches vs BPE, SentencePiece, tiktoken and rule-based segmenters on one corpus."""
    import shlex

    from blt.compare import DEFAULT_SEGMENTERS, CompareConfig, run_compare
    from blt.report import package_versions, print_compare, write_compare_report

    names = [n.strip() for n in segmenters.split(",") if n.strip()] if segmenters else list(DEFAULT_SEGMENTERS)
    if match is None:  # default: match bpe when it runs, unless thresholds are given
        given = threshold is not None or relative_threshold is not None
        match = "bpe" if "bpe" in names and not given else "none"
    cfg = CompareConfig(
        sources=data or ["udhr"],
        model=model,
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
    print_compare(results, out_console)
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


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":
    main()
