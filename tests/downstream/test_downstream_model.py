"""The patch-level LM: no leakage (the prediction of byte t never depends on byte t or later, nor on a boundary the
model has not been told yet), a batch equals its rows scored alone, it does use the past, and its FLOPs per byte by
hand; latent widths matched to a FLOPs target."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from blt.downstream.model import (
    PatchLM,
    PatchLMConfig,
    block_flops,
    flops_per_byte,
    match_latent_width,
    mean_attended,
)

CFG = PatchLMConfig(d_local=16, local_heads=2, d_latent=32, latent_heads=2, latent_layers=2, context=48, local_window=8)


@pytest.fixture(scope="module")
def model() -> PatchLM:
    torch.manual_seed(0)
    m = PatchLM(CFG).eval()
    with torch.no_grad():  # weights of a trained model's size: the init's 0.02 would make every path faint
        for p in m.parameters():
            p.normal_(0.0, 0.3 if p.dim() > 1 else 1.0)
    return m


def _random(seed: int, T: int = 48, p: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 256, (1, T), generator=g)
    starts = torch.rand(1, T, generator=g) < p
    starts[:, 0] = True
    return ids, starts


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), t=st.integers(0, 47), p=st.floats(0.05, 1.0))
def test_no_leakage(model: PatchLM, seed: int, t: int, p: float) -> None:
    """Change byte t and everything after it, and every boundary after byte t (`starts[t + 1:]`): the predictions
    of bytes ≤ t and of the boundaries after bytes < t are unchanged (bytes ≥ t and boundaries not yet announced
    are invisible)."""
    ids, starts = _random(seed, p=p)
    ids2, starts2 = ids.clone(), starts.clone()
    g = torch.Generator().manual_seed(seed + 1)
    ids2[0, t:] = torch.randint(0, 256, (48 - t,), generator=g)
    starts2[0, t + 1 :] = torch.rand(47 - t, generator=g) < 0.5
    with torch.no_grad():
        b1, e1 = model(ids, starts)
        b2, e2 = model(ids2, starts2)
    torch.testing.assert_close(b1[0, : t + 1], b2[0, : t + 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(e1[0, :t], e2[0, :t], atol=1e-5, rtol=0)


def test_uses_the_past(model: PatchLM) -> None:
    """The leakage test could pass for a model that ignores its input: here byte 39's prediction moves when byte 10
    changes (through the latent path, outside the local window of 8) and when a boundary before it moves."""
    ids, starts = _random(3)
    with torch.no_grad():
        base = model(ids, starts)[0][0, 39]
        ids2 = ids.clone()
        ids2[0, 10] = (ids[0, 10] + 1) % 256
        moved_byte = model(ids2, starts)[0][0, 39]
        starts2 = starts.clone()
        starts2[0, 20] = ~starts2[0, 20]
        moved_boundary = model(ids, starts2)[0][0, 39]
    assert (base - moved_byte).abs().max() > 1e-4
    assert (base - moved_boundary).abs().max() > 1e-4


def test_batch_equals_rows(model: PatchLM) -> None:
    """Rows with different unit counts in one batch (padding units in the latent) give each row's own result."""
    (a, sa), (b, sb) = _random(1, p=0.1), _random(2, p=0.9)
    with torch.no_grad():
        batch = model(torch.cat([a, b]), torch.cat([sa, sb]))
        alone = [model(a, sa), model(b, sb)]
    for i in range(2):
        torch.testing.assert_close(batch[0][i], alone[i][0][0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(batch[1][i], alone[i][1][0], atol=1e-5, rtol=1e-5)


def test_flops_by_hand() -> None:
    """mean_attended(4, window 2) = (1 + 2 + 2 + 2) / 4 = 1.75; full causal over 4 = (1 + 2 + 3 + 4) / 4 = 2.5.
    A block of width 32 (SwiGLU hidden 96 = 32·⌈8·32/3/32⌉) over 10 positions: 2·(4·32² + 3·32·96) + 4·32·10 =
    2·(4096 + 9216) + 1280 = 27,904. Per byte at 4 bytes/unit, the latent part is a quarter of one unit's cost."""
    assert mean_attended(4, 2) == 1.75 and mean_attended(4, None) == 2.5
    assert block_flops(32, 10) == 27_904
    cfg = PatchLMConfig(d_local=32, local_heads=2, d_latent=64, latent_heads=2, latent_layers=1, context=16)
    f4 = flops_per_byte(cfg, 4.0)
    local = 2 * block_flops(32, mean_attended(16, 16)) + 2 * 32 * 256 + 2 * (32 * 32 + 32)
    latent_unit = block_flops(64, mean_attended(4, None)) + 4 * 32 * 64
    assert f4["local"] == local and math.isclose(f4["latent"], latent_unit / 4)
    assert flops_per_byte(cfg, 4.0, training=True)["total"] == 3 * f4["total"]


def test_longer_units_cost_less_and_buy_a_wider_latent() -> None:
    cfg = PatchLMConfig(d_local=32, local_heads=2, d_latent=64, latent_heads=2, context=256)
    totals = [flops_per_byte(cfg, u)["total"] for u in (1, 2, 4, 8)]
    assert totals == sorted(totals, reverse=True)
    target = flops_per_byte(cfg, 4.0)["total"]
    widths = [match_latent_width(cfg, u, target).d_latent for u in (1, 2, 4, 8)]
    assert widths == sorted(widths) and widths[0] < 64 < widths[-1]
    assert match_latent_width(cfg, 4.0, target).d_latent == 64  # the reference keeps its own width
    for u in (1, 2, 8):  # within one width step of the target
        sized = match_latent_width(cfg, u, target)
        lo, hi = (
            flops_per_byte(sized.__class__(**{**sized.__dict__, "d_latent": w}), u)["total"]
            for w in (sized.d_latent - 16, sized.d_latent + 16)
        )
        assert lo <= target <= hi or sized.d_latent == 16
