"""Commands on the byte model: `blt train`, `blt entropy`, `blt eval`, `blt info`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from blt.cli.shared import (
    ModelOpt,
    OnlineLrOpt,
    OnlineOpt,
    Precision,
    SetOpt,
    Split,
    check_output,
    err_console,
    online_lr_for,
    out_console,
    print_json,
    read_input,
    user_errors,
)
from blt.errors import BltError


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
    from blt.bytelm.train import train as run_training
    from blt.config import load_config

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


@user_errors
def entropy(
    text: Annotated[str | None, typer.Argument(help="text to score (or --file)")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="file to score (raw bytes)")] = None,
    model: ModelOpt = "default",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (nats) instead of a table (bits)")] = False,
    precision: Annotated[Precision, typer.Option(help="32, bf16 autocast, or auto")] = Precision.fp32,
    shade: Annotated[bool, typer.Option("--shade", help="print the text, each byte shaded by its entropy")] = False,
    html: Annotated[Path | None, typer.Option("--html", help="write a page: bytes shaded, numbers on hover")] = None,
) -> None:
    """Per-byte next-byte entropy and surprisal of a text under the byte model (long inputs: the table shows their
    start; --json has every byte); --shade and --html show it as `blt llm score --tokens/--html` do for tokens."""
    check_output(html, "--html", "file", ".html")
    if as_json and shade:
        raise BltError("--shade prints to the terminal; drop it with --json (or write the page with --html FILE)")
    from blt.bytelm.checkpoint import load_model
    from blt.bytelm.entropy import score
    from blt.report.terminal import byte_progress, render_entropy_table, write_json
    from blt.report.units import byte_view, render_units_terminal, write_units_html

    data = read_input(text, file)
    if not data:
        raise BltError("the input is empty; nothing to score")
    lm = load_model(model)
    with byte_progress(err_console, "scoring", len(data)) as advance:
        s = score(lm, data, precision=precision.value, progress=advance, extra_stats=bool(shade or html))[0]
    if html is not None:
        write_units_html([byte_view(s, str(model))], html, title="blt entropy", unit="byte")
    if as_json:  # streamed: a long input's values never sit in memory as one list of floats or one string
        fields = {"bytes": len(data), "bits_per_byte": s.bits_per_byte}
        write_json({**fields, "entropy_nats": s.entropy_nats, "surprisal_nats": s.surprisal_nats})
    elif shade:
        render_units_terminal(byte_view(s, str(model)), out_console, unit="byte", rest="--json, --html FILE")
    else:
        render_entropy_table(s, out_console)


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
    online: OnlineOpt = False,
    online_lr: OnlineLrOpt = None,
) -> None:
    """Corpus bits per byte under the byte model (ratio of sums, lm-eval convention), its mean predicted entropy and
    calibration gap; scores are cached, so evaluating the same corpus again reads them back. --online also scores
    it with the model learning as it reads (never before scoring a byte), and prints both."""
    import time

    from blt.bytelm.checkpoint import load_model
    from blt.bytelm.entropy import evaluate_corpus
    from blt.report.terminal import byte_progress

    lr = online_lr_for(online, online_lr)
    lm = load_model(model, device="auto")
    with byte_progress(err_console, "scoring") as advance:
        t0 = time.perf_counter()
        static = evaluate_corpus(
            lm, corpus_documents(lm, data, split.value), precision=precision.value, cache=cache, progress=advance
        )
        static_s = time.perf_counter() - t0
    result: dict[str, Any] = {"model": model, "data": data, "split": split.value, **static}
    if lr is not None:
        with byte_progress(err_console, "scoring online") as advance:
            t0 = time.perf_counter()
            docs = corpus_documents(lm, data, split.value)
            scored = evaluate_corpus(lm, docs, precision=precision.value, progress=advance, online_lr=lr)
            result["online"] = {"lr": lr, "seconds": time.perf_counter() - t0, **scored}
        result["seconds"] = static_s
    if as_json:
        print_json(result)
        return
    out_console.print(
        f"{result['bits_per_byte']:.4f} bits/byte over {result['bytes']:,} bytes in {result['documents']:,} "
        f"documents ({split.value}); predicted {result['mean_entropy_bits']:.4f}, calibration gap "
        f"{result['calibration_gap']:+.1%}"
    )
    if lr is not None:
        o = result["online"]
        out_console.print(
            f"{o['bits_per_byte']:.4f} bits/byte online (Adam lr {lr:g}, learning from each window after "
            f"scoring it); predicted {o['mean_entropy_bits']:.4f}, calibration gap {o['calibration_gap']:+.1%}; "
            f"{o['seconds']:.1f} s"
        )


def corpus_documents(lm: Any, sources: list[str], split: str) -> Any:
    """The documents of `sources` as a stream of bytes: all of them, or the train/val split that the model's own
    data config makes of them."""
    from dataclasses import replace

    from blt.bytelm.data import build_cache
    from blt.bytelm.sources import iter_documents

    cfg = replace(lm.full_config.data, sources=sources, max_bytes=None, cache_dir=None)
    if split == "all":
        return (d.data for d in iter_documents(cfg))
    stream = getattr(build_cache(cfg), split)
    return (stream.document(i) for i in range(stream.n_docs))


@user_errors
def info(model: ModelOpt = "default") -> None:
    """Show a model's card: data, steps, validation bits per byte, size."""
    from blt.bytelm.checkpoint import load_model

    lm = load_model(model)
    card = {**lm.card, "params": lm.num_params(), "model": lm.full_config.to_dict()["model"]}
    print_json(card)
