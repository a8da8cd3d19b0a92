"""Wall time and peak memory of whole `blt compare` runs: the default run (bundled udhr corpus, bundled model) and a
~10 MB English corpus (KJV + Shakespeare from `scripts/offline_corpora.py`), every option at its default.

    python scripts/bench_compare.py [--corpora /tmp/blt-corpora] [--out /tmp/blt-bench-compare] [--only default]

Each run is a separate `blt compare --no-cache` process (the byte model scores the held-out text every time, as on a
first run) under `/usr/bin/time -v`; its report lands in OUT/<run>/report.md and this script prints the tables plus
a markdown line per run with wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))


def run(name: str, args: list[str], out: Path) -> str:
    cmd = ["/usr/bin/time", "-v", "blt", "compare", *args, "--no-cache", "--out", str(out / name)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", proc.stderr).group(1)  # type: ignore[union-attr]
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))  # type: ignore[union-attr]
    return f"| {name} | `blt compare {' '.join(args)} --no-cache` | {wall} | {rss_kb / 1024:.0f} MiB |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", type=Path, default=Path("/tmp/blt-corpora"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/blt-bench-compare"))
    ap.add_argument("--only", choices=["default", "english"], default=None)
    args = ap.parse_args()
    rows = []
    if args.only in (None, "default"):
        rows.append(run("default", ["--by-language"], args.out))
    if args.only in (None, "english"):
        if not (args.corpora / "manifest.json").is_file():
            from offline_corpora import prepare

            prepare(args.corpora)
        english = [str(args.corpora / split / c) for c in ("kjv", "shakespeare") for split in ("train", "val")]
        data = [x for d in english for x in ("--data", d)]
        rows.append(run("english-10MB", data, args.out))  # every default: segmenters, vocabularies, reference
    for row in rows:
        name = row.split("|")[1].strip()
        print((args.out / name / "report.md").read_text())
    import os

    print(f"threads: BLT_THREADS={os.environ.get('BLT_THREADS', 'unset')} on {os.cpu_count()} CPUs")
    print("| run | command | wall | peak RSS |\n|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
