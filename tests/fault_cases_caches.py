"""Bad-input cases: the blt cache and interrupted outputs (one table of `faults.Case`; see test_faults.py).

Damage inside the cache is no user error: a damaged entry is rebuilt with a warning (tests/test_cache.py,
tests/test_data.py). What is left for the user is a cache that cannot be written at all, and an output directory that
holds a finished run. `BLT_CACHE` is set inside `make`: conftest's `isolated_env` restores it after each case.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from faults import Case, Kit

TINY = str(Path(__file__).parents[1] / "configs" / "tiny.yaml")


def _corpus(k: Kit) -> str:
    for i in range(6):
        k.write(f"corpus/d{i}.txt", f"document {i}: the cat sat on the mat, naïve café {i * 7}\n" * 4)
    return str(k.dir / "corpus")


def _cache_at(k: Kit, relative: str) -> None:
    k.write("cache-file", "a file where the cache directory should be")
    os.environ["BLT_CACHE"] = str(k.dir / relative)


def _compare(k: Kit, cache: str) -> list[str]:
    _cache_at(k, cache)
    return ["compare", "--data", _corpus(k), "--model", k.model, "--segmenters", "space,entropy-global",
            "--match", "none", "--threshold", "0.3", "--out", str(k.dir / "out")]  # fmt: skip


def _eval(k: Kit) -> list[str]:
    _cache_at(k, "cache-file")
    return ["eval", "--data", _corpus(k), "--model", k.model, "--split", "val"]


def _train(k: Kit) -> list[str]:
    cache_dir = k.write("cache-file", "a file where the cache directory should be")
    return ["train", "--config", TINY, "--data", _corpus(k), "--set", f"data.cache_dir={cache_dir}", "--out", "run"]


def _finished_segment_run(k: Kit) -> list[str]:
    k.write("out/patches-0.parquet", b"PAR1 earlier results")
    k.write("out/summary.json", json.dumps({"documents": 6, "files": ["patches-0.parquet"]}))
    return ["segment", "--data", _corpus(k), "--out", str(k.dir / "out"), "--model", k.model, "--threshold", "0.3"]


CACHES = "cannot write the blt cache at"
CASES = [
    Case("compare-cache-is-a-file", lambda k: _compare(k, "cache-file"), CACHES),
    Case("compare-cache-under-a-file", lambda k: _compare(k, "cache-file/blt"), CACHES),
    Case("eval-cache-is-a-file", _eval, CACHES),
    Case("train-cache-dir-is-a-file", _train, "set BLT_CACHE (or data.cache_dir in a training config)"),
    Case("segment-data-over-a-finished-run", _finished_segment_run, "already holds patches"),
]
