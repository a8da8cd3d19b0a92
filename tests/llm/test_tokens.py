"""Token by token: per-token records (golden offsets and units), entropix regions, line and sentence means, the
JSONL/CSV files, the rank of the actual token (against a float64 argsort on a tiny Llama, the byte model and API
top-k), and API entropy bounds bracketing the true entropy of every token of a synthetic logprobs file."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import rank_bounds, save_tiny_hf
from hypothesis import given
from hypothesis import strategies as st

from blt.bytelm.entropy import LN2, position_stats, score
from blt.bytelm.model import ByteLM
from blt.config import BOS_ID
from blt.errors import BltError
from blt.llm.logprobs import parse_logprobs_json
from blt.llm.scorers import TokenScores, generate_hf, load_hf, score_hf
from blt.llm.tokens import (
    REGIONS,
    TOKEN_FIELDS,
    document_bytes,
    region_shares,
    span_bounds,
    span_records,
    token_records,
    token_regions,
    write_token_records,
)

META = dict(source="m", tokenizer="t", vocab_size=9, mode="teacher-forced", chat_template=False, context=8)


def golden_scores() -> TokenScores:
    """Doc 0 = "a" + "bc", doc 1 = "d" (a new document restarts the byte offsets: [0,1), [1,3) | [0,1)). Entropy 1, 4,
    4 bits and varentropy 6, 1, 6 bits² at the cuts 3 bits / 5 bits²: exploring (low H, high V), uncertain (high H,
    low V), branching (both high). Surprisal 2, 0, 1 bits."""
    h, v, s = np.array([1.0, 4, 4]) * LN2, np.array([6.0, 1, 6]) * LN2**2, np.array([2.0, 0, 1]) * LN2
    return TokenScores(
        ["a", "bc", "d"], [b"a", b"bc", b"d"], s, h, v, np.array([0.5, 0.1, 0.2]), **META,
        doc_ids=np.array([0, 0, 1]), positions=np.array([0, 1, 0]), rank=np.array([1.0, 7, np.nan]),
    )  # fmt: skip


def test_records_golden() -> None:
    rows = list(token_records(golden_scores()))
    assert [tuple(r) for r in rows] == [TOKEN_FIELDS] * 3
    assert [(r["doc"], r["index"], r["byte_start"], r["byte_end"]) for r in rows] == [
        (0, 0, 0, 1),
        (0, 1, 1, 3),
        (1, 0, 0, 1),
    ]
    assert [r["entropy_bits"] for r in rows] == pytest.approx([1, 4, 4])
    assert [r["varentropy_bits2"] for r in rows] == pytest.approx([6, 1, 6])
    assert [r["surprisal_bits"] for r in rows] == pytest.approx([2, 0, 1])
    assert [r["region"] for r in rows] == ["exploring", "uncertain", "branching"]
    assert [r["rank"] for r in rows] == [1, 7, None] and rows[1]["bytes_hex"] == "6263"
    assert rows[0]["entropy_lower_bits"] is None and rows[0]["censored"] is False
    json.dumps(rows)


def test_regions_at_the_cuts_and_unknown() -> None:
    """High means strictly above the cut: (3, 5) is confident; NaN (API logprobs) has no region."""
    got = token_regions(np.array([3.0, 3.01, 0.0, 9, np.nan]), np.array([5.0, 0, 5.01, 9, 1]))
    assert got.tolist() == ["confident", "uncertain", "exploring", "branching", None]
    assert region_shares(got) == {"confident": 0.25, "exploring": 0.25, "uncertain": 0.25, "branching": 0.25}
    assert region_shares(np.array([None], dtype=object)) == dict.fromkeys(REGIONS)


@given(st.lists(st.tuples(st.floats(0, 20), st.floats(0, 50)), min_size=1, max_size=50))
def test_region_shares_sum_to_one(hv: list[tuple[float, float]]) -> None:
    h, v = np.array(hv).T
    shares = region_shares(token_regions(h, v))
    assert math.isclose(sum(shares.values()), 1.0)  # type: ignore[arg-type]


def test_span_bounds_golden() -> None:
    """Lines end after their newline; sentences after . ! ? (closing quotes) and white space, or at a blank line."""
    text = b'One. Two!\nThree "four?" five\n\nsix'
    assert span_bounds(text, "line") == [0, 10, 29, 30, 33]
    assert span_bounds(text, "sentence") == [0, 5, 10, 24, 30, 33]
    assert span_bounds(b"no end", "sentence") == [0, 6] and span_bounds(b"", "line") == [0]
    with pytest.raises(BltError, match="spans are by line or sentence"):
        span_bounds(b"x", "word")


def test_span_means_golden() -> None:
    """Doc 0 "a" "bc" is one line/sentence: mean H (1 + 4) / 2 = 2.5 bits, max 4, surprisal 2 + 0 = 2 bits over 3
    bytes; doc 1 its own span."""
    sc = golden_scores()
    rows = span_records(list(token_records(sc)), document_bytes(sc), "line")
    assert [(r["doc"], r["text"], r["tokens"]) for r in rows] == [(0, "abc", 2), (1, "d", 1)]
    assert rows[0]["mean_entropy_bits"] == pytest.approx(2.5) and rows[0]["max_entropy_bits"] == pytest.approx(4)
    assert rows[0]["bits_per_byte"] == pytest.approx(2 / 3) and rows[0]["mean_surprisal_bits"] == pytest.approx(1)


def test_jsonl_and_csv_files(tmp_path: Path) -> None:
    rows = list(token_records(golden_scores()))
    write_token_records(rows, tmp_path / "t.jsonl")
    write_token_records(rows, tmp_path / "t.csv", "csv")
    assert [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()] == rows
    with open(tmp_path / "t.csv", newline="") as f:
        back = list(csv.DictReader(f))
    assert [r["token"] for r in back] == ["a", "bc", "d"] and back[2]["rank"] == "" and back[1]["rank"] == "7"
    assert float(back[1]["entropy_bits"]) == pytest.approx(4) and list(back[0]) == list(TOKEN_FIELDS)
    assert not list(tmp_path.glob(".*"))  # the temp files were renamed into place


# ----------------------------------------------------------------------------------------------------- ranks
def test_position_stats_rank_golden() -> None:
    """logits [3, 1, 2, 2]: target 0 has rank 1, target 2 rank 2 (the tie with 3 counts in its favour), target 1 rank
    4."""
    logits = torch.tensor([[3.0, 1, 2, 2]] * 3)
    assert position_stats(logits, torch.tensor([0, 2, 1]))[4].tolist() == [1, 2, 4]


def test_hf_ranks_match_an_argsort(tmp_path: Path) -> None:
    """Every scoring path (decoder + output layer in blocks, KV-cache chunks, generation) gives each token's rank
    under one float32 forward."""
    text = "the quick brown fox jumps over the lazy dog; héllo wörld ☃ 12"
    hf = load_hf(save_tiny_hf(tmp_path / "tiny", text, None, seed=3))
    sc = score_hf(hf, text)
    ids = [hf.tokenizer.bos_token_id, *hf.encode(text)]
    with torch.no_grad():
        logits = hf.model(torch.tensor([ids])).logits[0, :-1].float()
    lo, hi = rank_bounds(logits, torch.tensor(ids[1:]), 1e-4)
    assert ((lo <= sc.rank) & (sc.rank <= hi)).all() and (sc.rank >= 1).all()
    hf.__dict__["split"] = None  # logits through the KV cache
    assert (
        np.array_equal(score_hf(hf, text).rank, sc.rank)
        or ((lo <= score_hf(hf, text).rank) & (score_hf(hf, text).rank <= hi)).all()
    )
    gen = generate_hf(hf, "the", n_tokens=5, temperature=0)  # greedy: every chosen token is the top one
    assert gen[0].rank.tolist() == [1.0] * len(gen[0])


def test_byte_model_ranks(model_factory: Callable[..., ByteLM]) -> None:
    """`score(..., extra_stats=True)` ranks each byte among the model's 260 outputs under one forward of
    [BOS, bytes[:-1]]."""
    lm = model_factory()
    data = "héllo wörld, the byte model".encode()
    s = score(lm, data, extra_stats=True)[0]
    with torch.no_grad():
        logits = lm(torch.tensor([[BOS_ID, *data[:-1]]]))[0].float()
    lo, hi = rank_bounds(logits, torch.tensor(list(data)), 1e-5)
    assert s.rank is not None and ((lo <= s.rank) & (s.rank <= hi)).all() and len(set(s.rank.tolist())) > 3


# ---------------------------------------------------------------------------------------------- API logprobs
def test_api_bounds_bracket_the_true_entropy_per_token(tmp_path: Path) -> None:
    """A synthetic OpenAI chat response over a 64-token vocabulary: 40 positions of known random distributions (some
    peaked, some flat), top 5 reported, the sampled token drawn from each. Per token the lower and upper bounds
    bracket the true entropy, and the rank is the true rank when the sampled token is in the top 5 (else None)."""
    rng, V, k = np.random.default_rng(0), 64, 5
    content, truth, ranks = [], [], []
    for i in range(40):
        p = rng.dirichlet(np.full(V, 0.05 if i % 2 else 1.0))
        p = np.maximum(p, 1e-12) / np.maximum(p, 1e-12).sum()
        y = int(rng.choice(V, p=p))
        order = np.argsort(-p, kind="stable")
        top = [{"token": f"t{v}", "logprob": float(np.log(p[v]))} for v in order[:k]]
        content.append({"token": f"t{y}", "logprob": float(np.log(p[y])), "top_logprobs": top})
        truth.append(float(-(p * np.log2(p)).sum()))
        ranks.append(int((p > p[y]).sum()) + 1)
    path = tmp_path / "api.json"
    path.write_text(json.dumps({"object": "chat.completion", "choices": [{"logprobs": {"content": content}}]}))
    rows = list(token_records(parse_logprobs_json(path, vocab_size=V)))
    lower, upper = (np.array([r[f] for r in rows]) for f in ("entropy_lower_bits", "entropy_upper_bits"))
    assert (lower <= np.array(truth) + 1e-6).all() and (np.array(truth) <= upper + 1e-6).all()
    assert (upper - lower).max() > 0.5  # the bounds are not trivially tight here: the test can fail
    assert [r["rank"] for r in rows] == [r if r <= k else None for r in ranks] and any(r > k for r in ranks)
    assert all(r["entropy_bits"] is None and r["region"] is None for r in rows)
