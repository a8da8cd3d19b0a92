"""Content keys and the score store: a key changes with any byte or weight and with nothing else; stored scores
come back bit-identical, and an entry that does not fit the documents is a miss, never wrong scores."""

from __future__ import annotations

import numpy as np
import torch
from conftest import make_model

from blt.cache import cache_key, documents_hash, load_scores, model_hash, save_scores
from blt.entropy import score


def test_documents_hash_sees_document_boundaries_and_order() -> None:
    base = documents_hash([b"ab", b"c"])
    assert base == documents_hash([b"ab", b"c"])
    assert base != documents_hash([b"a", b"bc"])  # same bytes, other boundaries
    assert base != documents_hash([b"c", b"ab"])
    assert base != documents_hash([b"ab", b"c", b""])  # an empty document is a document
    assert documents_hash([]) != documents_hash([b""])


def test_model_hash_follows_the_weights_only() -> None:
    a, b = make_model(seed=0), make_model(seed=0)
    assert model_hash(a) == model_hash(b)  # equal weights, separate objects
    with torch.no_grad():
        next(b.parameters()).view(-1)[0] += 1e-6
    assert model_hash(a) != model_hash(b)
    assert model_hash(a) != model_hash(make_model(seed=1))


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
    assert not list(tmp_path.glob(".*tmp"))  # written through a temp file, renamed
