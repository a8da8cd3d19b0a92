"""Entropy, surprisal and varentropy from logits; the window plan; windowed, batched scoring; corpus bits/byte."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from blt.bytelm.entropy import (
    LN2,
    ByteScores,
    autocast_for,
    corpus_bits_per_byte,
    entropy_from_logits,
    evaluate_corpus,
    plan_windows,
    score,
    surprisal_from_logits,
    varentropy_from_logits,
)
from blt.bytelm.model import ByteLM
from blt.config import BOS_ID, ModelConfig

# ---------------------------------------------------------------------------------------------- logits -> nats


def reference_f64(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Entropy, surprisal, varentropy straight from the definitions, with softmax in float64."""
    p = torch.softmax(logits.double(), dim=-1)
    info = -torch.log(p)  # -log p(v)
    h = (p * info).sum(-1)
    s = info.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    v = (p * (info - h.unsqueeze(-1)) ** 2).sum(-1)
    return h, s, v


@pytest.mark.parametrize("V", [2, 3, 256, 260])
def test_entropy_of_uniform_logits_is_ln_v(V: int) -> None:
    for c in (0.0, -7.5, 40.0):  # shifting all logits changes nothing
        logits = torch.full((2, 3, V), c)
        assert torch.allclose(entropy_from_logits(logits), torch.full((2, 3), math.log(V)), atol=1e-5)
        assert torch.allclose(varentropy_from_logits(logits), torch.zeros(2, 3), atol=1e-5)


def test_entropy_of_one_hot_logits_is_zero() -> None:
    """One logit 100, 259 at 0: H = 259·e^-100·(100 + ...) ≈ 1e-39, zero in float32."""
    logits = torch.zeros(260)
    logits[65] = 100.0
    assert entropy_from_logits(logits).item() == pytest.approx(0.0, abs=1e-6)
    assert varentropy_from_logits(logits).item() == pytest.approx(0.0, abs=1e-6)
    assert surprisal_from_logits(logits, torch.tensor(65)).item() == pytest.approx(0.0, abs=1e-6)
    assert surprisal_from_logits(logits, torch.tensor(0)).item() == pytest.approx(100.0, rel=1e-6)


def test_golden_half_quarter_quarter() -> None:
    """logits [ln 2, 0, 0] give p = [2, 1, 1] / 4 = [0.5, 0.25, 0.25]. Then -log p = [ln 2, 2 ln 2, 2 ln 2] and
    H = 0.5·ln 2 + 2·0.25·2 ln 2 = 1.5 ln 2 ≈ 1.0397 nats (1.5 bits).
    -log p is ln 2 w.p. 0.5 and 2 ln 2 w.p. 0.5: mean 1.5 ln 2, deviations ±0.5 ln 2, so the varentropy is
    0.25·(ln 2)² ≈ 0.1201 nats². Surprisal of id 0 is ln 2, of id 2 is 2 ln 2."""
    logits = torch.tensor([math.log(2), 0.0, 0.0])
    assert entropy_from_logits(logits).item() == pytest.approx(1.5 * LN2, rel=1e-6)
    assert varentropy_from_logits(logits).item() == pytest.approx(0.25 * LN2**2, rel=1e-5)
    assert surprisal_from_logits(logits, torch.tensor(0)).item() == pytest.approx(LN2, rel=1e-6)
    assert surprisal_from_logits(logits, torch.tensor(2)).item() == pytest.approx(2 * LN2, rel=1e-6)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.01, 30.0), V=st.sampled_from([2, 7, 260]))
def test_matches_float64_definitions_on_random_logits(seed: int, scale: float, V: int) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 9, V, generator=g) * scale
    targets = torch.randint(0, V, (4, 9), generator=g)
    h, s, v = reference_f64(logits, targets)
    assert torch.allclose(entropy_from_logits(logits).double(), h, atol=1e-5, rtol=1e-5)
    assert torch.allclose(surprisal_from_logits(logits, targets).double(), s, atol=1e-4, rtol=1e-5)
    assert torch.allclose(varentropy_from_logits(logits).double(), v, atol=1e-4, rtol=1e-4)
    # Laws: 0 ≤ H ≤ ln V, varentropy ≥ 0.
    assert (h >= -1e-9).all() and (h <= math.log(V) + 1e-9).all()


def test_bf16_logits_are_computed_in_float32() -> None:
    logits = torch.tensor([math.log(2), 0.0, 0.0]).bfloat16()
    out = entropy_from_logits(logits)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(1.5 * LN2, rel=1e-2)


def test_minus_infinity_logits_contribute_nothing() -> None:
    logits = torch.tensor([math.log(2), 0.0, 0.0, -math.inf])
    assert entropy_from_logits(logits).item() == pytest.approx(1.5 * LN2, rel=1e-6)
    assert varentropy_from_logits(logits).item() == pytest.approx(0.25 * LN2**2, rel=1e-5)


# ---------------------------------------------------------------------------------------------- window plan


def test_plan_windows_golden() -> None:
    """n=10, context 4, stride 3: windows start at 0, 3, 6; the third ends exactly at 10.
    Emitted: [0, 4), [4, 7), [7, 10); position 4 has 4 - 3 = 1 = context - stride positions before it.
    n=9: the third window (6, 10) would overrun, so it is aligned to the end: start 9 - 4 = 5, emitting [7, 9)."""
    assert plan_windows(10, 4, 3) == [(0, 0, 4), (3, 4, 7), (6, 7, 10)]
    assert plan_windows(9, 4, 3) == [(0, 0, 4), (3, 4, 7), (5, 7, 9)]
    assert plan_windows(4, 4, 1) == [(0, 0, 4)]
    assert plan_windows(3, 64, 48) == [(0, 0, 3)]
    assert plan_windows(0, 64, 48) == []


@settings(max_examples=300, deadline=None)
@given(data=st.data(), n=st.integers(0, 600), context=st.integers(1, 80))
def test_plan_windows_properties(data: st.DataObject, n: int, context: int) -> None:
    stride = data.draw(st.integers(1, context), label="stride")
    windows = plan_windows(n, context, stride)
    emitted = [t for _, emit_from, end in windows for t in range(emit_from, end)]
    assert emitted == list(range(n))  # every position exactly once, in order
    if n > context:
        assert len(windows) == 1 + math.ceil((n - context) / stride)
    for i, (start, emit_from, end) in enumerate(windows):
        assert 0 <= start <= emit_from < end <= n
        assert end - start == min(n, context)  # every window uses the whole context
        if i == 0:
            assert start == emit_from == 0
        else:
            assert emit_from - start >= context - stride  # context before the first emitted position


# ---------------------------------------------------------------------------------------------- score


def random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


@torch.no_grad()
def direct_forward(model: ByteLM, inputs: list[int]) -> tuple[np.ndarray, torch.Tensor]:
    """One plain forward over `inputs`; returns (entropy [T] float64, log-probabilities [T, V] float64)."""
    logits = model(torch.tensor([inputs]))[0].double()
    logp = torch.log_softmax(logits, -1)
    return (-(logp.exp() * logp).sum(-1)).numpy(), logp


def expected_scores(model: ByteLM, data: bytes, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Independent restatement of the windowing spec: the model inputs are [BOS, b_0, ..., b_{n-2}] (input t
    predicts byte t); windows of `context` inputs start at 0, stride, 2·stride, ... and the last is aligned to the
    end; byte t is scored by the first window that contains it."""
    n, c = len(data), model.context
    inputs = [BOS_ID, *data[:-1]]
    starts = [0]
    while starts[-1] + c < n:
        starts.append(min(starts[-1] + stride, n - c))
    ent, sur = np.empty(n), np.empty(n)
    for t in range(n):
        start = next(s for s in starts if s <= t < s + c)
        if t >= c:
            assert t - start >= c - stride
        h, logp = direct_forward(model, inputs[start : min(start + c, n)])
        ent[t], sur[t] = h[t - start], -logp[t - start, data[t]].item()
    return ent, sur


@pytest.mark.parametrize("n", [1, 2, 40, 63, 64])
def test_score_equals_direct_forward_when_input_fits_one_window(tiny_model: ByteLM, n: int) -> None:
    data = random_bytes(n, seed=n)
    (result,) = score(tiny_model, data)
    ent, logp = direct_forward(tiny_model, [BOS_ID, *data])  # the extra last position is never used
    assert result.data == data and len(result) == n
    assert result.entropy_nats.dtype == np.float32 and result.entropy_nats.shape == (n,)
    np.testing.assert_allclose(result.entropy_nats, ent[:n], atol=1e-5)
    np.testing.assert_allclose(result.surprisal_nats, -logp[np.arange(n), list(data)].numpy(), atol=1e-5)


@pytest.mark.parametrize("stride", [None, 17, 64, 1])
def test_windowed_scoring_of_a_long_input_matches_the_spec(tiny_model: ByteLM, stride: int | None) -> None:
    n = 5 * tiny_model.context + 7
    data = random_bytes(n, seed=11)
    (result,) = score(tiny_model, data, stride=stride, batch_size=4)
    ent, sur = expected_scores(tiny_model, data, stride or 48)  # default stride: 3/4 of 64
    np.testing.assert_allclose(result.entropy_nats, ent, atol=1e-5)
    np.testing.assert_allclose(result.surprisal_nats, sur, atol=1e-5)


def test_windowed_scoring_differs_from_one_long_forward(tiny_model: ByteLM) -> None:
    """The windows matter: past the first window the scores are not those of one forward over everything."""
    data = random_bytes(200, seed=12)
    (result,) = score(tiny_model, data)
    ent, _ = direct_forward(tiny_model, [BOS_ID, *data[:-1]])
    np.testing.assert_allclose(result.entropy_nats[:64], ent[:64], atol=1e-5)
    assert not np.allclose(result.entropy_nats[64:], ent[64:], atol=1e-4)


DOC_LENGTHS = [0, 1, 5, 63, 64, 65, 130, 200, 7, 321]


def test_batch_size_does_not_change_scores(tiny_model: ByteLM) -> None:
    docs = [random_bytes(n, seed=i) for i, n in enumerate(DOC_LENGTHS)]
    runs = [score(tiny_model, docs, batch_size=b) for b in (1, 3, 16)]
    for run in runs:
        assert [len(s) for s in run] == DOC_LENGTHS
        assert [s.data for s in run] == docs
    for run in runs[1:]:
        for a, b in zip(runs[0], run, strict=True):
            np.testing.assert_allclose(a.entropy_nats, b.entropy_nats, atol=1e-5)
            np.testing.assert_allclose(a.surprisal_nats, b.surprisal_nats, atol=1e-5)


def test_a_document_alone_scores_like_among_others(tiny_model: ByteLM) -> None:
    docs = [random_bytes(n, seed=100 + i) for i, n in enumerate(DOC_LENGTHS)]
    together = score(tiny_model, docs, batch_size=5)
    for doc, s in zip(docs, together, strict=True):
        (alone,) = score(tiny_model, doc)
        np.testing.assert_allclose(alone.entropy_nats, s.entropy_nats, atol=1e-5)
        np.testing.assert_allclose(alone.surprisal_nats, s.surprisal_nats, atol=1e-5)


@cache
def shared_model() -> ByteLM:
    """One model for hypothesis tests (function-scoped fixtures do not mix with @given)."""
    torch.manual_seed(42)
    return ByteLM(ModelConfig(n_layers=1, d_model=32, n_heads=2, context=16)).eval()


@settings(max_examples=25, deadline=None)
@given(
    docs=st.lists(st.binary(max_size=60), min_size=1, max_size=6),
    batch_size=st.integers(1, 8),
    stride=st.integers(1, 16),
)
def test_batched_scoring_equals_row_by_row(docs: list[bytes], batch_size: int, stride: int) -> None:
    model = shared_model()
    batched = score(model, docs, batch_size=batch_size, stride=stride)
    for doc, s in zip(docs, batched, strict=True):
        (alone,) = score(model, doc, batch_size=1, stride=stride)
        assert len(s) == len(doc)
        np.testing.assert_allclose(s.entropy_nats, alone.entropy_nats, atol=1e-5)
        np.testing.assert_allclose(s.surprisal_nats, alone.surprisal_nats, atol=1e-5)


def test_invalid_utf8_is_scored_like_any_bytes(tiny_model: ByteLM) -> None:
    data = b"ok \xff\xfe\x80\xc3( \xed\xa0\x80 end"
    (result,) = score(tiny_model, data)
    assert len(result) == len(data) and result.data == data
    assert np.isfinite(result.entropy_nats).all() and np.isfinite(result.surprisal_nats).all()


def test_text_is_scored_as_its_utf8_bytes(tiny_model: ByteLM) -> None:
    text = "naïve 日本"
    (from_text,) = score(tiny_model, text)
    (from_bytes,) = score(tiny_model, [text.encode("utf-8")])
    (from_bytearray,) = score(tiny_model, bytearray(text.encode("utf-8")))
    assert len(from_text) == len(text.encode("utf-8")) == 13
    np.testing.assert_array_equal(from_text.entropy_nats, from_bytes.entropy_nats)
    np.testing.assert_array_equal(from_text.surprisal_nats, from_bytearray.surprisal_nats)


def test_empty_inputs(tiny_model: ByteLM) -> None:
    assert score(tiny_model, []) == []
    (empty,) = score(tiny_model, b"")
    assert len(empty) == 0 and empty.entropy_nats.shape == (0,) and empty.bits_per_byte == 0.0


def test_score_restores_training_mode_and_ignores_dropout(model_factory: Callable[..., ByteLM]) -> None:
    model = model_factory(dropout=0.5).train()
    data = random_bytes(50)
    a, b = score(model, data)[0], score(model, data)[0]
    assert model.training
    np.testing.assert_array_equal(a.entropy_nats, b.entropy_nats)


def test_stride_out_of_range_is_rejected(tiny_model: ByteLM) -> None:
    with pytest.raises(ValueError, match="stride"):
        score(tiny_model, b"abc", stride=65)
    with pytest.raises(ValueError, match="stride"):
        score(tiny_model, b"abc", stride=-1)


def test_stride_zero_is_rejected(tiny_model: ByteLM) -> None:
    with pytest.raises(ValueError, match="stride"):
        score(tiny_model, b"abc", stride=0)


def test_bf16_precision_is_close_to_fp32(tiny_model: ByteLM) -> None:
    data = random_bytes(300, seed=3)
    (fp32,) = score(tiny_model, data)
    (bf16,) = score(tiny_model, data, precision="bf16")
    np.testing.assert_allclose(bf16.entropy_nats, fp32.entropy_nats, atol=1e-2)
    np.testing.assert_allclose(bf16.surprisal_nats, fp32.surprisal_nats, atol=5e-2)


def test_autocast_for_rejects_unknown_precision() -> None:
    with pytest.raises(ValueError, match="precision"):
        autocast_for(torch.device("cpu"), "16-mixed")


# ---------------------------------------------------------------------------------------------- bits per byte


def scores(data: bytes, surprisal_bits: list[float]) -> ByteScores:
    s = np.array(surprisal_bits, dtype=np.float32) * LN2
    return ByteScores(data, np.zeros(len(data), np.float32), s)


def test_corpus_bits_per_byte_is_a_ratio_of_sums() -> None:
    """Doc A: 1 byte costing 4 bits; doc B: 3 bytes costing 0 bits.
    Ratio of sums: (4 + 0) / (1 + 3) = 1.0 bit/byte. Mean of per-doc ratios would be (4/1 + 0/3) / 2 = 2.0."""
    a, b = scores(b"a", [4.0]), scores(b"bcd", [0.0, 0.0, 0.0])
    assert a.bits_per_byte == pytest.approx(4.0) and b.bits_per_byte == 0.0
    assert corpus_bits_per_byte([a, b]) == pytest.approx(1.0)


def test_corpus_bits_per_byte_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no bytes"):
        corpus_bits_per_byte([])
    with pytest.raises(ValueError, match="no bytes"):
        corpus_bits_per_byte([scores(b"", [])])


@pytest.mark.parametrize("chunk_bytes", [1 << 20, 50, 1])
def test_evaluate_corpus_equals_corpus_bits_per_byte_of_score(tiny_model: ByteLM, chunk_bytes: int) -> None:
    docs = [random_bytes(n, seed=200 + i) for i, n in enumerate([30, 0, 90, 5, 70])]
    result = evaluate_corpus(tiny_model, iter(docs), batch_size=3, chunk_bytes=chunk_bytes)
    assert result["bytes"] == 195 and result["documents"] == 4
    assert result["bits_per_byte"] == pytest.approx(corpus_bits_per_byte(score(tiny_model, docs)), rel=1e-6)


def test_untrained_model_scores_about_log2_vocab_bits_per_byte(tiny_model: ByteLM) -> None:
    """An untrained model is near uniform over 260 ids: ≈ log2 260 = 8.02 bits per byte (see test_model)."""
    bpb = evaluate_corpus(tiny_model, [random_bytes(500, seed=9)])["bits_per_byte"]
    assert bpb == pytest.approx(math.log2(260), abs=0.05 / LN2)


def test_evaluate_corpus_of_nothing_is_an_error(tiny_model: ByteLM) -> None:
    with pytest.raises(ValueError, match="no bytes"):
        evaluate_corpus(tiny_model, [b"", b""])
