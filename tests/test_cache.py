"""Content keys, sealed entries, the score store and the tokeniser cache: a key changes with any byte or weight and
with nothing else; stored scores come back bit-identical, and an entry that does not fit the documents is a miss,
never wrong scores; a tokeniser trains once per (kind, vocabulary size, training bytes).

Caches that never lie: every entry is verified on read (sizes and SHA-256 in its MANIFEST.json); a damaged one of
each kind is rebuilt with the numbers of a clean run; of two processes publishing one entry the second keeps the
first's; results.json says `scores_cached` only for a verified hit; and `blt compare` / `blt segment --data` killed
with SIGKILL at any stage, or run twice at once on one cold cache, give what an undisturbed run gives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import gflanguages
import lightning  # noqa: F401  imported first so its log handler binds to the real stderr, not a runner buffer
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import make_model, make_spiky_model, run_cli

import blt.segment.tokenizers as tk
from blt.bytelm.checkpoint import save_model_dir
from blt.bytelm.corpus import score_corpus
from blt.bytelm.entropy import score
from blt.bytelm.score_cache import load_scores, save_scores, scores_path
from blt.cache import MANIFEST, cache_key, check_entry, documents_hash, model_hash, open_entry, publish, seal
from blt.compare.config import CompareConfig
from blt.compare.run import run_compare
from blt.config import Config
from blt.segment.tokenizers import cached_tokenizer


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
    path = tmp_path / "entry"
    save_scores(path, scores)
    back = load_scores(path, docs)
    assert back is not None and [s.data for s in back] == docs
    for s, t in zip(scores, back, strict=True):
        assert np.array_equal(s.entropy_nats, t.entropy_nats) and np.array_equal(s.surprisal_nats, t.surprisal_nats)
    assert load_scores(path, docs[:2]) is None  # other documents: not these scores
    assert load_scores(path, [b"hello worlds", b"", docs[2]]) is None
    assert check_entry(path) is None  # ... and no damage: the entry stays
    assert load_scores(tmp_path / "missing", docs) is None
    assert sorted(os.listdir(tmp_path)) == ["entry"]  # built in a hidden temp directory, renamed


@pytest.mark.parametrize("kind", ["bpe", "sp-unigram"])
def test_a_tokeniser_trains_once_per_kind_vocab_and_training_bytes(
    kind: str, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    """First call trains and stores; the second loads the same tokeniser (same units) without training; other
    training bytes or another size is another entry; cache=False trains and writes nothing."""
    import blt.segment.tokenizers as tk

    docs = [f"document {i}: the cat sat on the mat, naïve café {i * 7}".encode() for i in range(60)]
    cls = tk.ByteBPE if kind == "bpe" else tk.SentencePieceSegmenter
    trained: list[int] = []
    real = cls.train.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(cls, "train", classmethod(lambda c, *a, **k: trained.append(1) or real(c, *a, **k)))
    first, path, seconds = cached_tokenizer(kind, 300, docs)
    again, path2, seconds2 = cached_tokenizer(kind, 300, docs)
    assert len(trained) == 1 and path == path2 and seconds == seconds2
    assert path.parent.parent == isolated_env / "tokenizers"
    probe = "the naïve cat, unseen \U0001f600".encode()
    assert np.array_equal(first.starts(probe), again.starts(probe)) and again.vocab_size == 300
    cached_tokenizer(kind, 300, docs[:-1])
    cached_tokenizer(kind, 320, docs)
    assert len(trained) == 3 and len(list((isolated_env / "tokenizers").glob("*/*.tok"))) == 3
    _, none, _ = cached_tokenizer(kind, 300, docs, cache=False)
    assert none is None and len(trained) == 4 and len(list((isolated_env / "tokenizers").glob("*/*.tok"))) == 3


# ---------------------------------------------------------------------------------------------- sealed entries
def _same_size_garbage(path: Path) -> None:
    """Overwrite in place with as many other bytes, restoring the mtime: only the hash can tell."""
    st = path.stat()
    path.write_bytes(bytes(b ^ 0x55 for b in path.read_bytes()))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "emptied": lambda p: p.write_bytes(b""),
    "grown": lambda p: p.write_bytes(p.read_bytes() + b"\0"),
    "overwritten": _same_size_garbage,
    "deleted": lambda p: p.unlink(),
}


def sealed(final: Path) -> Path:
    def fill(tmp: Path) -> None:
        (tmp / "data.bin").write_bytes(bytes(range(256)) * 40)
        (tmp / "meta.json").write_text('{"n": 1}')

    return publish(final, fill)


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("victim", ["data.bin", "meta.json", MANIFEST])
def test_a_damaged_entry_is_a_miss_with_a_warning(
    damage: str, victim: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Each file of an entry, cut, emptied, grown, overwritten (same size, same mtime: hashed again because its
    ctime moved) or deleted: `open_entry` says miss, warns once, and the entry is gone so a rebuild can take its
    place. Nothing is left behind (the entry is moved aside, then deleted)."""
    final = sealed(tmp_path / "entry")
    assert open_entry(final, "test entry") == final and capsys.readouterr().err == ""
    DAMAGE[damage](final / victim)
    assert check_entry(final) is not None
    assert open_entry(final, "test entry") is None
    err = capsys.readouterr().err
    assert err.startswith("warning: the test entry") and "rebuilding it" in err and len(err.splitlines()) == 1
    assert os.listdir(tmp_path) == []
    assert open_entry(sealed(final), "test entry") == final


def test_a_foreign_directory_is_not_an_entry(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "scores.npz").write_bytes(b"an entry of an older layout, unsealed")
    assert check_entry(tmp_path / "old") == f"no {MANIFEST}"
    (tmp_path / "file").write_bytes(b"x")
    assert check_entry(tmp_path / "file") == "not a directory"
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / MANIFEST).write_text(json.dumps({"format": "blt-cache-entry/1", "files": {"../x": {}}}))
    assert check_entry(tmp_path / "odd") is not None


def test_the_second_publisher_keeps_the_first_ones_entry(tmp_path: Path) -> None:
    """Another process publishes while we build: ours is dropped and theirs (equal: same key) is used; a damaged
    entry in the way is replaced by ours. No temp directory is left either way."""
    final = tmp_path / "e"

    def ours_then_theirs(tmp: Path) -> None:
        (tmp / "x").write_bytes(b"ours")
        publish(final, lambda t: (t / "x").write_bytes(b"theirs"))

    assert publish(final, ours_then_theirs) == final
    assert (final / "x").read_bytes() == b"theirs" and check_entry(final) is None
    assert os.listdir(tmp_path) == ["e"]

    def ours_after_damage(tmp: Path) -> None:
        (tmp / "x").write_bytes(b"ours")
        (final / "x").write_bytes(b"junk!!")

    assert publish(final, ours_after_damage) == final
    assert (final / "x").read_bytes() == b"ours" and check_entry(final) is None
    assert os.listdir(tmp_path) == ["e"]


def test_a_killed_builders_leftovers_are_swept(tmp_path: Path) -> None:
    """A temp directory of a dead process of this host goes at the next publish; a live process's stays."""
    import socket

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    dead = tmp_path / f".e.{host}-{int(child.stdout)}.abcdefgh.tmp"
    live = tmp_path / f".e.{host}-{os.getpid()}.abcdefgh.tmp"
    for d in (dead, live):
        d.mkdir()
        (d / "half").write_bytes(b"half-written")
    sealed(tmp_path / "e")
    assert sorted(os.listdir(tmp_path)) == sorted(["e", live.name])


# ---------------------------------------------------------------------------------------------- each kind of entry
SCORE_DOCS = [b"hello world, hello bytes", "naïve café \U0001f600".encode(), b"", b"\xff\xfe raw"]


def _reseal_with(arrays: dict) -> Callable[[Path], None]:
    """A writer bug: other arrays, sealed as if right (only the consistency check can tell)."""

    def damage(entry: Path) -> None:
        with open(entry / "scores.npz", "wb") as f:
            np.savez(f, **arrays)
        (entry / MANIFEST).unlink()
        seal(entry)

    return damage


@pytest.mark.parametrize("damage", ["truncated", "overwritten", "shorter arrays", "nan", "no manifest"])
def test_a_damaged_score_entry_is_rescored(damage: str, tiny_model, capsys: pytest.CaptureFixture) -> None:
    clean = score_corpus(tiny_model, SCORE_DOCS, accelerator="cpu")
    entry = scores_path(tiny_model, SCORE_DOCS)
    lengths = np.array([len(d) for d in SCORE_DOCS])
    n = int(lengths.sum())
    harm = {
        "truncated": lambda e: DAMAGE["truncated"](e / "scores.npz"),
        "overwritten": lambda e: _same_size_garbage(e / "scores.npz"),
        "shorter arrays": _reseal_with(
            {"lengths": lengths, "entropy_nats": np.ones(n - 2, "f4"), "surprisal_nats": np.ones(n - 2, "f4")}
        ),
        "nan": _reseal_with(
            {"lengths": lengths, "entropy_nats": np.full(n, np.nan, "f4"), "surprisal_nats": np.ones(n, "f4")}
        ),
        "no manifest": lambda e: (e / MANIFEST).unlink(),
    }
    harm[damage](entry)
    capsys.readouterr()
    again = score_corpus(tiny_model, SCORE_DOCS, accelerator="cpu")
    assert "warning: the score cache entry" in capsys.readouterr().err
    for a, b in zip(clean, again, strict=True):
        assert a.data == b.data and np.array_equal(a.entropy_nats, b.entropy_nats)
        assert np.array_equal(a.surprisal_nats, b.surprisal_nats)
    assert check_entry(entry) is None and load_scores(entry, SCORE_DOCS) is not None


TOKENIZER_DOCS = [f"document {i}: the cat sat on the mat, naïve café {i * 7}".encode() for i in range(60)]


@pytest.mark.parametrize("damage", ["tok truncated", "meta truncated", "tok garbage, resealed", "manifest garbage"])
def test_a_damaged_tokenizer_entry_is_retrained(
    damage: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    trained: list[int] = []
    real = tk.ByteBPE.train.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(tk.ByteBPE, "train", classmethod(lambda c, *a, **k: trained.append(1) or real(c, *a, **k)))
    first, path, _ = cached_tokenizer("bpe", 300, TOKENIZER_DOCS)
    entry = path.parent

    def tok_garbage(e: Path) -> None:
        head = (e / "tokenizer.tok").read_bytes().partition(b"\n")[0]
        (e / "tokenizer.tok").write_bytes(head + b"\n{not a tokenizer")
        (e / MANIFEST).unlink()
        seal(e)

    harm = {
        "tok truncated": lambda e: DAMAGE["truncated"](e / "tokenizer.tok"),
        "meta truncated": lambda e: DAMAGE["truncated"](e / "meta.json"),
        "tok garbage, resealed": tok_garbage,
        "manifest garbage": lambda e: (e / MANIFEST).write_text("{"),
    }
    harm[damage](entry)
    capsys.readouterr()
    again, path2, _ = cached_tokenizer("bpe", 300, TOKENIZER_DOCS)
    assert "warning: the tokenizer cache entry" in capsys.readouterr().err
    assert len(trained) == 2 and path2 == path and check_entry(entry) is None
    probe = "the naïve cat, unseen \U0001f600".encode()
    assert np.array_equal(first.starts(probe), again.starts(probe))
    assert np.array_equal(tk.ByteBPE.load(path2).starts(probe), first.starts(probe))


def test_a_damaged_tokenizer_file_loads_as_one_clear_error(tmp_path: Path) -> None:
    tok = tk.ByteBPE.train(TOKENIZER_DOCS, 300)
    tok.save(tmp_path / "t.tok")
    DAMAGE["truncated"](tmp_path / "t.tok")
    with pytest.raises(tk.BltError, match="t.tok is damaged: its bytebpe model does not load"):
        tk.ByteBPE.load(tmp_path / "t.tok")
    sp = tk.SentencePieceSegmenter.train(TOKENIZER_DOCS, 300)
    sp.save(tmp_path / "s.tok")
    DAMAGE["truncated"](tmp_path / "s.tok")
    with pytest.raises(tk.BltError, match="s.tok is damaged: its sentencepiece model does not load"):
        tk.SentencePieceSegmenter.load(tmp_path / "s.tok")


# ---------------------------------------------------------------------------------------------- blt compare
@pytest.fixture(scope="module")
def spiky_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = make_spiky_model(0)
    return save_model_dir(model, Config(model=model.cfg), {"steps": 0}, tmp_path_factory.mktemp("m") / "spiky")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 files of 15–34 words of the English and French UDHR specimens (≈ 10 kB), as in test_cli_compare."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(1)
    languages = gflanguages.LoadLanguages()
    for i in range(60):
        words = languages[("en_Latn", "fr_Latn")[i % 2]].sample_text.specimen_16.split()
        (root / f"d{i:02d}.txt").write_text(" ".join(rng.choice(words, size=int(rng.integers(15, 35)))))
    return root


def test_results_say_scores_were_cached_only_for_a_verified_hit(spiky_dir: Path, corpus: Path) -> None:
    """Miss, hit, then a damaged entry: rescored (scores_cached false, a scoring speed), the same numbers."""
    cfg = CompareConfig(
        sources=[str(corpus)], segmenters=["space", "entropy-global"], model=str(spiky_dir), match=None, threshold=0.3
    )
    warnings: list[str] = []
    first, second = run_compare(cfg), run_compare(cfg)
    (entry,) = [p for p in (Path(os.environ["BLT_CACHE"]) / "scores").iterdir() if not p.name.startswith(".")]
    _same_size_garbage(entry / "scores.npz")
    third = run_compare(cfg, warn=warnings.append)
    assert [r["byte_model"]["scores_cached"] for r in (first, second, third)] == [False, True, False]
    assert third["byte_model"]["scoring_mb_per_s"] > 0 and second["byte_model"]["scoring_mb_per_s"] is None
    assert first["byte_model"]["bits_per_byte"] == second["byte_model"]["bits_per_byte"]
    assert first["byte_model"]["bits_per_byte"] == third["byte_model"]["bits_per_byte"]
    assert check_entry(entry) is None


TIMING = ("seconds", "per_s", "share", "scores_cached")  # scoring_share: a ratio of two timings


def metrics(out: Path) -> dict:
    """results.json without what legitimately differs between runs (timings, whether scores came from the cache)."""

    def strip(x: object) -> object:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if not any(t in k for t in TIMING)}
        return [strip(v) for v in x] if isinstance(x, list) else x

    return strip(json.loads((out / "results.json").read_text()))  # type: ignore[return-value]


SEGMENTERS = "bpe,sp-unigram,tiktoken-cl100k,space,entropy-global"


def compare_args(corpus: Path, model: Path, out: Path) -> list[str]:
    return ["compare", "--data", str(corpus), "--model", str(model), "--segmenters", SEGMENTERS, "--vocab-size",
            "400", "--match", "none", "--threshold", "0.3", "--out", str(out)]  # fmt: skip


def blt_child(args: list[str], cache: Path, prelude: str = "") -> subprocess.Popen:
    """`blt ARGS` in a fresh interpreter on `cache`, after `prelude` (Python: kill hooks)."""
    script = prelude + "\nimport sys\nfrom blt.cli import main\nsys.argv = ['blt', *sys.argv[1:]]\nmain()\n"
    env = {**os.environ, "BLT_CACHE": str(cache), "TIKTOKEN_CACHE_DIR": str(cache / "tiktoken")}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture(scope="module")
def undisturbed(spiky_dir: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The metrics of one `blt compare` run on its own cold cache."""
    root = tmp_path_factory.mktemp("undisturbed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BLT_CACHE", str(root / "cache"))
        mp.setenv("TIKTOKEN_CACHE_DIR", str(root / "cache" / "tiktoken"))
        code, _, err = run_cli(*compare_args(corpus, spiky_dir, root / "out"))
    assert code == 0, err
    return metrics(root / "out")


@pytest.mark.slow
def test_two_compares_at_once_on_one_cold_cache(
    spiky_dir: Path, corpus: Path, tmp_path: Path, undisturbed: dict
) -> None:
    """Both build the data cache, score, train BPE and SentencePiece and seed tiktoken into the same empty cache at
    the same time: both exit 0 with an undisturbed run's numbers, and the cache holds one sound entry of each."""
    cache = tmp_path / "cache"
    children = [blt_child(compare_args(corpus, spiky_dir, tmp_path / f"out{i}"), cache) for i in range(2)]
    for child in children:
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-3000:]
        assert "warning" not in err, err
    assert metrics(tmp_path / "out0") == metrics(tmp_path / "out1") == undisturbed
    for kind in ("data", "scores", "tokenizers"):
        entries = list((cache / kind).iterdir())
        assert all(check_entry(e) is None for e in entries) and not [e for e in entries if e.name.startswith(".")]


KILL_HOOKS = {
    # after sealing the n-th entry (1 data, 2 scores, 3 BPE), before renaming it into place
    "entry sealed": "import blt.cache as c\nreal, n = c.seal, [0]\n"
    "def seal(d):\n    real(d); n[0] += 1\n    n[0] == {n} and os.kill(os.getpid(), signal.SIGKILL)\n"
    "c.seal = seal",
    "mid-scoring": "import blt.bytelm.corpus as c\n"
    "c.ScoringModule.predict_step = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)",
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["mid-scoring", "tokenizer entry sealed"])
def test_compare_killed_then_rerun_gives_the_undisturbed_numbers(
    stage: str, spiky_dir: Path, corpus: Path, tmp_path: Path, undisturbed: dict, isolated_env: Path
) -> None:
    """SIGKILL while the byte model scores, or with the data and score entries published and the BPE entry sealed
    but not yet renamed into place (every entry is published the same way): the rerun gives the undisturbed
    numbers and sweeps the dead run's temp directory."""
    hook = KILL_HOOKS["mid-scoring"] if stage == "mid-scoring" else KILL_HOOKS["entry sealed"].format(n=3)
    child = blt_child(compare_args(corpus, spiky_dir, tmp_path / "out"), isolated_env, "import os, signal\n" + hook)
    _, err = child.communicate(timeout=300)
    assert child.returncode == -signal.SIGKILL, err[-3000:]
    assert not (tmp_path / "out" / "results.json").exists()
    code, _, err = run_cli(*compare_args(corpus, spiky_dir, tmp_path / "out"))
    assert code == 0, err
    assert metrics(tmp_path / "out") == undisturbed
    leftovers = [p for kind in ("data", "scores", "tokenizers") for p in (isolated_env / kind).glob(".*")]
    assert not leftovers  # the killed run's temp directory was swept by the rerun


# ---------------------------------------------------------------------------------------------- blt segment --data
SEGMENT_KILLS = {
    "after the second batch": "import blt.segment.corpus as c\nreal, n = c.ParquetWriter.write_on_batch_end, [0]\n"
    "def hook(self, *a):\n    real(self, *a); n[0] += 1\n    n[0] == 2 and os.kill(os.getpid(), signal.SIGKILL)\n"
    "c.ParquetWriter.write_on_batch_end = hook\n",
    "after summary.json": "import blt.segment.corpus as c\nreal = c.write_atomic\n"
    "def hook(path, write):\n    real(path, write)\n"
    "    path.name == 'summary.json' and os.kill(os.getpid(), signal.SIGKILL)\nc.write_atomic = hook\n",
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", SEGMENT_KILLS)
def test_segment_killed_then_rerun_gives_the_undisturbed_parquet(
    stage: str, spiky_dir: Path, corpus: Path, tmp_path: Path, isolated_env: Path
) -> None:
    """Groups of 2 kB (≈ 5 predict batches) so the kill lands mid-stream; the rerun replaces the unfinished output."""
    args = ["segment", "--data", str(corpus), "--model", str(spiky_dir), "--threshold", "0.3", "--devices", "1"]
    small = "import functools\nc.segment_corpus = functools.partial(c.segment_corpus, group_bytes=2000)\n"
    prelude = "import os, signal\n" + SEGMENT_KILLS[stage] + small
    child = blt_child([*args, "--out", str(tmp_path / "out")], isolated_env, prelude)
    _, err = child.communicate(timeout=300)
    assert child.returncode == -signal.SIGKILL, err[-3000:]
    code, _, err = run_cli(*args, "--out", str(tmp_path / "out"))
    assert code == 0, err
    code, _, err = run_cli(*args, "--out", str(tmp_path / "whole"))
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "out")) == ["patches-0.parquet", "summary.json"]
    assert pq.read_table(tmp_path / "out" / "patches-0.parquet") == pq.read_table(
        tmp_path / "whole" / "patches-0.parquet"
    )
    summaries = [json.loads((tmp_path / d / "summary.json").read_text()) for d in ("out", "whole")]
    assert summaries[0] == summaries[1]
