"""LLM runs for `blt llm`: a model spec (`blt:NAME` for the byte model, a Hugging Face name or directory, a .gguf
file) or an API logprobs file → one `TokenScores` (`score_source`); the figures of several side by side
(`llm_results`, `figure_rows`, with entropix region shares) with a warning when their tokenizers differ; `report.md`,
`results.json` (every token too), `tokens.html` and PNG plots (`write_llm_report`). Token patches live in
`blt.llm.token_patches`; per-token records and views in `blt.llm.tokens` and `blt.llm.views`. Nats inside, bits in
tables and plots.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from blt.errors import BltError
from blt.files import write_atomic
from blt.llm.scorers import TokenScores, aggregate, concat_scores, generate_hf, load_hf, score_byte_model, score_hf
from blt.llm.tokens import REGIONS
from blt.llm.views import RegionCuts, entropy_bits, plot_map, prompted, region_summary, unit_view
from blt.report.markdown import markdown_table
from blt.report.plots import _savefig
from blt.report.units import write_units_html

BYTE_MODEL_PREFIX = "blt:"
TOKENIZER_WARNING = "not comparable token by token; compare entropy per byte"
META = (("mode", "mode"), ("prompted", "prompted"), ("tokenizer", "tokenizer"), ("vocab_size", "vocab size"))
META += (("context", "context"), ("positions", "tokens scored"), ("documents", "documents"), ("bytes", "bytes"))
FIGURES = (  # (aggregate key, row label, format); bounded (API) scores show "[lower, upper]"
    ("mean_entropy_bits", "mean entropy (bits)", "{:.3f}"),
    ("median_entropy_bits", "median entropy (bits)", "{:.3f}"),
    ("branching_factor", "branching factor exp(mean H)", "{:.2f}"),
    ("entropy_per_byte_bits", "entropy per byte (bits)", "{:.3f}"),
    ("bits_per_byte", "bits per byte", "{:.3f}"),
    ("mean_top1_mass", "top-1 mass", "{:.3f}"),
    ("mean_varentropy_nats2", "varentropy (nats²)", "{:.3f}"),
    ("mean_residual_mass", "residual mass (outside top k)", "{:.4f}"),
    ("censored", "censored tokens", "{}"),
)


def score_source(
    model: str | None,
    texts: list[str] | None,
    *,
    logprobs_json: str | Path | None = None,
    vocab_size: int | None = None,
    generate: int | None = None,
    samples: int = 1,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    chat: bool | str = False,
    user: str = "",
    context: int | None = None,
    stride: int | None = None,
    **load_kw: Any,
) -> TokenScores:
    """One `TokenScores` of `texts` (documents) under `model`: `blt:NAME` is the byte model (`blt:default` the
    bundled one), anything else a Hugging Face name, directory or .gguf file (`load_kw`: `load_hf`'s options).
    `generate=N`: on-policy, N sampled tokens after each text as a prompt. `logprobs_json`: an API logprobs file
    (no model, no texts), read with `parse_logprobs_json`. `chat`: True applies the model's chat template (the text
    is the assistant turn, or with `generate` the prompt the user turn), "auto" applies it where the model has one
    (the byte model and a base model without one get plain text)."""
    if logprobs_json is not None:
        from blt.llm.logprobs import parse_logprobs_json

        if generate:
            raise BltError("--generate samples from a model, a --logprobs-json file is already scored: drop one")
        return parse_logprobs_json(logprobs_json, vocab_size=vocab_size)
    if not model:
        raise BltError(
            "pass --model: blt:default (the byte model), blt:PATH, a Hugging Face name or directory, or a .gguf"
        )
    assert texts is not None
    if generate is not None and generate < 1:  # 0 would silently score the prompts teacher-forced instead
        raise BltError(f"--generate must be a number of tokens ≥ 1 to sample, got {generate}; drop it to score text")
    if chat not in (True, False, "auto"):
        raise BltError(f"chat must be True, False or 'auto', got {chat!r}")
    if model.startswith(BYTE_MODEL_PREFIX):
        chat = False if chat == "auto" else chat
        if generate or chat:
            raise BltError(
                "the byte model scores given text only: drop --generate/--chat, or pass a Hugging Face model"
            )
        # options of Hugging Face/GGUF models, which the byte model would otherwise ignore without a word
        ignored = [
            option
            for option, given in (
                ("--context", context is not None),
                ("--gguf-file", load_kw.get("gguf_file") is not None),
                ("--dtype", load_kw.get("dtype", "float32") != "float32"),
                ("--device", load_kw.get("device", "cpu") != "cpu"),
            )
            if given
        ]
        if ignored:
            raise BltError(
                f"{' and '.join(ignored)} {'applies' if len(ignored) == 1 else 'apply'} to Hugging Face and GGUF "
                f"models, not the byte model {model}: drop {'it' if len(ignored) == 1 else 'them'} (the byte model's "
                "context and precision come with it)"
            )
        return score_byte_model(model[len(BYTE_MODEL_PREFIX) :] or "default", texts, stride=stride)
    hf = load_hf(model, **load_kw)
    if chat == "auto":
        chat = bool(hf.meta["has_chat_template"])
    if generate:
        kw = dict(n_tokens=generate, samples=samples, temperature=temperature, top_p=top_p, seed=seed, chat=chat)
        return concat_scores(generate_hf(hf, texts, **kw))
    return score_hf(hf, texts, context=context, stride=stride, chat=chat, user=user)


# --------------------------------------------------------------------------------------------- tables, reports
def llm_results(scores: Sequence[TokenScores], cuts: RegionCuts | None = None) -> dict[str, Any]:
    """{"models": [`aggregate` of each, with "prompted" (how, in words) and its entropix "regions" (`region_summary`
    at `cuts`)], "warnings": [...]}: a warning when tokenizers or modes differ."""
    warnings = []
    if len({s.tokenizer for s in scores}) > 1:
        names = "; ".join(f"{s.source}: {s.tokenizer}" for s in scores)
        warnings.append(f"tokenizers differ ({names}): {TOKENIZER_WARNING}")
    if len({s.mode for s in scores}) > 1:
        warnings.append("modes differ (" + ", ".join(f"{s.source}: {s.mode}" for s in scores) + ")")
    warnings += [w for s in scores for w in sample_warnings(s)]
    cuts = cuts or RegionCuts()
    models = [aggregate(s) | {"prompted": prompted(s), "regions": region_summary(s, cuts)} for s in scores]
    return {"models": models, "warnings": warnings}


def sample_warnings(s: TokenScores) -> list[str]:
    """On-policy samples that say nothing: empty ones (the first token ended the sequence), which is what an
    instruct model does with a bare prompt, and a chat template left unapplied."""
    if s.prompts is None:
        return []
    n_samples = len(s.prompts)
    text_bytes = np.bincount(s.doc_ids, [len(b) for b in s.token_bytes], minlength=n_samples)  # [samples]
    empty = int((text_bytes == 0).sum())
    unapplied = s.has_chat_template and not s.chat_template
    hint = "; the tokenizer has a chat template (an instruct model?): pass --chat or --chat auto" if unapplied else ""
    if empty:
        return [f"{s.source}: {empty} of {n_samples} samples are empty (the first token ended the sequence){hint}"]
    if unapplied:
        return [f"{s.source} has a chat template but --chat was not given: the samples continue the bare prompt"]
    return []


def generation_rows(scores: Sequence[TokenScores]) -> list[dict[str, Any]]:
    """One row per on-policy sample: model, prompt, sample index, whether the template was applied, tokens, text."""
    rows = []
    for s in scores:
        if s.prompts is None:
            continue
        seen: dict[str, int] = {}
        for doc, prompt in enumerate(s.prompts):
            at = np.flatnonzero(s.doc_ids == doc)
            text = b"".join(s.token_bytes[i] for i in at).decode("utf-8", "replace")
            row = {"model": s.source, "prompt": prompt, "sample": seen.get(prompt, 0), "chat_template": s.chat_template}
            rows.append(row | {"tokens": len(at), "text": text})
            seen[prompt] = seen.get(prompt, 0) + 1
    return rows


def _cell(agg: dict[str, Any], key: str, fmt: str) -> str:
    if key + "_lower" in agg:
        lo, hi = agg[key + "_lower"], agg.get(key + "_upper")
        return "—" if lo is None or hi is None else f"[{fmt.format(lo)}, {fmt.format(hi)}]"
    value = agg.get(key)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "—" if value is None else fmt.format(value) if isinstance(value, (int, float)) else str(value)


def figure_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """A table with one column per model: what was measured (mode, template, tokenizer, ...), then the figures."""
    models = results["models"]
    rows = [[label, *(_cell(m, key, "{}") for m in models)] for key, label in META]
    rows += [[label, *(_cell(m, key, fmt) for m in models)] for key, label, fmt in FIGURES]
    if models and "regions" in models[0]:  # entropix's regions: the share of tokens in each
        cut = models[0]["regions"]
        h, v = f"{cut['entropy_cut_bits']:g} bits", f"{cut['varentropy_cut_bits2']:g} bits²"
        for name, (high_h, high_v, _) in REGIONS.items():
            label = f"{name} (H {'>' if high_h else '≤'} {h}, V {'>' if high_v else '≤'} {v})"
            shares = [m["regions"]["shares"][name] for m in models]
            rows.append([label, *("—" if x is None else f"{x:.1%}" for x in shares)])
    return ["", *(str(m["source"]) for m in models)], rows


def print_results(results: dict[str, Any], console: Console, err_console: Console) -> None:
    """The figure table, each model's notes, and the warnings (on `err_console`, yellow)."""
    headers, rows = figure_rows(results)
    table = Table(*headers)
    for row in rows:
        table.add_row(*row)
    Console(file=console.file, width=max(console.width, 120), soft_wrap=True).print(table)
    for m in results["models"]:
        for note in m["notes"]:
            console.print(f"{m['source']}: {note}", markup=False, highlight=False)
    for w in results["warnings"]:
        err_console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)


def plot_scores(scores: Sequence[TokenScores], out: Path) -> list[str]:
    """entropy_by_position.png (mean over documents at each token index, per model) and entropy_histogram.png
    (shared bins of 0.25 bits, as shares of tokens); bounded scores use the midpoint of their bounds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bits = []
    for s in scores:
        bits.append(entropy_bits(s))  # [T] bits, NaN where unknown
    fig, ax = plt.subplots(figsize=(9, 4))
    for s, b in zip(scores, bits, strict=True):
        ok = np.isfinite(b)
        n = np.bincount(s.positions[ok])
        mean = np.bincount(s.positions[ok], weights=b[ok]) / np.maximum(n, 1)
        ax.plot(np.flatnonzero(n), mean[n > 0], lw=1, marker=".", ms=3, label=s.source)
    ax.set(xlabel="token position", ylabel="entropy (bits)", title="next-token entropy by position")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _savefig(fig, out / "entropy_by_position.png")
    top = max([float(np.nanmax(b)) for b in bits if np.isfinite(b).any()] or [1.0])
    edges = 0.25 * np.arange(int(top // 0.25) + 2)  # shared by every model
    fig, ax = plt.subplots(figsize=(9, 4))
    for s, b in zip(scores, bits, strict=True):
        if np.isfinite(b).any():
            ax.hist(b[np.isfinite(b)], edges, histtype="step", density=True, label=s.source)
    ax.set(xlabel="entropy (bits)", ylabel="density of tokens", title="next-token entropy histogram")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _savefig(fig, out / "entropy_histogram.png")
    return ["entropy_by_position.png", "entropy_histogram.png"]


def write_llm_report(
    results: dict[str, Any],
    scores: Sequence[TokenScores],
    out: str | Path,
    command: str,
    per_token: dict[str, Any] | None = None,
    cuts: RegionCuts | None = None,
) -> Path:
    """`report.md` (command, warnings, the figure table with entropix region shares, notes, plots, the highest-entropy
    sentences), `results.json` (with `per_token`'s token records and line/sentence means, `views.token_outputs`),
    `tokens.html` (the text shaded by entropy, models side by side), the PNGs (the entropy–varentropy map too) and,
    for on-policy scores, `generations.jsonl` (each sample's prompt and text) in `out`."""
    from blt.llm.views import token_outputs

    out, cuts = Path(out), cuts or RegionCuts()
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_scores(scores, out)
    if any(s.entropy_lower_nats is None for s in scores):
        plots.append(plot_map(scores, out / "entropy_varentropy.png", cuts).name)
    per_token = per_token or token_outputs(scores, Console(quiet=True), cuts=cuts)
    ends = np.cumsum([len(s) for s in scores])  # per_token["tokens"] holds each model's records in turn
    views = [unit_view(s, per_token["tokens"][e - len(s) : e]) for s, e in zip(scores, ends, strict=True)]
    write_units_html(views, out / "tokens.html", title="blt llm: next-token entropy")
    public = {"command": command, **results, **per_token}
    write_atomic(out / "results.json", lambda p: p.write_text(json.dumps(public, indent=2, ensure_ascii=False) + "\n"))
    lines = ["# blt llm", "", f"```\n{command}\n```", ""]
    lines += [f"**Warning:** {w}." for w in results["warnings"]] + [""] * bool(results["warnings"])
    lines += [markdown_table(*figure_rows(results)), ""]
    lines += [f"- {m['source']}: {note}" for m in results["models"] for note in m["notes"]]
    lines += ["", "Entropies are of the next-token distribution; bits per byte and entropy per byte are over the"]
    lines += ["scored tokens' UTF-8 bytes, the figures comparable across tokenizers. Regions: entropix's reading of"]
    lines += [
        f"entropy H and varentropy V ({cuts.describe()}): " + "; ".join(f"{k}: {v[2]}" for k, v in REGIONS.items())
    ]
    lines += ["", "Every token, shaded by its entropy with its numbers on hover: [tokens.html](tokens.html); as rows:"]
    lines += ["`tokens` in results.json (or `--jsonl`/`--csv`).", ""]
    lines += [f"![{p}]({p})" for p in plots]
    for spans in per_token["spans"]:
        top = sorted((r for r in spans["sentence"] if r["mean_entropy_bits"] is not None), key=_by_entropy)[:5]
        if top:
            lines += ["", f"Highest mean entropy sentences, {spans['model']}:", ""]
            table = [[f"{r['mean_entropy_bits']:.2f}", str(r["tokens"]), _one_line(r["text"])] for r in top]
            lines += [markdown_table(["mean H (bits)", "tokens", "sentence"], table)]
    if rows := generation_rows(scores):  # the samples themselves: an empty one is seen at a glance
        jsonl = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        write_atomic(out / "generations.jsonl", lambda p: p.write_text(jsonl, encoding="utf-8"))
        lines += ["", f"The {len(rows)} generated samples: [generations.jsonl](generations.jsonl)."]
    write_atomic(out / "report.md", lambda p: p.write_text("\n".join(lines) + "\n", encoding="utf-8"))
    return out / "report.md"


def _by_entropy(row: dict[str, Any]) -> float:
    return -float(row["mean_entropy_bits"])


def _one_line(text: str, width: int = 100) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"
