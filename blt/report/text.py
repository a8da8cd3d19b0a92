"""How bytes and patches read as text, for every renderer: UTF-8 character spans (a byte that starts no character is
shown with its hex value), byte labels, one-line summaries.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from blt.bytelm.entropy import LN2
from blt.segment.patcher import Patches


def iter_char_spans(data: bytes) -> Iterator[tuple[int, int, str]]:
    """(start, end, label) per character: UTF-8 sequences stay whole, invalid bytes become \\xNN."""
    t = 0
    while t < len(data):
        b = data[t]
        width = 1 if b < 0x80 else 2 if 0xC2 <= b < 0xE0 else 3 if 0xE0 <= b < 0xF0 else 4 if 0xF0 <= b < 0xF5 else 1
        try:
            label = data[t : t + width].decode("utf-8")
        except UnicodeDecodeError:
            width, label = 1, f"\\x{b:02x}"
        yield t, t + width, label
        t += width


def char_spans(data: bytes) -> list[tuple[int, int, str]]:
    """`iter_char_spans` as a list."""
    return list(iter_char_spans(data))


def shown_prefix(data: bytes, max_bytes: int) -> int:
    """How many bytes of `data` to show: all of it, or about `max_bytes` cut before a character, not inside one."""
    if len(data) <= max_bytes:
        return len(data)
    end = max_bytes
    while end > max_bytes - 3 and 0x80 <= data[end] < 0xC0:  # a continuation byte: its character began earlier
        end -= 1
    return end if end > 0 else max_bytes


def length_stats_line(lengths: np.ndarray) -> str:
    """lengths [P] (bytes) -> 'patch lengths (bytes): min 1, median 3, mean 4.21, p90 8, max 31'."""
    if not len(lengths):
        return "patch lengths (bytes): none"
    p50, p90 = np.percentile(lengths, [50, 90])
    return (
        f"patch lengths (bytes): min {lengths.min()}, median {p50:g}, mean {lengths.mean():.2f}, "
        f"p90 {p90:g}, max {lengths.max()}"
    )


def byte_label(data: bytes, t: int) -> str:
    """The character that byte t starts (continuation bytes show as '·', undecodable ones as hex)."""
    b = data[t]
    if 0x80 <= b < 0xC0:
        return "·"
    width = 1 if b < 0x80 else 2 if b < 0xE0 else 3 if b < 0xF0 else 4
    try:
        ch = data[t : t + width].decode("utf-8")
    except UnicodeDecodeError:
        return f"\\x{b:02x}"
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r", " ": "␠"}.get(ch, ch if ch.isprintable() else repr(ch)[1:-1])


def summary_line(patches: Patches) -> str:
    line = f"{len(patches.starts)} patches, {len(patches.data)} bytes, {patches.bytes_per_patch:.2f} bytes/patch"
    if patches.threshold_nats is not None:
        what = "budget" if patches.rule == "budget" else "threshold"
        line += f", {what} {patches.threshold_nats:.4f} nats ({patches.threshold_nats / LN2:.4f} bits)"
    if patches.relative_threshold_nats is not None:
        rel = patches.relative_threshold_nats
        line += f", relative threshold {rel:.4f} nats ({rel / LN2:.4f} bits)"
    return line
