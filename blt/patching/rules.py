"""Entropies → patches: the boundary rules, patch starts and lengths (calibration and streaming build on these
in `calibration` and `streaming`).

Owns `entropies → patch_starts → patch_lengths` as pure vectorised numpy functions (torch tensors accepted).
Convention: `entropies[t]` is the entropy (nats) of the prediction for byte `t` given the bytes before it; byte 0 of
every non-empty row starts a patch. Rows of a batch never see each other (the reference code flattens them into one
stream, BLT issue #123); `blt_compat=True` switches to the reference code's index conventions. Each vectorised kernel
has a plain-Python twin (`_*_loop`, at the end) that the tests compare against.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from blt.errors import BltError

RULES = ("global", "monotonic", "combined", "budget", "space", "fixed", "byte")
ENTROPY_RULES = ("global", "monotonic", "combined", "budget")
THRESHOLD_RULES = ("global", "monotonic", "combined")  # a spike starts a patch (the reference code's rules)
_HINT = "or use calibrate_threshold / --target-bytes-per-patch"
# SpaceByte's spacelike bytes: not [0-9A-Za-z] and not a UTF-8 continuation byte (0x80-0xBF)
_SPACELIKE = np.array([not (chr(b).isascii() and chr(b).isalnum()) and not 0x80 <= b <= 0xBF for b in range(256)])


def _real(x: Any) -> float | None:
    try:
        return None if isinstance(x, (bool, np.bool_, str, bytes)) else float(x)
    except (TypeError, ValueError):
        return None


@dataclass
class _Spec:
    """A boundary rule and its parameters (nats, bytes), checked on construction: every problem in one BltError.
    Parameters a rule does not use are ignored, so one config can carry them all."""

    rule: str = "global"
    threshold: float | None = None
    relative_threshold: float | None = None
    max_patch_length: int | None = None
    patch_size: float | None = None  # bytes; a non-integer L starts unit i at byte floor(i * L)
    blt_compat: bool = False
    budget: float | None = None  # nats a budget patch may hold (blt.patching.budget)
    min_patch_length: int | None = None  # bytes; budget rule only: a shorter patch never ends by budget

    def __post_init__(self) -> None:
        rule, problems = self.rule, []
        if rule not in RULES:
            raise BltError(f"unknown rule {rule!r}; valid rules: {', '.join(RULES)}")
        for name, rules in (
            ("threshold", ("global", "combined")),
            ("relative_threshold", ("monotonic", "combined")),
            ("budget", ("budget",)),
        ):
            value = getattr(self, name)
            if rule in rules and value is None:
                problems.append(
                    f"rule {rule!r} needs {name} (nats); pass {name}=... (CLI: --{name.replace('_', '-')}) {_HINT}"
                )
            elif rule in rules and not ((real := _real(value)) is not None and real >= 0):  # NaN fails too
                problems.append(f"{name} must be ≥ 0 nats, got {value!r}; pass {name}=... {_HINT}")
            setattr(self, name, _real(value) if rule in rules else None)
        value = _real(self.max_patch_length)
        ok = value is not None and math.isfinite(value) and value >= 1 and value == int(value)
        if self.max_patch_length is not None and not ok:
            got = self.max_patch_length
            problems.append(f"max_patch_length must be an integer ≥ 1, got {got!r}; pass None for no limit")
        self.max_patch_length = int(value) if value is not None and self.max_patch_length is not None and ok else None
        value = _real(self.min_patch_length)
        ok = value is not None and math.isfinite(value) and value >= 1 and value == int(value)
        if self.min_patch_length is not None and rule == "budget" and not ok:
            problems.append(f"min_patch_length must be an integer ≥ 1, got {self.min_patch_length!r}; pass None for 1")
        self.min_patch_length = int(value) if rule == "budget" and ok and value is not None else None
        low, high = self.min_patch_length, self.max_patch_length
        if low is not None and high is not None and low > high:
            problems.append(f"min_patch_length {low} is above max_patch_length {high}; lower it or raise the maximum")
        value = _real(self.patch_size)  # an integral size stays an int, so integer sizes patch exactly as before
        ok = value is not None and math.isfinite(value) and value >= 1
        if rule == "fixed" and not ok:
            problems.append(
                f"patch_size must be an integer ≥ 1 or a rate in bytes (2.75: unit i starts at byte floor(i·2.75)) "
                f"≥ 1, got {self.patch_size!r}"
            )
        self.patch_size = (
            (int(value) if value == int(value) else value) if rule == "fixed" and ok and value is not None else None
        )
        if self.blt_compat and rule not in THRESHOLD_RULES:
            problems.append(
                f"blt_compat applies to the reference code's rules ({', '.join(THRESHOLD_RULES)}), not {rule!r}"
            )
        if problems:
            raise BltError("; ".join(problems))


@dataclass
class _Rows:
    """A batch as one flat stream: row r is `flat[starts[r] : starts[r] + lengths[r]]`; `valid` is False on padding."""

    entropies: np.ndarray | None  # [N] float, nats
    data: np.ndarray | None  # [N] uint8
    starts: np.ndarray  # [B] int64
    lengths: np.ndarray  # [B] int64
    valid: np.ndarray | None  # [N] bool, None when there is no padding
    shape: tuple[int, ...]  # the caller's array shape
    batched: bool  # the caller passed a list or a 2-D array and gets a list back


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor; numpy has no bfloat16, so half precisions widen to float32
        x = x.detach().cpu()
        a: np.ndarray = (x.float() if x.is_floating_point() and x.dtype.itemsize < 4 else x).numpy()
        return a
    return np.asarray(x)


def _as_entropies(x: Any) -> np.ndarray:
    a = _to_numpy(x)
    if a.dtype.kind != "f" or a.dtype.itemsize < 4:
        try:
            a = a.astype(np.float64 if a.dtype.kind != "f" else np.float32)
        except (TypeError, ValueError) as err:
            raise BltError(f"entropies must be numbers (nats), got an array of {a.dtype}") from err
    return a


def _as_data(x: Any) -> np.ndarray:
    if isinstance(x, (str, bytes, bytearray, memoryview)):
        return np.frombuffer(x.encode() if isinstance(x, str) else x, dtype=np.uint8)
    a = _to_numpy(x)
    if a.dtype != np.uint8 and (a.dtype.kind not in "iu" or (a.size and (a.min() < 0 or a.max() > 255))):
        raise BltError(f"data must be bytes (or integers 0-255), got an array of {a.dtype}")
    return a.astype(np.uint8, copy=False)


def _is_row_list(x: Any) -> bool:
    return isinstance(x, (list, tuple)) and len(x) > 0 and _real(x[0]) is None


_Layout = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, tuple[int, ...], bool]


def _layout(x: Any, conv: Callable[[Any], np.ndarray], row_lengths: Any, allow_list: bool) -> _Layout:
    """One input -> (flat [N], row starts [B], row lengths [B], valid [N] or None, shape, batched)."""
    if allow_list and _is_row_list(x):
        rows = [conv(r) for r in x]
        if row_lengths is not None or any(r.ndim != 1 for r in rows):
            raise BltError("a list of rows takes 1-D rows and carries its own lengths (row_lengths is for [B, T])")
        lengths = np.array([r.size for r in rows], dtype=np.int64)
        return np.concatenate(rows), np.cumsum(lengths) - lengths, lengths, None, (int(lengths.sum()),), True
    try:
        a = conv(x)
    except ValueError as err:  # numpy refuses ragged nested lists
        raise BltError(f"ragged rows: pad them and pass row_lengths, or give patch_lengths a list ({err})") from err
    if a.ndim not in (1, 2) or (a.ndim == 1 and row_lengths is not None):
        raise BltError(f"input must be 1-D [T] or 2-D [B, T] (row_lengths only with 2-D), got shape {a.shape}")
    B, T = (1, a.shape[0]) if a.ndim == 1 else a.shape
    lengths, valid = np.full(B, T, dtype=np.int64), None
    if row_lengths is not None:
        lengths = _to_numpy(row_lengths)
        if lengths.shape != (B,) or (B and lengths.dtype.kind not in "iu"):
            raise BltError(f"row_lengths must be {B} integers, one per row of the [{B}, {T}] array, got {lengths}")
        bad = np.flatnonzero((lengths < 0) | (lengths > T))
        if bad.size:
            raise BltError(f"row_lengths[{bad[0]}] = {lengths[bad[0]]} is outside 0..{T} (the padded width)")
        valid = (np.arange(T) < lengths[:, None]).reshape(-1) if (lengths < T).any() else None  # [B*T]
    flat = np.ascontiguousarray(a).reshape(-1)  # [B*T], a view when possible
    return flat, np.arange(B, dtype=np.int64) * T, lengths.astype(np.int64), valid, a.shape, a.ndim == 2


def _rows(entropies: Any, data: Any, row_lengths: Any, spec: _Spec, *, allow_list: bool = True) -> _Rows:
    """Bring 1-D, 2-D (optionally padded) or list-of-rows input into the flat layout and validate it."""
    if spec.rule in ENTROPY_RULES and entropies is None:
        raise BltError(f"rule {spec.rule!r} needs entropies")
    if (spec.rule == "space" or entropies is None) and data is None:
        raise BltError(f"rule {spec.rule!r} needs data=the bytes being patched (or entropies, unless 'space')")
    e = None if entropies is None else _layout(entropies, _as_entropies, row_lengths, allow_list)
    d = None if data is None else _layout(data, _as_data, row_lengths, allow_list)
    if e and d and (e[4] != d[4] or not np.array_equal(e[2], d[2])):
        raise BltError(f"entropies and data differ in shape: {e[4]} vs {d[4]} (row lengths {e[2]} vs {d[2]})")
    layout = e or d
    assert layout is not None  # entropies or data, checked above
    rows = _Rows(e[0] if e else None, d[0] if d else None, *layout[1:])
    if spec.rule in ENTROPY_RULES:
        assert rows.entropies is not None  # the rule needs entropies, checked above
        if not np.isfinite(rows.entropies.sum()):  # one pass; overflow rechecks below
            bad = ~np.isfinite(rows.entropies) & (True if rows.valid is None else rows.valid)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                r = int(np.searchsorted(rows.starts, i, side="right") - 1)
                where = f"[{r}, {i - rows.starts[r]}]" if rows.batched else f"[{i}]"
                raise BltError(
                    f"entropies{where} is {rows.entropies[i]}; entropies must be finite nats (use log_softmax)"
                )
    return rows


def _native_mask(rows: _Rows, spec: _Spec) -> np.ndarray:
    """[N] bool: the rule's starts over the flat layout, row starts forced, padding cleared, no max-length cuts."""
    e, d, rule = rows.entropies, rows.data, spec.rule
    flat = e if d is None else d
    assert flat is not None  # _rows gives entropies or data
    n = len(flat)
    m = np.zeros(n, dtype=bool)
    s = int(spec.blt_compat)  # compat: position p reads entropies[p - 1]
    with np.errstate(invalid="ignore", over="ignore"):  # NaN or inf in padding compares False
        if rule == "global" and n > s:
            # an entropy rule: _rows checked entropies are given, _Spec its thresholds
            assert e is not None and spec.threshold is not None
            np.greater(e[: n - s], spec.threshold, out=m[s:])
        elif rule in ("monotonic", "combined") and n > 1 + s:
            assert e is not None and spec.relative_threshold is not None
            np.greater(e[1 : n - s] - e[: n - 1 - s], spec.relative_threshold, out=m[1 + s :])
            if rule == "combined":
                m[1 + s :] &= e[1 : n - s] > spec.threshold
    if rule == "space":
        assert d is not None  # _rows checked the space rule has data
        sp, cont = _SPACELIKE[d], (d & 0xC0) == 0x80
        first = sp.copy()  # the first spacelike byte of each run, runs restarting at each row
        first[1:] &= ~sp[:-1]
        first[rows.starts[rows.lengths > 0]] = sp[rows.starts[rows.lengths > 0]]
        m[1:] = first[:-1]  # a patch starts right after it, or, inside a multi-byte character, right after that
        deferred = np.flatnonzero(m & cont)
        m &= ~cont
        if deferred.size:  # the next byte that is not a continuation (or starts a row, which starts anyway)
            barrier = ~cont
            barrier[rows.starts[rows.starts < n]] = True
            target = np.minimum.accumulate(np.where(barrier, np.arange(n), n)[::-1])[::-1][deferred]
            m[target[target < n]] = True
    elif rule == "fixed":  # offsets within each row
        assert spec.patch_size is not None  # _Spec validated it for rule 'fixed'
        m = _fixed_mask(np.arange(n) - np.repeat(rows.starts, np.diff(rows.starts, append=n)), spec.patch_size)
    elif rule == "byte":
        m[:] = True
    elif rule == "budget":  # max_patch_length is part of the rule (a forced cut resets the patch's entropy)
        from blt.patching.budget import budget_scan

        assert e is not None and spec.budget is not None
        budget_scan(
            e,
            rows.starts,
            rows.lengths,
            spec.budget,
            min_patch_length=spec.min_patch_length,
            max_patch_length=spec.max_patch_length,
            out=m,
        )
    m[rows.starts[rows.lengths > 0]] = True
    if spec.blt_compat:  # the reference forces positions 1 (and 2 unless global) and never starts 3 when combined
        for k in (1, 2) if rule != "global" else (1,):
            m[(rows.starts + k)[rows.lengths > k]] = True
        if rule == "combined":
            m[(rows.starts + 3)[rows.lengths > 3]] = False
    return m if rows.valid is None else m & rows.valid


def _fixed_mask(offsets: np.ndarray, size: float) -> np.ndarray:
    """[N] bool: offset o starts a fixed patch iff o = floor(i · size) for an integer i ≥ 0 (so n / units -> size
    exactly for a non-integer size); an integer size is `o % size == 0`. Since size ≥ 1 the starts floor(i · size)
    are distinct, and only i = ceil(o / size) can give o, up to one step of rounding either way: try all three."""
    if isinstance(size, int):
        whole: np.ndarray = offsets % size == 0
        return whole
    i = np.ceil(offsets / size)
    hit: np.ndarray = np.any([np.floor(np.maximum(i + d, 0) * size) == offsets for d in (-1, 0, 1)], axis=0)
    return hit


def _lengths(m: np.ndarray, rows: _Rows, max_len: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Start mask [N] -> patch lengths [K] int64 and bounds [B + 1]: row r's are lengths[bounds[r] : bounds[r + 1]]."""
    flat = np.flatnonzero(m)  # [K] start positions, sorted
    bounds = np.append(np.searchsorted(flat, rows.starts), flat.size)
    lengths = np.empty(flat.size, dtype=np.int64)
    np.subtract(flat[1:], flat[:-1], out=lengths[:-1])
    nonempty = bounds[1:] > bounds[:-1]
    last = bounds[1:][nonempty] - 1  # a row's last patch ends at the row's end, never in the padding
    lengths[last] = (rows.starts + rows.lengths)[nonempty] - flat[last]
    if max_len is not None and flat.size and lengths.max() > max_len:  # L -> [M, ..., M, remainder]
        pieces = (lengths + max_len - 1) // max_len
        cum = np.concatenate(([0], np.cumsum(pieces)))
        cut = np.full(cum[-1], max_len, dtype=np.int64)
        cut[cum[1:] - 1] = lengths - (pieces - 1) * max_len
        lengths, bounds = cut, cum[bounds]
    return lengths, bounds


def patch_start_mask(
    entropies: Any = None,
    *,
    rule: str = "global",
    threshold: float | None = None,
    relative_threshold: float | None = None,
    max_patch_length: int | None = None,
    blt_compat: bool = False,
    data: Any = None,
    patch_size: float | None = None,
    row_lengths: Any = None,
    budget: float | None = None,
    min_patch_length: int | None = None,
) -> np.ndarray:
    """entropies [T] or [B, T] (nats) -> bool mask of the same shape, True where a patch starts.

    Byte 0 of each row always starts; byte t ≥ 1 starts under `global` iff entropies[t] > threshold, `monotonic` iff
    entropies[t] - entropies[t-1] > relative_threshold, `combined` iff both; `budget` iff the open patch's summed
    entropy plus entropies[t] exceeds `budget` nats (a patch shorter than `min_patch_length` goes on; see
    `blt.patching.budget`); `space` (needs `data`) starts right
    after the first spacelike byte of a run, or after the multi-byte character holding it, never inside one;
    `fixed` every `patch_size` bytes, or for a non-integer size L at floor(i·L) (n=10, L=2.5: starts 0, 2, 5, 7;
    lengths 2, 3, 2, 3); `byte` every byte. `max_patch_length=M` cuts a longer patch into
    [M, ..., M, remainder]. `row_lengths` gives each row's real length in a padded [B, T] array (False beyond).
    `blt_compat=True` follows the reference code: position p (BOS at p = 0) reads entropies[p - 1], positions 0 and 1
    always start, monotonic and combined also force 2, and combined never starts 3.
    """
    spec = _Spec(
        rule, threshold, relative_threshold, max_patch_length, patch_size, blt_compat, budget, min_patch_length
    )
    rows = _rows(entropies, data, row_lengths, spec, allow_list=False)
    m = _native_mask(rows, spec)
    if (
        spec.max_patch_length is not None and spec.rule != "budget"
    ):  # every row's byte 0 is a start, so the cuts restart at each row
        t = np.arange(m.size)
        m |= (t - np.maximum.accumulate(np.where(m, t, 0))) % spec.max_patch_length == 0
        m = m if rows.valid is None else m & rows.valid
    return m.reshape(rows.shape)


def _patch(
    entropies: Any, row_lengths: Any = None, data: Any = None, **rule: Any
) -> tuple[np.ndarray | list[np.ndarray], np.ndarray]:
    valid = {"row_lengths", "data", *(f.name for f in fields(_Spec))}
    if set(rule) - valid:
        raise BltError(f"unknown argument(s) {sorted(set(rule) - valid)}; valid: {', '.join(sorted(valid))}")
    spec = _Spec(**rule)
    rows = _rows(entropies, data, row_lengths, spec)
    lengths, bounds = _lengths(_native_mask(rows, spec), rows, spec.max_patch_length)
    if rows.batched:
        return [lengths[i:j] for i, j in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)], bounds
    return lengths, bounds


def patch_lengths(entropies: Any = None, **kwargs: Any) -> np.ndarray | list[np.ndarray]:
    """Patch lengths in bytes (int64, each > 0, summing to the row length); keyword arguments as for
    `patch_start_mask`. A 1-D input gives one array; a list of 1-D rows, or a [B, T] array (padded: pass
    `row_lengths`), gives a list with one array per row (empty for an empty row)."""
    return _patch(entropies, **kwargs)[0]


def patch_starts(entropies: Any = None, **kwargs: Any) -> np.ndarray | list[np.ndarray]:
    """Patch start offsets within each row (int64), shaped like `patch_lengths`' result."""
    lengths = _patch(entropies, **kwargs)[0]
    starts = [np.cumsum(r) - r for r in (lengths if isinstance(lengths, list) else [lengths])]
    return starts if isinstance(lengths, list) else starts[0]


# Plain-Python twins of the kernels, one row at a time: slow, obviously correct, compared with them in the tests.


def _patch_start_mask_loop(entropies: Any, data: Any, spec: _Spec) -> list[bool]:
    if spec.rule == "budget":
        from blt.patching.budget import _budget_mask_loop

        assert spec.budget is not None  # _Spec checked it
        return _budget_mask_loop(entropies, spec.budget, spec.min_patch_length, spec.max_patch_length)
    e = None if entropies is None else np.asarray(entropies)  # numpy scalars keep the array's float arithmetic
    compat, out, pending, last = int(spec.blt_compat), [], False, 0
    unit = 1  # fixed: the next unit's index i (unit 0 is byte 0, which always starts)

    def spacelike(b: int) -> bool:
        return not (chr(b).isascii() and chr(b).isalnum()) and not 0x80 <= b <= 0xBF

    for t in range(len(e) if e is not None else len(data)):
        if t == 0 or (compat and t < (2 if spec.rule == "global" else 3)):
            start = True
        elif spec.rule in ENTROPY_RULES:
            assert e is not None  # an entropy rule is given entropies
            now, before = e[t - compat], e[t - 1 - compat]
            start = spec.rule == "global" or now - before > spec.relative_threshold
            if spec.rule != "monotonic":
                start = start and now > spec.threshold and not (compat and spec.rule == "combined" and t == 3)
        elif spec.rule == "space":
            wanted = pending or (spacelike(data[t - 1]) and (t == 1 or not spacelike(data[t - 2])))
            inside = 0x80 <= data[t] <= 0xBF  # a continuation byte
            start, pending = wanted and not inside, wanted and inside
        elif spec.rule == "byte":
            start = True
        else:  # fixed: unit i starts at byte floor(i * patch_size)
            assert spec.patch_size is not None  # _Spec validated it for rule 'fixed'
            start = t == math.floor(unit * spec.patch_size)
            unit += start
        if start or t - last == spec.max_patch_length:
            start, last = True, t
        out.append(bool(start))
    return out


def _patch_lengths_loop(mask: list[bool]) -> list[int]:
    starts = [t for t, s in enumerate(mask) if s]
    return [end - start for start, end in zip(starts, starts[1:] + [len(mask)], strict=False)]
