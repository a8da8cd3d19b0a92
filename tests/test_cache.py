"""Content keys, the score store and the tokeniser cache: a key changes with any byte or weight and with nothing
else; stored scores come back bit-identical, and an entry that does not fit the documents is a miss, never wrong
scores; a tokeniser trains once per (kind, vocabulary size, training bytes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_model

from blt.cache import cache_key, cached_tokenizer, documents_hash, load_scores, model_hash, save_scores
from blt.entropy import score


def test_documents_hash_sees_document_boundaries_and_order() -> None:
    base = documents_hash([b"ab", b"c"])
    assert base == documents_hash([b"ab", b"c"])
    assert base != documents_hash([b"a", b"bc"])  # same bytes, other boundaries
    assert base != documents_hash([b"c", b"ab"])
    assert base != documents_hash([b"ab", b"c", b""])  # an empty document is a document
    assert documents_hash([]) != documents_hash([b""])


def test_model_hash_follows_the_weights_and_the_config() -> None:
    a, b = make_model(seed=0), make_model(seed=0)
    assert model_hash(a) == model_hash(b)  # equal weights, separate objects
    with torch.no_grad():
        next(b.parameters()).view(-1)[0] += 1e-6
    assert model_hash(a) != model_hash(b)
    assert model_hash(a) != model_hash(make_model(seed=1))
    windowed = make_model(seed=0, sliding_window=8)  # the same weights, other outputs
    assert model_hash(windowed) != model_hash(a)


def test_cache_key_is_stable_and_separates_kinds_and_settings() -> None:
    key = cache_key("scores", model="m", docs="d", precision="32")
    assert key == cache_key("scores", precision="32", docs="d", model="m")  # order of parts is irrelevant
    assert key != cache_key("scores", model="m", docs="d", precision="bf16")
    assert key != cache_key("tokenizer", model="m", docs="d", precision="32")
    assert len(key) == 32


def test_scores_round_trip_and_mismatch_is_a_miss(tmp_path, tiny_model) -> None:
    docs = [b"hello world", b"", "naïve \U0001f600".encode() + b"\xff"]
    scores = score(tiny_model, docs)
    path = tmp_path / "s.npz"
    save_scores(path, scores)
    back = load_scores(path, docs)
    assert back is not None and [s.data for s in back] == docs
    for s, t in zip(scores, back, strict=True):
        assert np.array_equal(s.entropy_nats, t.entropy_nats) and np.array_equal(s.surprisal_nats, t.surprisal_nats)
    assert load_scores(path, docs[:2]) is None  # other documents: not these scores
    assert load_scores(path, [b"hello worlds", b"", docs[2]]) is None
    assert load_scores(tmp_path / "missing.npz", docs) is None
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    assert load_scores(tmp_path / "broken.npz", docs) is None
    (tmp_path / "cut.npz").write_bytes(path.read_bytes()[:100])  # a truncated entry
    assert load_scores(tmp_path / "cut.npz", docs) is None
    assert not list(tmp_path.glob(".*tmp"))  # written through a temp file, renamed


@pytest.mark.parametrize("kind", ["bpe", "sp-unigram"])
def test_a_tokeniser_trains_once_per_kind_vocab_and_training_bytes(
    kind: str, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    """First call trains and stores; the second loads the same tokeniser (same units) without training; other
    training bytes or another size is another entry; cache=False trains and writes nothing."""
    import blt.tokenizers as tk

    docs = [f"document {i}: the cat sat on the mat, naïve café {i * 7}".encode() for i in range(60)]
    cls = tk.ByteBPE if kind == "bpe" else tk.SentencePieceSegmenter
    trained: list[int] = []
    real = cls.train.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(cls, "train", classmethod(lambda c, *a, **k: trained.append(1) or real(c, *a, **k)))
    first, path, seconds = cached_tokenizer(kind, 300, docs)
    again, path2, seconds2 = cached_tokenizer(kind, 300, docs)
    assert len(trained) == 1 and path == path2 and seconds == seconds2 and path.parent == isolated_env / "tokenizers"
    probe = "the naïve cat, unseen \U0001f600".encode()
    assert np.array_equal(first.starts(probe), again.starts(probe)) and again.vocab_size == 300
    cached_tokenizer(kind, 300, docs[:-1])
    cached_tokenizer(kind, 320, docs)
    assert len(trained) == 3 and len(list((isolated_env / "tokenizers").glob("*.tok"))) == 3
    _, none, _ = cached_tokenizer(kind, 300, docs, cache=False)
    assert none is None and len(trained) == 4 and len(list((isolated_env / "tokenizers").glob("*.tok"))) == 3
