"""Corpora to documents: the bundled corpora, local file formats (txt, jsonl, json, parquet, directories, globs),
HF datasets while offline, and the errors for bad sources."""

from __future__ import annotations

import json
import os
import re
import time
from functools import cache
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st

from blt.bytelm.data import (
    build_cache,
)
from blt.bytelm.sources import DOCUMENT_BYTES, Document, iter_documents, piece_starts, stdlib_documents, udhr_documents
from blt.config import DataConfig
from blt.errors import BltError


def docs_of(*sources: str | Path, **kw: object) -> list[Document]:
    return list(iter_documents(DataConfig(sources=[str(s) for s in sources], **kw)))


# ---------------------------------------------------------------------------------------------- bundled corpora


@cache
def udhr() -> tuple[Document, ...]:
    return tuple(udhr_documents())  # ~3 s: parse gflanguages once per session


def test_udhr_has_hundreds_of_labelled_languages() -> None:
    docs = udhr()
    assert len(docs) >= 300
    labels = [d.label for d in docs]
    assert len(set(labels)) == len(labels)
    assert {"en_Latn", "fr_Latn", "ja_Jpan"} <= set(labels)
    for d in docs:
        assert d.name == f"udhr/{d.label}" and re.search(
            r"_[A-Z][a-z]{3}(_|$)", d.label
        )  # script tag: en_Latn, yo_Latn_BJ
        assert d.data and d.data.decode("utf-8")
    english = next(d for d in docs if d.label == "en_Latn").data.decode()
    assert "slavery" in english


def test_udhr_as_a_source_keeps_labels_in_the_cache() -> None:
    c = build_cache(DataConfig(sources=["udhr"], val_fraction=0.05))
    assert c.train.n_docs + c.val.n_docs == len(udhr())
    assert sorted(c.labels) == sorted(d.label for d in udhr())
    assert c.val.n_docs > 0


def test_stdlib_yields_python_sources() -> None:
    docs = list(stdlib_documents())
    assert len(docs) >= 300
    names = {d.name for d in docs}
    assert "stdlib/json/decoder.py" in names
    assert all(n.endswith(".py") and "/test/" not in n and "site-packages" not in n for n in names)
    assert all(d.label == "python" for d in docs)
    decoder = next(d for d in docs if d.name == "stdlib/json/decoder.py")
    assert decoder.data == Path(json.__file__).with_name("decoder.py").read_bytes()


# ---------------------------------------------------------------------------------------------- local files


def test_txt_file_is_one_document_with_invalid_utf8_kept(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"caf\xc3\xa9 \xff\xfe bytes are bytes\n")
    (doc,) = docs_of(path)
    assert doc == Document(str(path), b"caf\xc3\xa9 \xff\xfe bytes are bytes\n")


def test_jsonl_text_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "r.jsonl", [{"text": "one", "id": 1}, {"text": ""}, {"text": "thré"}])
    path.write_text(path.read_text() + "\n   \n")  # blank lines are skipped
    assert [d.data for d in docs_of(path)] == [b"one", "thré".encode()]


def test_jsonl_custom_text_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "r.jsonl", [{"body": "x"}, {"body": "yz"}])
    assert [d.data for d in docs_of(path, text_field="body")] == [b"x", b"yz"]


def test_json_list(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps([{"text": "alpha"}, {"text": "beta"}], indent=2))
    assert [d.data for d in docs_of(path)] == [b"alpha", b"beta"]


def test_json_list_with_leading_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("\n  " + json.dumps([{"text": "alpha"}, {"text": "beta"}]))
    assert [d.data for d in docs_of(path)] == [b"alpha", b"beta"]


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["first", None, "", "dritte"], "n": [1, 2, 3, 4]}), path)
    assert [d.data for d in docs_of(path)] == [b"first", b"dritte"]


def test_parquet_without_the_text_column(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"body": ["x"]}), path)
    with pytest.raises(BltError, match=r"no column 'text'.*body.*data.text_field"):
        docs_of(path)


def make_tree(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "b.txt").write_text("B")
    (root / "a.md").write_text("A")
    (root / "sub" / "c.txt").write_text("C")
    (root / "sub" / "deeper" / "d.jsonl").write_text('{"text": "D"}\n')
    (root / "sub" / "image.png").write_bytes(b"\x89PNG")  # not text: skipped
    return root


def test_directory_is_read_recursively_in_sorted_order(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "corpus")
    assert [d.data for d in docs_of(root)] == [b"A", b"B", b"C", b"D"]


def test_glob_recursive_and_flat(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "corpus")
    assert [d.data for d in docs_of(f"{root}/**/*.txt")] == [b"B", b"C"]
    assert [d.data for d in docs_of(f"{root}/*.txt")] == [b"B"]


def test_several_sources_in_order(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("X")
    (tmp_path / "y.txt").write_text("Y")
    assert [d.data for d in docs_of(tmp_path / "y.txt", tmp_path / "x.txt")] == [b"Y", b"X"]


def test_empty_file_yields_no_document_and_an_empty_corpus_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("")
    assert docs_of(tmp_path / "empty.txt") == []
    with pytest.raises(BltError, match="contain no text"):
        build_cache(DataConfig(sources=[str(tmp_path / "empty.txt")]))


def test_json_file_may_hold_one_object_or_json_lines_and_a_bom(tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"text": "solo", "id": 1}, indent=2))
    lines = tmp_path / "lines.json"
    lines.write_bytes(b'\xef\xbb\xbf{"text": "a"}\n{"text": "b"}\n')
    assert [d.data for d in docs_of(one)] + [d.data for d in docs_of(lines)] == [b"solo", b"a", b"b"]


def test_a_lone_surrogate_escape_is_kept_as_its_bytes(tmp_path: Path) -> None:
    """A JSON "\\ud83d" cut from its pair is valid JSON but no character: kept as bytes, like invalid UTF-8."""
    path = tmp_path / "r.jsonl"
    path.write_text('{"text": "cut \\ud83d here"}\n')
    assert docs_of(path)[0].data == b"cut \xed\xa0\xbd here"


def test_parquet_binary_column_is_bytes(tmp_path: Path) -> None:
    path = tmp_path / "b.parquet"
    pq.write_table(pa.table({"text": pa.array([b"raw \xff", None], pa.binary())}), path)
    assert [d.data for d in docs_of(path)] == [b"raw \xff"]


# ---------------------------------------------------------------------------------------------- long texts


def test_piece_starts_golden() -> None:
    """Limit 8: the first piece is a run of paragraphs ending after the blank line at byte 6 (more than half of 8
    bytes); the second has no blank line in range, so it ends after a line; the third is hard-cut at 8 bytes, but
    before the 2-byte "é" that byte 8 would split; the rest fits."""
    data = b"ab\ncd\n\nefgh\nijklmno\xc3\xa9qr"
    assert piece_starts(data, 8) == [0, 7, 12, 19]
    assert [data[a:b] for a, b in zip([0, 7, 12, 19], [7, 12, 19, len(data)], strict=True)] == [
        b"ab\ncd\n\n",
        b"efgh\n",
        b"ijklmno",
        b"\xc3\xa9qr",
    ]
    assert piece_starts(b"x" * 8, 8) == [0] and piece_starts(b"", 8) == [0]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from([b"\n", b"\n\n", b"\r\n", b"a", b"word ", b"\xc3\xa9", b"\xe2\x98\x83", b"\xff", b"\x80"])
    ).map(b"".join),
    st.integers(4, 40),
)
def test_pieces_give_back_the_text_and_respect_the_limit(data: bytes, limit: int) -> None:
    starts = piece_starts(data, limit)
    ends = [*starts[1:], len(data)]
    pieces = [data[a:b] for a, b in zip(starts, ends, strict=True)]
    assert b"".join(pieces) == data and starts[0] == 0
    assert all(0 < len(p) <= limit for p in pieces[:-1]) and len(pieces[-1]) <= limit
    for a, p in zip(starts[:-1], pieces[:-1], strict=True):
        window = data[a + limit // 2 : a + limit]  # where a paragraph break is looked for
        if b"\n\n" in window or b"\n\r\n" in window:
            assert p.endswith((b"\n\n", b"\n\r\n")), (p, window)


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1), st.integers(4, 30))
def test_pieces_of_valid_utf8_are_valid_utf8(text: str, limit: int) -> None:
    data = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace").encode()
    starts = piece_starts(data, limit)
    for a, b in zip(starts, [*starts[1:], len(data)], strict=True):
        data[a:b].decode("utf-8")


def big_text(seed: int, size: int) -> bytes:
    """`size` bytes of paragraphs (blank-line separated) of random words, with a stray invalid byte."""
    import random

    rng, words, out = random.Random(seed), "the of and to in a is that for it as was with on not".split(), []
    while sum(map(len, out)) < size:
        out.append(" ".join(rng.choice(words) for _ in range(rng.randint(10, 300))).encode() + b"\xff\n\n")
    return b"".join(out)


def test_a_big_file_becomes_documents_of_paragraphs_that_join_back(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(big_text(0, 5 * DOCUMENT_BYTES))
    docs = docs_of(path)
    assert len(docs) >= 5 and b"".join(d.data for d in docs) == path.read_bytes()
    assert docs[0].name == f"{path}@0" and docs[1].name == f"{path}@{len(docs[0].data)}"
    assert all(len(d.data) <= DOCUMENT_BYTES and d.data.endswith(b"\n\n") for d in docs[:-1])


def test_a_two_file_corpus_holds_out_near_the_fraction(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Two big files used to be two documents, one of which could be held out whole (65 % of the bytes)."""
    (tmp_path / "a.txt").write_bytes(big_text(1, 1_500_000))
    (tmp_path / "b.txt").write_bytes(big_text(2, 1_000_000))
    c = build_cache(DataConfig(sources=[str(tmp_path)], val_fraction=0.1))
    share = c.val.n_bytes / (c.val.n_bytes + c.train.n_bytes)
    assert c.train.n_docs + c.val.n_docs >= 38 and 0.05 <= share <= 0.2, share
    assert "warning" not in capsys.readouterr().err


def test_a_split_far_from_the_fraction_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Two small files (two documents) cannot be split 90/10: the split says so."""
    for name, seed in (("a.txt", 3), ("b.txt", 4)):
        (tmp_path / name).write_bytes(big_text(seed, 20_000))
    c = build_cache(DataConfig(sources=[str(tmp_path)], val_fraction=0.1))
    share = c.val.n_bytes / (c.val.n_bytes + c.train.n_bytes)
    assert share > 0.2 and f"warning: {share:.0%} of the bytes are held out, not 10%" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", ["missing.txt", "./missing", "data/missing.jsonl"])
def test_missing_file_names_it(name: str) -> None:
    with pytest.raises(BltError, match=re.escape(name)):
        docs_of(name)


def test_directory_with_no_text(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "blob.bin").write_bytes(b"\x00\x01")
    with pytest.raises(BltError, match=rf"directory {re.escape(str(tmp_path / 'd'))} holds no text files"):
        docs_of(tmp_path / "d")


def test_glob_that_matches_nothing(tmp_path: Path) -> None:
    with pytest.raises(BltError, match="matches no files"):
        docs_of(f"{tmp_path}/*.txt")


def test_bad_jsonl_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"text": "ok"}\n{"text": "ok too"}\n{"text": oops}\n')
    with pytest.raises(BltError, match=rf"{re.escape(str(path))}: line 3 is not valid JSON"):
        docs_of(path)


def test_jsonl_line_without_the_field_is_named(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "r.jsonl", [{"text": "ok"}, {"content": "x"}])
    with pytest.raises(BltError, match=r"line 2 has no field 'text' \(fields: \['content'\]\); set data.text_field"):
        docs_of(path)


def test_hf_name_while_offline_is_one_clear_error_and_fast() -> None:
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"
    t0 = time.monotonic()
    with pytest.raises(BltError) as info:
        docs_of("some-org/no-such-dataset")
    assert time.monotonic() - t0 < 5
    msg = str(info.value)
    assert "some-org/no-such-dataset" in msg and "offline" in msg and "local files" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("num_proc", [None, 3])
def test_hf_dataset_streams_or_prepares_with_num_proc(monkeypatch: pytest.MonkeyPatch, num_proc: int | None) -> None:
    """`org/name:config` → load_dataset(name, config, split=hf_split): streamed by default; with data.hf_num_proc,
    prepared by that many processes (not streamed). Rows become documents in order; empty texts are skipped."""
    datasets = pytest.importorskip("datasets")
    rows = {"text": ["première ligne", "", "second"], "id": [1, 2, 3]}
    calls: list[tuple[tuple, dict]] = []

    def fake_load(*args: object, **kw: object) -> object:
        calls.append((args, kw))
        ds = datasets.Dataset.from_dict(rows)
        return ds.to_iterable_dataset() if kw.get("streaming") else ds

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    docs = docs_of("org/corpus:en", hf_split="validation", hf_num_proc=num_proc)
    assert [(d.name, d.data) for d in docs] == [
        ("hf:org/corpus:en#0", "première ligne".encode()),
        ("hf:org/corpus:en#2", b"second"),
    ]
    expected = {"split": "validation", "num_proc": num_proc} if num_proc else {"split": "validation", "streaming": True}
    assert calls == [(("org/corpus", "en"), expected)]


def test_a_missing_relative_path_is_not_taken_for_an_hf_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`corpora/train/kjv` (two slashes) cannot be an HF id (`org/name`): a missing one is a missing path."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BltError, match="file corpora/train/kjv does not exist"):
        docs_of("corpora/train/kjv")
    with pytest.raises(BltError, match="cannot load HF dataset 'org/name'"):
        docs_of("org/name")  # one slash: an HF name, offline here


BAD_RECORDS = [
    ("ints.parquet", None, r"column 'text' holds int64, not text; set data.text_field to a string column"),
    ("bad.parquet", b"PAR1 this is not parquet", r"bad.parquet is not a readable Parquet file \(.*\); it may be trunc"),
    ("bad.json", b'[{"text": "a"},\n  {"text": ', r"bad.json is not valid JSON \(line 2, column 12"),
    ("latin1.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', r"latin1.jsonl: line 2 is not UTF-8 .* iconv"),
    ("latin1.json", b'[{"text": "caf\xe9"}]', r"latin1.json is not UTF-8 \(invalid continuation byte at byte 14\)"),
    ("list.jsonl", b'["text", "a"]\n', r"list.jsonl: line 1 is an array, not an object with a 'text' field"),
    ("str.json", b'["a", "b"]', r"str.json: item 0 is a string, not an object"),
    ("num.jsonl", b'{"text": 12}\n', r"num.jsonl: line 1: field 'text' holds 12 \(int\), not a string"),
]


@pytest.mark.parametrize(("name", "content", "pattern"), BAD_RECORDS, ids=[b[0] for b in BAD_RECORDS])
def test_bad_record_files_are_one_clear_error(name: str, content: bytes | None, pattern: str, tmp_path: Path) -> None:
    path = tmp_path / name
    if content is None:
        pq.write_table(pa.table({"text": [1, 2], "n": [3, 4]}), path)
    else:
        path.write_bytes(content)
    with pytest.raises(BltError, match=pattern) as info:
        docs_of(path)
    assert "\n" not in str(info.value)
