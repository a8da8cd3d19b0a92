"""Build the bundled default model: prepare the offline corpus mix, train `configs/small.yaml` on its training
documents with `blt.bytelm.train`, and copy the exported model into `blt/assets/default_model/`.

    python scripts/build_default_model.py [--corpora /tmp/blt-corpora] [--out runs/default] [--set k=v ...]

The corpora (KJV, Shakespeare, Debian Reference in several languages, Python docs, stdlib, UDHR) are installed
and written by `scripts/offline_corpora.py`; none of the text is committed. Their `val/` and `unseen/` parts are
never trained on; `scripts/bench_bpb.py` evaluates them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from offline_corpora import prepare  # noqa: E402

from blt.bytelm.checkpoint import bundled_model_dir, load_model, update_card  # noqa: E402
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", type=Path, default=Path("/tmp/blt-corpora"), help="where the texts go")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "default", help="training run directory")
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "small.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config override k=v")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    ap.add_argument("--no-install", action="store_true", help="use the corpora already in --corpora")
    ap.add_argument("--thresholds-only", action="store_true", help="only recalibrate the stored thresholds")
    args = ap.parse_args()
    if args.thresholds_only:
        add_default_thresholds(bundled_model_dir(), args.corpora)
        return

    if not (args.corpora / "manifest.json").is_file():
        prepare(args.corpora, install=not args.no_install)
    sources = sorted(str(p) for p in (args.corpora / "train").iterdir() if p.is_dir())
    cfg = load_config(args.config, [*args.overrides, f"data.sources={sources}"])
    model_dir = train(cfg, args.out, resume=args.resume)
    add_default_thresholds(model_dir, args.corpora)
    target = bundled_model_dir()
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(model_dir, target)
    print(f"bundled model updated: {target}")


if __name__ == "__main__":
    main()
