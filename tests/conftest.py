"""Shared test setup: no network, a private blt cache per test, a tiny seeded model, and the tokeniser segmenters
that test_tokenizers.py and test_pretrained.py share.

Torch runs on one thread (see below). The offline variables are also set at import time because `datasets` and
`huggingface_hub` read them once, when first imported; the autouse fixture repeats them so a test that edits the
environment cannot leak.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
# The test models are tiny: with >1 intra-op thread each op pays thread hand-off, which on a busy 2-core machine
# made 200 Adam steps of the tiny model take 55 s instead of 0.5 s.
torch.set_num_threads(1)

from blt.bytelm.checkpoint import save_model_dir  # noqa: E402
from blt.bytelm.model import ByteLM  # noqa: E402
from blt.bytelm.sources import Document  # noqa: E402
from blt.config import ModelConfig, load_config  # noqa: E402
from blt.errors import BltError  # noqa: E402
from blt.segment.pretrained import HFTokenizerSegmenter, TiktokenSegmenter  # noqa: E402
from blt.segment.tokenizers import ByteBPE, SentencePieceSegmenter  # noqa: E402

# The tiny shape of configs/tiny.yaml: trains and scores in milliseconds on a CPU.
TINY = ModelConfig(n_layers=1, d_model=32, n_heads=2, context=64)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty blt cache and an offline Hugging Face stack.

    The cache is a sibling of `tmp_path`, not inside it: tests use `tmp_path` itself as a corpus directory, and a
    directory source would otherwise pick up the cache's `meta.json`."""
    cache = tmp_path_factory.mktemp("blt-cache")
    monkeypatch.setenv("BLT_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    return cache


def make_model(seed: int = 0, **overrides: object) -> ByteLM:
    """A `ByteLM` of the tiny shape (with `overrides`), weights drawn from `torch.manual_seed(seed)`, in eval mode."""
    torch.manual_seed(seed)
    fields = {**TINY.__dict__, **overrides}
    return ByteLM(ModelConfig(**fields)).eval()


@pytest.fixture
def model_factory() -> Callable[..., ByteLM]:
    """`model_factory(seed=0, **ModelConfig overrides)`: more tiny models (other seeds, sliding windows, ...)."""
    return make_model


@pytest.fixture
def tiny_model() -> ByteLM:
    """A seeded, untrained tiny `ByteLM` (1 layer, d_model 32, 2 heads, context 64) in eval mode."""
    return make_model(seed=0)


def make_spiky_model(seed: int = 0) -> ByteLM:
    """The tiny model with its final norm (so its logits) ×20: entropies spread over ≈ 0–2.6 nats and rarely tie,
    so thresholds and calibration have something to bite on (an untrained model's entropies all sit near ln 260)."""
    model = make_model(seed)
    with torch.no_grad():
        model.norm.weight.mul_(20.0)
    return model


def run_cli(*args: str, columns: int = 80) -> tuple[int, str, str]:
    """Invoke the `blt` app; rich sizes output to COLUMNS (80 when stdout is not a terminal, as under CliRunner)."""
    from typer.testing import CliRunner

    from blt.cli import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns)})
    return result.exit_code, result.stdout, result.stderr


def assert_user_error(args: list[str], pattern: str) -> str:
    """A user mistake: exit code 1, exactly one line on stderr starting with "error:", no traceback."""
    code, out, err = run_cli(*args)
    assert code == 1, (code, out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert pattern in " ".join(err.split()), err
    return err


def save_tiny_hf(
    path: Path,
    text: str,
    chat_template: str | None,
    *,
    layers: int = 1,
    bos: bool = True,
    positions: int = 128,
    seed: int = 0,
) -> Path:
    """A Llama of `layers` layers (d=32) with a ~300-token byte-level BPE trained on `text` in milliseconds
    (<s>/</s> as BOS/EOS when `bos`), saved with `save_pretrained`: an offline stand-in for a real HF model. The
    output layer is sharpened ×40 so entropies sit well away from log V."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"], initial_alphabet=alphabet)
    tok.train_from_iterator([text, "the cat sat on the mat. user: assistant:"] * 10, trainer)
    kw = {"bos_token": "<s>", "eos_token": "</s>"} if bos else {"eos_token": "</s>"}
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **kw)
    fast.chat_template = chat_template
    shape = dict(hidden_size=32, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=64)
    ids = dict(bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id)
    cfg = transformers.LlamaConfig(vocab_size=len(fast), max_position_embeddings=positions, **shape, **ids)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(cfg)
    with torch.no_grad():
        model.lm_head.weight.mul_(40)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def write_jsonl(path: Path, rows: list[object]) -> Path:
    """One JSON value per line."""
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------- tokeniser segmenters
# Shared by test_tokenizers.py (trained ones, lossless for all) and test_pretrained.py (tiktoken, Hugging Face).
LANGS = ["en_Latn", "zh_Hans", "ar_Arab", "hi_Deva", "ru_Cyrl", "ja_Jpan", "th_Thai", "ko_Kore", "el_Grek", "he_Hebr"]
# lone bytes, an encoded surrogate, NUL, truncated characters, an overlong form, a code point above U+10FFFF
INVALID = [b"\xff", b"\xc3", b"ab\xed\xa0\x80cd", b"\x00\x80\xfe\n", b"caf\xc3", b"\xc0\xaf x \xf4\x90\x80\x80"]
VOCAB = 1100  # the corpus below has 755 distinct characters: SentencePiece needs ≥ 755 + 259 pieces


@pytest.fixture(scope="session")
def samples() -> dict[str, str]:
    import gflanguages

    languages = gflanguages.LoadLanguages()
    return {lang: languages[lang].sample_text.specimen_16 for lang in LANGS}


@pytest.fixture(scope="session")
def corpus(samples: dict[str, str]) -> list[bytes]:
    return [text.encode() for text in samples.values()]


def _tiny_hf_dirs(root: Path, texts: list[str]) -> dict[str, Path]:
    """Three local tokenizers, one per offsets path: byte-level BPE (with GPT-2's trimmed offsets), a lower-casing
    WordPiece (offset mapping) and a Llama-style ▁/<0xNN> BPE with a dummy prefix."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    byte_level = Tokenizer.from_str(ByteBPE.train(texts, 600).tokenizer.to_str())
    byte_level.post_processor = processors.ByteLevel(trim_offsets=True)
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=2000, special_tokens=["[UNK]"]))
    meta = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    meta.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    meta.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    specials = ["<unk>"] + [f"<0x{b:02X}>" for b in range(256)]
    meta.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=1400, special_tokens=specials, show_progress=False))
    dirs = {}
    for name, tok in (("byte_level", byte_level), ("wordpiece", wordpiece), ("metaspace", meta)):
        PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>").save_pretrained(root / name)
        dirs[name] = root / name
    return dirs


@pytest.fixture(scope="session")
def segmenters(tmp_path_factory: pytest.TempPathFactory, corpus: list[bytes], samples: dict[str, str]) -> dict:
    """Every segmenter once per session (test_tokenizers and test_pretrained share them); tiktoken (extra) and HF
    (llm extra) ones when installed. tiktoken's files are seeded into a private cache, not ~/.cache."""
    segs = {
        "bpe": ByteBPE.train(corpus, 1000),
        "sp-unigram": SentencePieceSegmenter.train(corpus, VOCAB),
        "sp-bpe": SentencePieceSegmenter.train(corpus, VOCAB, model_type="bpe"),
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path_factory.mktemp("tiktoken")))
        for encoding in ("cl100k_base", "o200k_base"):
            try:
                segs[encoding] = TiktokenSegmenter(encoding)
            except BltError:  # the tiktoken extra is not installed
                pass
    try:
        dirs = _tiny_hf_dirs(tmp_path_factory.mktemp("hf"), list(samples.values()))
    except ImportError:  # the llm extra (transformers) is not installed
        dirs = {}
    segs.update({f"hf-{k}": HFTokenizerSegmenter(path) for k, path in dirs.items()})
    return segs


def get(segmenters: dict, name: str):
    if name not in segmenters:
        pytest.skip(f"{name} needs an extra: pip install 'blt-patcher[tiktoken,llm]'")
    return segmenters[name]


NAMES = ["bpe", "sp-unigram", "sp-bpe", "cl100k_base", "o200k_base", "hf-byte_level", "hf-wordpiece", "hf-metaspace"]


def check_lossless(seg, data: bytes) -> np.ndarray:
    starts = seg.starts(data)
    assert starts.dtype == np.int64 and starts.ndim == 1
    if not data:
        assert len(starts) == 0
        return starts
    assert starts[0] == 0 and np.all(np.diff(starts) > 0) and starts[-1] < len(data)
    assert b"".join(seg.segments(data)) == data
    return starts


# ---------------------------------------------------------------- a labelled Zipf corpus and a saved spiky model
ZIPF_LANGS = ("de_Latn", "en_Latn", "es_Latn", "fr_Latn")
REPO = Path(__file__).resolve().parents[1]


def zipf_documents(per_language: int = 25, seed: int = 0) -> list[Document]:
    """`per_language` documents per language of ZIPF_LANGS, labelled like udhr's (`en_Latn`); 15–34 words drawn
    from the language's UDHR specimen with p ∝ 1/rank, so a small BPE learns the frequent words."""
    import gflanguages

    rng = np.random.default_rng(seed)
    languages = gflanguages.LoadLanguages()
    docs = []
    for lang in ZIPF_LANGS:
        words = languages[lang].sample_text.specimen_16.split()
        p = 1 / np.arange(1, len(words) + 1)
        for i in range(per_language):
            text = " ".join(rng.choice(words, size=int(rng.integers(15, 35)), p=p / p.sum()))
            docs.append(Document(f"udhr/{lang}/{i}", text.encode(), lang))
    return docs


def compare_with_probes(cfg: Any, mp: pytest.MonkeyPatch, docs: list[Document]) -> dict[str, Any]:
    """`run_compare(cfg)` on `docs` (served as udhr), recording the split (and its evaluation documents), the
    segmenters, the byte model's score calls and the warnings."""
    import blt.bytelm.corpus
    import blt.bytelm.sources
    import blt.compare.run
    from blt.bytelm.entropy import score
    from blt.compare.measure import measure
    from blt.compare.run import run_compare, split_corpus

    probe: dict[str, Any] = {"score_calls": [], "warnings": []}

    def counting_score(model: Any, texts: Any, **kw: Any) -> Any:
        probe["score_calls"].append(list(texts))
        return score(model, probe["score_calls"][-1], **kw)

    def recording_split(c: Any) -> Any:
        probe["split"] = split_corpus(c)
        return probe["split"]

    def recording_measure(segmenters: list[Any], *args: Any) -> Any:
        probe["segmenters"] = {s.name: s for s in segmenters}
        return measure(segmenters, *args)

    mp.setattr(blt.bytelm.sources, "udhr_documents", lambda: iter(docs))
    mp.setattr(blt.bytelm.corpus, "score", counting_score)
    mp.setattr(blt.compare.run, "split_corpus", recording_split)
    mp.setattr(blt.compare.run, "measure", recording_measure)
    probe["results"] = run_compare(cfg, warn=probe["warnings"].append)
    probe["eval_docs"] = probe["split"][1]
    return probe


def save_spiky(path: Path, card: dict[str, Any] | None = None) -> Path:
    """The spiky model saved with the tiny training config (so `adapt` trains it in a few tiny steps)."""
    model = make_spiky_model()
    cfg = load_config(REPO / "configs" / "tiny.yaml", [])
    assert cfg.model == model.cfg
    return save_model_dir(model, cfg, card or {"steps": 0}, path)


def rank_bounds(logits: torch.Tensor, targets: torch.Tensor, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """1 + tokens above the target's logit, counted with the target's logit raised / lowered by `tol`: an exact rank
    must lie between (logits within float rounding of the target's may order either way)."""
    picked = logits.gather(-1, targets[:, None])
    lo = (logits > picked + tol).sum(-1) + 1
    hi = (logits > picked - tol).sum(-1)  # the target itself counts here: 1 + others above
    return lo.numpy(), hi.numpy()
