"""Full language models scored with the byte model's entropy functions, as one `TokenScores`: Hugging Face causal
LMs (hub name, local directory or GGUF file; teacher-forced or on-policy) and the bundled byte model (bytes as
tokens); plus `concat_scores` and `aggregate`, the corpus figures that compare them (API logprobs come from
`blt.llm.logprobs` as the same `TokenScores`).

Entry t is about token t given tokens < t (as in `bytelm.entropy`). Exact sources take entropy, surprisal, varentropy
and top-1 mass from the logits (sums in float32, combined in float64); bounded sources (`blt.llm.logprobs`) know only
the top k, so their entropy is an interval `[entropy_lower_nats, entropy_upper_nats]`. Nats inside, bits in reports.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blt.bytelm.entropy import LN2, as_bytes, head_stats, plan_windows, position_stats
from blt.bytelm.entropy import score as score_bytes
from blt.errors import BltError, brief
from blt.segment.pretrained import exact_lengths

LLM_EXTRA = "pip install 'blt-patcher[llm]'"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MAX_DEFAULT_CONTEXT = 2048  # default context: the model's max positions capped here (CPU time grows with it)
LOGIT_ELEMENTS = 1 << 21  # elements of one block of logits (8 MiB of float32: fits in cache while it is reduced)
RAW_NOTE = "metrics from the raw next-token distribution, before temperature/top-p"


@dataclass
class TokenScores:
    """Per position of one or more token sequences (float64 arrays [T]). `positions[t]`: the token's index in its
    document's tokenization; `doc_ids[t]`: its document. Bounded (API) sources set the bound arrays and leave
    `entropy_nats`/`varentropy_nats2` NaN; `censored[t]` marks a sampled token outside the top k (surprisal NaN)."""

    tokens: list[str]
    token_bytes: list[bytes]
    surprisal_nats: np.ndarray
    entropy_nats: np.ndarray
    varentropy_nats2: np.ndarray
    top1_mass: np.ndarray
    source: str  # model path, GGUF file, "blt:<model>" or the logprobs file
    tokenizer: str  # equal strings for equal vocabularies
    vocab_size: int | None  # size of the predicted distribution (None: not known)
    mode: str  # "teacher-forced" (a given text) or "on-policy" (the model's own samples)
    chat_template: bool
    context: int | None  # most tokens the model saw at once (None: not known)
    token_ids: np.ndarray | None = None  # int64 [T]; None -> all -1 (not known)
    doc_ids: np.ndarray | None = None  # int64 [T]; None -> all 0
    positions: np.ndarray | None = None  # int64 [T]; None -> 0..T-1
    censored: np.ndarray | None = None  # bool [T]; None -> all False
    entropy_lower_nats: np.ndarray | None = None
    entropy_upper_nats: np.ndarray | None = None
    residual_mass: np.ndarray | None = None  # 1 - Σ known probabilities
    rank: np.ndarray | None = None  # float64 [T]: 1 + tokens more probable than the actual one; NaN: not known
    notes: list[str] = field(default_factory=list)  # what a reader must know (unscored tokens, sampling settings)
    prompts: list[str] | None = None  # on-policy samples: each document's prompt, as given (before any template)
    has_chat_template: bool = False  # the tokenizer has one (applied or not: see `chat_template`)

    def __post_init__(self) -> None:
        n = len(self.tokens)
        self.token_ids = np.full(n, -1) if self.token_ids is None else np.asarray(self.token_ids, np.int64)
        self.doc_ids = np.zeros(n, np.int64) if self.doc_ids is None else np.asarray(self.doc_ids, np.int64)
        self.positions = np.arange(n) if self.positions is None else np.asarray(self.positions, np.int64)
        self.censored = np.zeros(n, bool) if self.censored is None else np.asarray(self.censored, bool)
        self.rank = np.full(n, np.nan) if self.rank is None else np.asarray(self.rank, np.float64)
        for f in fields(self):
            if isinstance(v := getattr(self, f.name), np.ndarray):
                assert len(v) == n, f.name
                setattr(self, f.name, v.astype(np.float64) if v.dtype.kind == "f" else v)
        assert len(self.token_bytes) == n and self.mode in ("teacher-forced", "on-policy")

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def n_bytes(self) -> int:
        return sum(map(len, self.token_bytes))


def _exact(pieces: list[bytes], stats: np.ndarray, errors: str = "replace", **meta: Any) -> TokenScores:
    """A `TokenScores` of an exact source from token bytes and `position_stats` rows [5, T]."""
    names = [p.decode("utf-8", errors) for p in pieces]
    return TokenScores(names, pieces, stats[1], stats[0], stats[2], stats[3], **meta, rank=stats[4])


def concat_scores(parts: Sequence[TokenScores]) -> TokenScores:
    """One `TokenScores` of several of the same source and mode; each part's documents keep distinct ids."""
    if not parts or len({(p.source, p.tokenizer, p.mode, p.chat_template) for p in parts}) > 1:
        raise BltError("scores to pool must be non-empty and share source, tokenizer, mode and chat template")
    joined: dict[str, Any] = {"notes": list(dict.fromkeys(n for p in parts for n in p.notes))}
    if all(p.prompts is not None and len(p.prompts) == int(p.doc_ids.max(initial=-1)) + 1 for p in parts):
        joined["prompts"] = [x for p in parts for x in p.prompts]  # type: ignore[union-attr]
    else:
        joined["prompts"] = None
    for f in fields(TokenScores):
        values = [getattr(p, f.name) for p in parts]
        if isinstance(values[0], np.ndarray):
            joined[f.name] = np.concatenate(values)
        elif f.name in ("tokens", "token_bytes"):
            joined[f.name] = [x for v in values for x in v]
    offsets = np.cumsum([0] + [int(p.doc_ids.max(initial=-1)) + 1 for p in parts[:-1]])
    joined["doc_ids"] = np.concatenate([p.doc_ids + o for p, o in zip(parts, offsets, strict=True)])
    return replace(parts[0], **joined)


# ----------------------------------------------------------------------------------------- Hugging Face models
@dataclass
class HFModel:
    """A loaded causal LM and its tokenizer: pass it to `score_hf`/`generate_hf` to load once and score many."""

    model: Any
    tokenizer: Any
    name: str

    @cached_property
    def meta(self) -> dict[str, Any]:
        """`TokenScores` fields: the tokenizer string is equal for equal vocabularies (base and instruct often are)."""
        vocab = json.dumps(sorted(self.tokenizer.get_vocab().items()), ensure_ascii=False).encode()
        tokenizer = f"{len(self.tokenizer)} tokens, vocab sha1 {hashlib.sha1(vocab).hexdigest()[:12]}"
        template = bool(getattr(self.tokenizer, "chat_template", None))
        return dict(source=self.name, tokenizer=tokenizer, vocab_size=self.vocab_size, has_chat_template=template)

    @cached_property
    def vocab_size(self) -> int:
        head = self.model.get_output_embeddings()
        return int(head.weight.shape[0]) if head is not None else int(self.model.config.vocab_size)

    @cached_property
    def _params(self) -> Any:
        return inspect.signature(self.model.forward).parameters

    def forward(self, ids: list[int], cache: Any, keep: int) -> tuple[torch.Tensor, Any]:
        """`ids` after `cache` (None: none) -> (logits [≤ len(ids), V] ending with the last `keep` positions, cache)."""
        kw: dict[str, Any] = {"logits_to_keep": keep} if "logits_to_keep" in self._params else {}
        if cache is not None:  # transformers 5 calls it `cache`, 4.x `past_key_values`
            kw["cache" if "cache" in self._params else "past_key_values"] = cache
        out = self.model(input_ids=torch.tensor([ids], device=self.model.device), use_cache=True, **kw)
        return out.logits[0], out["cache"] if "cache" in out else out.get("past_key_values")

    @cached_property
    def split(self) -> tuple[Any, torch.nn.Linear, float | None] | None:
        """(decoder, output layer, final logit softcap) if the decoder's hidden states through the output layer,
        then cap·tanh(logits / cap), give the model's logits (checked once on 4 tokens); else None."""
        body, head, ids = self.model.get_decoder(), self.model.get_output_embeddings(), torch.arange(4)[None]
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if not isinstance(head, torch.nn.Linear):
            return None
        with torch.inference_mode():
            want = self.model(input_ids=ids.to(self.model.device), use_cache=False).logits[0].float()
            got = head(body(input_ids=ids.to(self.model.device), use_cache=False)[0][0])
            got = (got if cap is None else got.div_(cap).tanh_().mul_(cap)).float()  # as `head_stats` does
        return (body, head, cap) if torch.allclose(got, want, 1e-4, 1e-4 * float(want.abs().max())) else None

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def chat(self, messages: list[dict[str, str]], **kw: Any) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise BltError(f"{self.name} has no chat template; drop --chat (plain text) or use an instruct model")
        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, **kw)
        except Exception as e:  # a Jinja error raised by the template itself
            raise BltError(f"{self.name}'s chat template failed on a user + assistant chat: {e}") from e


def load_hf(
    model_name_or_path: str | Path,
    *,
    gguf_file: str | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    trust_remote_code: bool = False,
) -> HFModel:
    """A transformers causal LM and its tokenizer from a hub name, a local directory or a `.gguf` file (the GGUF
    weights are dequantized to `dtype`). Remote code runs only with `trust_remote_code=True`."""
    path = Path(str(model_name_or_path)).expanduser()
    if gguf_file is None and path.suffix == ".gguf":
        path, gguf_file = path.parent, path.name
    named_a_file = gguf_file or path.is_absolute() or str(model_name_or_path).startswith((".", "~"))
    if named_a_file and not (path / (gguf_file or "")).exists():
        raise BltError(f"model {path / (gguf_file or '')} not found; pass a local directory, .gguf file or hub name")
    if gguf_file is None and path.is_dir() and not (path / "config.json").is_file():
        raise BltError(
            f"{path} holds no Hugging Face model (config.json is missing); pass a model directory, a .gguf file "
            "(or --gguf-file NAME inside it) or a hub name"
        )
    needs = ("transformers", "accelerate", "gguf") if gguf_file else ("transformers",)
    if missing := [m for m in needs if importlib.util.find_spec(m) is None]:
        raise BltError(f"{'GGUF' if gguf_file else 'Hugging Face'} models need {', '.join(missing)}: {LLM_EXTRA}")
    if dtype not in DTYPES:
        raise BltError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    try:
        torch.device(device)
    except RuntimeError:  # "gpu", "cuda:x": torch's own message is a paragraph
        raise BltError(f"--device {device!r} is not a device name; use cpu, cuda or cuda:N") from None
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise BltError(f"device {device!r} asked for but CUDA is not available; use --device cpu")
    import transformers

    kw: dict[str, Any] = {"trust_remote_code": trust_remote_code, **({"gguf_file": gguf_file} if gguf_file else {})}
    kw["dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"] = DTYPES[dtype]
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), **kw)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path), **kw)
    except Exception as e:  # offline, missing files, remote code, an unsupported GGUF: say why, and the way out
        reason, hint = brief(str(e), 200) or type(e).__name__, ""
        if not path.exists():
            offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
            why = "the hub is offline (HF_HUB_OFFLINE is set) and the model is not cached" if offline else "a hub name"
            hint = f"; {why}: pass a local directory or a .gguf file"
        raise BltError(f"could not load model {str(model_name_or_path)!r}: {reason}{hint}") from e
    return HFModel(model.to(device).eval(), tokenizer, str(path / gguf_file) if gguf_file else str(model_name_or_path))


def token_pieces(tokenizer: Any, ids: list[int], text: str | None, offsets: list | None = None) -> list[bytes]:
    """The bytes of each token. For a scored `text`, `b"".join(pieces) == text.encode()`: from the token strings
    when they spell the text, else from the offsets' character ends, else from decoded prefixes (slow tokenizers).
    For generated ids (`text` None) special tokens such as EOS get b""."""
    special = set(tokenizer.all_special_ids) if text is None else set()
    strings = ["" if i in special else s for i, s in zip(ids, tokenizer.convert_ids_to_tokens(ids), strict=True)]
    if text is None:
        text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    target, lengths = text.encode(), exact_lengths(strings, text)
    if lengths is not None:
        ends = np.cumsum(lengths)
    elif offsets is not None:  # the byte offset of each token's last character end, made non-decreasing
        char_end = np.cumsum([0] + [len(c.encode()) for c in text])
        ends = np.maximum.accumulate([char_end[min(e, len(text))] for _, e in offsets])
    else:  # the common prefix of the text and each decoded prefix (quadratic)
        decoded = (tokenizer.decode(ids[: i + 1], skip_special_tokens=True).encode() for i in range(len(ids)))
        ends = np.maximum.accumulate([len(os.path.commonprefix([d, target])) for d in decoded] or [0])
    bounds = [0, *map(int, ends[: len(ids) - 1]), len(target)]
    return [target[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)] if ids else []


def _score_ids(hf: HFModel, seq: list[int], first: int, context: int, stride: int) -> np.ndarray:
    """float64 [5, len(seq) - first]: `position_stats` of the tokens seq[first:] (first ≥ 1). Windows of ≤ `context`
    tokens come from `plan_windows`; a window after the first starts with BOS (if the tokenizer has one: models
    such as Gemma are lost without it). Each window goes once through the decoder; its hidden states [n, d] go
    through the output layer in blocks (`head_stats`). A model whose logits are not its output layer's (`split`
    None) is fed in chunks of c = LOGIT_ELEMENTS // V positions through the KV cache instead."""
    bos, chunk = hf.tokenizer.bos_token_id, max(1, LOGIT_ELEMENTS // hf.vocab_size)
    out = np.full((5, len(seq) - first), np.nan)
    for start, emit_from, end in plan_windows(len(seq) - 1, context - (bos is not None), stride):
        if end < first:  # position t predicts seq[t + 1]: nothing to emit inside a chat prefix
            continue
        inputs = ([bos] if start > 0 and bos is not None else []) + seq[start:end]
        emit = max(emit_from, first - 1)
        need, cache = len(inputs) - (end - emit), None  # inputs[need:] are the positions emit..end-1
        if hf.split:  # hidden states [n, d] of the emitted positions
            hidden = hf.split[0](input_ids=torch.tensor([inputs], device=hf.model.device), use_cache=False)[0]
            targets = torch.tensor(seq[emit + 1 : end + 1], device=hf.model.device)
            out[:, emit + 1 - first : end + 1 - first] = head_stats(
                hidden[0, need:], targets, *hf.split[1:], LOGIT_ELEMENTS
            )
            continue
        for a in range(0, len(inputs), chunk):
            b = min(a + chunk, len(inputs))
            logits, cache = hf.forward(inputs[a:b], cache, keep=max(1, b - max(a, need)))
            if b > need:
                t0, t1 = emit + max(a, need) - need, emit + b - need  # this chunk's emitted positions [t0, t1)
                targets = torch.tensor(seq[t0 + 1 : t1 + 1], device=logits.device)
                out[:, t0 + 1 - first : t1 + 1 - first] = position_stats(logits[t0 - t1 :], targets)
    return out


@torch.inference_mode()
def score_hf(
    model_name_or_path: HFModel | str | Path,
    text: str | Sequence[str],
    *,
    gguf_file: str | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    context: int | None = None,
    stride: int | None = None,
    chat: bool = False,
    user: str = "",
    trust_remote_code: bool = False,
) -> TokenScores:
    """Teacher-forced scores of each text (a document of the result) under a causal LM.

    Token t is scored given tokens < t; token 0 given the tokenizer's `bos_token`, prepended; a tokenizer without
    one leaves token 0 unscored (a note says so). `chat=True`: the text is the assistant turn after a user turn
    `user` in the tokenizer's chat template, and only the text's tokens are scored (tokenized on their own, as the
    model emits them after the template's assistant header). `context` (default: the model's max positions capped
    at 2048) is the most tokens the model sees at once; a longer text goes through windows advancing by `stride`
    (default context // 2), and every position after the first window has ≥ context - stride tokens of context.
    Memory: the [T, V] logits are never held, only blocks of ≤ 2²¹ logits (8 MiB of float32), reduced at once:
    the extra peak is about one window's forward activations."""
    load_kw = dict(gguf_file=gguf_file, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    hf = model_name_or_path if isinstance(model_name_or_path, HFModel) else load_hf(model_name_or_path, **load_kw)
    texts = [text] if isinstance(text, str) else list(text)
    if not texts or not all(texts):
        raise BltError("empty text: nothing to score")
    max_pos = getattr(hf.model.config, "max_position_embeddings", None) or MAX_DEFAULT_CONTEXT
    context = context or min(max_pos, MAX_DEFAULT_CONTEXT)
    stride = stride or max(1, context // 2)
    if not (3 <= context <= max_pos and 1 <= stride < context - 1):
        raise BltError(f"need 3 ≤ context ≤ {max_pos} and 1 ≤ stride < context - 1, got {context} and {stride}")
    bos, parts = hf.tokenizer.bos_token_id, []
    for t in texts:
        enc = hf.tokenizer(t, add_special_tokens=False, return_offsets_mapping=getattr(hf.tokenizer, "is_fast", False))
        ids, prefix = list(enc["input_ids"]), [bos] if bos is not None else []
        if chat:
            full = hf.chat([{"role": "user", "content": user}, {"role": "assistant", "content": t}])
            if (at := full.rfind(t)) < 0:
                raise BltError(f"{hf.name}'s chat template changes the assistant text (strips it?): pass it stripped")
            prefix = hf.encode(full[:at])
        skip = max(len(prefix), 1) - len(prefix)  # 1 when token 0 has no context
        stats = _score_ids(hf, prefix + ids, len(prefix) + skip, context, stride)
        pieces = token_pieces(hf.tokenizer, ids, t, enc.get("offset_mapping"))[skip:]
        meta = dict(mode="teacher-forced", chat_template=chat, context=context, token_ids=ids[skip:])
        parts.append(_exact(pieces, stats, **hf.meta, **meta, positions=np.arange(skip, len(ids))))
    no_bos = not chat and bos is None
    return replace(concat_scores(parts), notes=["token 0 of each text is not scored: no BOS token"] * no_bos)


def _sample(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator) -> int:
    """One token id from logits [V] with `temperature` (0: greedy) and nucleus `top_p`."""
    if temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / temperature, dim=-1).cpu()
    if top_p < 1:  # keep the most probable tokens until their mass reaches top_p
        sorted_p, order = probs.sort(descending=True)
        sorted_p = sorted_p.masked_fill(sorted_p.cumsum(0) - sorted_p >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(0, order, sorted_p)
    return int(torch.multinomial(probs, 1, generator=gen))


@torch.inference_mode()
def generate_hf(
    model_name_or_path: HFModel | str | Path,
    prompts: str | Sequence[str],
    *,
    n_tokens: int = 64,
    samples: int = 1,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    chat: bool = False,
    **load_kw: Any,
) -> list[TokenScores]:
    """On-policy scores, one `TokenScores` per sample: `samples` continuations of ≤ `n_tokens` tokens for each
    prompt (prompt-major), ending after EOS (scored, no bytes). Entropy, surprisal, varentropy and top-1 mass come
    from the model's raw next-token distribution, before temperature and top-p, which only steer the sampling (the
    notes say so). `chat=True` makes each prompt the user turn of the chat template. One generator seeded with
    `seed` draws every sample: the same call gives the same samples. `load_kw`: `load_hf`'s options."""
    hf = model_name_or_path if isinstance(model_name_or_path, HFModel) else load_hf(model_name_or_path, **load_kw)
    if n_tokens < 1 or samples < 1 or temperature < 0 or not 0 < top_p <= 1:
        raise BltError("need n_tokens ≥ 1, samples ≥ 1, temperature ≥ 0 and 0 < top_p ≤ 1")
    tok, gen, results = hf.tokenizer, torch.Generator().manual_seed(seed), []
    chunk, max_pos = max(1, LOGIT_ELEMENTS // hf.vocab_size), getattr(hf.model.config, "max_position_embeddings", 0)
    for i, prompt in enumerate([prompts] if isinstance(prompts, str) else prompts):
        if chat:
            prefix = hf.encode(hf.chat([{"role": "user", "content": prompt}], add_generation_prompt=True))
        else:
            prefix = [tok.bos_token_id] * (tok.bos_token_id is not None) + hf.encode(prompt)
        if not prefix or len(prefix) + n_tokens > (max_pos or math.inf):
            raise BltError(f"prompt {i} has {len(prefix)} tokens: need ≥ 1 and ≤ {max_pos} - n_tokens")
        for s in range(samples):
            cache, ids, stats = None, [], []
            for a in range(0, len(prefix), chunk):  # the prompt, in chunks; only the last logits are kept
                logits, cache = hf.forward(prefix[a : a + chunk], cache, keep=1)
            while True:
                ids.append(_sample(logits[-1], temperature, top_p, gen))
                stats.append(position_stats(logits[-1:], torch.tensor(ids[-1:], device=logits.device))[:, 0])
                if len(ids) == n_tokens or ids[-1] == tok.eos_token_id:
                    break
                logits, cache = hf.forward(ids[-1:], cache, keep=1)
            note = f"prompt {i}, sample {s}: temperature={temperature}, top_p={top_p}, seed={seed}; " + RAW_NOTE
            meta = dict(mode="on-policy", chat_template=chat, context=len(prefix) + len(ids), token_ids=ids)
            meta |= dict(notes=[note], prompts=[prompt])
            results.append(_exact(token_pieces(tok, ids, None), np.stack(stats, 1), **hf.meta, **meta))
    return results


# ------------------------------------------------------------------------------------------------ the byte model
@torch.inference_mode()
def score_byte_model(
    model: Any, text: str | bytes | Sequence[str | bytes], *, stride: int | None = None, batch_size: int = 16
) -> TokenScores:
    """The byte model (a `ByteLM`, or a name/path for `blt.bytelm.checkpoint.load_model`) as a token model whose tokens
    are bytes: `blt.bytelm.entropy.score` with its extra statistics (varentropy, top-1 mass), one pass."""
    from blt.bytelm.checkpoint import load_model

    lm = load_model(model) if isinstance(model, (str, Path)) else model
    datas = [as_bytes(t) for t in ([text] if isinstance(text, (str, bytes)) else text)]
    if not datas or not all(datas):
        raise BltError("empty text: nothing to score")
    name = model if isinstance(model, (str, Path)) else lm.card.get("name", "ByteLM")
    meta = dict(source=f"blt:{name}", tokenizer="bytes (UTF-8)", vocab_size=lm.cfg.vocab_size, context=lm.context)
    parts = []
    for data, sc in zip(
        datas, score_bytes(lm, datas, batch_size=batch_size, stride=stride, extra_stats=True), strict=True
    ):
        rows = [sc.entropy_nats, sc.surprisal_nats, sc.varentropy_nats2, sc.top1_mass, sc.rank]
        stats = np.stack(rows).astype(np.float64)  # type: ignore[arg-type]  # extra_stats: none is None
        pieces = [bytes([b]) for b in data]
        parts.append(_exact(pieces, stats, "backslashreplace", **meta, mode="teacher-forced", chat_template=False))
    return concat_scores(parts)


# ---------------------------------------------------------------------------------------------------- aggregates
def _mean(x: np.ndarray | None) -> float | None:
    x = x[np.isfinite(x)] if x is not None else np.zeros(0)
    return float(x.mean()) if len(x) else None


def _entropy_figures(h: np.ndarray, n_bytes: int, suffix: str = "") -> dict[str, float | None]:
    h = h[np.isfinite(h)]
    if not len(h):
        return {}
    mean, median, total = float(h.mean()), float(np.median(h)), float(h.sum())
    figures = {"mean_entropy_nats": mean, "median_entropy_nats": median, "mean_entropy_bits": mean / LN2}
    figures |= {"median_entropy_bits": median / LN2, "branching_factor": math.exp(mean)}
    figures["entropy_per_byte_bits"] = total / (LN2 * n_bytes) if n_bytes else None
    return {k + suffix: v for k, v in figures.items()}


def aggregate(
    scores: TokenScores | Sequence[TokenScores], *, hist_bin_bits: float = 0.5, position_bins: int = 16
) -> dict[str, Any]:
    """Corpus figures, JSON-ready (None where undefined). Means and medians are over positions; per-byte figures
    are ratios of sums over the scored tokens' UTF-8 bytes: entropy per byte Σ H / (ln 2 · bytes), comparable
    across tokenizers, and bits per byte Σ s / (ln 2 · bytes) (None if a position is censored). Branching factor
    exp(mean H). Bounded (API) scores give every entropy figure twice, as `_lower` and `_upper`. The histogram of
    entropy in bits (bins of `hist_bin_bits` from 0) and the mean entropy (bits) by position (`position_bins`
    equal ranges of the token index) use H, or for bounded scores the midpoint of the bounds."""
    s = scores if isinstance(scores, TokenScores) else concat_scores(scores)
    n_bytes, bounded = s.n_bytes, s.entropy_lower_nats is not None
    out: dict[str, Any] = {k: getattr(s, k) for k in ("source", "tokenizer", "vocab_size", "mode", "chat_template")}
    out |= {"context": s.context, "notes": s.notes, "positions": len(s), "documents": len(np.unique(s.doc_ids))}
    out |= {"bytes": n_bytes, "censored": int(s.censored.sum())}
    if bounded:
        out |= _entropy_figures(s.entropy_lower_nats, n_bytes, "_lower")
        out |= _entropy_figures(s.entropy_upper_nats, n_bytes, "_upper")
        h = (s.entropy_lower_nats + s.entropy_upper_nats) / 2
    else:
        out |= _entropy_figures(h := s.entropy_nats, n_bytes)
    out["mean_varentropy_nats2"], out["mean_top1_mass"] = _mean(s.varentropy_nats2), _mean(s.top1_mass)
    out["mean_residual_mass"] = _mean(s.residual_mass)
    out["bits_per_byte"] = float(s.surprisal_nats.sum()) / (LN2 * n_bytes) if n_bytes and not out["censored"] else None
    bits = h[np.isfinite(h)] / LN2
    edges = hist_bin_bits * np.arange(int(bits.max(initial=0) // hist_bin_bits) + 2)
    out["entropy_histogram_bits"] = {"edges": edges.tolist(), "counts": np.histogram(bits, edges)[0].tolist()}
    width = max(1, -(-(int(s.positions.max(initial=0)) + 1) // position_bins))  # ceil((max position + 1) / bins)
    bins = s.positions // width
    out["entropy_by_position_bits"] = []
    for b in np.unique(bins):
        row = {"start": int(b) * width, "end": int(b + 1) * width, "positions": int((bins == b).sum())}
        out["entropy_by_position_bits"].append(row | {"mean_entropy_bits": _mean(h[bins == b] / LN2)})
    return out
