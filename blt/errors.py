"""The one exception type of blt: a user-facing problem whose message says what is wrong and how to fix it.

Library code raises `BltError` (or `ValueError` for bad arguments); the CLI prints the message as one red line
and exits with status 1. `assert` is kept for internal invariants only.
"""

from __future__ import annotations


class BltError(Exception):
    """A problem with the user's input, files or environment; the message is shown as is."""
