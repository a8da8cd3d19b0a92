"""Held-out bits per byte of a byte model per corpus, next to gzip -9, bzip2 -9 and xz -9e on the same text; with
`--online`, also scored online (the model learning as it reads), and with `--adapt-minutes`, after fine-tuning on the
first part of each corpus.

    python scripts/bench_bpb.py [--corpora /tmp/blt-corpora] [--model default] [--precision 32]
                                [--online [--online-lr 3e-4]] [--adapt-minutes M] [--fit-temperature]
                                [--adapt-fraction 0.5] [--only NAME ...]

Reads the `val/` (held-out parts of the training corpora) and `unseen/` (kinds never trained on) folders written
by `scripts/offline_corpora.py`. A corpus's documents are concatenated for the compressors, which is their best
case (repeats across documents count); "xz per doc" compresses each document alone, as the model scores each
document alone from its BOS (ratio of sums over documents). Prints one markdown table.

- `--online`: the same documents scored by `blt.bytelm.online.OnlineScorer` (each window scored, then one Adam step
  on it; one learner over the corpus's documents in order): its bits/byte, calibration gap and speed.
- `--adapt-minutes M`: each corpus is cut at `--adapt-fraction` of its bytes (files in name order, the file that
  straddles the cut cut at a line break); the model is adapted on the head for M minutes with `blt compare`'s code
  (`blt.bytelm.adapt.adapt`) and every column, static, online, compressors included, is measured on the same tail,
  so the columns compare. "xz primed" is what xz -9e pays for the tail after the head: 8 · (|xz(head + tail)| −
  |xz(head)|) / |tail|, the compressor's counterpart of adapting on the head.
- `--fit-temperature`: the same head/tail cut; a temperature T is fitted on the head (`blt compare --fit-temperature`'s
  code, `blt.bytelm.temperature`) for the static model, and the tail is scored with logits ÷ T ("static ÷ T").

Calibration gap = (bits/byte paid − mean predicted entropy in bits) / bits/byte paid: > 0, the model is overconfident.
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
from blt.bytelm.data import split_head
from blt.bytelm.entropy import evaluate_corpus
from blt.bytelm.online import ONLINE_LR

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))


def xz(data: bytes) -> int:
    return len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))


def compressor_bpb(data: bytes) -> dict[str, float]:
    """Bits per byte of three standard compressors at their strongest settings."""
    n = 8 / len(data)
    return {
        "gzip -9": len(gzip.compress(data, compresslevel=9, mtime=0)) * n,
        "bzip2 -9": len(bz2.compress(data, compresslevel=9)) * n,
        "xz -9e": xz(data) * n,
    }


def measure(lm, docs: list[bytes], precision: str, online_lr: float | None) -> tuple[dict, float]:
    """evaluate_corpus's bits/byte, predicted entropy and gap of `docs` (static, or online at `online_lr`) and the
    speed (kB/s)."""
    t = time.perf_counter()
    result = evaluate_corpus(lm, docs, precision=precision, online_lr=online_lr)
    return result, result["bytes"] / (time.perf_counter() - t) / 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", type=Path, default=Path("/tmp/blt-corpora"))
    ap.add_argument("--model", default="default")
    ap.add_argument("--precision", default="32", choices=["32", "bf16", "auto"])
    ap.add_argument("--online", action="store_true", help="also score online (dynamic evaluation)")
    ap.add_argument("--online-lr", type=float, default=ONLINE_LR, help="Adam step size for --online")
    ap.add_argument("--adapt-minutes", type=float, help="adapt on each corpus's head this long, measure on its tail")
    ap.add_argument("--fit-temperature", action="store_true", help="fit a temperature on each corpus's head")
    ap.add_argument("--adapt-fraction", type=float, default=0.5, help="share of each corpus's bytes to adapt/fit on")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these corpora (folder names under val/, unseen/)")
    args = ap.parse_args()
    if not 0 < args.adapt_fraction < 1:
        ap.error(f"--adapt-fraction must be in (0, 1), got {args.adapt_fraction}")
    if not (args.corpora / "manifest.json").is_file():
        from offline_corpora import prepare

        prepare(args.corpora)
    corpora = [p for split in ("val", "unseen") for p in sorted((args.corpora / split).iterdir()) if p.is_dir()]
    if args.only:
        unknown = sorted(set(args.only) - {p.name for p in corpora})
        if unknown:
            ap.error(f"--only: no corpus named {', '.join(unknown)} (have {', '.join(p.name for p in corpora)})")
        corpora = [p for p in corpora if p.name in args.only]
    lm = load_model(args.model)
    adapting = args.adapt_minutes is not None
    cutting = adapting or args.fit_temperature  # measured on each corpus's tail
    print(
        f"model {args.model}: {lm.num_params():,} params, card val {lm.card.get('val_bits_per_byte')} bits/byte, "
        f"precision {args.precision}"
        + (f", online Adam lr {args.online_lr:g}" if args.online else "")
        + (
            f", adapted {args.adapt_minutes:g} min on the first {args.adapt_fraction:.0%} of each corpus"
            if adapting
            else ""
        )
        + (f", temperature fitted on the first {args.adapt_fraction:.0%}" if args.fit_temperature else "")
        + (", measured on the rest" if cutting else "")
        + "\n"
    )
    headers = ["split", "corpus", "MB", "docs", "static", "gap"]
    headers += ["static ÷ T (T)", "gap ÷ T"] if args.fit_temperature else []
    headers += ["online", "gap online"] if args.online else []
    headers += ["adapted (steps)", "gap adapted"] if adapting else []
    headers += ["adapted + online", "gap a+o"] if adapting and args.online else []
    headers += ["gzip -9", "bzip2 -9", "xz -9e", "xz -9e per doc"] + (["xz primed"] if adapting else [])
    headers += ["best model / xz -9e", "static kB/s"] + (["online kB/s"] if args.online else [])
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for corpus in corpora:
        docs = [p.read_bytes() for p in sorted(corpus.glob("*.txt"))]
        head, docs = split_head(docs, args.adapt_fraction) if cutting else ([], docs)
        size = sum(map(len, docs))
        static, static_speed = measure(lm, docs, args.precision, None)
        cells = [f"**{static['bits_per_byte']:.3f}**", f"{static['calibration_gap']:+.1%}"]
        models = [static["bits_per_byte"]]
        if args.fit_temperature:
            from blt.bytelm.temperature import fit_temperature, with_temperature

            t = fit_temperature(lm, head)
            tempered, _ = measure(with_temperature(lm, t), docs, args.precision, None)
            cells += [f"**{tempered['bits_per_byte']:.3f}** ({t:.2f})", f"{tempered['calibration_gap']:+.1%}"]
            models.append(tempered["bits_per_byte"])
        online_speed = None
        if args.online:
            online, online_speed = measure(lm, docs, args.precision, args.online_lr)
            cells += [f"**{online['bits_per_byte']:.3f}**", f"{online['calibration_gap']:+.1%}"]
            models.append(online["bits_per_byte"])
        if adapting:
            from blt.bytelm.adapt import adapt

            tuned = adapt(lm, head, 0, minutes=args.adapt_minutes)
            adapted, _ = measure(tuned, docs, args.precision, None)
            steps = tuned.card.get("steps")
            cells += [f"**{adapted['bits_per_byte']:.3f}** ({steps})", f"{adapted['calibration_gap']:+.1%}"]
            models.append(adapted["bits_per_byte"])
            if args.online:
                both, _ = measure(tuned, docs, args.precision, args.online_lr)
                cells += [f"**{both['bits_per_byte']:.3f}**", f"{both['calibration_gap']:+.1%}"]
                models.append(both["bits_per_byte"])
        comp = compressor_bpb(b"".join(docs))
        # Per document, like the model (each document scored from its BOS): no cross-document repeats.
        xz_per_doc = sum(xz(d) for d in docs) * 8 / size
        cells += [f"{comp[k]:.3f}" for k in comp] + [f"{xz_per_doc:.3f}"]
        if adapting:
            primed = (xz(b"".join(head + docs)) - xz(b"".join(head))) * 8 / size
            cells.append(f"{primed:.3f}")
        cells += [f"{min(models) / comp['xz -9e']:.2f}", f"{static_speed:.0f}"]
        cells += [f"{online_speed:.0f}"] if online_speed is not None else []
        split = corpus.parent.name
        print(f"| {split} | {corpus.name} | {size / 1e6:.2f} | {len(docs)} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
