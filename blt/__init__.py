"""blt: entropy-based byte patching and tokenisation experiments.

The data path reads `text → scores → patches → units → metrics → report`, and so do the packages: `blt.bytelm`
(the byte model: text → scores), `blt.patching` (scores → patches), `blt.segment` (bytes → units: the patcher and
tokenisers), `blt.metrics`, the three jobs `blt.compare`, `blt.experiments` and `blt.llm`, the shared renderers
`blt.report`, and the command line `blt.cli`; below them all, the top-level modules `errors`, `config`, `files`
and `cache`. docs/architecture.md draws it, with what each package may import.

The public entry points are re-exported here so scripts need one import. Old module paths of the flat 0.1 layout
(`blt.tokenizers`, `blt.entropy`, ...) still import for one release, with a `DeprecationWarning` (`blt._moved`).
"""

from __future__ import annotations

from blt._moved import install as _install_moved
from blt._version import __version__
from blt.bytelm.checkpoint import load_model, save_model_dir
from blt.bytelm.entropy import ByteScores, corpus_bits_per_byte, entropy_from_logits, score
from blt.bytelm.model import ByteLM
from blt.bytelm.online import OnlineScorer, score_online
from blt.config import Config, DataConfig, ModelConfig, TrainConfig, load_config
from blt.errors import BltError
from blt.patching import StreamingPatcher, calibrate_threshold, patch_lengths, patch_start_mask, patch_starts
from blt.segment.patcher import Patcher, Patches

_install_moved()

__all__ = [
    "BltError",
    "ByteLM",
    "ByteScores",
    "Config",
    "DataConfig",
    "ModelConfig",
    "OnlineScorer",
    "Patcher",
    "Patches",
    "StreamingPatcher",
    "TrainConfig",
    "__version__",
    "calibrate_threshold",
    "corpus_bits_per_byte",
    "entropy_from_logits",
    "load_config",
    "load_model",
    "patch_lengths",
    "patch_start_mask",
    "patch_starts",
    "save_model_dir",
    "score",
    "score_online",
]
