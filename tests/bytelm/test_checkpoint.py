"""Model directories: save/load round trips, the bundled model, and clear errors for anything that is not a model
(missing, foreign, truncated or unsafe files)."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from blt.bytelm.checkpoint import BUNDLED_MODELS, bundled_model_dir, load_model, save_model_dir
from blt.bytelm.model import ByteLM
from blt.config import Config, ModelConfig
from blt.errors import BltError, brief


def tiny(seed: int = 0, **kw: object) -> tuple[ByteLM, Config]:
    torch.manual_seed(seed)
    cfg = Config(model=ModelConfig(n_layers=1, d_model=32, n_heads=2, context=64, **kw))
    return ByteLM(cfg.model), cfg


def test_round_trip_gives_identical_logits_and_keeps_the_card(tmp_path: Path) -> None:
    model, cfg = tiny()
    path = save_model_dir(model, cfg, {"steps": 7, "data": ["x.txt"]}, tmp_path / "m")
    loaded = load_model(path)
    ids = torch.randint(0, 260, (3, 20))
    with torch.no_grad():
        assert torch.equal(loaded(ids), model.eval()(ids))
    assert loaded.card["steps"] == 7 and loaded.card["format"] == "blt-byte-lm"
    assert loaded.full_config == cfg
    assert not loaded.training


def test_tied_weights_are_stored_once_and_untied_ones_twice(tmp_path: Path) -> None:
    for tie, expected in ((True, False), (False, True)):
        model, cfg = tiny(tie_embeddings=tie)
        path = save_model_dir(model, cfg, {}, tmp_path / f"m{tie}")
        with safe_open(str(path / "model.safetensors"), "pt") as f:
            keys = set(f.keys())
        assert ("head.weight" in keys and "embed.weight" in keys) is expected
        assert torch.equal(load_model(path).head.weight, model.head.weight)


def test_saving_over_an_existing_model_replaces_it_whole(tmp_path: Path) -> None:
    a, cfg = tiny(0)
    b, _ = tiny(1)
    save_model_dir(a, cfg, {"steps": 1}, tmp_path / "m")
    save_model_dir(b, cfg, {"steps": 2}, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.card["steps"] == 2 and torch.equal(loaded.embed.weight, b.embed.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp or .old directories left behind


@pytest.mark.parametrize("name", BUNDLED_MODELS)
def test_the_bundled_models_load_with_their_cards(name: str) -> None:
    """Each bundled model (`--model default`, `--model quality`) ships with its card: steps, validation bits/byte,
    the patch thresholds calibrated on held-out text and the list of its training sources."""
    if not (bundled_model_dir(name) / "model.safetensors").is_file():
        pytest.skip(f"the bundled {name} model is not built")
    lm = load_model(name)
    assert lm.card["val_bits_per_byte"] > 0 and lm.card["steps"] > 0
    assert lm.num_params() == lm.card["params"]
    assert set(lm.card["patch_thresholds_nats"]) == {"global", "monotonic", "budget"}
    assert set(lm.card["data"]) == set(lm.card["data_sources"]) and lm.card["unseen_data"]


@pytest.mark.skipif(not (bundled_model_dir("quality") / "model.safetensors").is_file(), reason="not built")
def test_the_quality_model_is_larger_and_better_on_the_same_held_out_bytes() -> None:
    """Both bundled models were trained on the same corpora and validated on the same held-out windows; the quality
    model must earn its cost there (it scores about 3× slower)."""
    default, quality = load_model("default"), load_model("quality")
    assert default.card["data"] == quality.card["data"] and default.card["val_bytes"] == quality.card["val_bytes"]
    assert quality.num_params() > 2 * default.num_params()
    assert quality.card["val_bits_per_byte"] < 0.97 * default.card["val_bits_per_byte"]


def test_missing_path_is_a_clear_error() -> None:
    with pytest.raises(BltError, match=r"not found.*'default' or 'quality' \(bundled\), a model directory"):
        load_model("/nonexistent/model")


def test_a_directory_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(BltError, match="is not a blt model"):
        load_model(tmp_path)


def test_truncated_weights_are_reported(tmp_path: Path) -> None:
    model, cfg = tiny()
    path = save_model_dir(model, cfg, {}, tmp_path / "m")
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(BltError, match="not readable safetensors"):
        load_model(path)


def test_weights_that_do_not_match_the_config(tmp_path: Path) -> None:
    model, cfg = tiny()
    path = save_model_dir(model, cfg, {}, tmp_path / "m")
    (path / "config.yaml").write_text(cfg.to_yaml().replace("d_model: 32", "d_model: 64"))
    with pytest.raises(BltError, match="weights do not match its config"):
        load_model(path)


def test_truncated_and_unsafe_checkpoints_are_refused(tmp_path: Path) -> None:
    """A checkpoint is read with weights_only=True: a pickle of an arbitrary object is refused, not executed."""
    truncated = tmp_path / "t.ckpt"
    model, cfg = tiny()
    torch.save({"state_dict": model.state_dict(), "blt_config": cfg.to_dict()}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(BltError, match="truncated or corrupted"):
        load_model(truncated)

    class Payload:
        def __reduce__(self) -> tuple:
            return (print, ("this must never run",))

    unsafe = tmp_path / "u.ckpt"
    unsafe.write_bytes(pickle.dumps({"state_dict": {}, "x": Payload()}))
    with pytest.raises(BltError, match="not a readable checkpoint"):
        load_model(unsafe)


def test_a_damaged_card_names_the_file_and_the_fix(tmp_path: Path) -> None:
    model, cfg = tiny()
    path = save_model_dir(model, cfg, {}, tmp_path / "m")
    for content, why in ((b"{garbage", "is not valid JSON (line 1"), (b"[1, 2]", "holds a JSON list, not an object")):
        (path / "card.json").write_bytes(content)
        with pytest.raises(BltError, match=re.escape(why) + r".*or delete it \(it only describes the model\)"):
            load_model(path)
    (path / "card.json").unlink()
    assert load_model(path).card == {}  # no card: the model still loads


def test_a_missing_weights_file_is_named_and_the_file_itself_points_to_its_directory(tmp_path: Path) -> None:
    model, cfg = tiny()
    path = save_model_dir(model, cfg, {}, tmp_path / "m")
    with pytest.raises(BltError, match="pass the model directory that holds model.safetensors"):
        load_model(path / "model.safetensors")
    (path / "model.safetensors").unlink()
    with pytest.raises(BltError, match="is not a blt model: model.safetensors is missing"):
        load_model(path)


def test_a_size_mismatch_names_the_first_tensor_and_counts_the_rest(tmp_path: Path) -> None:
    model, cfg = tiny()
    path = save_model_dir(model, cfg, {}, tmp_path / "m")
    (path / "config.yaml").write_text(cfg.to_yaml().replace("d_model: 32", "d_model: 64"))
    with pytest.raises(BltError, match=r"size mismatch for embed.weight: .*; \d+ more\)$"):
        load_model(path)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (bytes(range(7, 250)), "(UnpicklingError: Unsupported operand"),  # torch's advice skipped, its reason kept
        (b"", "(EOFError, an empty or cut-off file)"),
    ],
)
def test_garbage_checkpoints_give_the_reason_in_whole_words(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "g.ckpt"
    path.write_bytes(content)
    with pytest.raises(BltError, match=re.escape(reason)) as info:
        load_model(path)
    assert "\n" not in str(info.value) and "PyTorch 2.6" not in str(info.value)


def test_brief_cuts_at_a_sentence_or_a_word_never_mid_word() -> None:
    assert brief("Weights only load failed. In PyTorch 2.6, we changed") == "Weights only load failed"
    assert brief("\n  first line\nsecond") == "first line"
    assert brief("alpha beta gamma delta", 12) == "alpha beta…"
    assert brief("x" * 30, 10) == "x" * 10 + "…" and brief("") == ""
