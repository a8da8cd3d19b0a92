"""The byte LM: shapes, causality, the untrained loss, overfitting one batch, weight tying and sliding windows."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from blt.bytelm.model import ByteLM
from blt.config import BOS_ID, ModelConfig

V = 260  # 256 byte values + BOS, EOS, PAD and one spare id


def random_ids(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, length), generator=g)


def with_byte_changed(ids: torch.Tensor, t: int) -> torch.Tensor:
    """A copy of ids [B, T] whose column t holds a different byte in every row."""
    out = ids.clone()
    out[:, t] = (out[:, t] + 1 + t % 200) % 256
    return out


def test_forward_shape_and_dtype(tiny_model: ByteLM) -> None:
    logits = tiny_model(random_ids(3, 17))
    assert logits.shape == (3, 17, V) and logits.dtype == torch.float32


def test_forward_accepts_special_ids(tiny_model: ByteLM) -> None:
    ids = torch.tensor([[BOS_ID, 104, 105, 257, 258, 259]])
    assert torch.isfinite(tiny_model(ids)).all()


def test_context_property(tiny_model: ByteLM) -> None:
    assert tiny_model.context == 64


@torch.no_grad()
def test_causality_every_position(tiny_model: ByteLM) -> None:
    """Changing byte t never changes the logits before t, and does change them at t (the model reads its input).

    All T variants go through one forward: row t of the batch has byte t changed."""
    T = 32
    ids = random_ids(1, T)
    variants = torch.cat([with_byte_changed(ids, t) for t in range(T)])  # [T, T]
    base = tiny_model(ids)[0]  # [T, V]
    logits = tiny_model(variants)  # [T, T, V]
    for t in range(T):
        assert torch.allclose(logits[t, :t], base[:t], atol=1e-6, rtol=0), f"position < {t} saw byte {t}"
        assert (logits[t, t] - base[t]).abs().max() > 1e-4, f"position {t} ignores its own byte"


@torch.no_grad()
def test_causality_two_layers(model_factory: Callable[..., ByteLM]) -> None:
    model = model_factory(seed=1, n_layers=2)
    T = 24
    ids = random_ids(1, T, seed=1)
    base = model(ids)[0]
    for t in range(T):
        out = model(with_byte_changed(ids, t))[0]
        assert torch.allclose(out[:t], base[:t], atol=1e-6, rtol=0)
        assert not torch.allclose(out[t:], base[t:], atol=1e-4)


@torch.no_grad()
def test_rows_of_a_batch_are_independent(tiny_model: ByteLM) -> None:
    ids = random_ids(4, 20, seed=3)
    batched = tiny_model(ids)
    for r in range(4):
        assert torch.allclose(tiny_model(ids[r : r + 1])[0], batched[r], atol=1e-5)


@torch.no_grad()
def test_untrained_loss_is_about_ln_vocab(tiny_model: ByteLM) -> None:
    """Init std 0.02 makes the logits nearly equal, so the cross-entropy of random bytes is ≈ ln 260 = 5.561.

    Why 0.05 is enough and not loose: the final RMSNorm gives unit-RMS features, so each logit is a sum of
    d = 32 terms with weights of std 0.02: std σ ≈ 0.02·√32 ≈ 0.11. For near-Gaussian logits the expected
    log-sum-exp exceeds ln V by ≈ σ²/2 ≈ 0.006, and the tied embedding adds ≈ (e^{0.64} − 1)/260 ≈ 0.004 for the
    input byte's own logit (|e|²/0.02 ≈ 32·0.02 = 0.64). ln 256 (5.545) lies 0.016 below ln 260: also inside.
    Conversely the loss is ≥ ln V − noise by Jensen (log-sum-exp ≥ ln V + mean logit, and a random target's
    logit has the mean's expectation)."""
    ids = random_ids(8, 64, seed=5)
    logits = tiny_model(ids[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, V), ids[:, 1:].reshape(-1)).item()
    assert abs(loss - math.log(V)) < 0.05
    assert abs(loss - math.log(256)) < 0.05
    assert logits.std().item() < 0.3  # "logits near zero"


def test_tiny_model_overfits_one_batch(tiny_model: ByteLM) -> None:
    """200 Adam steps on one [4, 32] batch drive the loss from ≈ 5.56 to < 0.1: gradients reach every block."""
    torch.manual_seed(0)
    ids = random_ids(4, 33, seed=7)
    x, y = ids[:, :-1], ids[:, 1:]
    model = tiny_model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(200):
        loss = F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 5.0
    assert loss.item() < 0.1


def test_tied_weights_are_one_parameter(model_factory: Callable[..., ByteLM]) -> None:
    tied = model_factory(tie_embeddings=True)
    untied = model_factory(tie_embeddings=False)
    assert tied.head.weight is tied.embed.weight
    assert untied.head.weight is not untied.embed.weight
    assert untied.num_params() - tied.num_params() == V * 32  # the tied matrix counted once
    # Training moves them together: one step of SGD on the head's gradient also changes the embedding.
    tied.train()
    opt = torch.optim.SGD(tied.parameters(), lr=0.1)
    F.cross_entropy(tied(random_ids(2, 8)).reshape(-1, V), random_ids(2, 8, seed=1).reshape(-1)).backward()
    opt.step()
    assert torch.equal(tied.head.weight, tied.embed.weight)
    assert tied.head.weight.data_ptr() == tied.embed.weight.data_ptr()


def test_num_params_counts_every_parameter_once(model_factory: Callable[..., ByteLM]) -> None:
    """d=32, ffn 96 (8/3·32 = 85.3 → multiple of 32), V=260, 1 layer, tied:
    embed 260·32 = 8320; attention qkv 32·96 + proj 32·32 = 4096; SwiGLU 32·192 + 96·32 = 9216;
    three RMSNorm weights 3·32 = 96. Total 21728."""
    assert model_factory().num_params() == 8320 + 4096 + 9216 + 96


@torch.no_grad()
def test_sliding_window_at_least_t_equals_full_attention(model_factory: Callable[..., ByteLM]) -> None:
    T = 40
    ids = random_ids(2, T, seed=2)
    full = model_factory(seed=3)(ids)
    for k in (T, T + 1, 1000):
        assert torch.allclose(model_factory(seed=3, sliding_window=k)(ids), full, atol=1e-6)


@torch.no_grad()
def test_sliding_window_shorter_than_t_differs(model_factory: Callable[..., ByteLM]) -> None:
    T, k = 40, 8
    ids = random_ids(2, T, seed=2)
    full = model_factory(seed=3)(ids)
    windowed = model_factory(seed=3, sliding_window=k)(ids)
    # Positions < k see the same k keys either way; later ones lose the older keys.
    assert torch.allclose(windowed[:, :k], full[:, :k], atol=1e-6)
    assert not torch.allclose(windowed[:, k:], full[:, k:], atol=1e-4)


@torch.no_grad()
def test_sliding_window_ignores_bytes_older_than_the_window(model_factory: Callable[..., ByteLM]) -> None:
    """One layer, window k: position t attends to t-k+1..t, so changing byte j leaves every t ≥ j + k unchanged,
    while t = j + k - 1 (the oldest position that still sees j) does change."""
    T, k = 32, 5
    model = model_factory(seed=4, sliding_window=k)
    ids = random_ids(1, T, seed=4)
    base = model(ids)[0]
    for j in range(T - k):
        out = model(with_byte_changed(ids, j))[0]
        assert torch.allclose(out[j + k :], base[j + k :], atol=1e-6, rtol=0), f"byte {j} leaked past the window"
        assert (out[j + k - 1] - base[j + k - 1]).abs().max() > 1e-5


@torch.no_grad()
def test_sliding_window_receptive_field_grows_with_depth(model_factory: Callable[..., ByteLM]) -> None:
    """With L layers of window k, byte j can reach position t only if t - j ≤ L·(k - 1)."""
    T, k, L = 32, 4, 2
    model = model_factory(seed=5, sliding_window=k, n_layers=L)
    ids = random_ids(1, T, seed=5)
    base = model(ids)[0]
    reach = L * (k - 1)
    for j in range(T - reach - 1):
        out = model(with_byte_changed(ids, j))[0]
        assert torch.allclose(out[j + reach + 1 :], base[j + reach + 1 :], atol=1e-6, rtol=0)
        assert (out[j + reach] - base[j + reach]).abs().max() > 1e-6


@torch.no_grad()
def test_sliding_window_equals_full_attention_on_the_window_slice(model_factory: Callable[..., ByteLM]) -> None:
    """Parity with an independent computation: rotary attention scores depend only on relative positions, so a
    one-layer windowed model at position t equals the full-attention model (same weights) run on the slice
    ids[t-k+1 : t+1] at its last position."""
    T, k = 30, 6
    windowed = model_factory(seed=6, sliding_window=k)
    full = model_factory(seed=6)
    ids = random_ids(1, T, seed=6)
    out = windowed(ids)[0]
    for t in range(T):
        expected = full(ids[:, max(0, t - k + 1) : t + 1])[0, -1]
        assert torch.allclose(out[t], expected, atol=1e-5), t


@torch.no_grad()
def test_inputs_longer_than_context_extend_rotary(tiny_model: ByteLM) -> None:
    ids = random_ids(1, 2 * tiny_model.context + 3, seed=8)
    long = tiny_model(ids)
    assert long.shape == (1, ids.shape[1], V)
    assert torch.allclose(long[:, :64], tiny_model(ids[:, :64]), atol=1e-5)


def test_rotary_extended_under_inference_mode_still_trains(tiny_model: ByteLM) -> None:
    """Regression: a forward longer than the context inside inference_mode (as in Lightning validation) must not
    leave inference tensors in the rotary tables, or the next training step fails to backpropagate."""
    ids = random_ids(1, 2 * tiny_model.context, seed=9)
    with torch.inference_mode():
        tiny_model(ids)
    tiny_model.train()
    tiny_model(ids).sum().backward()


def test_dropout_only_in_training(model_factory: Callable[..., ByteLM]) -> None:
    model = model_factory(dropout=0.5)
    ids = random_ids(1, 16)
    with torch.no_grad():
        assert torch.equal(model.eval()(ids), model(ids))
        model.train()
        assert not torch.allclose(model(ids), model(ids))


def test_model_config_is_kept(tiny_model: ByteLM) -> None:
    assert tiny_model.cfg == ModelConfig(n_layers=1, d_model=32, n_heads=2, context=64)
