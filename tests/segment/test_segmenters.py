"""`Patcher` and `Patches`: lossless segments for every rule, parity with the kernels of `blt.patching` on the model's
own entropies, calibration to a target, newline resets, the card's default thresholds, and errors.

The untrained tiny model predicts nearly uniform bytes (entropies ≈ ln 260 ≈ 5.55 nats, many of them tied in
float32), so most tests use `spiky_model()`: the same tiny model with its final norm scaled ×20, whose entropies
spread over ≈ 0–2.6 nats and are all distinct on the texts here (ties would make some patch counts unreachable).
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from conftest import make_spiky_model
from hypothesis import given, settings
from hypothesis import strategies as st

from blt.bytelm.checkpoint import load_model, save_model_dir
from blt.bytelm.entropy import score
from blt.config import Config
from blt.errors import BltError
from blt.patching.rules import RULES, patch_starts
from blt.segment.patcher import Patcher, Patches, score_resetting_at_newlines

TEXT = "Hello, world! Ünïcödé café — 日本語のテキスト, русский текст, emoji 😀🚀.\nSecond line\r\nthird\rfourth\n"
INVALID = b"ok \xff\xfe broken \xe6\x97 end \xc3"  # lone bytes, a truncated 3-byte character, a dangling lead byte
INPUTS = [TEXT.encode(), INVALID, b""]
# every rule with parameters that make it work (threshold ≈ the median entropy of the spiky model)
RULE_KW = {
    "global": {"threshold": 0.1},
    "monotonic": {"relative_threshold": 0.05},
    "combined": {"threshold": 0.1, "relative_threshold": 0.0},
    "budget": {"budget": 0.5, "min_patch_length": 2},
    "space": {},
    "fixed": {"patch_size": 3},
    "byte": {},
}


spiky_model = cache(make_spiky_model)


def text_of(words: int, seed: int = 0) -> bytes:
    """A few hundred bytes of non-repeating multilingual words (repeated text would repeat entropies)."""
    rng = np.random.default_rng(seed)
    vocab = "the quick brown fox jumps over lazy dog naïve café 日本語 текст 😀 data byte patch entropy".split()
    return " ".join(rng.choice(vocab, size=words)).encode()


# ---------------------------------------------------------------- Patches


def test_patches_properties_golden() -> None:
    """b"hello world" with starts [0, 5, 6]: lengths [5, 1, 5], spans (0,5) (5,6) (6,11), segments "hello" " "
    "world", 11 / 3 bytes per patch."""
    p = Patches(b"hello world", np.array([0, 5, 6]), None, None)
    assert p.lengths.tolist() == [5, 1, 5]
    assert p.spans == [(0, 5), (5, 6), (6, 11)]
    assert p.segments == [b"hello", b" ", b"world"]
    assert p.bytes_per_patch == pytest.approx(11 / 3)


def test_empty_patches_have_no_units() -> None:
    p = Patches(b"", np.zeros(0, np.int64), np.zeros(0, np.float32), 1.0)
    assert p.lengths.tolist() == [] and p.spans == [] and p.segments == [] and p.bytes_per_patch == 0.0


# ---------------------------------------------------------------- every rule is lossless


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_reassembles_multilingual_invalid_and_empty_input(rule: str) -> None:
    patcher = Patcher(spiky_model(), rule=rule, **RULE_KW[rule])
    for data, p in zip(INPUTS, patcher.patch(INPUTS), strict=True):
        assert b"".join(p.segments) == data
        assert p.lengths.sum() == len(data) and (p.lengths > 0).all()
        assert (len(p.starts) == 0) == (not data) and (not data or p.starts[0] == 0)
        assert p.spans == [(int(s), int(s + n)) for s, n in zip(p.starts, p.lengths, strict=True)]
        assert (p.entropies_nats is not None) == (rule in ("global", "monotonic", "combined", "budget"))
    assert patcher.segment(TEXT) == patcher.patch([TEXT])[0].segments
    assert patcher.spans(INVALID) == patcher.patch([INVALID])[0].spans


def test_rule_based_golden_cases() -> None:
    """Derived by hand.
    - space, "hi there, you": spacelike bytes are ␠(2) ,(8) ␠(9); the first of each run is 2 and 8, and a patch
      starts right after it -> starts 0, 3, 9 -> "hi " "there," " you".
    - space, "café au" (c a f C3 A9 ␠ a u): C3 is spacelike (not alnum, not a continuation), so a start is due at 4,
      but 4 is the continuation A9 -> deferred to 5; ␠ at 5 is the first of a run -> 6 -> "café" " " "au".
    - fixed 3 on "日本" (6 bytes) -> two characters, one per patch; fixed 2 on "aé" cuts the character: b"a\\xc3",
      b"\\xa9" (bytes are bytes).
    - byte: one patch per byte."""
    space = Patcher("default", rule="space")  # no model needed: "default" is never loaded for rule-based rules
    assert space.model is None
    assert space.segment("hi there, you") == [b"hi ", b"there,", b" you"]
    assert space.segment("café au") == ["café".encode(), b" ", b"au"]
    assert Patcher(rule="fixed", patch_size=3).segment("日本") == ["日".encode(), "本".encode()]
    assert Patcher(rule="fixed", patch_size=2).segment("aé") == [b"a\xc3", b"\xa9"]
    assert Patcher(rule="byte").segment(b"ab\xff") == [b"a", b"b", b"\xff"]


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=200), rule=st.sampled_from(["global", "space"]))
def test_random_bytes_reassemble_exactly(data: bytes, rule: str) -> None:
    p = Patcher(spiky_model(), rule=rule, **RULE_KW[rule]).patch([data])[0]
    assert b"".join(p.segments) == data
    assert p.lengths.sum() == len(data) and (p.lengths > 0).all()
    if rule == "space":  # never splits a multi-byte character: no patch begins on a continuation byte
        assert all(not 0x80 <= data[s] <= 0xBF for s in p.starts[1:])


# ---------------------------------------------------------------- parity with the kernels


@pytest.mark.parametrize("rule", ["global", "monotonic", "combined"])
def test_patcher_equals_patch_starts_on_the_model_entropies(rule: str) -> None:
    model = spiky_model()
    data = TEXT.encode() + INVALID
    ent = score(model, data)[0].entropy_nats
    for kw in (RULE_KW[rule], {**RULE_KW[rule], "max_patch_length": 4}):
        p = Patcher(model, rule=rule, **kw).patch([data])[0]
        np.testing.assert_array_equal(p.entropies_nats, ent)
        np.testing.assert_array_equal(p.starts, patch_starts(ent, rule=rule, **kw))
        expected = kw.get("relative_threshold") if rule == "monotonic" else kw.get("threshold")
        assert p.threshold_nats == expected


def test_extreme_thresholds_golden() -> None:
    """Softmax entropies are > 0, so θ = 0 starts every byte; θ above every entropy starts only byte 0; adding
    max_patch_length 4 to the latter on 10 bytes cuts [10] into [4, 4, 2]."""
    model, data = spiky_model(), b"abcdefghij"
    assert Patcher(model, threshold=0.0).patch([data])[0].lengths.tolist() == [1] * 10
    assert Patcher(model, threshold=100.0).patch([data])[0].lengths.tolist() == [10]
    assert Patcher(model, threshold=100.0, max_patch_length=4).patch([data])[0].lengths.tolist() == [4, 4, 2]


@settings(max_examples=25, deadline=None)
@given(thetas=st.lists(st.floats(0.0, 3.0), min_size=2, max_size=2).map(sorted), seed=st.integers(0, 5))
def test_raising_the_threshold_never_adds_patches(thetas: list[float], seed: int) -> None:
    low, high = thetas
    data = text_of(40, seed)
    for rule, key in (("global", "threshold"), ("monotonic", "relative_threshold")):
        n_low = len(Patcher(spiky_model(), rule=rule, **{key: low}).patch([data])[0].starts)
        n_high = len(Patcher(spiky_model(), rule=rule, **{key: high}).patch([data])[0].starts)
        assert n_high <= n_low


# ---------------------------------------------------------------- calibration


@pytest.mark.parametrize("rule", ["global", "monotonic"])
@pytest.mark.parametrize("target", [2.5, 4.5, 8.0])
def test_target_lands_within_one_patch_on_the_input_it_calibrates_on(rule: str, target: float) -> None:
    """(Monotonic with θ ≥ 0 cannot go below ≈ 2 bytes/patch: about half the entropy differences are negative.)"""
    data = text_of(120)
    p = Patcher(spiky_model(), rule=rule, target_bytes_per_patch=target).patch([data])[0]
    assert abs(len(p.starts) - len(data) / target) <= 1
    assert b"".join(p.segments) == data


def test_target_calibrates_once_over_several_inputs() -> None:
    """Several inputs are calibrated together: their total patch count is within one of total bytes / target."""
    texts = [text_of(30, s) for s in range(4)]
    patches = Patcher(spiky_model(), target_bytes_per_patch=3.0).patch(texts)
    assert abs(sum(len(p.starts) for p in patches) - sum(map(len, texts)) / 3.0) <= 1
    assert len({p.threshold_nats for p in patches}) == 1  # one threshold for all


@pytest.mark.parametrize("rule", ["global", "monotonic"])
def test_fit_returns_the_threshold_and_then_holds_it(rule: str) -> None:
    train, new = [text_of(60, 1), text_of(50, 2)], text_of(70, 3)
    patcher = Patcher(spiky_model(), rule=rule, target_bytes_per_patch=4.0)
    result = patcher.fit(train)
    total = sum(map(len, train))
    assert result["bytes"] == total and result["target_bytes_per_patch"] == 4.0
    assert abs(result["patches"] - total / 4.0) <= 1
    assert result["bytes_per_patch"] == pytest.approx(total / result["patches"])
    assert result["threshold_bits"] == pytest.approx(result["threshold_nats"] / math.log(2))
    assert patcher.target_bytes_per_patch is None  # no recalibration on new inputs
    held = patcher.relative_threshold if rule == "monotonic" else patcher.threshold
    assert held == result["threshold_nats"]
    key = "relative_threshold" if rule == "monotonic" else "threshold"
    fixed = Patcher(spiky_model(), rule=rule, **{key: result["threshold_nats"]})
    np.testing.assert_array_equal(patcher.patch([new])[0].starts, fixed.patch([new])[0].starts)
    assert patcher.patch([new])[0].threshold_nats == result["threshold_nats"]
    # the achieved bytes/patch on the training texts is what patching them with the held threshold gives
    assert sum(len(p.starts) for p in patcher.patch(train)) == result["patches"]


def test_unreachable_targets_are_errors() -> None:
    data = b"twelve bytes"
    for target in (0.5, 13.0):  # below 1 byte/patch; above the text length (one patch is 12 bytes/patch)
        with pytest.raises(BltError, match="out of reach"):
            Patcher(spiky_model(), target_bytes_per_patch=target).patch([data])


def test_target_on_empty_input_gives_zero_patches() -> None:
    p = Patcher(spiky_model(), target_bytes_per_patch=3.0).patch([b""])[0]
    assert p.lengths.tolist() == []


# ---------------------------------------------------------------- newline resets


def test_reset_at_newlines_equals_scoring_each_line_alone() -> None:
    """Lines split by bytes.splitlines(keepends=True): \\n, \\r\\n and a lone \\r all end a line."""
    model, data = spiky_model(), TEXT.encode() + INVALID + b"\n\nlast"
    lines = data.splitlines(keepends=True)
    assert len(lines) == 7
    expected = np.concatenate([score(model, line)[0].entropy_nats for line in lines])
    got = score_resetting_at_newlines(model, data)
    assert got.data == data
    np.testing.assert_allclose(got.entropy_nats, expected, atol=1e-6)
    p = Patcher(model, threshold=0.1, reset_at_newlines=True).patch([data])[0]
    np.testing.assert_allclose(p.entropies_nats, expected, atol=1e-6)
    np.testing.assert_array_equal(p.starts, patch_starts(p.entropies_nats, threshold=0.1))
    assert b"".join(p.segments) == data


def test_every_line_start_sees_a_fresh_context() -> None:
    """Byte 0's entropy is that of the prediction from BOS alone, so it is the same for every text; with resets,
    the first byte of every line has exactly that entropy (without them, it does not)."""
    model, data = spiky_model(), b"first line\nsecond\r\nthird\rfourth"
    fresh = {float(score(model, bytes([b]) + b"tail")[0].entropy_nats[0]) for b in b"fstx"}
    assert len(fresh) == 1
    (h0,) = fresh
    line_starts = np.cumsum([0] + [len(x) for x in data.splitlines(keepends=True)])[:-1]
    reset = score_resetting_at_newlines(model, data).entropy_nats
    np.testing.assert_allclose(reset[line_starts], h0, atol=1e-6)
    plain = score(model, data)[0].entropy_nats
    assert not np.allclose(plain[line_starts[1:]], h0, atol=1e-3)


def test_reset_at_newlines_on_empty_input() -> None:
    s = score_resetting_at_newlines(spiky_model(), b"")
    assert s.entropy_nats.shape == (0,) and s.data == b""


# ---------------------------------------------------------------- defaults from the model card


@pytest.fixture(scope="module")
def carded_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = spiky_model()
    card = {"steps": 0, "patch_thresholds_nats": {"global": 0.2, "monotonic": 0.05}}
    return save_model_dir(model, Config(model=model.cfg), card, tmp_path_factory.mktemp("m") / "model")


@pytest.mark.parametrize("rule, key", [("global", "threshold"), ("monotonic", "relative_threshold")])
def test_card_thresholds_are_the_default(carded_model_dir: Path, rule: str, key: str) -> None:
    data = TEXT.encode()
    value = {"global": 0.2, "monotonic": 0.05}[rule]
    expected = Patcher(carded_model_dir.as_posix(), rule=rule, **{key: value}).patch([data])[0]
    for model in (carded_model_dir.as_posix(), load_model(carded_model_dir)):
        got = Patcher(model, rule=rule).patch([data])[0]
        np.testing.assert_array_equal(got.starts, expected.starts)
        assert got.threshold_nats == value


def test_no_threshold_anywhere_is_a_clear_error() -> None:
    """A model without card thresholds and a call without threshold or target: the message names the fix."""
    with pytest.raises(BltError, match=r"--threshold.*--target-bytes-per-patch"):
        Patcher(spiky_model(), rule="global")


# ---------------------------------------------------------------- errors


def test_threshold_and_target_together_are_an_error() -> None:
    for kw in ({"threshold": 1.0}, {"relative_threshold": 1.0}):
        with pytest.raises(BltError, match="not both"):
            Patcher(spiky_model(), target_bytes_per_patch=4.0, **kw)


def test_unknown_rule_lists_the_valid_ones() -> None:
    with pytest.raises(BltError, match="unknown rule 'entropy'") as err:
        Patcher(spiky_model(), rule="entropy", threshold=1.0)
    assert all(rule in str(err.value) for rule in RULES)


def test_combined_cannot_be_calibrated() -> None:
    with pytest.raises(BltError, match="combined"):
        Patcher(spiky_model(), rule="combined", target_bytes_per_patch=4.0)


def test_bad_thresholds_and_lengths_are_errors() -> None:
    model = spiky_model()
    with pytest.raises(BltError, match="threshold must be ≥ 0"):
        Patcher(model, threshold=-1.0).patch(["abc"])
    with pytest.raises(BltError, match="max_patch_length must be an integer ≥ 1"):
        Patcher(model, threshold=1.0, max_patch_length=0).patch(["abc"])
    with pytest.raises(BltError, match="patch_size"):
        Patcher(rule="fixed").patch(["abc"])
    with pytest.raises(BltError, match="fit needs target_bytes_per_patch"):
        Patcher(model, threshold=1.0).fit(["abc"])


def test_target_with_a_rule_based_rule_is_an_error() -> None:
    with pytest.raises(BltError, match="space"):
        Patcher(rule="space", target_bytes_per_patch=4.0)
