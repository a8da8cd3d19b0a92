"""`blt llm`: the typer sub-app over `blt.llm.report` (scoring full language models, their reports, token patches).
Each command parses its options, calls the library and prints or saves; bad input is one red line and exit 1.
`blt.cli` registers it as `blt llm`.
"""

from __future__ import annotations

import importlib.util
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from blt.cli.shared import check_output, err_console, out_console, print_json, user_errors
from blt.errors import BltError

llm_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Entropy of full language models (HF, GGUF, API logprobs, the byte model) and token patches.",
)


class TokenRule(str, Enum):
    global_ = "global"
    monotonic = "monotonic"
    budget = "budget"


MODEL_HELP = "blt:default / blt:PATH (byte model), a Hugging Face name or directory, or a .gguf file"
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help=MODEL_HELP)]
ModelsOpt = Annotated[list[str], typer.Option("--model", "-m", help=MODEL_HELP + " (repeat: ≥ 2)")]
GgufOpt = Annotated[str | None, typer.Option("--gguf-file", help="GGUF file inside the --model directory/repo")]
TextOpt = Annotated[str | None, typer.Option("--text", help="text to score (or the prompt with --generate)")]
FileOpt = Annotated[Path | None, typer.Option("--file", "-f", help="UTF-8 file to score, as one text")]
PromptsOpt = Annotated[Path | None, typer.Option("--prompts", help="UTF-8 file, one text/prompt per line")]
LogprobsOpt = Annotated[Path | None, typer.Option("--logprobs-json", help="API logprobs (JSON/JSONL), no model")]
VocabOpt = Annotated[int | None, typer.Option("--vocab-size", help="vocabulary size for logprobs upper bounds")]
ChatOpt = Annotated[
    bool,
    typer.Option(
        "--chat",
        help="apply the chat template: the text is the assistant turn (the prompt the user turn with --generate); "
        "--chat auto: only for models that have one",
    ),
]
UserOpt = Annotated[str, typer.Option("--user", help="the user turn before the text with --chat")]
GenerateOpt = Annotated[int | None, typer.Option("--generate", help="on-policy: sample N tokens after each prompt")]
SamplesOpt = Annotated[int, typer.Option("--samples", help="samples per prompt with --generate")]
TempOpt = Annotated[float, typer.Option("--temperature", help="sampling temperature (0: greedy)")]
TopPOpt = Annotated[float, typer.Option("--top-p", help="nucleus sampling mass")]
SeedOpt = Annotated[int, typer.Option("--seed", help="seed of the sampler")]
ContextOpt = Annotated[int | None, typer.Option("--context", help="most tokens the model sees at once")]
StrideOpt = Annotated[int | None, typer.Option("--stride", help="window advance for long texts")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="float32, bfloat16 or float16")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, ...")]
RemoteOpt = Annotated[bool, typer.Option("--trust-remote-code", help="run the model repository's own code")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON (nats and bits) instead of a table")]
OutOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="write report.md, results.json (every token too), tokens.html, plots")
]
TokensOpt = Annotated[bool, typer.Option("--tokens", help="print the text, each token shaded by its entropy")]
JsonlOpt = Annotated[Path | None, typer.Option("--jsonl", help="write every token's numbers as JSON Lines")]
CsvOpt = Annotated[Path | None, typer.Option("--csv", help="write every token's numbers as CSV")]
HtmlOpt = Annotated[
    Path | None, typer.Option("--html", help="write a page: tokens shaded by entropy, numbers on hover, side by side")
]
MapOpt = Annotated[Path | None, typer.Option("--map", help="write the entropy–varentropy map (PNG), a panel per model")]
CutsOpt = Annotated[
    str | None,
    typer.Option("--region-cuts", help="the map's high-entropy and high-varentropy cuts: BITS,BITS² (default 3,5)"),
]


class SpanKind(str, Enum):
    line = "line"
    sentence = "sentence"


SpansOpt = Annotated[SpanKind | None, typer.Option("--spans", help="print mean entropy per line or sentence")]
EXTRA_ARGS = {"allow_extra_args": True}  # `--chat auto`: the flag, then "auto" as an extra argument


def read_texts(options: dict[str, Any]) -> list[str] | None:
    """Exactly one of the input `options` ({"--text": str, "--file": path, "--prompts": path, "--logprobs-json":
    path}, None where not given) -> the texts: a file is one text, --prompts one per non-empty line; None for a
    logprobs file (already scored)."""
    given = [name for name, value in options.items() if value is not None]
    if len(given) != 1:
        got = f" (got {' and '.join(given)})" if given else ""
        raise BltError(f"give exactly one of {', '.join(options)}{got}")
    name, value = given[0], options[given[0]]
    if name != "--text" and not Path(value).is_file():
        raise BltError(f"{name} {value} does not exist or is not a file")
    if name == "--logprobs-json":
        return None
    if name == "--text":
        texts = [value]
    else:
        try:
            content = Path(value).read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise BltError(f"{name} {value} is not UTF-8 text ({e.reason} at byte {e.start})") from None
        texts = [line for line in content.splitlines() if line.strip()] if name == "--prompts" else [content]
    if not texts or not all(t.strip() for t in texts):
        raise BltError(f"{name} {'text' if name == '--text' else value} is empty: nothing to score; give some text")
    return texts


def _command() -> str:
    return "blt " + shlex.join(sys.argv[1:])


def _quiet(*models: str | None) -> None:
    """No "Loading weights" progress bars from transformers: a bad input stays one red line on stderr. Without
    transformers (no [llm] extra) there is nothing to quiet: `load_hf` says which extra to install."""
    if any(m and not m.startswith("blt:") for m in models) and importlib.util.find_spec("transformers"):
        from transformers.utils import logging

        logging.disable_progress_bar()


def chat_mode(ctx: typer.Context, chat: bool) -> bool | str:
    """--chat (True), --chat auto ("auto": each model's template where it has one), or neither (False). typer has no
    option with an optional value, so "auto" arrives as an extra argument after the flag."""
    extra = list(ctx.args)
    if chat and extra[:1] == ["auto"]:
        extra, chat_or_auto = extra[1:], "auto"
    else:
        chat_or_auto = chat
    if extra:
        raise BltError(f"unexpected argument {extra[0]!r}: --chat takes no value but 'auto'; give texts with --text")
    return chat_or_auto


def _show(scores: list[Any], as_json: bool, out: Path | None, single: bool, views: dict[str, Any]) -> None:
    from blt.llm.report import llm_results, print_results, write_llm_report
    from blt.llm.views import token_outputs

    cuts = views.pop("cuts")
    results = llm_results(scores, cuts)
    per_token = token_outputs(scores, out_console, cuts=cuts, **views) if any(views.values()) else None
    if out is not None:
        write_llm_report(results, scores, out, _command(), per_token, cuts)
    if as_json:
        print_json(results["models"][0] if single else results)
    else:
        print_results(results, out_console, err_console)
        if out is not None:
            out_console.print(f"report written to {out / 'report.md'}", highlight=False)


def _views(as_json: bool, **given: Any) -> dict[str, Any]:
    """The per-token options, checked before any work."""
    from blt.llm.views import RegionCuts

    for option, suffix in (("jsonl", ".jsonl"), ("csv", ".csv"), ("html", ".html"), ("map_png", ".png")):
        check_output(given[option], f"--{option.split('_')[0]}", "file", suffix)
    if as_json and (given["tokens"] or given["spans"]):
        raise BltError("--tokens and --spans print to the terminal; with --json write the tokens with --jsonl FILE")
    spans = given["spans"].value if given["spans"] else None
    return given | {"spans": spans, "cuts": RegionCuts.parse(given["cuts"])}


@llm_app.command(context_settings=EXTRA_ARGS)
@user_errors
def score(
    ctx: typer.Context,
    model: ModelOpt = None,
    gguf_file: GgufOpt = None,
    text: TextOpt = None,
    file: FileOpt = None,
    logprobs_json: LogprobsOpt = None,
    vocab_size: VocabOpt = None,
    chat: ChatOpt = False,
    user: UserOpt = "",
    generate: GenerateOpt = None,
    samples: SamplesOpt = 1,
    temperature: TempOpt = 1.0,
    top_p: TopPOpt = 1.0,
    seed: SeedOpt = 0,
    context: ContextOpt = None,
    stride: StrideOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    trust_remote_code: RemoteOpt = False,
    as_json: JsonOpt = False,
    out: OutOpt = None,
    tokens: TokensOpt = False,
    jsonl: JsonlOpt = None,
    csv: CsvOpt = None,
    html: HtmlOpt = None,
    map_png: MapOpt = None,
    spans: SpansOpt = None,
    cuts: CutsOpt = None,
) -> None:
    """Entropy figures of one model on a text (teacher-forced), its own samples (--generate), or API logprobs;
    token by token with --tokens, --html, --jsonl/--csv, --map, --spans."""
    check_output(out, "--out")
    from blt.llm.report import score_source

    views = _views(as_json, tokens=tokens, jsonl=jsonl, csv=csv, html=html, map_png=map_png, spans=spans, cuts=cuts)
    chat_or_auto = chat_mode(ctx, chat)
    texts = read_texts({"--text": text, "--file": file, "--logprobs-json": logprobs_json})
    _quiet(model)
    sc = score_source(
        model, texts, logprobs_json=logprobs_json, vocab_size=vocab_size, generate=generate, samples=samples,
        temperature=temperature, top_p=top_p, seed=seed, chat=chat_or_auto, user=user, context=context,
        stride=stride, gguf_file=gguf_file, dtype=dtype, device=device, trust_remote_code=trust_remote_code,
    )  # fmt: skip
    _show([sc], as_json, out, True, views)


@llm_app.command(context_settings=EXTRA_ARGS)
@user_errors
def compare(
    ctx: typer.Context,
    model: ModelsOpt,
    text: TextOpt = None,
    file: FileOpt = None,
    prompts: PromptsOpt = None,
    chat: ChatOpt = False,
    user: UserOpt = "",
    generate: GenerateOpt = None,
    samples: SamplesOpt = 1,
    temperature: TempOpt = 1.0,
    top_p: TopPOpt = 1.0,
    seed: SeedOpt = 0,
    context: ContextOpt = None,
    stride: StrideOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    trust_remote_code: RemoteOpt = False,
    as_json: JsonOpt = False,
    out: OutOpt = None,
    tokens: TokensOpt = False,
    jsonl: JsonlOpt = None,
    csv: CsvOpt = None,
    html: HtmlOpt = None,
    map_png: MapOpt = None,
    spans: SpansOpt = None,
    cuts: CutsOpt = None,
) -> None:
    """Several models side by side on the same texts or prompts: table, report, plots, token views side by side;
    warns when tokenizers differ. Base vs instruct in one run: --chat auto --generate N."""
    check_output(out, "--out")
    from blt.llm.report import score_source

    if len(model) < 2:
        raise BltError("compare needs at least two models: --model A --model B (one model: blt llm score)")
    views = _views(as_json, tokens=tokens, jsonl=jsonl, csv=csv, html=html, map_png=map_png, spans=spans, cuts=cuts)
    chat_or_auto = chat_mode(ctx, chat)
    texts = read_texts({"--text": text, "--file": file, "--prompts": prompts})
    _quiet(*model)
    kw = dict(generate=generate, samples=samples, temperature=temperature, top_p=top_p, seed=seed)
    kw |= dict(chat=chat_or_auto, user=user, context=context, stride=stride, dtype=dtype, device=device)
    scores = [score_source(m, texts, trust_remote_code=trust_remote_code, **kw) for m in model]
    _show(scores, as_json, out, False, views)


@llm_app.command()
@user_errors
def segment(
    model: ModelOpt = None,
    gguf_file: GgufOpt = None,
    text: TextOpt = None,
    file: FileOpt = None,
    rule: Annotated[TokenRule, typer.Option("--rule", "-r", help="boundary rule")] = TokenRule.global_,
    threshold: Annotated[float | None, typer.Option("--threshold", "-t", help="global/monotonic: nats")] = None,
    budget: Annotated[
        float | None, typer.Option("--budget", help="budget rule: the summed token entropy (nats) a patch may hold")
    ] = None,
    target_tokens_per_patch: Annotated[
        float | None, typer.Option("--target-tokens-per-patch", help="calibrate the threshold or budget to this mean")
    ] = None,
    max_patch_length: Annotated[int | None, typer.Option("--max-patch-length", help="cut longer patches")] = None,
    chat: ChatOpt = False,
    user: UserOpt = "",
    context: ContextOpt = None,
    stride: StrideOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    trust_remote_code: RemoteOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="print patch lengths, starts, entropies as JSON")] = False,
    html_out: Annotated[Path | None, typer.Option("--html", help="write a self-contained HTML page")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="write the entropy plot (PNG)")] = None,
) -> None:
    """Cut a model's token stream into patches at entropy spikes, or into patches of equal summed entropy (--rule
    budget): the byte patcher's rules on token entropies."""
    check_output(html_out, "--html", "file")
    check_output(plot, "--plot", "file", ".png")
    from blt.files import write_atomic
    from blt.llm.report import score_source
    from blt.llm.token_patches import (
        check_threshold,
        plot_token_patches,
        render_token_patches,
        segment_tokens,
        token_patches_html,
    )

    texts = read_texts({"--text": text, "--file": file})
    check_threshold(threshold, target_tokens_per_patch, rule=rule.value, budget=budget)
    _quiet(model)
    load_kw = dict(gguf_file=gguf_file, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    sc = score_source(model, texts, chat=chat, user=user, context=context, stride=stride, **load_kw)
    kw = dict(threshold=threshold, budget=budget, target_tokens_per_patch=target_tokens_per_patch)
    patches = segment_tokens(sc, rule=rule.value, max_patch_length=max_patch_length, **kw)
    if html_out:
        write_atomic(html_out, lambda p: p.write_text(token_patches_html(patches), encoding="utf-8"))
    if plot:
        plot_token_patches(patches, plot)
    if as_json:
        print_json(patches.as_json())
    else:
        render_token_patches(patches, out_console)
