"""blt: entropy-based byte patching and tokenisation experiments.

The data path reads `text → bytes → model → entropies → patches → metrics → report`; the public entry points are
re-exported here so scripts need one import.
"""

from __future__ import annotations

__version__ = "0.1.0"

from blt.checkpoint import load_model, save_model_dir
from blt.config import Config, DataConfig, ModelConfig, TrainConfig, load_config
from blt.entropy import ByteScores, corpus_bits_per_byte, entropy_from_logits, score
from blt.errors import BltError
from blt.model import ByteLM
from blt.patching import StreamingPatcher, calibrate_threshold, patch_lengths, patch_start_mask, patch_starts
from blt.segmenters import Patcher, Patches

__all__ = [
    "BltError",
    "ByteLM",
    "ByteScores",
    "Config",
    "DataConfig",
    "ModelConfig",
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
]
