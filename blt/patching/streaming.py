"""Streaming patching: `StreamingPatcher` takes entropies chunk by chunk and emits patch starts as soon as they are
final, so its output equals patching the whole stream at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blt.errors import BltError
from blt.patching.rules import _as_entropies, _fixed_mask, _native_mask, _Rows, _Spec


class StreamingPatcher:
    """Patch starts of one stream of entropies, pushed in chunks or byte by byte (what generation needs).

    Every rule here decides byte t from entropies[t] and entropies[t-1] (and the last start, for cuts), or, for
    `budget`, from entropies[t] and the open patch's summed entropy (one carried float), so a start is final as soon
    as its byte's entropy arrives: `push` returns the starts among the new bytes, O(chunk), keeping a few numbers
    between calls. Concatenated outputs equal `np.flatnonzero(patch_start_mask(all entropies))`.
    Rules: global, monotonic, combined, budget, fixed, byte (space patches come from bytes: `patch_start_mask`).
    """

    _pos: int  # set by finish()
    _prev: float | None
    _last_start: int
    _budget_state: tuple[float, int]  # budget: the open patch's entropy (nats) and length

    def __init__(
        self,
        rule: str = "global",
        *,
        threshold: float | None = None,
        relative_threshold: float | None = None,
        max_patch_length: int | None = None,
        patch_size: float | None = None,
        budget: float | None = None,
        min_patch_length: int | None = None,
    ) -> None:
        if rule == "space":
            raise BltError("StreamingPatcher patches entropies; for space patches call patch_start_mask(rule='space')")
        self._spec = _Spec(
            rule,
            threshold,
            relative_threshold,
            max_patch_length,
            patch_size,
            budget=budget,
            min_patch_length=min_patch_length,
        )
        self.finish()

    def push(self, entropies_chunk: Any) -> list[int]:
        """Entropies (nats) of the next bytes -> the stream offsets of the patch starts among them."""
        e, t0, spec = np.atleast_1d(_as_entropies(entropies_chunk)), self._pos, self._spec
        if e.ndim != 1:
            raise BltError(f"push takes a 1-D chunk of entropies, got shape {e.shape}")
        if not np.isfinite(e).all():
            i = int(np.flatnonzero(~np.isfinite(e))[0])
            raise BltError(f"entropies[{t0 + i}] is {e[i]}; entropies must be finite nats")
        if e.size == 0:
            return []
        if spec.rule == "budget":  # the kernel carries the open patch's entropy and length across chunks
            from blt.patching.budget import budget_scan

            assert spec.budget is not None  # _Spec checked it
            m = np.zeros(e.size, dtype=bool)
            acc, run, _ = budget_scan(
                e,
                np.zeros(1, np.int64),
                np.array([e.size]),
                spec.budget,
                min_patch_length=spec.min_patch_length,
                max_patch_length=spec.max_patch_length,
                out=m,
                state=self._budget_state,
            )
            self._budget_state, self._pos = (acc, run), t0 + e.size
            new_starts: list[int] = (np.flatnonzero(m) + t0).tolist()
            return new_starts
        ext = e if self._prev is None else np.concatenate((np.asarray([self._prev], dtype=e.dtype), e))
        one_row = _Rows(ext, None, np.zeros(1, np.int64), np.array([ext.size]), None, ext.shape, False)
        m = _native_mask(one_row, spec)[ext.size - e.size :]  # [n]; the rules look one byte back at most
        t = np.arange(t0, t0 + e.size)
        if spec.rule == "fixed":  # the batch kernel counts from the row start, here from the stream start
            assert spec.patch_size is not None  # _Spec validated it for rule 'fixed'
            m = _fixed_mask(t, spec.patch_size)
        if spec.max_patch_length is not None:
            m |= (t - np.maximum.accumulate(np.where(m, t, self._last_start))) % spec.max_patch_length == 0
        starts: list[int] = t[m].tolist()
        self._pos, self._prev, self._last_start = t0 + e.size, e[-1], starts[-1] if starts else self._last_start
        return starts

    def finish(self) -> list[int]:
        """End the stream and start a new one; returns the starts still pending (none: each is final when pushed)."""
        self._pos, self._prev, self._last_start = 0, None, 0  # bytes seen, last entropy, last start
        self._budget_state = (0.0, 0)
        return []
