"""Meta's released BLT entropy model (the small byte LM that places BLT's patch boundaries) as a blt byte model:
`load_model("hf:facebook/blt-1b")` (or `hf:DIR`) gives a `BltEntropyModel`, a `ByteLM` that `score`, `score_online`,
`Patcher` and `blt compare` use unchanged. The layers are transformers' `BltPatcher`; no remote code ever runs.

Two checkpoint layouts load, from the hub or a local directory:
- transformers' (itazap/blt-1b-hf, or any `BltForCausalLM.save_pretrained`): config.json with model_type "blt", the
  entropy model inside model.safetensors under `model.patcher.*` (only those tensors are read); also a saved
  `BltPatcher` on its own (model_type "blt_patcher").
- Meta's (facebook/blt-1b, facebook/blt-7b): entropy_model/params.json + entropy_model/consolidated.pth beside the
  main model, which is never downloaded; the weights are renamed as transformers' conversion script does.

Conventions, BLT's and this wrapper's:
- Ids. BLT's tokenizer maps byte b to id b + 4 and keeps 0..3 for BOE, BOS, EOS and BPE; blt's are bytes 0..255,
  then BOS 256, EOS 257, PAD 258 and one spare id. `forward` maps ours to BLT's (BOS → 1, EOS → 2, PAD → 0, spare
  → 3; see `blt_ids`) and BLT's logits back to our order with the same permutation, so no id is dropped.
- Entropy. Over all 260 ids, special ones included, in nats: what BltPatcher computes (Categorical(logits).entropy).
- BOS. Byte 0 is predicted after BLT's BOS (id 1), as BLT's tokenizer starts every text.
- Context. BLT's entropy model attends to a sliding window of 512 ids, with rotary (relative) positions. `.context`
  is 4 windows, so `score`'s default windows (stride 3/4 of the context) give every byte its full window: the
  entropies equal one pass of transformers' BltPatcher over the whole text (up to float rounding, and with positions
  kept small). Meta's own code scores independent chunks of 8192 ids, so there the bytes just after each chunk
  boundary see less context: the one place the two differ. A model without a sliding window gets its
  max_position_embeddings as context, windowed like blt's own models.
- Thresholds. None are stored (`Patcher` needs --threshold or --target-bytes-per-patch); the card keeps BLT's own
  global threshold (1.335 nats for the released models) as `blt_patching_threshold_nats`, for reference.
Loaded in float32; `score(..., precision="auto")` runs it in bf16 where the hardware does.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from blt.bytelm.model import ByteLM
from blt.config import N_BYTE_VALUES, Config, ModelConfig
from blt.errors import BltError, brief

PREFIX = "hf:"  # `--model hf:NAME_OR_DIR`
KIND = "blt-entropy-model"  # card["kind"]: how `checkpoint.load_model` knows a saved copy of one
LLM_EXTRA = "pip install 'blt-patcher[llm]'"
BLT_BOE, BLT_BOS, BLT_EOS, BLT_BPE, BLT_OFFSET = 0, 1, 2, 3, 4  # BLT's tokenizer: specials, then byte b -> b + 4
BLT_VOCAB = BLT_OFFSET + N_BYTE_VALUES  # 260
META_WINDOW = 512  # Meta's loader hard-codes the entropy model's sliding window; params.json does not say
META_MAX_SEQLEN = 8192
WEIGHTS = "model.safetensors"
GetFile = Callable[[str], Path | None]  # a file of the checkpoint by its relative name -> local path, None if absent


def blt_ids(vocab_size: int = BLT_VOCAB) -> torch.Tensor:
    """[vocab_size] int64: entry i is BLT's id for blt's id i (bytes b -> b + 4, BOS 256 -> 1, EOS 257 -> 2,
    PAD 258 -> 0 (BOE), spare 259 -> 3 (BPE), BLT's ids past 259, if any, kept): a permutation of the ids."""
    ours = [*range(BLT_OFFSET, BLT_VOCAB), BLT_BOS, BLT_EOS, BLT_BOE, BLT_BPE]
    return torch.tensor(ours + list(range(BLT_VOCAB, vocab_size)), dtype=torch.long)


def context_for(sliding_window: int | None, max_positions: int) -> int:
    """The window `score` should use: 4 sliding windows (its default stride then leaves every emitted byte a full
    window of context, so windowing changes nothing), or the trained length when attention is not windowed."""
    return 4 * sliding_window if sliding_window else max_positions


class BltEntropyModel(ByteLM):
    """BLT's entropy model behind blt's byte ids: `forward(ids [B, T]) -> logits [B, T, V]`, V = 260 (the module's
    docstring has the conventions). `.cfg` describes it in blt's terms (`context` as `context_for` says; it cannot
    rebuild a `ByteLM`), `.full_config` holds it with default data settings (for `blt eval --split`)."""

    to_blt: torch.Tensor  # buffer: `blt_ids(V)`

    def __init__(self, patcher: nn.Module, card: dict[str, Any]) -> None:
        nn.Module.__init__(self)  # not ByteLM's: the layers are BLT's
        c: Any = patcher.config  # a BltPatcherConfig
        self.patcher = patcher
        self.register_buffer("to_blt", blt_ids(c.vocab_size), persistent=False)
        self.cfg = ModelConfig(
            vocab_size=c.vocab_size,
            n_layers=c.num_hidden_layers,
            d_model=c.hidden_size,
            n_heads=c.num_attention_heads,
            ffn_hidden=c.intermediate_size,
            context=context_for(c.sliding_window, c.max_position_embeddings),
            sliding_window=c.sliding_window,
            tie_embeddings=False,
            rope_base=float(_rope_theta(c)),
            norm_eps=float(c.rms_norm_eps),
        )
        self.card = card
        self.full_config = Config(model=self.cfg)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, T] in blt's ids -> logits [B, T, V] in blt's id order."""
        logits: torch.Tensor = self.patcher(self.to_blt[ids])[2]  # (entropies, lengths, logits [B, T, V] BLT's order)
        return logits.index_select(-1, self.to_blt)  # column i: BLT's id for our id i


def load(name_or_dir: str) -> BltEntropyModel:
    """BLT's entropy model from a hub name (facebook/blt-1b, itazap/blt-1b-hf, ...) or a local checkpoint directory,
    in float32 on the CPU, in eval mode. Every problem is a `BltError` that says what to give instead."""
    name = name_or_dir.strip()
    if not name:
        raise BltError("--model hf: needs a hub name or a directory after it, e.g. --model hf:facebook/blt-1b")
    _need_transformers()
    get, where = _files(name)
    fields, state, facts = _read_checkpoint(get, where)
    card = {"name": f"{PREFIX}{name}", "source": f"{PREFIX}{name}", "kind": KIND, **facts}
    card |= {"conventions": conventions(fields), "hf_config": fields}
    return BltEntropyModel(_build(fields, state, where), card).eval()


def conventions(fields: dict[str, Any]) -> dict[str, str]:
    """The card's account of how blt reads this model (the module's docstring says why)."""
    window, positions = fields["sliding_window"], fields["max_position_embeddings"]
    context = context_for(window, positions)
    return {
        "ids": "blt's byte b -> BLT's id b + 4; BOS 256 -> 1, EOS 257 -> 2, PAD 258 -> 0 (BOE), 259 -> 3 (BPE)",
        "entropy": f"nats, over all {fields['vocab_size']} ids (special ids included), as BltPatcher computes it",
        "bos": "byte 0 is predicted after BLT's BOS (id 1)",
        "context": (
            f"windows of {context} ids, 4 sliding windows of {window}: every byte sees its full window (Meta's "
            f"code restarts every {META_MAX_SEQLEN} ids)"
            if window
            else f"windows of {context} ids (max_position_embeddings), as blt's own models"
        ),
    }


def load_saved(path: str | Path, card: dict[str, Any]) -> BltEntropyModel:
    """A `BltEntropyModel` written by `checkpoint.save_model_dir` (inside a saved patcher, say): `card["hf_config"]`
    rebuilds it, `path/model.safetensors` holds its weights."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not isinstance(card.get("hf_config"), dict):
        raise BltError(f"{path}: card.json lacks hf_config, the BLT entropy model's shape; save the model again")
    _need_transformers()
    try:
        state = {k.removeprefix("patcher."): v for k, v in load_file(str(Path(path) / WEIGHTS)).items()}
    except (SafetensorError, OSError) as exc:
        raise BltError(f"{Path(path) / WEIGHTS} is not readable ({brief(str(exc))}); save the model again") from None
    return BltEntropyModel(_build(card["hf_config"], state, str(path)), card).eval()


def _need_transformers() -> None:
    if importlib.util.find_spec("transformers") is None:
        raise BltError(f"hf: models (BLT's entropy model) need transformers: {LLM_EXTRA}")


# ----------------------------------------------------------------------------------------------------- files
def _files(name: str) -> tuple[GetFile, str]:
    """How to fetch the checkpoint's files, and how to name it in messages."""
    path = Path(name).expanduser()
    if path.is_dir():
        return (lambda f: path / f if (path / f).is_file() else None), str(path)
    if path.exists():
        raise BltError(f"--model hf:{name} is a file; give the checkpoint's directory ({path.parent}) or a hub name")
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise BltError(f"no directory {name}: give a BLT checkpoint directory or a hub name, e.g. hf:facebook/blt-1b")
    return _hub_files(name), f"hf:{name}"


def _hub_files(repo: str) -> GetFile:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    def get(filename: str) -> Path | None:
        try:
            return Path(hf_hub_download(repo, filename))
        except LocalEntryNotFoundError:  # offline, or the hub unreachable, and the file not cached
            why = "the hub is offline (HF_HUB_OFFLINE is set)" if _offline() else "the hub cannot be reached"
            raise BltError(
                f"{why} and hf:{repo} is not cached ({filename}); give a local directory: --model hf:DIR"
            ) from None
        except EntryNotFoundError:  # the repository has no such file
            return None
        except GatedRepoError:
            raise BltError(
                f"hf:{repo} is gated: accept its licence at https://huggingface.co/{repo}, then log in "
                "(hf auth login, or set HF_TOKEN)"
            ) from None
        except (RepositoryNotFoundError, HFValidationError):
            raise BltError(
                f"no directory or hub model named {repo}: give a BLT checkpoint directory or a hub name, "
                "e.g. hf:facebook/blt-1b"
            ) from None
        except OSError as exc:  # network errors
            raise BltError(
                f"could not download {filename} of hf:{repo} ({brief(str(exc)) or type(exc).__name__}); "
                "check the network, or give a local directory: --model hf:DIR"
            ) from None

    return get


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _read_json(path: Path, where: str) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BltError(f"{where}: {path.name} is not valid JSON ({type(exc).__name__}); download it again") from None
    if not isinstance(raw, dict):
        raise BltError(f"{where}: {path.name} holds a JSON {type(raw).__name__}, not an object")
    return raw


# ---------------------------------------------------------------------------------------------- checkpoints
def _read_checkpoint(get: GetFile, where: str) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """(the BltPatcherConfig fields, the entropy model's tensors by BltPatcher's names, facts for the card)."""
    config = get("config.json")
    if config is not None:
        raw = _read_json(config, where)
        kind = raw.get("model_type")
        if kind in ("blt", "blt_patcher"):
            return _transformers_layout(raw, get, where)
        if kind is not None:
            raise BltError(
                f"{where} holds a {kind!r} model, not BLT's (model_type 'blt'); hf: takes BLT checkpoints "
                "(blt llm scores other Hugging Face models)"
            )
    for params_name, weights_name in (
        ("entropy_model/params.json", "entropy_model/consolidated.pth"),
        ("params.json", "consolidated.pth"),
    ):
        if (params := get(params_name)) is not None:
            return _meta_layout(_read_json(params, where), get(weights_name), weights_name, where)
    raise BltError(
        f"{where} is not a BLT checkpoint: it has no config.json of a BLT model (transformers' layout, e.g. "
        "itazap/blt-1b-hf) and no entropy_model/params.json (Meta's layout, e.g. facebook/blt-1b)"
    )


def _transformers_layout(
    raw: dict[str, Any], get: GetFile, where: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    import transformers
    from safetensors import safe_open

    facts: dict[str, Any] = {"layout": "transformers"}
    c: Any  # the BltPatcherConfig
    prefixes: tuple[str, ...]
    if raw["model_type"] == "blt":
        cfg = transformers.BltConfig.from_dict(raw)
        c, prefixes = cfg.patcher_config, ("model.patcher.", "patcher.")
        if (threshold := getattr(cfg, "patching_threshold", None)) is not None:
            facts["blt_patching_threshold_nats"] = float(threshold)
    else:
        c, prefixes = transformers.BltPatcherConfig.from_dict(raw), ("",)
    index = get(f"{WEIGHTS}.index.json")
    if index is not None:  # sharded: fetch only the shards that hold the entropy model
        weight_map: dict[str, str] = _read_json(index, where).get("weight_map", {})
        prefix = next((p for p in prefixes if any(k.startswith(p) for k in weight_map)), None)
        shards = sorted({f for k, f in weight_map.items() if prefix is not None and k.startswith(prefix)})
        files = {shard: get(shard) for shard in shards}
    else:
        files = {WEIGHTS: get(WEIGHTS)}
        keys = _safetensors_keys(files[WEIGHTS], where)
        prefix = next((p for p in prefixes if any(k.startswith(p) for k in keys)), None)
    if prefix is None:
        raise BltError(
            f"{where} ships no entropy model (no {prefixes[0]}* weights: saved with patch_in_forward=false?); "
            "give a BLT checkpoint that holds its patcher, e.g. hf:facebook/blt-1b"
        )
    state: dict[str, torch.Tensor] = {}
    for shard, file in files.items():
        if file is None:
            raise BltError(f"{where}: {shard} is missing (named in {WEIGHTS}.index.json); download it again")
        with safe_open(str(file), "pt") as f:
            state |= {k.removeprefix(prefix): f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
    rope = getattr(c, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise BltError(f"{where}: the entropy model's rope type {rope['rope_type']!r} is not supported (default only)")
    fields = {
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.num_key_value_heads,
        "intermediate_size": c.intermediate_size,
        "max_position_embeddings": c.max_position_embeddings,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": _rope_theta(c),
        "sliding_window": c.sliding_window,
    }
    return fields, state, facts


def _safetensors_keys(file: Path | None, where: str) -> list[str]:
    from safetensors import SafetensorError, safe_open

    if file is None:
        raise BltError(f"{where} has a BLT config.json but no {WEIGHTS}; download the checkpoint's weights too")
    try:
        with safe_open(str(file), "pt") as f:
            return list(f.keys())
    except (SafetensorError, OSError) as exc:
        raise BltError(f"{where}: {WEIGHTS} is not readable ({brief(str(exc))}); download it again") from None


# Meta's names -> transformers' (its convert_blt_weights_to_hf.py), one dotted part at a time.
META_NAMES = {
    "tok_embeddings": "embed_tokens",
    "output": "lm_head",
    "attention": "self_attn",
    "feed_forward": "mlp",
    "attention_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    **{f"w{x}": f"{x}_proj" for x in "qkvo"},
    **{"w1": "gate_proj", "w2": "down_proj", "w3": "up_proj"},
}


def _meta_layout(
    raw: dict[str, Any], weights: Path | None, weights_name: str, where: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    p = raw.get("entropy_model") or raw.get("model") or raw
    if weights is None:
        raise BltError(f"{where} has the entropy model's params.json but no {weights_name}; download it too")
    try:
        ckpt = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, ...
        raise BltError(f"{where}: {weights_name} is not readable ({brief(str(exc)) or type(exc).__name__})") from None
    ckpt = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(ckpt, dict):
        raise BltError(f"{where}: {weights_name} holds no state dict")
    state = {
        ".".join(META_NAMES.get(part, part) for part in k.split(".")): v
        for k, v in ckpt.items()
        if "freqs_cis" not in k  # Meta's rotary table: transformers computes its own
    }
    if missing := [k for k in ("dim", "n_layers", "n_heads") if k not in p]:
        raise BltError(f"{where}: params.json lacks the entropy model's {', '.join(missing)}")
    up = state.get("layers.0.mlp.gate_proj.weight")
    embed = state.get("embed_tokens.weight")
    if up is None or embed is None:
        raise BltError(f"{where}: {weights_name} is not an entropy model (no tok_embeddings or feed_forward weights)")
    fields = {
        "vocab_size": int(embed.shape[0]),
        "hidden_size": int(p["dim"]),
        "num_hidden_layers": int(p["n_layers"]),
        "num_attention_heads": int(p["n_heads"]),
        "num_key_value_heads": int(p.get("n_kv_heads") or p["n_heads"]),
        "intermediate_size": int(up.shape[0]),  # Meta's multiple_of / ffn_dim_multiplier rounding, read off
        "max_position_embeddings": int(p.get("max_seqlen") or p.get("max_length") or META_MAX_SEQLEN),
        "rms_norm_eps": float(p.get("norm_eps", 1e-5)),
        "rope_theta": float(p.get("rope_theta", 10000.0)),
        "sliding_window": int(p.get("sliding_window") or META_WINDOW),
    }
    facts: dict[str, Any] = {"layout": "meta"}
    if (threshold := (raw.get("data") or {}).get("patcher_args", {}).get("threshold")) is not None:
        facts["blt_patching_threshold_nats"] = float(threshold)
    return fields, state, facts


def _build(fields: dict[str, Any], state: dict[str, torch.Tensor], where: str) -> nn.Module:
    """transformers' BltPatcher with `fields`, holding `state` (float32): made on the meta device (no random init to
    throw away), the tensors assigned, the rotary tables (buffers, not in the state dict) computed."""
    try:
        from transformers import BltPatcherConfig
        from transformers.models.blt.modeling_blt import BltPatcher
    except ImportError:
        import transformers

        raise BltError(
            f"transformers {transformers.__version__} has no BLT model; upgrade it: pip install -U transformers"
        ) from None
    if fields["vocab_size"] < BLT_VOCAB:
        raise BltError(f"{where}: the entropy model has {fields['vocab_size']} ids; BLT's bytes need {BLT_VOCAB}")
    config = BltPatcherConfig(**fields)
    with torch.device("meta"):
        patcher: Any = BltPatcher(config)
    expected = set(patcher.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        first = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        more = f"; {n} more" if (n := len(missing) + len(unexpected) - 1) else ""
        raise BltError(f"{where}: the entropy model's weights do not match its config ({first}{more})")
    try:
        patcher.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    except RuntimeError as exc:  # a shape mismatch: "size mismatch for ...", one line per tensor
        problems = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()] or [str(exc)]
        raise BltError(f"{where}: the entropy model's weights do not match its config ({brief(problems[0])})") from None
    patcher.rotary_emb = type(patcher.rotary_emb)(config=patcher.config)
    assert not any(t.is_meta for t in [*patcher.parameters(), *patcher.buffers()])
    built: nn.Module = patcher.eval()
    return built


def _rope_theta(config: Any) -> float:
    """The rotary base: `rope_parameters["rope_theta"]` in transformers ≥ 5, `rope_theta` before."""
    rope = getattr(config, "rope_parameters", None) or {}
    return float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))
