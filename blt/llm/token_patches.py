"""Token patches for `blt llm segment`: the byte patcher's global, monotonic and budget rules on a model's token
entropies (`segment_tokens` → `TokenPatches`, thresholds given or calibrated to a mean number of tokens per patch),
shown in the terminal, as a self-contained HTML page or as a plot. Nats inside, bits in the page and plot.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.text import Text

from blt.bytelm.entropy import LN2
from blt.errors import BltError
from blt.llm.scorers import TokenScores
from blt.patching.calibration import calibrate_threshold
from blt.patching.rules import patch_starts
from blt.report.plots import _savefig
from blt.report.terminal import PATCH_STYLES
from blt.report.text import char_spans

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
    h, docs = scores.entropy_nats, np.asarray(scores.doc_ids)
    if scores.entropy_lower_nats is not None or not np.isfinite(h).all() or len(np.unique(docs)) > 1:
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
