"""BLT's entropy model as a byte scorer (`--model hf:DIR`), offline: a tiny randomly initialised `BltForCausalLM` is
saved with `save_pretrained`, and everything blt computes from it must equal transformers' own `BltPatcher` run on
BLT's ids (byte b -> b + 4 after BOS 1), position by position: entropies over all 260 ids, surprisals, windows."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import assert_user_error, run_cli

from blt.bytelm.checkpoint import load_model
from blt.bytelm.entropy import corpus_bits_per_byte, entropy_from_logits, plan_windows, score
from blt.bytelm.hf_blt import BltEntropyModel, blt_ids
from blt.bytelm.online import score_online
from blt.bytelm.sources import iter_documents
from blt.config import DataConfig
from blt.errors import BltError

transformers = pytest.importorskip("transformers")
if not hasattr(transformers, "BltForCausalLM"):
    pytest.skip("this transformers has no BLT model", allow_module_level=True)

WINDOW = 8  # the tiny entropy model's sliding window: blt's context is 4 windows
TEXT = "Hello, wörld! 日本語 😀 entropy patches.\n".encode() + b"\xff\xfe\x80 invalid UTF-8 " * 6  # 203 bytes


def tiny_blt(sliding_window: int | None = WINDOW, seed: int = 0, **config: Any) -> Any:
    """A BltForCausalLM with every part 1 layer of width 32; its entropy model's logits ×4, so entropies spread."""
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    small["max_position_embeddings"] = 64
    cfg = transformers.BltConfig(
        vocab_size=260,
        max_position_embeddings=64,
        encoder_hash_byte_group_size=[2, 3],
        encoder_hash_byte_group_vocab=64,
        encoder_hash_byte_group_nb_functions=1,
        patcher_config={**small, "sliding_window": sliding_window},
        encoder_config=dict(small),
        decoder_config={**small, "hidden_size_global": 64},
        global_config={**small, "hidden_size": 64},
        **config,
    )
    torch.manual_seed(seed)
    model = transformers.BltForCausalLM(cfg).eval()
    if model.model.patcher is not None:
        with torch.no_grad():
            model.model.patcher.norm.weight.mul_(4.0)
    return model


@pytest.fixture(scope="module")
def blt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """(transformers' entropy model, the directory its BltForCausalLM was saved to)."""
    model = tiny_blt()
    path = tmp_path_factory.mktemp("blt") / "tiny-blt"
    model.save_pretrained(path)
    return model.model.patcher, path


def direct(patcher: Any, data: bytes) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """transformers' computation on BLT's ids in one pass: (entropies [n], surprisals [n], logits [n, 260])."""
    ids = torch.tensor([[1] + [b + 4 for b in data[:-1]]])  # BOS, then every byte but the last, offset by 4
    with torch.no_grad():
        entropies, _, logits = patcher(ids)
    targets = torch.tensor([b + 4 for b in data])
    surprisal = -torch.log_softmax(logits[0], -1)[torch.arange(len(data)), targets]
    return entropies[0].numpy(), surprisal.numpy(), logits[0]


def test_blt_ids_is_the_tokenizer_offset_and_a_permutation() -> None:
    ids = blt_ids().tolist()
    assert ids[:3] == [4, 5, 6] and ids[255] == 259  # byte b -> b + 4
    assert ids[256:] == [1, 2, 0, 3]  # BOS, EOS, then PAD and the spare id onto BOE and BPE
    assert sorted(ids) == list(range(260))
    assert blt_ids(262).tolist()[260:] == [260, 261]  # ids past BLT's 260 stay where they are


def test_entropies_and_surprisals_equal_transformers_at_every_position(blt: tuple[Any, Path]) -> None:
    """Shorter than the context (one window) and longer (several): the sliding window makes windowing exact."""
    patcher, path = blt
    lm = load_model(f"hf:{path}")
    assert isinstance(lm, BltEntropyModel) and lm.context == 4 * WINDOW < len(TEXT)
    for data in (TEXT[:20], TEXT):
        got = score(lm, data, batch_size=3)[0]
        entropies, surprisals, _ = direct(patcher, data)
        np.testing.assert_allclose(got.entropy_nats, entropies, atol=1e-5, rtol=0)
        np.testing.assert_allclose(got.surprisal_nats, surprisals, atol=1e-5, rtol=1e-6)
    assert np.ptp(entropies) > 1.0  # the ×4 logits: entropies that differ, not all ≈ ln 260


def test_logits_are_blts_reordered_so_entropy_covers_every_id(blt: tuple[Any, Path]) -> None:
    patcher, path = blt
    lm = load_model(f"hf:{path}")
    data = TEXT[:30]
    ours = torch.tensor([[256, *data[:-1]]])  # blt's ids: BOS 256, then the bytes
    with torch.no_grad():
        logits = lm(ours)[0]
    _, _, theirs = direct(patcher, data)
    assert torch.equal(logits, theirs[:, blt_ids()])  # a reordering: our id i is BLT's blt_ids()[i]
    entropies = entropy_from_logits(logits)
    blt_entropies = torch.distributions.Categorical(logits=theirs).entropy()
    torch.testing.assert_close(entropies, blt_entropies, atol=1e-5, rtol=0)
    bytes_only = entropy_from_logits(logits[:, :256])  # renormalised over the bytes: not what BLT computes
    assert (bytes_only - entropies).abs().max() > 1e-4


def test_without_a_sliding_window_long_texts_go_through_score_windows(tmp_path: Path) -> None:
    """Full causal attention: the context is max_position_embeddings (64) and each window is scored on its own, as
    blt's own models are (`plan_windows`), each window checked against transformers on its ids."""
    model = tiny_blt(sliding_window=None, seed=1)
    model.save_pretrained(tmp_path / "m")
    lm = load_model(f"hf:{tmp_path / 'm'}")
    assert lm.context == 64 and lm.cfg.sliding_window is None
    got = score(lm, TEXT, stride=48)[0]
    inputs = [1] + [b + 4 for b in TEXT[:-1]]
    expected = np.empty(len(TEXT), dtype=np.float32)
    for start, emit_from, end in plan_windows(len(TEXT), 64, 48):
        with torch.no_grad():
            entropies = model.model.patcher(torch.tensor([inputs[start:end]]))[0][0]
        expected[emit_from:end] = entropies[emit_from - start :].numpy()
    np.testing.assert_allclose(got.entropy_nats, expected, atol=1e-5, rtol=0)


def test_a_sharded_checkpoint_loads_the_same_model(blt: tuple[Any, Path], tmp_path: Path) -> None:
    """model.safetensors.index.json: only the shards that hold `model.patcher.*` are read."""
    patcher, path = blt
    model = transformers.BltForCausalLM.from_pretrained(path)
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    lm = load_model(f"hf:{tmp_path / 'sharded'}")
    np.testing.assert_array_equal(
        score(lm, TEXT)[0].entropy_nats, score(load_model(f"hf:{path}"), TEXT)[0].entropy_nats
    )


def test_metas_layout_loads_the_same_model(blt: tuple[Any, Path], tmp_path: Path) -> None:
    """facebook/blt-1b's files: entropy_model/params.json + consolidated.pth, Meta's tensor names."""
    patcher, path = blt
    meta = {"embed_tokens": "tok_embeddings", "lm_head": "output", "self_attn": "attention", "mlp": "feed_forward"}
    meta |= {"input_layernorm": "attention_norm", "post_attention_layernorm": "ffn_norm"}
    meta |= {f"{x}_proj": f"w{x}" for x in "qkvo"} | {"gate_proj": "w1", "down_proj": "w2", "up_proj": "w3"}
    state = {
        ".".join(meta.get(p, p) for p in k.split(".")): v.to(torch.bfloat16) for k, v in patcher.state_dict().items()
    }
    state["rope_embeddings.freqs_cis"] = torch.zeros(64, 8, 2)  # Meta's rotary table, ignored
    (tmp_path / "entropy_model").mkdir()
    torch.save({"model": state}, tmp_path / "entropy_model" / "consolidated.pth")
    params = {"dim": 32, "n_layers": 1, "n_heads": 2, "max_seqlen": 64, "vocab_size": 260, "sliding_window": WINDOW}
    record = {"entropy_model": params, "data": {"patcher_args": {"threshold": 1.335}}}
    (tmp_path / "entropy_model" / "params.json").write_text(json.dumps(record))
    (tmp_path / "config.json").write_text(json.dumps({"args": {"dim": 64}}))  # the main model's: no model_type
    lm = load_model(f"hf:{tmp_path}")
    assert lm.card["layout"] == "meta" and lm.card["blt_patching_threshold_nats"] == 1.335
    reference = load_model(f"hf:{path}")
    with torch.no_grad():
        reference.patcher.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in patcher.state_dict().items()})
    np.testing.assert_allclose(score(lm, TEXT)[0].entropy_nats, score(reference, TEXT)[0].entropy_nats, atol=1e-6)
    del params["sliding_window"]  # Meta's loader fixes it at 512
    (tmp_path / "entropy_model" / "params.json").write_text(json.dumps({"entropy_model": params}))
    assert load_model(f"hf:{tmp_path}").cfg.sliding_window == 512


def test_card_says_where_it_came_from_and_stores_no_thresholds(blt: tuple[Any, Path]) -> None:
    lm = load_model(f"hf:{blt[1]}")
    assert lm.card["source"] == f"hf:{blt[1]}" and lm.card["layout"] == "transformers"
    assert set(lm.card["conventions"]) == {"ids", "entropy", "bos", "context"}
    assert "patch_thresholds_nats" not in lm.card  # a Patcher needs --threshold or a target
    assert lm.num_params() == sum(p.numel() for p in blt[0].parameters())


def test_online_scoring_with_no_step_is_score(blt: tuple[Any, Path]) -> None:
    lm = load_model(f"hf:{blt[1]}")
    online = score_online(lm, TEXT, lr=0.0)[0]
    np.testing.assert_allclose(online.entropy_nats, score(lm, TEXT)[0].entropy_nats, atol=1e-5, rtol=0)
    learnt = score_online(lm, TEXT, lr=1e-3)[0]
    assert np.isfinite(learnt.surprisal_nats).all()


def test_a_saved_patcher_keeps_the_blt_model(blt: tuple[Any, Path], tmp_path: Path) -> None:
    from blt.segment.patcher import Patcher

    patcher = Patcher(f"hf:{blt[1]}", threshold=3.0)
    patcher.save(tmp_path / "p")
    again = Patcher.load(tmp_path / "p")  # checks the model's hash
    assert isinstance(again.model, BltEntropyModel)
    first, second = patcher.patch([TEXT])[0], again.patch([TEXT])[0]
    assert first.starts.tolist() == second.starts.tolist()


def test_blt_segment_reassembles_the_input_bytes(blt: tuple[Any, Path], tmp_path: Path) -> None:
    (tmp_path / "in.bin").write_bytes(TEXT)
    code, out, err = run_cli(
        "segment",
        "--file",
        str(tmp_path / "in.bin"),
        "--model",
        f"hf:{blt[1]}",
        "--target-bytes-per-patch",
        "3",
        "--json",
    )
    assert code == 0, err
    got = json.loads(out)
    pieces = [TEXT[s : s + n] for s, n in zip(got["starts"], got["lengths"], strict=True)]
    assert b"".join(pieces) == TEXT and b"\xff\xfe" in TEXT
    assert abs(got["bytes_per_patch"] - 3) < 0.5


def test_entropy_eval_and_info_take_hf_models(blt: tuple[Any, Path], tmp_path: Path) -> None:
    model = f"hf:{blt[1]}"
    code, out, err = run_cli("entropy", TEXT[:40].decode(errors="replace"), "--model", model, "--json")
    assert code == 0, err
    data = TEXT[:40].decode(errors="replace").encode()
    np.testing.assert_allclose(
        json.loads(out)["entropy_nats"], score(load_model(model), data)[0].entropy_nats, atol=1e-5
    )
    (tmp_path / "corpus").mkdir()
    for i in range(3):
        (tmp_path / "corpus" / f"d{i}.txt").write_bytes(TEXT[i * 50 : i * 50 + 80])
    code, out, err = run_cli("eval", "--data", str(tmp_path / "corpus"), "--model", model, "--json", "--no-cache")
    assert code == 0, err
    docs = [d.data for d in iter_documents(DataConfig(sources=[str(tmp_path / "corpus")]))]
    assert json.loads(out)["bits_per_byte"] == pytest.approx(corpus_bits_per_byte(score(load_model(model), docs)))
    code, out, err = run_cli("info", "--model", model)
    assert code == 0, err
    assert json.loads(out)["kind"] == "blt-entropy-model"


# ---------------------------------------------------------------------------------------------- bad input
def test_not_blt_checkpoints_are_one_clear_line(blt: tuple[Any, Path], tmp_path: Path) -> None:
    cases = {"no directory": "hf:/nonexistent/blt", "needs a hub name or a directory": "hf:"}
    (tmp_path / "empty").mkdir()
    cases["is not a BLT checkpoint"] = f"hf:{tmp_path / 'empty'}"
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    cases["holds a 'llama' model, not BLT's"] = f"hf:{tmp_path / 'llama'}"
    tiny_blt(patch_in_forward=False).save_pretrained(tmp_path / "no-patcher")
    cases["ships no entropy model"] = f"hf:{tmp_path / 'no-patcher'}"
    cases["is a file; give the checkpoint's directory"] = f"hf:{blt[1] / 'config.json'}"
    cases["HF_HUB_OFFLINE is set) and hf:nobody/no-such-blt is not cached"] = "hf:nobody/no-such-blt"
    for expected, name in cases.items():
        with pytest.raises(BltError) as info:
            load_model(name)
        assert expected in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert_user_error(["segment", "x", "--model", "hf:/nonexistent/blt", "--threshold", "1"], "no directory")
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(TEXT * 4)
    compare = ["compare", "--data", str(corpus), "--model", f"hf:{blt[1]}", "--segmenters", "entropy-global"]
    assert_user_error([*compare, "--adapt", "2"], "an hf: model is used as released")
    fitting = [*compare, "--threshold", "2", "--fit-temperature"]
    assert_user_error(fitting, "a temperature is fitted for blt's own byte models")


def test_without_transformers_the_line_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "transformers" else find_spec(name, *a)
    )
    with pytest.raises(BltError, match=r"need transformers: pip install 'blt-patcher\[llm\]'"):
        load_model(f"hf:{tmp_path}")
