"""The comparison's segmenters behind one interface (bytes → unit starts): tokenisers trained on the training split at a
vocabulary it supports, pretrained tokenisers, and the rule-based baselines (space, fixed, byte).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from blt.cache import documents_hash
from blt.compare.config import MAX_VOCAB, PRETRAINED, TRAINED, CompareConfig
from blt.errors import BltError
from blt.patching.rules import patch_starts
from blt.segment.tokenizers import cached_tokenizer


@dataclass
class Segmenter:
    """What the comparison needs of any segmenter: a name, a vocabulary size (None: open) and bytes -> starts."""

    name: str
    vocab_size: int | None
    starts: Callable[[bytes], np.ndarray]
    train_seconds: float = 0.0
    threshold_nats: float | None = None  # global/monotonic entropy segmenters: the threshold they cut at
    budget_nats: float | None = None  # budget entropy segmenters: the summed entropy a patch may hold
    rule: str | None = None  # entropy segmenters and saved patchers: the boundary rule
    prepare_seconds: float = 0.0  # time spent on all documents before `starts` (a saved patcher scores them first)
    patch_size: float | None = None  # fixed: the patch length L (unit i at byte ⌊i·L⌋)
    matched: bool | None = None  # False: calibrated to the reference rate and could not reach it (else measured)
    match_note: str | None = None  # why it did not, and the rates it can reach


def choose_vocab_size(cfg: CompareConfig, train_docs: Sequence[bytes]) -> int:
    """An experiment cell's vocabulary size when it gives none (`blt compare` uses `vocab_cap`): `default_vocab_size`
    of the training bytes, raised to the next power of two that lossless SentencePiece (character_coverage=1.0) can
    reach: one piece per distinct character + 259."""
    from blt.segment.tokenizers import default_vocab_size

    vocab = default_vocab_size(sum(map(len, train_docs)))
    return max(vocab, sentencepiece_floor(train_docs)) if any(s.startswith("sp-") for s in cfg.segmenters) else vocab


def vocab_cap(cfg: CompareConfig, train_docs: Sequence[bytes]) -> int:
    """The default vocabulary cap: `MAX_VOCAB`, raised to the next power of two that lossless SentencePiece
    (character_coverage=1.0) needs when the training text has more distinct characters than that allows."""
    if not any(s.startswith("sp-") for s in cfg.segmenters):
        return MAX_VOCAB
    return max(MAX_VOCAB, sentencepiece_floor(train_docs))


def sentencepiece_floor(train_docs: Sequence[bytes]) -> int:
    """The smallest power of two lossless SentencePiece can train at on these documents: one piece per distinct
    character + 259 byte/control pieces, + 64 to spare."""
    chars: set[str] = set()
    for d in train_docs:
        chars.update(d.decode("utf-8", errors="surrogateescape"))
    return int(2 ** math.ceil(math.log2(len(chars) + 259 + 64)))


def build_tokenisers(
    cfg: CompareConfig, train_docs: Sequence[bytes], warn: Callable[[str], None]
) -> tuple[list[Segmenter], int]:
    """Train (or load) every tokeniser of the run; unavailable pretrained ones are skipped with a warning. Without
    a given vocabulary size each trainer goes as far as the training split supports, up to `vocab_cap`."""
    from blt.segment import pretrained

    at_most = cfg.vocab_size is None
    vocab = cfg.vocab_size or vocab_cap(cfg, train_docs)
    out, failures = [], []
    train_sha = documents_hash(train_docs) if any(n in TRAINED for n in cfg.segmenters) else None
    for name in cfg.segmenters:
        t, seconds = time.perf_counter(), None
        try:
            if name in TRAINED:  # trained once per (kind, vocab, training bytes); later runs load it
                seg, _, seconds = cached_tokenizer(
                    name, vocab, train_docs, train_sha=train_sha, cache=cfg.cache, at_most=at_most
                )
            elif name in PRETRAINED:
                seg = pretrained.TiktokenSegmenter(name.removeprefix("tiktoken-") + "_base", name=name)
            elif name.startswith("hf:"):
                spec, _, gguf = name.removeprefix("hf:").partition("#")
                seg = pretrained.HFTokenizerSegmenter(spec, gguf_file=gguf or None)
            else:
                continue
        except BltError as exc:
            if name in TRAINED:  # every trainer's complaint in one error: the sizes they accept differ
                failures.append(f"{name}: {exc}")
            else:
                warn(f"{name} skipped: {exc}")
            continue
        seconds = seconds if seconds is not None else time.perf_counter() - t
        out.append(Segmenter(name, seg.vocab_size, seg.starts, seconds))
    if failures:
        sizes = [int(x) for f in failures for x in re.findall(r"--vocab-size (\d+)", f)]
        if sizes and all("too large" in f for f in failures):  # one size that every trainer accepts
            failures.insert(
                0, f"vocab_size {vocab} is too large for this corpus; --vocab-size {min(sizes)} works for every trainer"
            )
        raise BltError("; ".join(failures))
    return out, vocab


def rule_segmenter(name: str, size: float, rate: float | None = None) -> Segmenter:
    """A rule-based segmenter; `fixed` at `size` bytes (non-integer: unit i starts at byte floor(i·size)), named
    after the `rate` (bytes/unit) it was sized to give, if any, else after its size."""

    def starts(data: bytes) -> np.ndarray:
        arr = np.frombuffer(data, dtype=np.uint8)
        return patch_starts(np.zeros(len(data), np.float32), rule=name, patch_size=size, data=arr)

    shown = rate if rate is not None else size
    label = f"fixed-{int(shown)}" if shown == int(shown) else f"fixed-{shown:.2f}"
    return Segmenter(name if name != "fixed" else label, None, starts, patch_size=size if name == "fixed" else None)


def fixed_size_for(docs: Sequence[bytes], bytes_per_unit: float) -> float:
    """The fixed patch size L whose patches (unit i of a document at ⌊i·L⌋) give `bytes_per_unit` over `docs`:
    each document's last patch is short, so L is a little above the rate. The smallest L whose Σ ⌈n/L⌉ reaches
    the nearest achievable count; golden: documents of 10 and 5 bytes at 3 bytes/unit (5 units) give L = 10/3
    (⌈10/L⌉ + ⌈5/L⌉ = 4 + 2 = 6 at L = 3, and 3 + 2 = 5 from L = 10/3)."""
    n = np.array([len(d) for d in docs if len(d)], dtype=np.float64)
    if not n.size:
        return bytes_per_unit
    want = max(n.size, round(n.sum() / bytes_per_unit))

    def count(size: float) -> int:  # units = #{i ≥ 0 : ⌊i·size⌋ < n}, in the float arithmetic the rule uses
        k = np.ceil(n / size)
        return int((k + (np.floor(k * size) < n) - (np.floor((k - 1) * size) >= n)).sum())

    lo, hi = 1.0, float(n.max())  # count(lo) = N ≥ want ≥ count(hi) = documents
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if count(mid) > want else (lo, mid)
    return hi
