"""Entropy bounds from top-k logprobs against known full distributions (random, brute force, a golden case) and the
JSON forms that carry them: OpenAI chat, legacy completions, vLLM, JSONL files; their errors."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blt.bytelm.entropy import LN2
from blt.errors import BltError
from blt.llm.logprobs import entropy_bounds_nats, parse_logprobs_json
from blt.llm.scorers import aggregate


# ------------------------------------------------------------------------------------------ logprobs: bounds
def entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def chat_response(dists: list[np.ndarray], sampled: list[int], k: int, censor: bool = True) -> dict:
    """An OpenAI chat completion whose position t reports the top k of dists[t] and samples token sampled[t]
    (logprob -9999.0 when it lies outside the top k and `censor`); zero probabilities are reported as -9999.0."""
    content = []
    for p, y in zip(dists, sampled, strict=True):
        top = np.argsort(-p, kind="stable")[:k]
        lp = -9999.0 if censor and y not in top else float(np.log(p[y]))
        logp = [float(np.log(p[v])) if p[v] > 0 else -9999.0 for v in top]  # vLLM clamps -inf to -9999.0
        alternatives = [
            {"token": f"t{v}", "logprob": x, "bytes": list(f"t{v}".encode())} for v, x in zip(top, logp, strict=True)
        ]
        content.append({"token": f"t{y}", "logprob": lp, "bytes": list(f"t{y}".encode()), "top_logprobs": alternatives})
    return {"object": "chat.completion", "model": "m", "choices": [{"index": 0, "logprobs": {"content": content}}]}


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 40), st.data())
def test_bounds_hold_for_random_distributions(V: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(1, V))
    conc = data.draw(st.sampled_from([0.05, 0.3, 1.0, 10.0]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    dists = [rng.dirichlet([conc] * V) for _ in range(3)]
    dists = [np.maximum(p, 1e-12) / np.maximum(p, 1e-12).sum() for p in dists]
    sampled = [int(rng.integers(V)) for _ in dists]
    censor = data.draw(st.booleans())
    sc = parse_logprobs_json(chat_response(dists, sampled, k, censor=censor), vocab_size=V)
    for t, (p, y) in enumerate(zip(dists, sampled, strict=True)):
        assert sc.entropy_lower_nats[t] - 1e-9 <= entropy(p) <= sc.entropy_upper_nats[t] + 1e-9
        top = np.argsort(-p, kind="stable")[:k]
        known = p[top].sum() + (p[y] if y not in top and not censor else 0)
        assert sc.residual_mass[t] == pytest.approx(1 - known, abs=1e-9)
        assert sc.censored[t] == (censor and y not in top)
        assert sc.top1_mass[t] == pytest.approx(p.max())
        if not sc.censored[t]:
            assert sc.surprisal_nats[t] == pytest.approx(-math.log(p[sampled[t]]))


@pytest.mark.parametrize(("q", "V"), [([0.5, 0.2], 6), ([0.4, 0.3, 0.1], 7), ([0.6], 4), ([0.3, 0.25, 0.25], 8)])
def test_lower_bound_is_the_minimum_and_attained(q: list[float], V: int) -> None:
    """Brute force over a grid of the M = V - k unseen probabilities (each ≤ q_k, summing to R): nothing is below
    the lower bound; the packing (⌊R/q_k⌋ tokens at q_k, the rest r in one) attains it; the uniform attains the
    upper bound."""
    known, cap = np.array(q), q[-1]
    lower, upper, R = entropy_bounds_nats(known, cap, V)
    M, grid = V - len(q), np.linspace(0, cap, 21)
    best = math.inf
    for head in itertools.product(grid, repeat=M - 1):
        last = R - sum(head)
        if -1e-12 <= last <= cap + 1e-12:
            best = min(best, entropy(np.array([*q, *head, max(last, 0)])))
    assert lower <= best + 1e-12
    n = math.floor(R / cap)
    packed = np.array([*q, *[cap] * n, R - n * cap])
    assert entropy(packed) == pytest.approx(lower, abs=1e-12) and best - lower < 0.1
    assert entropy(np.array([*q, *[R / M] * M])) == pytest.approx(upper, abs=1e-12)
    assert lower >= entropy(known) - R * math.log(cap) - 1e-12  # tighter than REFERENCE.md's simple bound


def test_bounds_golden() -> None:
    """q = (1/2, 1/4), V = 6: R = 1/4 = one token at 1/4, so lower = H(1/2, 1/4, 1/4) = 1.5 bits; upper spreads R
    over 4 tokens at 1/16: H_k + (1/4)·4 = 1 + 1 = 2 bits."""
    lower, upper, R = entropy_bounds_nats(np.array([0.5, 0.25]), 0.25, 6)
    assert (lower / LN2, upper / LN2, R) == pytest.approx((1.5, 2.0, 0.25))


# ------------------------------------------------------------------------------------------- logprobs: formats
P = [np.array([0.5, 0.25, 0.125, 0.0625, 0.0625]), np.array([0.7, 0.2, 0.05, 0.05, 0.0])]


def test_openai_chat_censored_token() -> None:
    """Position 1 samples token 3 (p = 0.05) outside the top 2: censored, surprisal NaN, bits per byte None."""
    sc = parse_logprobs_json(chat_response(P, [1, 3], k=2), vocab_size=5)
    assert sc.censored.tolist() == [False, True] and np.isnan(sc.surprisal_nats[1])
    assert sc.surprisal_nats[0] == pytest.approx(math.log(4)) and sc.token_bytes == [b"t1", b"t3"]
    assert sc.tokenizer == "m" and sc.chat_template and sc.mode == "on-policy" and np.isnan(sc.entropy_nats).all()
    agg = aggregate(sc)
    assert agg["censored"] == 1 and agg["bits_per_byte"] is None and "mean_entropy_bits" not in agg
    assert agg["mean_entropy_nats_lower"] == pytest.approx(sc.entropy_lower_nats.mean())
    assert agg["branching_factor_upper"] == pytest.approx(math.exp(sc.entropy_upper_nats.mean()))
    assert 0 < agg["mean_entropy_bits_lower"] <= agg["mean_entropy_bits_upper"]


def test_sampled_token_outside_top_k_with_a_value_tightens_the_bounds() -> None:
    tight = parse_logprobs_json(chat_response(P[:1], [3], k=1, censor=False), vocab_size=5)
    loose = parse_logprobs_json(chat_response(P[:1], [3], k=1, censor=True), vocab_size=5)
    assert tight.residual_mass[0] == pytest.approx(0.5 - 0.0625)
    assert loose.entropy_lower_nats[0] <= tight.entropy_lower_nats[0] <= entropy(P[0])
    assert entropy(P[0]) <= tight.entropy_upper_nats[0] <= loose.entropy_upper_nats[0]


def test_legacy_completions_and_vllm_forms() -> None:
    """Legacy: dict top_logprobs, an echoed first token with None (skipped), a "bytes:" token. vLLM chat: an
    alternative at -9999.0 (its -inf) carries no mass; a bare list of positions is accepted."""
    lp, part = np.log(P[0]), "bytes:\\xe2\\x98"  # the first two bytes of "☃"
    logprobs = {"tokens": ["a", "b", part], "token_logprobs": [None, lp[1], lp[0]]}
    logprobs["top_logprobs"] = [None, {"x": lp[0], "b": lp[1]}, {part: lp[0], "b": lp[1]}]
    legacy = {"choices": [{"text": "", "logprobs": logprobs}]}
    sc = parse_logprobs_json(legacy, vocab_size=5)
    assert sc.token_bytes == [b"b", b"\xe2\x98"] and sc.positions.tolist() == [0, 1] and not sc.chat_template
    assert sc.surprisal_nats.tolist() == pytest.approx([math.log(4), math.log(2)])
    assert (sc.entropy_lower_nats <= entropy(P[0])).all() and (entropy(P[0]) <= sc.entropy_upper_nats).all()
    entries = chat_response(P[1:], [0], k=5)["choices"][0]["logprobs"]["content"]
    assert entries[0]["top_logprobs"][-1]["logprob"] == -9999.0  # p = 0
    bare = parse_logprobs_json(entries, vocab_size=5)
    assert bare.entropy_lower_nats[0] == pytest.approx(entropy(P[1])) == pytest.approx(bare.entropy_upper_nats[0])
    vllm = {"object": "chat.completion", "choices": [{"logprobs": {"content": entries}}] * 2}
    assert parse_logprobs_json(vllm, vocab_size=5).doc_ids.tolist() == [0, 1]


def test_jsonl_files_and_malformed_json(tmp_path: Path) -> None:
    response = chat_response(P, [0, 1], k=2)
    good = tmp_path / "r.jsonl"
    good.write_text(json.dumps(response) + "\n\n" + json.dumps(response) + "\n")
    pooled = parse_logprobs_json(good, vocab_size=5)
    assert pooled.doc_ids.tolist() == [0, 0, 1, 1] and pooled.chat_template and pooled.tokenizer == "m"
    bad = tmp_path / "bad.json"
    bad.write_text('{"choices": [\n{"logprobs": \n{"content": [}}]}')
    with pytest.raises(BltError, match="line 3"):
        parse_logprobs_json(bad, vocab_size=5)
    bad.write_text(json.dumps(response) + "\n" + json.dumps(response)[:-1] + "\n")
    with pytest.raises(BltError, match="line 2 is not valid JSON"):
        parse_logprobs_json(bad, vocab_size=5)
    del response["choices"][0]["logprobs"]["content"][1]["logprob"]
    with pytest.raises(BltError, match=r"choices\[0\]\.logprobs\.content\[1\]\.logprob is missing"):
        parse_logprobs_json(response, vocab_size=5)
    response["choices"][0]["logprobs"]["content"][1]["logprob"] = "low"
    with pytest.raises(BltError, match=r"content\[1\]\.logprob must be"):
        parse_logprobs_json(response, vocab_size=5)
    with pytest.raises(BltError, match=r"choices\[0\]\.logprobs must be"):
        parse_logprobs_json({"choices": [{"logprobs": None}]}, vocab_size=5)
    with pytest.raises(BltError, match="does not exist"):
        parse_logprobs_json(tmp_path / "none.json")


def test_sums_above_one_and_missing_vocab_size_are_errors() -> None:
    response = chat_response(P, [0, 0], k=2)
    response["choices"][0]["logprobs"]["content"][1]["top_logprobs"][1]["logprob"] = math.log(0.31)  # 0.7 + 0.31
    with pytest.raises(BltError, match=r"content\[1\]: the top-k probabilities sum to 1.01"):
        parse_logprobs_json(response, vocab_size=5)
    with pytest.raises(BltError, match="--vocab-size"):
        parse_logprobs_json(chat_response(P, [0, 1], k=2))
    with pytest.raises(BltError, match="is --vocab-size 2 the model's"):
        parse_logprobs_json(chat_response(P, [0, 1], k=2), vocab_size=2)
    with pytest.raises(BltError, match=r"mass 0.4 exceeds 1 unseen tokens × q_k = 0.1"):
        entropy_bounds_nats(np.array([0.5, 0.1]), 0.1, 3)
    full = parse_logprobs_json(chat_response(P, [0, 1], k=5))  # nothing left over: no vocabulary size needed
    assert full.entropy_lower_nats == pytest.approx(full.entropy_upper_nats)


def test_files_that_are_not_utf8_json_and_bad_values_are_one_clear_error(tmp_path: Path) -> None:
    response = chat_response(P, [0, 1], k=2)
    path = tmp_path / "r.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(response).encode())  # a byte-order mark is fine
    assert len(parse_logprobs_json(path, vocab_size=5)) == 2
    path.write_bytes(json.dumps(response).encode().replace(b'"m"', b'"\xe9"'))  # Latin-1 é
    with pytest.raises(BltError, match=r"r.json is not UTF-8 \(invalid continuation byte at byte \d+\); JSON must"):
        parse_logprobs_json(path, vocab_size=5)
    path.write_text("  \n")
    with pytest.raises(BltError, match="r.json is empty"):
        parse_logprobs_json(path, vocab_size=5)
    for bad in ([300], [-1], ["a"], "abc"):
        response["choices"][0]["logprobs"]["content"][0]["bytes"] = bad
        with pytest.raises(BltError, match=r"content\[0\]\.bytes must be a list of byte values 0\.\.255"):
            parse_logprobs_json(response, vocab_size=5)
    response["choices"][0]["logprobs"]["content"][0]["bytes"] = None  # null: the token's own UTF-8
    for value, shown in ((math.nan, "nan"), (0.5, "0.5")):
        response["choices"][0]["logprobs"]["content"][0]["logprob"] = value
        with pytest.raises(BltError, match=rf"content\[0\]\.logprob must be a log-probability ≤ 0, got {shown}"):
            parse_logprobs_json(response, vocab_size=5)
    legacy = {"tokens": ["bytes:\\u2603"], "token_logprobs": [-0.1], "top_logprobs": [{"bytes:\\u2603": -0.1}]}
    with pytest.raises(BltError, match=r"tokens\[0\] must spell bytes as \\xNN escapes"):
        parse_logprobs_json(legacy, vocab_size=5)
    with pytest.raises(BltError, match=r"token must be str, got \['a+…$"):  # a long value is shortened
        parse_logprobs_json({"choices": [{"logprobs": {"content": [{"token": ["a" * 500]}]}}]}, vocab_size=5)
