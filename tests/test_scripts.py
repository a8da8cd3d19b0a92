"""The scripts that build the bundled model and benchmark it: the pieces that decide what a reader is told (the
model card's list of sources, the head/tail cut of bench_bpb), on small hand-made inputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import save_spiky

from blt.bytelm.checkpoint import read_card

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import bench_bpb  # noqa: E402
import build_default_model  # noqa: E402


def test_the_card_lists_every_source_with_versions_and_keeps_unseen_kinds_apart(tmp_path: Path) -> None:
    """A manifest with one training corpus and one unseen kind: the card's `data` names only the training corpus,
    `data_sources` carries its packages (with versions), documents and bytes as written, `unseen_data` the other,
    and the note gives the split's seed and held-out share."""
    corpora = tmp_path / "corpora"
    corpora.mkdir()
    books = {
        "split": "train+val",
        "docs": {"train": 3, "val": 1},
        "bytes": {"train": 3000, "val": 900},
        "source": "Debian bible-kjv",
        "packages": {"bible-kjv": "4.38"},
        "licence": "public domain",
        "decoded_with_replacement": [],
    }
    jokes = {**books, "split": "unseen", "docs": {"unseen": 2}, "bytes": {"unseen": 500}, "packages": {"fortunes": "1"}}
    manifest = {"seed": 7, "val_fraction": 0.05, "corpora": {"books": books, "jokes": jokes}}
    (corpora / "manifest.json").write_text(json.dumps(manifest))
    model_dir = save_spiky(tmp_path / "model")
    build_default_model.describe_data(model_dir, corpora)
    card = read_card(model_dir)
    assert card["data"] == ["books"]
    assert card["data_sources"]["books"] == {k: books[k] for k in ("packages", "source", "licence", "docs", "bytes")}
    assert list(card["unseen_data"]) == ["jokes"] and card["unseen_data"]["jokes"]["packages"] == {"fortunes": "1"}
    assert "seed 7" in card["data_note"] and "5% of each training corpus" in card["data_note"]


def test_bench_head_tail_cut_is_at_the_nearest_line_break() -> None:
    """10 bytes, fraction 0.5: the cut falls at byte 5, inside b"ab\\ncd\\n"; its line breaks end at 3 and 6, and 6
    is nearer, so the head is that whole document and the tail the other. With no line break the cut is exact; at
    fraction 0.2 (byte 2) the nearest break is at 3."""
    docs = [b"ab\ncd\n", b"efgh"]
    assert bench_bpb.split_head(docs, 0.5) == ([b"ab\ncd\n"], [b"efgh"])
    assert bench_bpb.split_head([b"abcdefghij"], 0.3) == ([b"abc"], [b"defghij"])
    assert bench_bpb.split_head(docs, 0.2) == ([b"ab\n"], [b"cd\n", b"efgh"])
    for fraction in (0.1, 0.5, 0.9):  # lossless: head + tail is the corpus
        head, tail = bench_bpb.split_head(docs, fraction)
        assert b"".join(head + tail) == b"".join(docs)
