"""Scores → patches, as pure numpy kernels: the boundary rules (global and monotonic entropy thresholds, space, fixed,
byte) with patch starts and lengths (`rules`), the entropy-budget rule as one compiled loop (`budget`), exact
calibration to a target bytes/patch (`calibration`) and a streaming patcher (`streaming`); each vectorised kernel
has a plain-Python loop twin that the tests compare against. The names users import from `blt.patching` are
re-exported here.

May import the top-level modules only (`blt.errors`); no torch model, no files. See docs/architecture.md.
"""

from __future__ import annotations

from blt.patching.calibration import calibrate_threshold
from blt.patching.rules import ENTROPY_RULES, RULES, patch_lengths, patch_start_mask, patch_starts
from blt.patching.streaming import StreamingPatcher

__all__ = [
    "ENTROPY_RULES",
    "RULES",
    "StreamingPatcher",
    "calibrate_threshold",
    "patch_lengths",
    "patch_start_mask",
    "patch_starts",
]
