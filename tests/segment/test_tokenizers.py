"""Tokeniser segmenters: lossless offsets on multilingual text, invalid UTF-8, long lines and empty input for every
segmenter (trained and pretrained); training determinism, vocabulary sizes, too-small corpora, save/load. The
pretrained ones' own tests (parity with tiktoken, Hugging Face offsets paths, GGUF) are in test_pretrained.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import INVALID, NAMES, VOCAB, check_lossless, get
from hypothesis import given, settings
from hypothesis import strategies as st

from blt.errors import BltError
from blt.segment.tokenizers import ByteBPE, SentencePieceSegmenter, _chunks, default_vocab_size, utf8_pieces


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
    monkeypatch.setattr("blt.segment.tokenizers.CHUNK_CHARS", 5000)
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
