"""The downstream experiment's byte-unit sanity check at the shipped CPU scale: `blt train`'s byte model trained on
the same documents, for the same steps of the same windows, at about the same FLOPs per byte as the patch-level LM's
`byte` row, scored on the same held-out documents the same way (windows of the context, no overlap). Prints both.

    python scripts/downstream_sanity.py --config cpu --corpus prose [--results runs/down-cpu/results.csv]

Without --results it also trains the patch-level LM's byte row itself (seed 0).
"""

from __future__ import annotations

import argparse
import csv
import math
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="cpu", help="downstream config (name or YAML)")
    ap.add_argument("--corpus", default="prose", help="corpus name in the config")
    ap.add_argument("--results", help="results.csv of a finished run: its byte rows instead of training one here")
    ap.add_argument("--layers", type=int, default=4, help="byte model layers (4 × d_local ≈ the byte row's FLOPs)")
    args = ap.parse_args()

    from blt.bytelm.checkpoint import load_model
    from blt.bytelm.entropy import score
    from blt.bytelm.train import train
    from blt.config import Config, DataConfig, ModelConfig, TrainConfig
    from blt.downstream.config import load_downstream
    from blt.downstream.model import block_flops, flops_per_byte, mean_attended
    from blt.downstream.run import _docs, calibration_split, execute, segmentations, sized_model

    cfg = load_downstream(args.config)
    spec = next(c for c in cfg.corpora if c.name == args.corpus)
    train_docs, held = _docs(spec, cfg)
    _, scored = calibration_split(held, cfg.calibration_fraction)
    m, t = cfg.model, cfg.train
    byte_cfg = ModelConfig(n_layers=args.layers, d_model=m.d_local, n_heads=m.local_heads, context=m.context)
    byte_flops = args.layers * block_flops(m.d_local, mean_attended(m.context, None)) + 2 * m.d_local * 260
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train"
        data.mkdir()
        for i, doc in enumerate(train_docs):  # the very documents the patch-level LM trains on
            (data / f"{i:06d}.txt").write_bytes(doc)
        run = Config(
            model=byte_cfg,
            data=DataConfig(sources=[str(data)], val_fraction=0.01, cache_dir=str(Path(tmp) / "cache")),
            train=TrainConfig(
                batch_size=t.batch_size,
                max_steps=t.max_steps,
                lr=t.lr,
                warmup_steps=t.warmup_steps,
                precision="32-true" if t.precision == "auto" else t.precision,
                val_every_steps=10**9,
                ckpt_every_steps=10**9,
                progress_bar=False,
            ),
        )
        start = time.perf_counter()
        lm = load_model(train(run, Path(tmp) / "run"))
        seconds = time.perf_counter() - start
    scores = score(lm, scored, stride=m.context - 1)
    byte_bpb = sum(float(s.surprisal_nats.sum()) for s in scores) / (math.log(2) * sum(map(len, scored)))
    print(
        f"blt train byte model: {lm.num_params():,} params, {byte_flops / 1e6:.2f} MFLOP/byte forward, "
        f"{t.max_steps} steps of {t.batch_size} x {m.context} bytes ({seconds:.0f} s, 99 % of the documents: "
        f"blt train holds 1 % out to validate): {byte_bpb:.4f} bits/byte on {sum(map(len, scored)):,} held-out bytes"
    )
    if args.results:
        rows = [r for r in csv.DictReader(open(args.results)) if r["corpus"] == args.corpus and r["kind"] == "byte"]
        values = [float(r["bits_per_byte"]) for r in rows]
        flops = float(rows[0]["flops_per_byte"])
    else:
        from dataclasses import replace

        from blt.downstream.run import Run

        one = replace(cfg, segmenters=[s for s in cfg.segmenters if s.kind == "byte"], rate=None)
        seg = segmentations(one, train_docs, [], scored, lambda _: None)[0]  # byte units need no calibration
        model = sized_model(one, 1.0)
        row = execute(Run("sanity", args.corpus, seg, 0, model, cfg.train))
        values, flops = [row["bits_per_byte"]], flops_per_byte(model, 1.0)["total"]
    print(
        f"patch-level LM, byte units: {np.mean(values):.4f} bits/byte (seeds: {', '.join(f'{v:.4f}' for v in values)}"
        f"; {flops / 1e6:.2f} MFLOP/byte forward); ratio {np.mean(values) / byte_bpb:.3f}"
    )


if __name__ == "__main__":
    main()
