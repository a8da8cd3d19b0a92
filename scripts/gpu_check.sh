#!/usr/bin/env bash
# GPU check (not part of CI): configs/base.yaml (~25 M params) in bf16 for a few hundred steps through the same
# Lightning path as `blt train`; prints bytes/s and model FLOPs utilisation (MFU) for docs/benchmarks.md.
#   bash scripts/gpu_check.sh [STEPS] [PEAK_TFLOPS]   (peak: dense bf16 of the GPU, e.g. 989 for an H100/H200 SXM)
set -euo pipefail
STEPS=${1:-300}
PEAK=${2:-989}
python - "$STEPS" "$PEAK" <<'PY'
import sys, tempfile, time
from pathlib import Path
import lightning as L
import torch
from blt.config import load_config
from blt.bytelm.data import RandomWindows, build_cache
from blt.bytelm.train import ByteLMModule, build_trainer, resolve_precision

steps, peak = int(sys.argv[1]), float(sys.argv[2])
assert torch.cuda.is_available(), "no CUDA device visible"
cfg = load_config("configs/base.yaml", ["data.sources=[udhr, stdlib]", "train.progress_bar=false",
                                       f"train.max_steps={steps}", "train.val_every_steps=100000",
                                       "train.ckpt_every_steps=100000", "train.devices=1"])
warm = min(50, steps // 3)

class Timer(L.Callback):
    t0 = t1 = 0.0
    def on_train_batch_end(self, trainer, *a):
        torch.cuda.synchronize()
        if trainer.global_step == warm:
            Timer.t0 = time.perf_counter()
        Timer.t1 = time.perf_counter()

module = ByteLMModule(cfg)
n_params = module.model.num_params()
cache = build_cache(cfg.data)
loader = torch.utils.data.DataLoader(RandomWindows(cache.train, cfg.train.batch_size, cfg.model.context + 1, 0),
                                     batch_size=None, num_workers=4)
with tempfile.TemporaryDirectory() as out:
    build_trainer(cfg, Path(out), [Timer()]).fit(module, train_dataloaders=loader)
m, T = cfg.model, cfg.model.context
tokens = (steps - warm) * cfg.train.batch_size * T
# 6 N per token for the matmuls, plus causal attention: 6 * n_layers * T * d_model (half of the full 12 L T d).
flops_per_token = 6 * n_params + 6 * m.n_layers * T * m.d_model
seconds = Timer.t1 - Timer.t0
print(f"GPU {torch.cuda.get_device_name()}, {n_params/1e6:.1f} M params, precision {resolve_precision(cfg)}")
print(f"{tokens / seconds / 1e6:.2f} M bytes/s over {steps - warm} steps; "
      f"MFU {100 * tokens * flops_per_token / seconds / (peak * 1e12):.1f} % of {peak:.0f} TFLOP/s")
PY
# The byte model's scoring through Lightning's predict loop on the GPU (what `blt compare` and `blt experiment` run),
# against the same scores on the CPU (bf16 autocast: the largest difference over all bytes is ~0.1 nats on a CPU), and its speed.
python - <<'PY'
import time
import numpy as np
import torch
from blt.bytelm.checkpoint import load_model
from blt.bytelm.corpus import score_corpus
from blt.bytelm.sources import udhr_documents

docs = [d.data for d in udhr_documents()][:300]
cpu = score_corpus(load_model("default", device="cpu"), docs, accelerator="cpu", cache=False)
t = time.perf_counter()
gpu = score_corpus(load_model("default", device="cuda"), docs, accelerator="gpu", precision="bf16", cache=False)
torch.cuda.synchronize()
seconds = time.perf_counter() - t
diff = max(float(np.abs(a.entropy_nats - b.entropy_nats).max(initial=0)) for a, b in zip(cpu, gpu))
print(f"score_corpus on the GPU (bf16): {sum(map(len, docs)) / seconds / 1e6:.2f} MB/s incl. start-up; "
      f"max |entropy GPU bf16 - CPU fp32| = {diff:.4f} nats")
PY
# The downstream experiment's GPU config (configs/downstream/gpu.yaml: ~60 M-param patch-level LM, bf16, 64 × 2,048
# bytes a step) for a few steps on the Python sources, one seed, three segmentations: checks the Lightning bf16 path
# end to end and prints seconds per step, from which the config's stated time per run (4,000 steps) follows.
out=$(mktemp -d)
blt downstream gpu --data stdlib --segmenters byte,bpe,entropy-global --seeds 0 --steps "${DOWNSTREAM_STEPS:-60}" \
  --set corpora.0.max_bytes=4000000 --set max_eval_bytes=200000 --out "$out/down"
python - "$out/down/results.csv" <<'PY'
import csv, sys
for r in csv.DictReader(open(sys.argv[1])):
    per_step = float(r["train_seconds"]) / int(r["steps"])
    print(f"downstream gpu {r['segmenter']}: {per_step:.3f} s/step ({per_step * 4000 / 60:.1f} min per 4,000-step run), "
          f"{float(r['train_flops_per_byte']) * int(r['train_bytes']) / float(r['train_seconds']) / 1e12:.1f} TFLOP/s")
PY
