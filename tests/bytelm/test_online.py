"""Online adaptation (dynamic evaluation): lr 0 is static scoring, no byte is predicted after it was seen, learning
lowers the bits of repeated text, the caller's model is untouched, a scorer carries its learning across calls, and
`blt eval / segment --online` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_user_error, make_spiky_model, run_cli, save_spiky

from blt.bytelm.entropy import score
from blt.bytelm.online import OnlineScorer, score_online
from blt.errors import BltError

TEXT = ("caf\u00e9 \u65e5\u672c ".encode() + b"\xff " + b"The quick brown fox jumps over the lazy dog; " * 5)[:200]


def test_lr_zero_is_static_scoring() -> None:
    """Without steps the windows are scored by the same model as `score` does (one at a time, unpadded)."""
    model = make_spiky_model()
    data = bytes(range(256)) * 2  # 512 bytes: several windows of the 64-byte context
    online, static = score_online(model, [data, TEXT], lr=0.0), score(model, [data, TEXT])
    for o, s in zip(online, static, strict=True):
        np.testing.assert_allclose(o.entropy_nats, s.entropy_nats, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(o.surprisal_nats, s.surprisal_nats, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("j", [0, 40, 63, 64, 100, 199])
def test_no_byte_is_predicted_after_it_was_seen(j: int) -> None:
    """Change byte j: every prediction of bytes 0..j (entropies) and the surprisals of bytes 0..j-1 are unchanged,
    though the model learns (lr 1e-2) from every window it has scored. Window edges (context 64, stride 48) included."""
    model = make_spiky_model()
    other = bytearray(TEXT)
    other[j] ^= 0x55
    a, b = (score_online(model, [d], lr=1e-2)[0] for d in (TEXT, bytes(other)))
    assert np.array_equal(a.entropy_nats[: j + 1], b.entropy_nats[: j + 1])
    assert np.array_equal(a.surprisal_nats[:j], b.surprisal_nats[:j])
    assert not np.array_equal(a.surprisal_nats[j:], b.surprisal_nats[j:])  # and it does see the change after


def test_learning_lowers_the_bits_of_repeated_text_and_leaves_the_model_alone() -> None:
    model = make_spiky_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    block = np.random.default_rng(0).integers(97, 123, 300, dtype=np.uint8).tobytes()  # random letters, then again
    online, static = score_online(model, block * 3, lr=3e-3)[0], score(model, block * 3)[0]
    second = slice(300, 900)  # the repeats: static pays as much as the first time, online far less
    assert online.surprisal_nats[second].mean() < 0.8 * static.surprisal_nats[second].mean()
    assert online.surprisal_nats[:48].tolist() == pytest.approx(static.surprisal_nats[:48].tolist(), abs=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_scorer_carries_its_learning_across_calls() -> None:
    model = make_spiky_model()
    one = OnlineScorer(model, lr=1e-2).score([TEXT, TEXT[::-1]])
    scorer = OnlineScorer(model, lr=1e-2)
    two = scorer.score(TEXT) + scorer.score([TEXT[::-1]])
    for x, y in zip(one, two, strict=True):
        np.testing.assert_allclose(x.surprisal_nats, y.surprisal_nats, rtol=1e-6, atol=1e-6)
    assert scorer.bytes_learnt == 2 * len(TEXT)


@pytest.mark.parametrize("lr", [-1e-3, 1.0, float("nan"), "0.1"])
def test_a_bad_learning_rate_is_one_clear_error(lr: object) -> None:
    with pytest.raises(BltError, match=r"online learning rate must be in \[0, 1\)"):
        OnlineScorer(make_spiky_model(), lr=lr)  # type: ignore[arg-type]


def test_eval_and_segment_online_from_the_command_line(tmp_path: Path) -> None:
    model_dir = save_spiky(tmp_path / "m")
    corpus = tmp_path / "c"
    corpus.mkdir()
    docs = [TEXT, TEXT[::-1]]
    for i, d in enumerate(docs):
        (corpus / f"{i}.txt").write_bytes(d)
    m = ["--model", str(model_dir)]
    code, out, err = run_cli("eval", "--data", str(corpus), *m, "--online", "--online-lr", "0.01", "--json")
    assert code == 0, err
    got = json.loads(out)
    expected = score_online(make_spiky_model(), docs, lr=0.01)
    paid = sum(float(s.surprisal_nats.sum(dtype=np.float64)) for s in expected) / np.log(2) / sum(map(len, docs))
    assert got["online"]["bits_per_byte"] == pytest.approx(paid, rel=1e-5) and got["online"]["lr"] == 0.01
    predicted = sum(float(s.entropy_nats.sum(dtype=np.float64)) for s in expected) / np.log(2) / sum(map(len, docs))
    assert got["online"]["calibration_gap"] == pytest.approx((paid - predicted) / paid, rel=1e-4)
    static = score(make_spiky_model(), docs)
    static_paid = sum(float(s.surprisal_nats.sum(dtype=np.float64)) for s in static) / np.log(2) / sum(map(len, docs))
    assert got["bits_per_byte"] == pytest.approx(static_paid, rel=1e-5)
    code, out, err = run_cli(
        "segment", "--file", str(corpus / "0.txt"), *m, "-r", "budget", "--budget", "3", "--online", "--json"
    )
    assert code == 0, err
    starts = json.loads(out)["starts"]
    from blt.bytelm.online import ONLINE_LR
    from blt.patching import patch_starts

    h = score_online(make_spiky_model(), TEXT, lr=ONLINE_LR)[0].entropy_nats
    assert starts == patch_starts(h, rule="budget", budget=3.0).tolist()
    assert_user_error(["eval", "--data", str(corpus), *m, "--online-lr", "0.1"], "add --online")
    assert_user_error(["eval", "--data", str(corpus), *m, "--online", "--online-lr", "2"], "must be in (0, 1)")
