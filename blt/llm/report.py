"""LLM runs for `blt llm`: a model spec (`blt:NAME` for the byte model, a Hugging Face name or directory, a .gguf
file) or an API logprobs file → one `TokenScores` (`score_source`); the figures of several side by side
(`llm_results`, `figure_rows`) with a warning when their tokenizers differ; `report.md`, `results.json` and PNG
plots (`write_llm_report`); and the patcher's global, monotonic and budget rules on token entropies
(`segment_tokens` → `TokenPatches`, shown in the terminal, as HTML or as a plot). Nats inside, bits in tables and
plots.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from blt.bytelm.entropy import LN2
from blt.errors import BltError
from blt.files import write_atomic
from blt.llm.scorers import TokenScores, aggregate, concat_scores, generate_hf, load_hf, score_byte_model, score_hf
from blt.patching.calibration import calibrate_threshold
from blt.patching.rules import patch_starts
from blt.report.markdown import markdown_table
from blt.report.plots import _savefig
from blt.report.terminal import PATCH_STYLES
from blt.report.text import char_spans

BYTE_MODEL_PREFIX = "blt:"
TOKENIZER_WARNING = "not comparable token by token; compare entropy per byte"
META = (("mode", "mode"), ("chat_template", "chat template"), ("tokenizer", "tokenizer"), ("vocab_size", "vocab size"))
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
    chat: bool = False,
    user: str = "",
    context: int | None = None,
    stride: int | None = None,
    **load_kw: Any,
) -> TokenScores:
    """One `TokenScores` of `texts` (documents) under `model`: `blt:NAME` is the byte model (`blt:default` the
    bundled one), anything else a Hugging Face name, directory or .gguf file (`load_kw`: `load_hf`'s options).
    `generate=N`: on-policy, N sampled tokens after each text as a prompt. `logprobs_json`: an API logprobs file
    (no model, no texts), read with `parse_logprobs_json`."""
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
    if model.startswith(BYTE_MODEL_PREFIX):
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
    if generate:
        kw = dict(n_tokens=generate, samples=samples, temperature=temperature, top_p=top_p, seed=seed, chat=chat)
        return concat_scores(generate_hf(hf, texts, **kw))
    return score_hf(hf, texts, context=context, stride=stride, chat=chat, user=user)


# --------------------------------------------------------------------------------------------- tables, reports
def llm_results(scores: Sequence[TokenScores]) -> dict[str, Any]:
    """{"models": [`aggregate` of each], "warnings": [...]}: a warning when tokenizers or modes differ."""
    warnings = []
    if len({s.tokenizer for s in scores}) > 1:
        names = "; ".join(f"{s.source}: {s.tokenizer}" for s in scores)
        warnings.append(f"tokenizers differ ({names}): {TOKENIZER_WARNING}")
    if len({s.mode for s in scores}) > 1:
        warnings.append("modes differ (" + ", ".join(f"{s.source}: {s.mode}" for s in scores) + ")")
    warnings += [w for s in scores for w in sample_warnings(s)]
    return {"models": [aggregate(s) for s in scores], "warnings": warnings}


def sample_warnings(s: TokenScores) -> list[str]:
    """On-policy samples that say nothing: empty ones (the first token ended the sequence), which is what an
    instruct model does with a bare prompt, and a chat template left unapplied."""
    if s.prompts is None:
        return []
    n_samples = len(s.prompts)
    text_bytes = np.bincount(s.doc_ids, [len(b) for b in s.token_bytes], minlength=n_samples)  # [samples]
    empty = int((text_bytes == 0).sum())
    unapplied = s.has_chat_template and not s.chat_template
    hint = "; the tokenizer has a chat template (an instruct model?): pass --chat" if unapplied else ""
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
        h = s.entropy_nats if s.entropy_lower_nats is None else (s.entropy_lower_nats + s.entropy_upper_nats) / 2
        bits.append(h / LN2)  # [T] bits, NaN where unknown
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


def write_llm_report(results: dict[str, Any], scores: Sequence[TokenScores], out: str | Path, command: str) -> Path:
    """`report.md` (command, warnings, the figure table, notes, plots), `results.json`, the PNGs and, for on-policy
    scores, `generations.jsonl` (each sample's prompt and text) in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_scores(scores, out)
    public = {"command": command, **results}
    write_atomic(out / "results.json", lambda p: p.write_text(json.dumps(public, indent=2, ensure_ascii=False) + "\n"))
    lines = ["# blt llm", "", f"```\n{command}\n```", ""]
    lines += [f"**Warning:** {w}." for w in results["warnings"]] + [""] * bool(results["warnings"])
    lines += [markdown_table(*figure_rows(results)), ""]
    lines += [f"- {m['source']}: {note}" for m in results["models"] for note in m["notes"]]
    lines += ["", "Entropies are of the next-token distribution; bits per byte and entropy per byte are over the"]
    lines += ["scored tokens' UTF-8 bytes, the figures comparable across tokenizers.", ""]
    lines += [f"![{p}]({p})" for p in plots]
    if rows := generation_rows(scores):  # the samples themselves: an empty one is seen at a glance
        jsonl = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        write_atomic(out / "generations.jsonl", lambda p: p.write_text(jsonl, encoding="utf-8"))
        lines += ["", f"The {len(rows)} generated samples: [generations.jsonl](generations.jsonl)."]
    write_atomic(out / "report.md", lambda p: p.write_text("\n".join(lines) + "\n", encoding="utf-8"))
    return out / "report.md"


# ---------------------------------------------------------------------------------------------- token patches
TOKEN_RULES = ("global", "monotonic", "budget")
RULE_VALUE = {"global": "threshold", "monotonic": "relative threshold", "budget": "budget"}  # what each rule cuts at


@dataclass
class TokenPatches:
    """Patches of a token stream: `starts[i]` is the token index where patch i begins (starts[0] == 0)."""

    tokens: list[str]
    token_bytes: list[bytes]
    starts: np.ndarray  # [P] int64 token indices
    entropies_nats: np.ndarray  # [T] float64 next-token entropy of each token
    rule: str
    threshold_nats: float  # the rule's value: the global threshold, the monotonic rule's relative one, the budget

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(np.append(self.starts, len(self.tokens)))

    @property
    def held_nats(self) -> np.ndarray:
        """[P] float64: the summed entropy of each patch's tokens (what the budget rule holds under its budget)."""
        return np.add.reduceat(self.entropies_nats, self.starts) if len(self.starts) else np.zeros(0)

    def summary(self) -> str:
        per = len(self.tokens) / max(len(self.starts), 1)
        value = f"{RULE_VALUE[self.rule]} {self.threshold_nats:.4f} nats"
        if self.rule == "budget" and len(self.starts):  # a budget is per patch; the mean held says how full they are
            value += f" per patch (mean held {float(self.held_nats.mean()):.4f})"
        return f"{len(self.starts)} patches, {len(self.tokens)} tokens, {per:.2f} tokens/patch, {value}"

    def as_json(self) -> dict[str, Any]:
        """Lengths, starts, tokens, entropies and the rule's value: `budget_nats` for the budget rule, else
        `threshold_nats` (the monotonic rule's relative threshold)."""
        return {
            "rule": self.rule,
            "lengths": self.lengths.tolist(),
            "starts": self.starts.tolist(),
            "tokens": self.tokens,
            "entropies_nats": [round(float(x), 6) for x in self.entropies_nats],
            "budget_nats" if self.rule == "budget" else "threshold_nats": self.threshold_nats,
            "tokens_per_patch": len(self.tokens) / max(len(self.starts), 1),
        }


def check_threshold(
    threshold: float | None,
    target_tokens_per_patch: float | None,
    *,
    rule: str = "global",
    budget: float | None = None,
) -> None:
    """The options of a token-patch rule, checked before anything is scored: the threshold rules take --threshold
    and the budget rule --budget, or --target-tokens-per-patch instead (exactly one of the two); a value is ≥ 0
    nats, a target finite and > 0."""
    if rule not in TOKEN_RULES:
        raise BltError(f"token patches support the rules {', '.join(TOKEN_RULES)}, not {rule!r}")
    if budget is not None and rule != "budget":  # else it would be ignored without a word
        raise BltError(f"--budget sets the budget rule's nats per patch; the {rule} rule has none: add --rule budget")
    if threshold is not None and rule == "budget":
        raise BltError(
            "--threshold is for the global and monotonic rules; the budget rule takes --budget NATS (the summed "
            "token entropy a patch may hold): use --budget, or --target-tokens-per-patch to calibrate it"
        )
    value, option = (budget, "--budget") if rule == "budget" else (threshold, "--threshold")
    if (value is None) == (target_tokens_per_patch is None):
        what = "nats per patch" if rule == "budget" else "nats"
        raise BltError(f"pass exactly one of {option} X ({what}) or --target-tokens-per-patch X (calibrates it)")
    if value is not None and not value >= 0:  # NaN too
        raise BltError(f"{option} must be ≥ 0 nats, got {value}; or pass --target-tokens-per-patch X to calibrate it")
    if target_tokens_per_patch is not None and not 0 < target_tokens_per_patch < math.inf:  # NaN too
        raise BltError(
            f"--target-tokens-per-patch must be a finite number > 0 of tokens per patch, got {target_tokens_per_patch}"
            " (1 means a patch per token)"
        )


def _token_starts(h: np.ndarray, rule: str, value: float, max_patch_length: int | None) -> np.ndarray:
    key = {"global": "threshold", "monotonic": "relative_threshold", "budget": "budget"}[rule]
    return np.asarray(patch_starts(h, rule=rule, max_patch_length=max_patch_length, **{key: value}))


def segment_tokens(
    scores: TokenScores,
    *,
    rule: str = "global",
    threshold: float | None = None,
    target_tokens_per_patch: float | None = None,
    max_patch_length: int | None = None,
    budget: float | None = None,
) -> TokenPatches:
    """`patch_starts` on the token entropies of one text. The global and monotonic rules cut at a `threshold`
    (nats), the budget rule holds at most `budget` nats of summed token entropy per patch (`blt.patching.budget`);
    either value is given or calibrated exactly to a mean number of tokens per patch with `calibrate_threshold`."""
    check_threshold(threshold, target_tokens_per_patch, rule=rule, budget=budget)
    h = scores.entropy_nats
    if scores.entropy_lower_nats is not None or not np.isfinite(h).all() or len(np.unique(scores.doc_ids)) > 1:
        raise BltError("token patches need exact entropies of one text (a model, not a logprobs file)")
    value = budget if rule == "budget" else threshold
    if value is None:
        assert target_tokens_per_patch is not None  # check_threshold: a value or a target
        # the reachable range in tokens (calibrate_threshold's own message counts bytes): value 0 cuts the most
        most, fewest = (len(_token_starts(h, rule, v, max_patch_length)) for v in (0.0, math.inf))
        if not len(h) / most <= target_tokens_per_patch <= len(h) / fewest:
            raise BltError(
                f"--target-tokens-per-patch {target_tokens_per_patch:g} is out of reach: the {rule} rule on these "
                f"{len(h)} tokens gives {len(h) / most:.4g} to {len(h) / fewest:.4g} tokens/patch"
                f"{'' if max_patch_length is None else f' (--max-patch-length {max_patch_length})'}"
            )
        value = calibrate_threshold(h, target_tokens_per_patch, rule=rule, max_patch_length=max_patch_length)
    starts = _token_starts(h, rule, value, max_patch_length)
    return TokenPatches(list(scores.tokens), list(scores.token_bytes), starts, h, rule, float(value))


def _shown(token: bytes) -> str:
    text = token.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)


def render_token_patches(patches: TokenPatches, console: Console) -> None:
    """The text with patches in alternating background colours (│ between patches where the output has no
    colours), then a summary; a character split between tokens of two patches shows whole, as in `render_terminal`."""
    data, out, plain = b"".join(patches.token_bytes), Text(), console.color_system is None
    token_start = np.cumsum([0, *map(len, patches.token_bytes)])[:-1]  # [T] byte offset of each token
    patch_of = np.searchsorted(token_start[patches.starts], np.arange(len(data)), side="right") - 1  # [n bytes]
    for start, end, label in char_spans(data):
        if plain and start > 0 and patch_of[end - 1] != patch_of[start - 1]:  # a patch starts at or inside it
            out.append("│")
        shown = label if label.isprintable() or label == "\n" else repr(label)[1:-1]
        out.append(shown, style=PATCH_STYLES[int(patch_of[start]) % 2])
    console.print(out)
    console.print(patches.summary(), highlight=False)


def token_patches_html(patches: TokenPatches, title: str = "blt llm patches") -> str:
    """A self-contained page: one box per patch, each token shaded by its entropy (bits on hover)."""
    peak = max(float(patches.entropies_nats.max(initial=0)), 1e-9)
    parts = []
    for a, b in zip(patches.starts, np.append(patches.starts[1:], len(patches.tokens)), strict=True):
        spans = []
        for t in range(a, b):
            h = patches.entropies_nats[t]
            shown = html.escape(_shown(patches.token_bytes[t])).replace(" ", "&nbsp;").replace("\n", "↵<br>")
            spans.append(
                f"<span style='background:rgba(230,57,70,{h / peak:.3f})' title='{h / LN2:.2f} bits'>{shown}</span>"
            )
        parts.append("<div class='patch'>" + "".join(spans) + "</div>")
    style = (
        "body{font-family:ui-monospace,monospace;line-height:2.2;max-width:70em;margin:2em auto}"
        ".patch{display:inline;border:1px solid #457b9d;border-radius:3px;padding:2px 1px;margin:0 1px}"
    )
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
    body = f"<h3>{html.escape(patches.summary())}</h3>{''.join(parts)}"
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>\n"


def plot_token_patches(patches: TokenPatches, path: str | Path, max_tokens: int = 200) -> Path:
    """Per-token entropy (bits) with patch boundaries and the global rule's threshold, or the budget rule's budget
    beside each patch's running sum of entropy; token text on the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(patches.tokens), max_tokens)
    fig, ax = plt.subplots(figsize=(max(8.0, n * 0.3), 3.8))
    ax.plot(np.arange(n), patches.entropies_nats[:n] / LN2, marker="o", ms=3, lw=1, color="#1d3557")
    if patches.rule == "budget":  # what the rule compares with the budget: the open patch's summed entropy
        held = np.cumsum(patches.entropies_nats)
        held -= np.repeat(held[patches.starts] - patches.entropies_nats[patches.starts], patches.lengths)  # [T]
        ax.step(np.arange(n), held[:n] / LN2, where="mid", color="#457b9d", lw=1, label="patch's summed entropy")
        ax.axhline(patches.threshold_nats / LN2, color="#e63946", ls="--", lw=1, label="budget")
        ax.legend(loc="upper right")
    elif patches.rule == "global":
        ax.axhline(patches.threshold_nats / LN2, color="#e63946", ls="--", lw=1, label="threshold")
        ax.legend(loc="upper right")
    for s in patches.starts[1:]:
        if s < n:
            ax.axvline(s - 0.5, color="#a8dadc", lw=1)
    labels = [_shown(t).replace(" ", "␣").replace("\n", "↵") for t in patches.token_bytes[:n]]
    ax.set_xticks(np.arange(n), labels, rotation=90, fontsize=7)
    ax.set(xlim=(-0.5, n - 0.5), ylabel="entropy (bits)")
    ax.set_title(patches.summary(), fontsize=9)
    fig.tight_layout()
    _savefig(fig, Path(path))
    return Path(path)
