"""The `blt` command line: a typer shell over library calls. Each command parses its options, calls one library
function and prints or saves the result; user mistakes become one red line on stderr and exit status 1.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from blt.errors import BltError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Entropy-based byte patching and tokenisation experiments.",
)
out_console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="'default' (bundled), a model/run directory or .ckpt")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override a config value: section.key=value")]


class Precision(str, Enum):
    auto = "auto"
    fp32 = "32"
    bf16 = "bf16"


class Split(str, Enum):
    all = "all"
    train = "train"
    val = "val"


def user_errors(fn: F) -> F:
    """Turn the library's errors for bad input into one red line and exit code 1 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (BltError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
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


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


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

    lm = load_model(model)
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

    from blt.data import build_cache, iter_documents

    cfg = replace(lm.full_config.data, sources=sources, max_bytes=None, cache_dir=None)
    if split == "all":
        return (d.data for d in iter_documents(cfg))
    stream = getattr(build_cache(cfg), split)
    return (stream.document(i) for i in range(stream.n_docs))


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
