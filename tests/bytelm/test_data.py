"""Documents to training data: the train/val split, the memmap cache, the virtual id stream and its windows, and
the data module (reading the sources: tests/bytelm/test_sources.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_jsonl

import blt.bytelm.data
from blt.bytelm.data import (
    IGNORE_INDEX,
    ByteDataModule,
    ByteStream,
    RandomWindows,
    build_cache,
    is_validation,
    split_window,
    validation_windows,
)
from blt.config import BOS_ID, EOS_ID, PAD_ID, DataConfig
from blt.errors import BltError


def split_docs(stream: ByteStream) -> list[bytes]:
    return [stream.document(i) for i in range(stream.n_docs)]


# ---------------------------------------------------------------------------------------------- split and cache


def thousand_docs(tmp_path: Path) -> tuple[Path, list[bytes]]:
    texts = [f"document {i:04d}: " + "lorem ipsum " * (i % 7) for i in range(1000)]
    return write_jsonl(tmp_path / "many.jsonl", [{"text": t} for t in texts]), [t.encode() for t in texts]


def test_split_is_disjoint_complete_and_about_val_fraction(tmp_path: Path) -> None:
    path, texts = thousand_docs(tmp_path)
    c = build_cache(DataConfig(sources=[str(path)], val_fraction=0.1))
    train, val = split_docs(c.train), split_docs(c.val)
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(texts)
    assert 70 <= len(val) <= 130  # binomial(1000, 0.1): mean 100, sd 9.5
    # Order inside each split is the source order; the held-out documents are the ones the hash picks.
    assert val == [t for t in texts if is_validation(t, 0, 0.1)]
    assert train == [t for t in texts if not is_validation(t, 0, 0.1)]


def test_split_is_deterministic_across_builds(tmp_path: Path) -> None:
    path, _ = thousand_docs(tmp_path)
    a = build_cache(DataConfig(sources=[str(path)], cache_dir=str(tmp_path / "c1")))
    b = build_cache(DataConfig(sources=[str(path)], cache_dir=str(tmp_path / "c2")))
    assert a.path != b.path
    assert split_docs(a.val) == split_docs(b.val) and split_docs(a.train) == split_docs(b.train)
    other = build_cache(DataConfig(sources=[str(path)], split_seed=1))
    assert split_docs(other.val) != split_docs(a.val)


def test_val_fraction_zero_holds_nothing_out(tmp_path: Path) -> None:
    path, texts = thousand_docs(tmp_path)
    c = build_cache(DataConfig(sources=[str(path)], val_fraction=0.0))
    assert split_docs(c.train) == texts and c.val.n_docs == 0


def big_text() -> bytes:
    return "".join(f"line {i:03d} of one big file{'!' * (i % 4)}\n" for i in range(200)).encode()


def test_single_big_file_gets_a_validation_tail(tmp_path: Path) -> None:
    """One document cannot be split by document, so the last ~val_fraction of it, cut at a newline, is held out."""
    data = big_text()
    assert not is_validation(data, 0, 0.05)  # the whole file would go to train
    assert data[int(0.95 * len(data)) - 1] != ord("\n")  # a cut at exactly 95 % would split a line
    (tmp_path / "big.txt").write_bytes(data)
    c = build_cache(DataConfig(sources=[str(tmp_path / "big.txt")], val_fraction=0.05))
    (train,), (val,) = split_docs(c.train), split_docs(c.val)
    assert train + val == data
    assert train.endswith(b"\n") and val.startswith(b"line ")
    assert 0.03 * len(data) < len(val) < 0.07 * len(data)


def test_single_big_file_whose_document_hashes_to_validation(tmp_path: Path) -> None:
    """The only document hashes to validation: it is trained on instead, and its tail is held out."""
    data = big_text()
    seed = next(s for s in range(10_000) if is_validation(data, s, 0.05))
    (tmp_path / "big.txt").write_bytes(data)
    c = build_cache(DataConfig(sources=[str(tmp_path / "big.txt")], val_fraction=0.05, split_seed=seed))
    (train,), (val,) = split_docs(c.train), split_docs(c.val)
    assert train + val == data and train.endswith(b"\n")
    assert 0.03 * len(data) < len(val) < 0.07 * len(data)


def test_few_documents_none_held_out_give_whole_trailing_documents(tmp_path: Path) -> None:
    """20 documents of 100 bytes, none hashed to validation at fraction 0.001: the last whole document (≥ 0.1 %
    of the bytes) is held out, the other 19 are trained on."""
    docs = [bytes([65 + i]) * 99 + b"\n" for i in range(20)]
    assert not any(is_validation(d, 0, 0.001) for d in docs)
    for i, d in enumerate(docs):
        (tmp_path / f"d{i:02d}.txt").write_bytes(d)
    c = build_cache(DataConfig(sources=[str(tmp_path / "d*.txt")], val_fraction=0.001))
    assert split_docs(c.train) == docs[:19] and split_docs(c.val) == docs[19:]


def test_max_bytes_stops_reading(tmp_path: Path) -> None:
    path, texts = thousand_docs(tmp_path)
    c = build_cache(DataConfig(sources=[str(path)], val_fraction=0.0, max_bytes=50))
    assert c.train.n_bytes == 50
    assert b"".join(split_docs(c.train)) == b"".join(texts)[:50]


def test_cache_is_reused_without_rereading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = thousand_docs(tmp_path)
    cfg = DataConfig(sources=[str(path)])
    first = build_cache(cfg)
    assert first.path.parent.parent == Path(os.environ["BLT_CACHE"])  # the test's private cache

    def refuse(_cfg: DataConfig) -> None:
        raise AssertionError("the cache was rebuilt")

    monkeypatch.setattr(blt.bytelm.data, "iter_documents", refuse)
    second = build_cache(cfg)
    assert second.path == first.path
    assert split_docs(second.train) == split_docs(first.train) and second.labels == first.labels
    assert isinstance(second.train.data, np.memmap)


def test_cache_key_follows_the_files_and_the_split(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    path = src / "a.txt"
    path.write_text("version one\n")
    cfg = DataConfig(sources=[str(path)], val_fraction=0.0)
    one = build_cache(cfg)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touch
    touched = build_cache(cfg)
    assert touched.path != one.path
    path.write_text("version two, longer\n")
    two = build_cache(cfg)
    assert two.path not in (one.path, touched.path)
    assert split_docs(two.train) == [b"version two, longer\n"]
    assert build_cache(DataConfig(sources=[str(path)], val_fraction=0.5)).path != two.path
    in_dir = build_cache(DataConfig(sources=[str(src)], val_fraction=0.0))
    (src / "b.txt").write_text("new file")
    grown = build_cache(DataConfig(sources=[str(src)], val_fraction=0.0))
    assert grown.path != in_dir.path and grown.train.n_docs == 2


# ---------------------------------------------------------------------------------------------- damaged caches
def _same_size_garbage(path: Path) -> None:
    st = path.stat()
    path.write_bytes(bytes(b ^ 0x55 for b in path.read_bytes()))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same size and mtime: only the hash can tell


CACHE_DAMAGE = {
    "train.bin truncated": ("train.bin", lambda p: p.write_bytes(p.read_bytes()[:-100])),
    "train.bin overwritten": ("train.bin", _same_size_garbage),
    "val.bin emptied": ("val.bin", lambda p: p.write_bytes(b"")),
    "meta.json garbage": ("meta.json", lambda p: p.write_text("{garbage")),
    "train_starts.npy garbage": ("train_starts.npy", _same_size_garbage),
    "val_starts.npy truncated": ("val_starts.npy", lambda p: p.write_bytes(p.read_bytes()[:60])),
    "a file deleted": ("val_starts.npy", lambda p: p.unlink()),
    "manifest deleted": ("MANIFEST.json", lambda p: p.unlink()),
}


@pytest.mark.parametrize("damage", CACHE_DAMAGE)
def test_a_damaged_data_cache_is_rebuilt(damage: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Cut, overwritten (same size and mtime), emptied, garbled or deleted files: one warning, then the same
    documents, labels and split as the clean build, never different numbers or a crash."""
    path, _ = thousand_docs(tmp_path)
    cfg = DataConfig(sources=[str(path)], val_fraction=0.1)
    clean = build_cache(cfg)
    want = split_docs(clean.train), split_docs(clean.val), clean.labels
    name, harm = CACHE_DAMAGE[damage]
    harm(clean.path / name)
    capsys.readouterr()
    again = build_cache(cfg)
    err = capsys.readouterr().err
    assert err.startswith("warning: the data cache entry") and "is damaged" in err and "rebuilding" in err
    assert (split_docs(again.train), split_docs(again.val), again.labels) == want
    assert again.path == clean.path and sorted(os.listdir(clean.path.parent)) == [clean.path.name]
    assert build_cache(cfg).path == clean.path and capsys.readouterr().err == ""  # sound again: no warning


def test_a_cache_that_cannot_be_written_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = thousand_docs(tmp_path)
    (tmp_path / "file").write_text("not a directory")
    for root in (tmp_path / "file", tmp_path / "file" / "below"):
        monkeypatch.setenv("BLT_CACHE", str(root))
        with pytest.raises(BltError, match=r"cannot write the blt cache at .*; set BLT_CACHE .* to a writable"):
            build_cache(DataConfig(sources=[str(path)]))
    with pytest.raises(BltError, match="data.cache_dir"):
        build_cache(DataConfig(sources=[str(path)], cache_dir=str(tmp_path / "file")))
    assert (tmp_path / "file").read_text() == "not a directory"


def _build_in_rounds(source: str, root: str, rounds: int, barrier: object) -> list[tuple[str, int, int, str]]:
    """In a spawned process: for each round, wait for the other process, then build the same cold cache at once. In
    odd rounds both also wait once their entry is built and sealed, so both rename at once and one must lose."""
    import hashlib

    import blt.cache

    real_seal, out = blt.cache.seal, []

    def seal_then_wait(directory: Path) -> None:
        real_seal(directory)
        barrier.wait(60)  # type: ignore[attr-defined]

    for r in range(rounds):
        blt.cache.seal = seal_then_wait if r % 2 else real_seal
        barrier.wait(60)  # type: ignore[attr-defined]
        c = build_cache(DataConfig(sources=[source], val_fraction=0.1, cache_dir=f"{root}/{r}"))
        digest = hashlib.sha256(b"".join(split_docs(c.train)) + b"|" + b"".join(split_docs(c.val))).hexdigest()
        out.append((str(c.path), c.train.n_docs, c.val.n_docs, digest))
    return out


@pytest.mark.slow
def test_two_processes_build_one_cold_data_cache(tmp_path: Path) -> None:
    """Two real processes (spawned), 16 rounds, each on a fresh cache, started together by a barrier (and in every
    other round held until both have built the entry, so both rename at once): never `OSError: Directory not
    empty`, the loser uses the winner's entry, the same documents in both, one sound entry, no temp directory."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from blt.cache import check_entry

    path, _ = thousand_docs(tmp_path)
    rounds, ctx = 16, mp.get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(2, mp_context=ctx) as pool:
        barrier = manager.Barrier(2)
        futures = [pool.submit(_build_in_rounds, str(path), str(tmp_path / "c"), rounds, barrier) for _ in range(2)]
        a, b = (f.result(timeout=600) for f in futures)
    assert a == b and len(a) == rounds
    for r in range(rounds):
        assert len(os.listdir(tmp_path / "c" / str(r) / "data")) == 1
        assert check_entry(Path(a[r][0])) is None


# ---------------------------------------------------------------------------------------------- streams and windows


def ab_c() -> ByteStream:
    """Documents b"ab" and b"c": bytes b"abc", starts [0, 2, 3]."""
    return ByteStream(np.frombuffer(b"abc", dtype=np.uint8), np.array([0, 2, 3]))


A, B, C = ord("a"), ord("b"), ord("c")


def test_byte_stream_window_golden() -> None:
    """Virtual stream: BOS a b EOS BOS c EOS (7 ids, n_bytes 3 + 2 per document); past the end, PAD."""
    s = ab_c()
    assert (s.n_ids, s.n_bytes, s.n_docs) == (7, 3, 2)
    assert s.window(0, 7).tolist() == [BOS_ID, A, B, EOS_ID, BOS_ID, C, EOS_ID]
    assert s.window(2, 3).tolist() == [B, EOS_ID, BOS_ID]
    assert s.window(5, 4).tolist() == [C, EOS_ID, PAD_ID, PAD_ID]
    assert s.window(7, 2).tolist() == [PAD_ID, PAD_ID]
    assert s.window(100, 1).tolist() == [PAD_ID]
    assert s.window(3, 0).tolist() == []
    assert s.window(0, 1).dtype == np.int64
    assert [s.document(0), s.document(1)] == [b"ab", b"c"]


def random_stream(n_docs: int = 30, seed: int = 0) -> tuple[ByteStream, list[int]]:
    """A stream of random documents and its virtual ids built the obvious way."""
    rng = np.random.default_rng(seed)
    docs = [rng.integers(0, 256, rng.integers(1, 40), dtype=np.uint8).tobytes() for _ in range(n_docs)]
    starts = np.concatenate([[0], np.cumsum([len(d) for d in docs])])
    virtual = [i for d in docs for i in (BOS_ID, *d, EOS_ID)]
    return ByteStream(np.frombuffer(b"".join(docs), dtype=np.uint8), starts), virtual


def starts_of(row: list[int], virtual: list[int]) -> list[int]:
    return [s for s in range(len(virtual) - len(row) + 1) if virtual[s : s + len(row)] == row]


def test_window_equals_the_obvious_virtual_stream() -> None:
    stream, virtual = random_stream()
    assert stream.n_ids == len(virtual)
    for start in range(0, len(virtual) + 3, 7):
        expected = (virtual + [PAD_ID] * 20)[start : start + 20]
        assert stream.window(start, 20).tolist() == expected


def test_random_windows_are_deterministic_and_independent_of_start_batch() -> None:
    stream, virtual = random_stream()
    from_zero = iter(RandomWindows(stream, batch_size=4, length=17, seed=3, start_batch=0))
    batches = [next(from_zero) for _ in range(8)]
    from_five = iter(RandomWindows(stream, batch_size=4, length=17, seed=3, start_batch=5))
    assert torch.equal(next(from_five), batches[5]) and torch.equal(next(from_five), batches[6])
    again = RandomWindows(stream, batch_size=4, length=17, seed=3)
    assert all(torch.equal(again.batch(k), batches[k]) for k in range(8))
    assert not torch.equal(RandomWindows(stream, 4, 17, seed=4).batch(0), batches[0])
    assert not torch.equal(RandomWindows(stream, 4, 17, seed=3, rank=1).batch(0), batches[0])
    assert not torch.equal(batches[0], batches[1])
    for batch in batches:
        assert batch.shape == (4, 17) and batch.dtype == torch.int64
        for row in batch.tolist():
            assert starts_of(row, virtual), "a window is not a contiguous slice of the virtual stream"
            assert PAD_ID not in row


def test_split_window_golden() -> None:
    """ids  [BOS a b EOS BOS c EOS PAD] -> inputs = ids[:-1], targets = ids[1:] with BOS and PAD ignored:
    targets [a b EOS -100 c EOS -100]. EOS stays a target (the model learns where documents end)."""
    ids = torch.tensor([[BOS_ID, A, B, EOS_ID, BOS_ID, C, EOS_ID, PAD_ID]])
    x, y = split_window(ids)
    assert x.tolist() == [[BOS_ID, A, B, EOS_ID, BOS_ID, C, EOS_ID]]
    assert y.tolist() == [[A, B, EOS_ID, IGNORE_INDEX, C, EOS_ID, IGNORE_INDEX]]
    assert ids.tolist() == [[BOS_ID, A, B, EOS_ID, BOS_ID, C, EOS_ID, PAD_ID]]  # input untouched


def test_validation_windows_golden() -> None:
    """7 ids, 3 windows of 3: starts linspace(0, 7 - 3, 3) = 0, 2, 4."""
    w = validation_windows(ab_c(), 3, 3)
    assert w.tolist() == [[BOS_ID, A, B], [B, EOS_ID, BOS_ID], [BOS_ID, C, EOS_ID]]
    assert validation_windows(ab_c(), 2, 50).tolist() == [[BOS_ID, A, B, EOS_ID, BOS_ID, C, EOS_ID]]


def test_validation_windows_are_fixed_and_evenly_spaced() -> None:
    stream, virtual = random_stream(n_docs=60, seed=1)
    w = validation_windows(stream, 10, 33)
    assert torch.equal(w, validation_windows(stream, 10, 33))
    starts = []
    for row in w.tolist():
        (s,) = starts_of(row, virtual)  # random bytes: each window occurs once
        starts.append(s)
    assert starts[0] == 0 and starts[-1] == len(virtual) - 33  # first and last ids are covered
    gaps = np.diff(starts)
    assert len(starts) == 10 and gaps.max() - gaps.min() <= 1


# ---------------------------------------------------------------------------------------------- data module


def module(sources: list[str], context: int = 16) -> ByteDataModule:
    cfg = DataConfig(sources=sources, val_fraction=0.1)
    return ByteDataModule(cfg, context=context, batch_size=4, seed=0, val_batches=2)


def test_data_module_serves_windows(tmp_path: Path) -> None:
    path, _ = thousand_docs(tmp_path)
    dm = module([str(path)])
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 17)
    val = list(dm.val_dataloader())
    assert len(val) == 2 and all(b.shape == (4, 17) for b in val)
    assert all(torch.equal(a, b) for a, b in zip(val, dm.val_dataloader(), strict=True))


def test_corpus_smaller_than_one_window_is_an_error(tmp_path: Path) -> None:
    for i in range(40):
        (tmp_path / f"{i}.txt").write_text("x")
    with pytest.raises(BltError, match="fewer than one training window.*model.context"):
        module([str(tmp_path)], context=256).setup("fit")
