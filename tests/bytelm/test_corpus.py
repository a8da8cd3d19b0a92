"""Corpus patching through Lightning's predict loop into Parquet: one row per document, equal to `Patcher.patch` on
that document, totals in summary.json, one fixed threshold when calibrating to a target, and no overwriting; and
`score_corpus`, the same loop for scores: equal to `score`, cached by content, sharded over ranks."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import lightning  # noqa: F401  imported first so its log handler binds to the real stderr
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import make_model, make_spiky_model

from blt.bytelm.corpus import score_corpus
from blt.bytelm.entropy import score
from blt.bytelm.score_cache import scores_path
from blt.config import DataConfig
from blt.errors import BltError
from blt.segment.corpus import segment_corpus
from blt.segment.patcher import Patcher

THRESHOLD = 0.1  # nats, about the median entropy of the spiky model


spiky_model = cache(make_spiky_model)


def write_corpus(root: Path) -> dict[str, bytes]:
    """Eight documents, ≈ 2 kB: multilingual, one with invalid UTF-8, one a single byte; an empty file is skipped."""
    rng = np.random.default_rng(0)
    vocab = "the quick brown fox jumps over lazy dog naïve café 日本語 текст 😀 data byte patch entropy".split()
    docs = {f"doc{i}.txt": " ".join(rng.choice(vocab, size=20 + 15 * i)).encode() for i in range(6)}
    docs["invalid.txt"] = b"bytes are bytes: \xff\xfe \xe6\x97 end\n"
    docs["one.txt"] = b"x"
    root.mkdir(parents=True, exist_ok=True)
    for name, data in docs.items():
        (root / name).write_bytes(data)
    (root / "empty.txt").write_bytes(b"")
    return {str(root / name): docs[name] for name in sorted(docs)}  # the order iter_documents reads them in


def run(patcher: Patcher, corpus: Path, out: Path, **kw: Any) -> dict[str, Any]:
    return segment_corpus(
        patcher, DataConfig(sources=[str(corpus)]), out, accelerator="cpu", devices=1, progress=False, **kw
    )


_RUNS: dict[Path, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def fixed_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, bytes], Path]:
    root = tmp_path_factory.mktemp("fixed")
    return write_corpus(root / "corpus"), root


def fixed_run(fixed_corpus: tuple[dict[str, bytes], Path]) -> tuple[dict[str, bytes], Path, dict[str, Any]]:
    """The corpus patched once per module at a fixed threshold, in groups of ≈ 500 bytes (several predict batches).
    Run inside the tests rather than in the fixture, so that a failure is the test's own."""
    docs, root = fixed_corpus
    if root not in _RUNS:
        _RUNS[root] = run(Patcher(spiky_model(), threshold=THRESHOLD), root / "corpus", root / "out", group_bytes=500)
    return docs, root / "out", _RUNS[root]


def test_one_row_per_document_equal_to_patching_it_alone(fixed_corpus: tuple) -> None:
    docs, out, _ = fixed_run(fixed_corpus)
    assert sorted(p.name for p in out.iterdir()) == ["patches-0.parquet", "summary.json"]  # no temp files left
    assert pq.ParquetFile(out / "patches-0.parquet").num_row_groups > 1  # written batch by batch
    rows = pq.read_table(out / "patches-0.parquet").to_pylist()
    assert [r["name"] for r in rows] == list(docs)  # the empty file is skipped
    expected = Patcher(spiky_model(), threshold=THRESHOLD).patch(list(docs.values()))
    for row, data, p in zip(rows, docs.values(), expected, strict=True):
        assert row["patch_lengths"] == p.lengths.tolist()
        assert sum(row["patch_lengths"]) == row["bytes"] == len(data)
        assert row["patches"] == len(row["patch_lengths"])
        assert row["bytes_per_patch"] == pytest.approx(len(data) / row["patches"])
        assert row["label"] is None


def test_summary_holds_the_totals(fixed_corpus: tuple) -> None:
    docs, out, summary = fixed_run(fixed_corpus)
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    rows = pq.read_table(out / "patches-0.parquet").to_pylist()
    n_bytes, n_patches = sum(map(len, docs.values())), sum(r["patches"] for r in rows)
    assert summary["documents"] == len(docs) == 8
    assert summary["bytes"] == n_bytes and summary["patches"] == n_patches
    assert summary["bytes_per_patch"] == pytest.approx(n_bytes / n_patches)
    assert summary["rule"] == "global" and summary["threshold_nats"] == THRESHOLD
    assert summary["threshold_bits"] == pytest.approx(THRESHOLD / np.log(2))
    assert summary["calibrated_on_bytes"] is None and summary["max_patch_length"] is None


def test_two_processes_share_the_corpus_and_rank_0_sums_the_summary(fixed_corpus: tuple, tmp_path: Path) -> None:
    """Two CPU ranks (gloo, spawned): groups alternate between them, each rank writes its own Parquet file, and
    rank 0 sums both ranks' totals into summary.json — the same rows and totals as one process."""
    docs, one_out, one = fixed_run(fixed_corpus)
    summary = segment_corpus(
        Patcher(spiky_model(), threshold=THRESHOLD),
        DataConfig(sources=[str(fixed_corpus[1] / "corpus")]),
        tmp_path / "two",
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        group_bytes=500,
        progress=False,
    )
    files = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert files == ["patches-0.parquet", "patches-1.parquet", "summary.json"]
    parts = [pq.read_table(tmp_path / "two" / f).to_pylist() for f in files[:2]]
    assert parts[0] and parts[1]  # both ranks did work
    rows = sorted(parts[0] + parts[1], key=lambda r: r["name"])
    assert rows == sorted(pq.read_table(one_out / "patches-0.parquet").to_pylist(), key=lambda r: r["name"])
    written = json.loads((tmp_path / "two" / "summary.json").read_text())
    for key in ("documents", "bytes", "patches", "bytes_per_patch"):
        assert written[key] == summary[key] == one[key]


def test_refuses_to_overwrite_patches(tmp_path: Path) -> None:
    """Checked before anything is scored or written: the old patches stay as they were."""
    write_corpus(tmp_path / "corpus")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "patches-0.parquet").write_bytes(b"earlier results")
    with pytest.raises(BltError, match="already holds patches"):
        run(Patcher(spiky_model(), threshold=THRESHOLD), tmp_path / "corpus", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["patches-0.parquet"]
    assert (tmp_path / "out" / "patches-0.parquet").read_bytes() == b"earlier results"


def test_target_calibrates_one_fixed_threshold_on_the_corpus(tmp_path: Path) -> None:
    docs = write_corpus(tmp_path / "corpus")
    patcher = Patcher(spiky_model(), target_bytes_per_patch=4.0)
    summary = run(patcher, tmp_path / "corpus", tmp_path / "out", group_bytes=700)
    n_bytes = sum(map(len, docs.values()))
    assert summary["calibrated_on_bytes"] == n_bytes  # the whole (small) corpus
    assert abs(summary["patches"] - n_bytes / 4.0) <= 1  # within one patch of the target, over the corpus
    theta = summary["threshold_nats"]
    assert patcher.threshold == theta and patcher.target_bytes_per_patch is None
    rows = pq.read_table(tmp_path / "out" / "patches-0.parquet").to_pylist()
    expected = Patcher(spiky_model(), threshold=theta).patch(list(docs.values()))  # the same θ for every group
    assert [r["patch_lengths"] for r in rows] == [p.lengths.tolist() for p in expected]


def test_calibration_uses_the_first_calibration_bytes(tmp_path: Path) -> None:
    """With calibration_bytes = 100, calibration stops at the first document that reaches 100 bytes."""
    docs = write_corpus(tmp_path / "corpus")
    sizes = np.cumsum([len(d) for d in docs.values()])
    first = int(np.argmax(sizes >= 100))
    summary = run(
        Patcher(spiky_model(), target_bytes_per_patch=4.0), tmp_path / "corpus", tmp_path / "out", calibration_bytes=100
    )
    assert summary["calibrated_on_bytes"] == sizes[first]
    fitted = Patcher(spiky_model(), target_bytes_per_patch=4.0).fit(list(docs.values())[: first + 1])
    assert summary["threshold_nats"] == fitted["threshold_nats"]


def test_rule_based_patching_needs_no_model(tmp_path: Path) -> None:
    docs = write_corpus(tmp_path / "corpus")
    summary = run(Patcher("default", rule="space"), tmp_path / "corpus", tmp_path / "out")
    rows = pq.read_table(tmp_path / "out" / "patches-0.parquet").to_pylist()
    expected = Patcher(rule="space").patch(list(docs.values()))
    assert [r["patch_lengths"] for r in rows] == [p.lengths.tolist() for p in expected]
    assert summary["threshold_nats"] is None and summary["rule"] == "space"


# --------------------------------------------------------------------------------------------- score_corpus
SCORE_DOCS = [b"the cat sat on the mat. " * 12, b"", "naïve café 日本語 ".encode() * 9 + b"\xff\xfe", b"x"] * 3


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x.data == y.data
        and np.allclose(x.entropy_nats, y.entropy_nats, atol=1e-5)
        and np.allclose(x.surprisal_nats, y.surprisal_nats, atol=1e-5)
        for x, y in zip(a, b, strict=True)
    )


def test_score_corpus_equals_score_and_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several predict batches (group_bytes 300) give what one direct `score` call gives; the second run reads the
    cache without calling the model, and changing one byte of one document misses it."""
    import blt.bytelm.corpus

    model = make_model()
    direct = score(model, SCORE_DOCS)
    calls: list[int] = []

    def counting(m: Any, texts: Any, **kw: Any) -> Any:
        calls.append(len(texts))
        return score(m, texts, **kw)

    monkeypatch.setattr(blt.bytelm.corpus, "score", counting)
    first = score_corpus(model, SCORE_DOCS, accelerator="cpu", group_bytes=300)
    assert _same(first, direct) and len(calls) > 1 and sum(calls) == len(SCORE_DOCS)
    calls.clear()
    again = score_corpus(model, SCORE_DOCS, accelerator="cpu", group_bytes=300)
    assert calls == [] and _same(again, direct)
    assert scores_path(model, SCORE_DOCS).exists()
    changed = [SCORE_DOCS[0][:-1] + b"!", *SCORE_DOCS[1:]]
    score_corpus(model, changed, accelerator="cpu")
    assert sum(calls) == len(changed)
    calls.clear()
    score_corpus(model, SCORE_DOCS, accelerator="cpu", cache=False)  # --no-cache: scored again
    assert sum(calls) == len(SCORE_DOCS)


def test_score_corpus_shards_over_two_processes() -> None:
    """Two CPU ranks (gloo, spawned) each score half of the groups; rank 0 merges them in document order."""
    model = make_model()
    got = score_corpus(
        model, SCORE_DOCS, accelerator="cpu", devices=2, strategy="ddp_spawn", group_bytes=300, cache=False
    )
    assert got is not None and _same(got, score(model, SCORE_DOCS))
