"""Token patches with the budget rule (`segment_tokens(rule="budget")`, `blt llm segment --rule budget`): a golden
case derived by hand, exact calibration, parity with the rule's loop twin and its two laws on a tiny Llama's token
entropies, the CLI against the library, and each misuse as one line naming the fix."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import typer
from conftest import save_tiny_hf
from typer.testing import CliRunner

from blt.cli.llm import llm_app
from blt.errors import BltError
from blt.llm.scorers import TokenScores, score_hf
from blt.llm.token_patches import TokenPatches, segment_tokens, token_patches_html
from blt.patching.budget import _budget_mask_loop
from blt.patching.calibration import calibrate_threshold
from blt.patching.rules import patch_starts

transformers = pytest.importorskip("transformers")

TEXT = "the quick brown fox jumps over the lazy dog; héllo wörld ☃ 12"
LONG = TEXT + " the cat sat on the mat because it was warm, and the dog lay by the door." * 3
H = [1.0, 0.5, 2.0, 0.25, 0.25, 3.0, 0.5]  # nats, dyadic: every sum below is exact in float64


def token_scores(entropies: list[float]) -> TokenScores:
    """One text of single-letter tokens a, b, c, ... with these entropies (nats)."""
    tokens = [chr(ord("a") + i) for i in range(len(entropies))]
    h = np.asarray(entropies, dtype=np.float64)
    meta = dict(source="s", tokenizer="t", vocab_size=9, mode="teacher-forced", chat_template=False, context=8)
    return TokenScores(tokens, [t.encode() for t in tokens], h, h, np.zeros_like(h), np.ones_like(h), **meta)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save_tiny_hf(tmp_path_factory.mktemp("hf") / "tiny", TEXT, None, seed=1))


@pytest.fixture(scope="module")
def long_scores(hf_dir: str) -> TokenScores:
    return score_hf(hf_dir, LONG)  # 178 tokens, entropies spread over ≈ 0.1–2.5 nats


def run_llm(*args: object) -> tuple[int, str, str]:
    app = typer.Typer()
    app.add_typer(llm_app, name="llm")
    result = CliRunner().invoke(app, ["llm", *map(str, args)], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


# ------------------------------------------------------------------------------------------------- golden cases
def test_budget_golden() -> None:
    """H = 1, 0.5, 2, 0.25, 0.25, 3, 0.5 nats; a token starts a patch when the open patch's sum + its H > B.
    B = 2: a(1) +b → 1.5; +c 3.5 > 2: c starts (2); +d 2.25 > 2: d starts (0.25); +e → 0.5; +f 3.5 > 2: f starts
    (3, alone above B); +g 3.5 > 2: g starts. Patches ab|c|de|f|g, held 1.5, 2, 0.5, 3, 0.5 (mean 1.5).
    B = 4: 1, 1.5, 3.5, 3.75, then e gives exactly 4.0, not above: e stays; f 7 > 4 starts; g 3.5 stays: abcde|fg.
    B = 4 with at most 2 tokens a patch: ab (full) | c +d 2.25 | e, +f 3.25 ≤ 4 | g (ef was full): ab|cd|ef|g."""
    sc = token_scores(H)
    p = segment_tokens(sc, rule="budget", budget=2.0)
    assert p.starts.tolist() == [0, 2, 3, 5, 6] and p.lengths.tolist() == [2, 1, 2, 1, 1]
    assert p.held_nats.tolist() == [1.5, 2.0, 0.5, 3.0, 0.5]
    assert p.summary() == "5 patches, 7 tokens, 1.40 tokens/patch, budget 2.0000 nats per patch (mean held 1.5000)"
    got = p.as_json()
    assert got["rule"] == "budget" and got["budget_nats"] == 2.0 and "threshold_nats" not in got
    assert got["lengths"] == [2, 1, 2, 1, 1] and got["tokens_per_patch"] == 1.4
    assert segment_tokens(sc, rule="budget", budget=4.0).starts.tolist() == [0, 5]
    assert segment_tokens(sc, rule="budget", budget=4.0, max_patch_length=2).starts.tolist() == [0, 2, 4, 6]
    assert "budget 2.0000 nats per patch" in token_patches_html(p)


def test_budget_calibration_golden() -> None:
    """Target 7/3 tokens/patch on H: 3 patches. Any B < 3.5 cuts at c (1 + 0.5 + 2 = 3.5 > B), then c + d + e
    = 2.5 and + f = 5.5 > B cuts at f, and f + g = 3.5 > B at g: 4 patches. B = 3.5 keeps abc (3.5, not above),
    cuts at d (3.75), keeps def (3.5), cuts at g (4.0): abc|def|g. The smallest budget with 3 patches is 3.5."""
    p = segment_tokens(token_scores(H), rule="budget", target_tokens_per_patch=7 / 3)
    assert p.threshold_nats == 3.5 and p.starts.tolist() == [0, 3, 6]
    threshold = segment_tokens(token_scores(H), target_tokens_per_patch=7 / 3)  # global: cuts at the 2 highest H
    assert threshold.starts.tolist() == [0, 2, 5] and "threshold 0.5000 nats" in threshold.summary()


# ------------------------------------------------------------------------------------------ laws on a real model
@pytest.mark.parametrize("max_patch_length", [None, 3])
def test_budget_matches_the_loop_twin_and_its_laws(long_scores: TokenScores, max_patch_length: int | None) -> None:
    """On a tiny Llama's token entropies, at budgets from below the smallest entropy to above the text's sum: the
    starts are the rule's loop twin's; a patch of ≥ 2 tokens holds ≤ B; a patch that did not end by length would
    go over B with the next patch's first token (no patch ends early)."""
    h = long_scores.entropy_nats
    for b in [0.05, 0.5, 1.0, 2.0, 3.7, 8.0, float(h.sum()) + 1]:
        p = segment_tokens(long_scores, rule="budget", budget=b, max_patch_length=max_patch_length)
        assert p.starts.tolist() == np.flatnonzero(_budget_mask_loop(h, b, None, max_patch_length)).tolist()
        assert p.lengths.sum() == len(h) and p.starts[0] == 0
        held, lengths = p.held_nats, p.lengths
        assert (held[lengths >= 2] <= b + 1e-12).all()
        full = lengths == (max_patch_length or len(h) + 1)
        assert (held[:-1] + h[p.starts[1:]] > b)[~full[:-1]].all()
        if max_patch_length is not None:
            assert lengths.max() <= max_patch_length


@pytest.mark.parametrize("max_patch_length", [None, 8])
def test_calibration_lands_within_one_patch_of_the_target(
    long_scores: TokenScores, max_patch_length: int | None
) -> None:
    """`--target-tokens-per-patch X` gives calibrate_threshold's exact budget, and a patch count within one of
    T / X (the closest count any budget reaches, here always within one)."""
    h = long_scores.entropy_nats
    for target in [1.2, 1.5, 2.0, 3.0, 4.5, 7.0]:
        p = segment_tokens(
            long_scores, rule="budget", target_tokens_per_patch=target, max_patch_length=max_patch_length
        )
        assert p.threshold_nats == calibrate_threshold(h, target, rule="budget", max_patch_length=max_patch_length)
        assert abs(len(p.starts) - len(h) / target) <= 1, target
        below = np.nextafter(p.threshold_nats, 0)
        below = segment_tokens(long_scores, rule="budget", budget=below, max_patch_length=max_patch_length)
        assert len(below.starts) > len(p.starts) or p.threshold_nats == 0  # the smallest such budget


# ------------------------------------------------------------------------------------------------------- misuse
MISUSE = [
    (dict(rule="global", budget=2.0, threshold=1.0), "--budget sets the budget rule's nats per patch; the global rule"),
    (dict(rule="monotonic", budget=2.0, target_tokens_per_patch=2.0), "add --rule budget"),
    (dict(rule="budget", threshold=1.0), "the budget rule takes --budget NATS"),
    (dict(rule="budget"), "pass exactly one of --budget X (nats per patch) or --target-tokens-per-patch X"),
    (dict(rule="budget", budget=2.0, target_tokens_per_patch=3.0), "pass exactly one of --budget X"),
    (dict(rule="budget", budget=-1.0), "--budget must be ≥ 0 nats, got -1.0; or pass --target-tokens-per-patch"),
    (dict(rule="budget", budget=math.nan), "--budget must be ≥ 0 nats, got nan"),
    (dict(rule="global", threshold=-0.5), "--threshold must be ≥ 0 nats, got -0.5"),
    (dict(rule="budget", target_tokens_per_patch=0.0), "--target-tokens-per-patch must be a finite number > 0"),
    (dict(rule="budget", target_tokens_per_patch=8.0), "8 is out of reach: the budget rule on these 7 tokens gives"),
    (dict(rule="budget", target_tokens_per_patch=3, max_patch_length=2), "gives 1 to 1.75 tokens/patch (--max-pat"),
    (dict(rule="combined", threshold=1.0), "token patches support the rules global, monotonic, budget"),
]


@pytest.mark.parametrize(("kw", "message"), MISUSE)
def test_misuse_is_one_line_naming_the_fix(kw: dict, message: str) -> None:
    with pytest.raises(BltError) as err:
        segment_tokens(token_scores(H), **kw)
    assert message in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------------------- CLI
def test_cli_budget_equals_the_library(hf_dir: str, tmp_path: Path) -> None:
    h = score_hf(hf_dir, TEXT).entropy_nats
    code, out, err = run_llm("segment", "--model", hf_dir, "--text", TEXT, "--rule", "budget", "--budget", 3, "--json")
    assert code == 0, err
    got = json.loads(out)
    assert got["starts"] == patch_starts(h, rule="budget", budget=3.0).tolist() and got["budget_nats"] == 3.0
    args = ("segment", "--model", hf_dir, "--text", TEXT, "--rule", "budget", "--target-tokens-per-patch", 3)
    code, out, err = run_llm(*args, "--json")
    assert code == 0, err
    assert json.loads(out)["budget_nats"] == calibrate_threshold(h, 3, rule="budget")
    code, out, err = run_llm(*args, "--html", tmp_path / "p.html", "--plot", tmp_path / "p.png")
    assert code == 0, err
    summary = out.strip().splitlines()[-1]
    assert "tokens/patch, budget" in summary and "nats per patch" in summary and "threshold" not in summary
    assert "budget" in (tmp_path / "p.html").read_text() and (tmp_path / "p.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "2"], "the global rule has none: add --rule budget"),
        (["--rule", "budget", "--threshold", "1"], "the budget rule takes --budget NATS"),
        (["--rule", "budget"], "pass exactly one of --budget X"),
        (["--rule", "budget", "--budget", "-1"], "--budget must be ≥ 0 nats"),
        (["--rule", "budget", "--target-tokens-per-patch", "500"], "500 is out of reach: the budget rule on these"),
    ],
)
def test_cli_misuse_is_one_red_line(hf_dir: str, args: list[str], message: str) -> None:
    code, out, err = run_llm("segment", "--model", hf_dir, "--text", TEXT, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error:"), (code, out, err)
    assert message in err


def test_token_patches_keep_their_threshold_field_for_the_threshold_rules() -> None:
    """The global and monotonic rules' JSON still says `threshold_nats` (existing readers of it keep working)."""
    p = TokenPatches(["a"], [b"a"], np.array([0]), np.array([1.0]), "monotonic", 0.5)
    assert p.as_json()["threshold_nats"] == 0.5 and "relative threshold 0.5000 nats" in p.summary()
