"""Segmenters: one interface that maps raw bytes to boundary offsets over those bytes, losslessly.

`Patcher` is the entropy segmenter: it scores bytes with a byte model (`blt.bytelm.entropy.score`: windowed, batch
invariant) and turns the entropies into patches with the pure rules of `blt.patching`. Every segmenter's units
concatenate back to the exact input bytes, invalid UTF-8 included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blt.bytelm.entropy import LN2, ByteScores, as_bytes, score, score_cached
from blt.bytelm.model import ByteLM
from blt.errors import BltError
from blt.patching.calibration import calibrate_threshold
from blt.patching.rules import ENTROPY_RULES, RULES, patch_starts


@dataclass
class Patches:
    """One input's patching: `starts[i]` is the byte offset where patch i begins (starts[0] == 0)."""

    data: bytes
    starts: np.ndarray  # [P] int64, strictly increasing
    entropies_nats: np.ndarray | None  # [n] float32 for entropy rules, None otherwise
    threshold_nats: float | None  # the rule's threshold (monotonic: the relative one; budget: the budget)
    relative_threshold_nats: float | None = None  # the combined rule's second threshold
    rule: str = "global"  # the boundary rule that placed the starts

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(np.append(self.starts, len(self.data))) if len(self.starts) else np.zeros(0, np.int64)

    @property
    def spans(self) -> list[tuple[int, int]]:
        ends: np.ndarray | list[int] = np.append(self.starts[1:], len(self.data)) if len(self.starts) else []
        return [(int(s), int(e)) for s, e in zip(self.starts, ends, strict=True)]

    @property
    def segments(self) -> list[bytes]:
        return [self.data[s:e] for s, e in self.spans]

    @property
    def bytes_per_patch(self) -> float:
        return len(self.data) / len(self.starts) if len(self.starts) else 0.0


def score_resetting_at_newlines(model: ByteLM, data: bytes, **kw: object) -> ByteScores:
    """Score each line on its own (BOS at every line start): the BLT paper's fix for entropy drift."""
    lines = data.splitlines(keepends=True)
    parts = score(model, lines, **kw) if lines else []  # type: ignore[arg-type]
    cat = (lambda xs: np.concatenate(xs)) if parts else (lambda xs: np.zeros(0, dtype=np.float32))
    return ByteScores(data, cat([p.entropy_nats for p in parts]), cat([p.surprisal_nats for p in parts]))


DEFAULT_TARGET_BYTES_PER_PATCH = 4.5  # BLT-Entropy's 4.5 bytes/patch in the paper's Table 1 (Llama 3 BPE: 4.4)


def default_thresholds(
    model: ByteLM, texts: Sequence[bytes], target: float = DEFAULT_TARGET_BYTES_PER_PATCH, precision: str = "32"
) -> dict[str, float]:
    """Global and monotonic thresholds and the budget that give `texts` `target` bytes/patch: stored in a model's
    card as the values `Patcher` uses when it is given none."""
    ents = [s.entropy_nats for s in score(model, list(texts), precision=precision)]
    return {rule: calibrate_threshold(ents, target, rule=rule) for rule in ("global", "monotonic", "budget")}


class Patcher:
    """Entropy (or rule-based) patching of text with a byte model.

    Give `threshold` (nats) or `target_bytes_per_patch` (the threshold is then calibrated exactly on the text
    being segmented, or once on a corpus with `fit`). `relative_threshold` drives the monotonic rule, `budget` (nats
    per patch) and `min_patch_length` the budget rule (`blt.patching.budget`).
    `online_lr` scores online: a copy of the model learns from each window after scoring it (`blt.bytelm.online`).
    `cache=True` keeps the byte model's scores in the on-disk score cache (`entropy.score_cached`), so scoring
    the same texts again (`blt calibrate` twice) reads them back; `progress(n)` hears of every n bytes scored.
    """

    def __init__(
        self,
        model: ByteLM | str = "default",
        *,
        rule: str = "global",
        threshold: float | None = None,
        relative_threshold: float | None = None,
        target_bytes_per_patch: float | None = None,
        max_patch_length: int | None = None,
        patch_size: int | None = None,
        reset_at_newlines: bool = False,
        precision: str = "32",
        batch_size: int = 16,
        cache: bool = False,
        progress: Callable[[int], None] | None = None,
        budget: float | None = None,
        min_patch_length: int | None = None,
        online_lr: float | None = None,
    ) -> None:
        if rule not in RULES:
            raise BltError(f"unknown rule {rule!r}; valid rules: {', '.join(RULES)}")
        if budget is not None and rule != "budget":  # else it would be ignored without a word
            raise BltError(
                f"--budget sets the budget rule's nats per patch; the {rule} rule has none: add --rule budget"
            )
        if min_patch_length is not None and rule != "budget":
            raise BltError(f"--min-patch-length applies to the budget rule, not {rule!r}: add --rule budget")
        threshold_given = threshold is not None or relative_threshold is not None or budget is not None
        if threshold_given and target_bytes_per_patch is not None:
            raise BltError("give either a threshold or target_bytes_per_patch (--target-bytes-per-patch), not both")
        if patch_size is not None and rule != "fixed":  # else it would be ignored without a word
            raise BltError(f"--patch-size sets the fixed rule's patches; the {rule} rule has none: add --rule fixed")
        if rule not in ENTROPY_RULES and target_bytes_per_patch is not None:
            raise BltError(
                f"--target-bytes-per-patch calibrates entropy rules; the {rule} rule has none "
                f"(use --patch-size with --rule fixed)"
            )
        if target_bytes_per_patch is not None and not 0 < target_bytes_per_patch < math.inf:  # NaN too
            raise BltError(
                f"target_bytes_per_patch must be > 0 bytes per patch (and finite), got {target_bytes_per_patch} "
                f"(--target-bytes-per-patch; 1 means a patch per byte)"
            )
        if rule == "combined" and target_bytes_per_patch is not None:
            raise BltError("calibration supports the global, monotonic and budget rules; give thresholds for combined")
        self.model_source: str | None = model if isinstance(model, str) else None  # how the model was named
        if isinstance(model, str) and rule in ENTROPY_RULES:
            from blt.bytelm.checkpoint import load_model

            model = load_model(model)
        if rule in ENTROPY_RULES and not threshold_given and target_bytes_per_patch is None:
            # The model's own thresholds, calibrated when it was built (see default_thresholds).
            stored = getattr(model, "card", {}).get("patch_thresholds_nats", {})
            threshold, relative_threshold = stored.get("global"), stored.get("monotonic")
            budget = stored.get("budget") if rule == "budget" else None
            if rule == "budget":
                threshold = relative_threshold = None
            missing = (
                budget is None
                if rule == "budget"
                else ((rule != "monotonic" and threshold is None) or (rule != "global" and relative_threshold is None))
            )
            if missing:
                option = "--budget" if rule == "budget" else "--threshold / --relative-threshold"
                raise BltError(
                    f"the {rule} rule needs its value in nats ({option}) or a target (--target-bytes-per-patch X) "
                    f"to calibrate one; this model's card stores none"
                )
            if rule == "global":
                relative_threshold = None
            elif rule == "monotonic":
                threshold = None
        self.model = model if isinstance(model, ByteLM) else None
        self.rule, self.threshold, self.relative_threshold = rule, threshold, relative_threshold
        self.target_bytes_per_patch, self.max_patch_length = target_bytes_per_patch, max_patch_length
        self.patch_size, self.reset_at_newlines = patch_size, reset_at_newlines
        self.precision, self.batch_size = precision, batch_size
        self.cache, self.progress = cache, progress
        self.budget, self.min_patch_length = budget, min_patch_length
        self.calibration: dict[str, Any] | None = None  # what the value was calibrated on (see _record_calibration)
        self.online_lr = online_lr  # score online (blt.bytelm.online): the model learns each window after scoring it

    # -- scoring ------------------------------------------------------------------------------------------
    def entropies(self, texts: Sequence[str | bytes]) -> list[np.ndarray]:
        """Per-byte entropies (nats) of each input under the model."""
        assert self.model is not None
        kw = {"precision": self.precision, "batch_size": self.batch_size, "progress": self.progress}
        if self.online_lr is not None:  # one learner over all the texts, in order; never cached
            from blt.bytelm.online import OnlineScorer

            if self.reset_at_newlines:
                raise BltError("--online scores each text as a stream; it does not combine with --reset-at-newlines")
            learner = OnlineScorer(self.model, lr=self.online_lr, precision=self.precision)
            return [s.entropy_nats for s in learner.score(list(texts), self.progress)]
        if self.reset_at_newlines:
            return [score_resetting_at_newlines(self.model, as_bytes(t), **kw).entropy_nats for t in texts]
        datas = [as_bytes(t) for t in texts]
        return [s.entropy_nats for s in score_cached(self.model, datas, cache=self.cache, **kw)]  # type: ignore[arg-type]

    def fit(self, texts: Sequence[str | bytes]) -> dict[str, float]:
        """Calibrate the threshold on `texts` so their mean bytes/patch is closest to the target; returns the
        threshold (nats and bits) and the bytes/patch it achieves on `texts`."""
        if self.target_bytes_per_patch is None:
            raise BltError("fit needs target_bytes_per_patch")
        datas = [as_bytes(t) for t in texts if len(t)]
        ents = self.entropies(datas)
        value = calibrate_threshold(
            ents,
            self.target_bytes_per_patch,
            rule=self.rule,
            max_patch_length=self.max_patch_length,
            min_patch_length=self.min_patch_length,
        )
        self._set_threshold(value)
        target, self.target_bytes_per_patch = self.target_bytes_per_patch, None
        patches = self._from_entropies(datas, ents)
        n_patches = sum(len(p.starts) for p in patches)
        self._record_calibration(datas, target, n_patches)
        return {
            "threshold_nats": value,
            "threshold_bits": value / LN2,
            "target_bytes_per_patch": target,
            "bytes_per_patch": sum(len(d) for d in datas) / max(n_patches, 1),
            "bytes": sum(map(len, datas)),
            "patches": n_patches,
        }

    @property
    def rule_threshold(self) -> float | None:
        """The value the rule cuts at (nats): the relative threshold for monotonic, the budget for budget, the
        global threshold otherwise."""
        return {"monotonic": self.relative_threshold, "budget": self.budget}.get(self.rule, self.threshold)

    def _set_threshold(self, value: float) -> None:
        if self.rule == "monotonic":
            self.relative_threshold = value
        elif self.rule == "budget":
            self.budget = value
        else:
            self.threshold = value

    # -- patching -----------------------------------------------------------------------------------------
    def patch(self, texts: Sequence[str | bytes]) -> list[Patches]:
        datas = [as_bytes(t) for t in texts]
        ents: list[np.ndarray | None] = [None] * len(datas)
        if self.rule in ENTROPY_RULES:
            ents = list(self.entropies(datas))
            if self.target_bytes_per_patch is not None:  # calibrate on exactly these inputs
                nonempty = [e for e in ents if e is not None and len(e)]
                if nonempty:
                    self._set_threshold(
                        calibrate_threshold(
                            nonempty,
                            self.target_bytes_per_patch,
                            rule=self.rule,
                            max_patch_length=self.max_patch_length,
                            min_patch_length=self.min_patch_length,
                        )
                    )
                    patches = self._from_entropies(datas, ents)
                    kept = [d for d in datas if d]
                    self._record_calibration(kept, self.target_bytes_per_patch, sum(len(p.starts) for p in patches))
                    return patches
        return self._from_entropies(datas, ents)

    def _record_calibration(self, datas: Sequence[bytes], target: float | None, n_patches: int) -> None:
        from blt.cache import documents_hash

        total = sum(map(len, datas))
        self.calibration = {
            "target_bytes_per_patch": target,
            "bytes_per_patch": total / max(n_patches, 1),
            "bytes": total,
            "documents": len(datas),
            "sha256": documents_hash(datas),  # SHA-256 over the documents, each prefixed by its length
        }

    # -- keeping it -----------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write this patcher (rule, values, calibration record, model weights) to a directory; see
        `blt.segment.saved`. Load it with `Patcher.load(path)` or `--patcher DIR`."""
        from blt.segment.saved import save_patcher

        return save_patcher(self, path)

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> Patcher:
        """A patcher saved with `save`: its rule and values as saved, never recalibrated."""
        from blt.segment.saved import load_patcher

        return load_patcher(path, **overrides)

    def _from_entropies(self, datas: Sequence[bytes], ents: Sequence[np.ndarray | None]) -> list[Patches]:
        threshold = self.rule_threshold
        relative = self.relative_threshold if self.rule == "combined" else None
        out = []
        for data, ent in zip(datas, ents, strict=True):
            if not data:  # empty text: zero patches, whatever the rule or threshold
                out.append(Patches(data, np.zeros(0, dtype=np.int64), ent, threshold, relative, self.rule))
                continue
            starts = patch_starts(
                ent,
                rule=self.rule,
                threshold=self.threshold,
                relative_threshold=self.relative_threshold,
                max_patch_length=self.max_patch_length,
                data=np.frombuffer(data, dtype=np.uint8),
                patch_size=self.patch_size,
                budget=self.budget,
                min_patch_length=self.min_patch_length,
            )
            out.append(Patches(data, np.asarray(starts, dtype=np.int64), ent, threshold, relative, self.rule))
        return out

    def segment(self, text: str | bytes) -> list[bytes]:
        """The patches of one input as bytes; `b"".join(...)` gives the input back."""
        return self.patch([text])[0].segments

    def spans(self, text: str | bytes) -> list[tuple[int, int]]:
        return self.patch([text])[0].spans
