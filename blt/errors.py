"""The one exception type of blt: a user-facing problem whose message says what is wrong and how to fix it.

Library code raises `BltError` for bad input; it is a `ValueError`, so callers that catch `ValueError` keep working.
The CLI prints its message as one red line and exits with status 1; any other exception is a bug and keeps its
traceback. `assert` is kept for internal invariants only.
"""

from __future__ import annotations


class BltError(ValueError):
    """A problem with the user's input, files or environment; the message is shown as is."""


def brief(text: str, limit: int = 160) -> str:
    """A foreign message made fit for one line: its first line's first sentence, cut at a word boundary (with "…")
    when still longer than `limit`, never mid-word."""
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    sentence = line.split(". ", 1)[0].rstrip(".") if ". " in line else line
    if len(sentence) <= limit:
        return sentence
    space = sentence.rfind(" ", 0, limit + 1)
    return sentence[: space if space > 0 else limit].rstrip(" ,;:") + "…"
