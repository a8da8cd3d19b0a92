"""The comparison job (`blt compare`): entropy patching next to trained, pretrained and rule-based tokenisers on one
corpus. It owns the segmenter names and `CompareConfig` (`config`), building the segmenters (`segmenters`), the run
(split, train, score once, calibrate to a matched rate, saved patchers as rows: `run`), measuring (`measure`), reference
rates and evenness curves (`rates`), compressor baselines and the calibration gap (`baselines`), and its report:
terminal table, report.md (`report`) and plots (`plots`). The names users imported from the old `blt.compare` module are
re-exported here.

May import the top-level modules, `blt.bytelm`, `blt.patching`, `blt.segment`, `blt.metrics` and `blt.report`; see
docs/architecture.md.
"""

from __future__ import annotations

from blt.compare.config import (
    DEFAULT_SEGMENTERS,
    ENTROPY,
    MAX_VOCAB,
    PRETRAINED,
    RULE_BASED,
    SEGMENTERS,
    TRAINED,
    CompareConfig,
    validate,
)
from blt.compare.measure import check_lossless, measure
from blt.compare.run import StreamDocuments, reachable_bytes_per_patch, run_compare, split_corpus
from blt.compare.segmenters import (
    Segmenter,
    build_tokenisers,
    choose_vocab_size,
    fixed_size_for,
    rule_segmenter,
    vocab_cap,
)
from blt.files import finite

__all__ = [
    "DEFAULT_SEGMENTERS",
    "ENTROPY",
    "MAX_VOCAB",
    "PRETRAINED",
    "RULE_BASED",
    "SEGMENTERS",
    "TRAINED",
    "CompareConfig",
    "Segmenter",
    "StreamDocuments",
    "build_tokenisers",
    "check_lossless",
    "choose_vocab_size",
    "finite",
    "fixed_size_for",
    "measure",
    "reachable_bytes_per_patch",
    "rule_segmenter",
    "run_compare",
    "split_corpus",
    "validate",
    "vocab_cap",
]
