"""No leakage end to end, for every segmenter as the downstream experiment builds it (`segmentations`): change the
held-out text from byte t on, and the model's predictions for bytes ≤ t do not move.

For the causal segmenters (byte, fixed, the three entropy rules) that takes two things: their unit starts up to byte
t are unchanged (an entropy start at byte t reads the entropy of byte t, computed from the bytes before it, through
the scorer's overlapping windows: the text here is longer than the tiny model's 64-byte context), and their values
(thresholds, budgets, sizes) come from the training and calibration documents, never from the scored text. For the
others (BPE, space) a later byte may move an earlier boundary (BPE merges across it, the space rule looks at the byte
after a space), so the model is never given them in advance: it pays bits to announce each one (checked here), and
test_downstream_model checks that its predictions read only boundaries already announced.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_spiky

from blt.downstream.config import downstream_from_dict
from blt.downstream.model import PatchLM, PatchLMConfig
from blt.downstream.run import segmentations
from blt.downstream.train import eval_windows, evaluate

SEGMENTERS = [
    "byte",
    "fixed",
    "space",
    {"kind": "bpe", "vocab_size": 600},
    "entropy-global",
    "entropy-monotonic",
    "entropy-budget",
]


@pytest.fixture(scope="module")
def splits(samples: dict[str, str]) -> dict[str, list[bytes]]:
    texts = [t.encode() for t in samples.values()]
    return {"train": texts[:-4] * 3, "calibration": texts[-4:-2], "eval": [" ".join(samples.values()).encode()[:400]]}


def test_no_segmenter_leaks(tmp_path: Path, splits: dict[str, list[bytes]]) -> None:
    model_dir = save_spiky(tmp_path / "spiky")
    cfg = downstream_from_dict(
        {"name": "t", "corpora": ["udhr"], "segmenters": SEGMENTERS, "entropy_model": str(model_dir), "rate": "bpe"}
    )
    text = splits["eval"][0]
    torch.manual_seed(0)
    lm = PatchLM(PatchLMConfig(d_local=16, local_heads=2, d_latent=32, latent_heads=2, context=64)).eval()
    with torch.no_grad():
        for p in lm.parameters():
            p.normal_(0.0, 0.3 if p.dim() > 1 else 1.0)
    base = {s.label: s for s in segmentations(cfg, splits["train"], splits["calibration"], [text], print)}
    assert len(base) == len(SEGMENTERS)
    rng = np.random.default_rng(0)
    for t in (0, 70, 150, 399):
        changed = text[:t] + bytes(rng.integers(0, 256, len(text) - t).tolist())
        other = {s.label: s for s in segmentations(cfg, splits["train"], splits["calibration"], [changed], print)}
        for name, seg in base.items():
            alt = other[name]
            assert alt.value == seg.value, name  # values never read the scored text
            if not seg.causal:
                continue
            assert np.array_equal(seg.eval.starts[: t + 1], alt.eval.starts[: t + 1]), (name, t)
            a, b = (_byte_logits(lm, s) for s in (seg, alt))
            torch.testing.assert_close(a[: t + 1], b[: t + 1], atol=1e-5, rtol=0, msg=f"{name} at byte {t}")
    paid = {name for name, seg in base.items() if not seg.causal}
    assert paid == {"space", "bpe-600"}
    for name in paid:  # they announce their boundaries, and it costs bits
        assert evaluate(lm, base[name].eval, pays_boundaries=True)["boundary_bits_per_byte"] > 0


def _byte_logits(lm: PatchLM, seg: object) -> torch.Tensor:
    """Byte logits of every scored byte, in text order: [n, 256]."""
    ids, starts, _, _, valid = (torch.from_numpy(a) for a in eval_windows(seg.eval, lm.cfg.context))  # type: ignore[attr-defined]
    with torch.no_grad():
        logits, _ = lm(ids, starts)
    return logits[valid]


def test_bpe_boundaries_can_depend_on_later_bytes(segmenters: dict) -> None:
    """Why BPE pays: a trained BPE's boundary before byte t can move when a later byte changes (here, appending
    letters to a word merges it differently: " everyone" is " |e|v|er|yone", " everyones" is " |e|v|er|y|on|es"), so no
    model may be told it in advance."""
    bpe = segmenters["bpe"]
    moved = False
    for word in ("the", "human", "everyone", "right"):
        for suffix in ("s", "ing", "ed", "ly"):
            a, b = f" {word} x".encode(), f" {word}{suffix} x".encode()
            prefix = len(word) + 1
            sa = set(bpe.starts(a).tolist()) & set(range(prefix))
            sb = set(bpe.starts(b).tolist()) & set(range(prefix))
            moved |= sa != sb
    assert moved
