"""What every job's report.md needs: Markdown tables and the versions of the packages that decided its numbers."""

from __future__ import annotations

import os


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a report's numbers (those installed), and the thread counts."""
    import importlib.metadata as md

    import torch

    versions = {}
    for dist in ("blt-patcher", "torch", "tokenizers", "sentencepiece", "tiktoken"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    versions["threads"] = (
        f"torch {torch.get_num_threads()}, RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'unset')}"
    )
    return versions


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])
