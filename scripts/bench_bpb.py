"""Held-out bits per byte of a byte model per corpus, next to gzip -9, bzip2 -9 and xz -9e on the same text.

    python scripts/bench_bpb.py [--corpora /tmp/blt-corpora] [--model default] [--precision 32]

Reads the `val/` (held-out parts of the training corpora) and `unseen/` (kinds never trained on) folders written
by `scripts/offline_corpora.py`. A corpus's documents are concatenated for the compressors, which is their best
case (repeats across documents count); "xz per doc" compresses each document alone, as the model scores each
document alone from its BOS (ratio of sums over documents). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import lzma
import sys
import time
from pathlib import Path

from blt.bytelm.checkpoint import load_model
from blt.bytelm.entropy import evaluate_corpus

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))


def compressor_bpb(data: bytes) -> dict[str, float]:
    """Bits per byte of three standard compressors at their strongest settings."""
    n = 8 / len(data)
    return {
        "gzip -9": len(gzip.compress(data, compresslevel=9, mtime=0)) * n,
        "bzip2 -9": len(bz2.compress(data, compresslevel=9)) * n,
        "xz -9e": len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)) * n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", type=Path, default=Path("/tmp/blt-corpora"))
    ap.add_argument("--model", default="default")
    ap.add_argument("--precision", default="32", choices=["32", "bf16", "auto"])
    args = ap.parse_args()
    if not (args.corpora / "manifest.json").is_file():
        from offline_corpora import prepare

        prepare(args.corpora)
    lm = load_model(args.model)
    print(
        f"model {args.model}: {lm.num_params():,} params, card val {lm.card.get('val_bits_per_byte')} bits/byte, "
        f"precision {args.precision}\n"
    )
    print("| split | corpus | MB | docs | model | gzip -9 | bzip2 -9 | xz -9e | xz -9e per doc | model / xz | kB/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for split in ("val", "unseen"):
        for corpus in sorted(p for p in (args.corpora / split).iterdir() if p.is_dir()):
            docs = [p.read_bytes() for p in sorted(corpus.glob("*.txt"))]
            t = time.perf_counter()
            model_bpb = evaluate_corpus(lm, docs, precision=args.precision)["bits_per_byte"]
            elapsed = time.perf_counter() - t
            comp = compressor_bpb(b"".join(docs))
            size = sum(map(len, docs))
            # Per document, like the model (each document scored from its BOS): no cross-document repeats.
            xz_per_doc = sum(len(lzma.compress(d, preset=9 | lzma.PRESET_EXTREME)) for d in docs) * 8 / size
            print(
                f"| {split} | {corpus.name} | {size / 1e6:.2f} | {len(docs)} | **{model_bpb:.3f}** | "
                f"{comp['gzip -9']:.3f} | {comp['bzip2 -9']:.3f} | {comp['xz -9e']:.3f} | {xz_per_doc:.3f} | "
                f"{model_bpb / comp['xz -9e']:.2f} | {size / elapsed / 1e3:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
