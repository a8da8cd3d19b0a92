"""Temperature calibration of a byte model: one scalar T that divides the logits, fitted by maximum likelihood on
held-out bytes (Guo et al. 2017, "On Calibration of Modern Neural Networks").

A model that is overconfident on text unlike its training data (mean predicted entropy below the bits it pays)
gets T > 1: flatter distributions, higher entropies, a smaller calibration gap, and a lower code length on text like
the fitting text. T only rescales the logits, so the ranking of next bytes, and therefore greedy predictions, stay
the same; entropies rise most where the model was confident, so entropy patch boundaries move (compare measures it).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from blt.bytelm.entropy import as_bytes, plan_windows, window_batch
from blt.bytelm.model import ByteLM
from blt.errors import BltError

FIT_MAX_BYTES = 131_072  # bytes of logits kept for the fit: 131k x 260 floats = 136 MB
BETA_RANGE = (1 / 16, 16.0)  # inverse temperatures searched: T from 1/16 to 16


def heldout_logits(
    model: ByteLM, docs: Sequence[bytes | str], *, max_bytes: int = FIT_MAX_BYTES, batch_size: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw logits [N, V] (the model's temperature undone) and target bytes [N] for the first `max_bytes` bytes of
    `docs`, each byte predicted from the same context as `score` gives it (windows of the model's context, stride
    3/4 of it)."""
    datas = [as_bytes(d) for d in docs]
    datas = [d for d in datas if d]
    budget, kept = max_bytes, []
    for d in datas:
        if budget <= 0:
            break
        kept.append(d[:budget])
        budget -= len(kept[-1])
    if not kept:
        raise BltError("no bytes to fit a temperature on: give documents with text in them")
    context, stride = model.context, max(1, (3 * model.context) // 4)
    device = next(model.parameters()).device
    jobs = [(i, *w) for i, d in enumerate(kept) for w in plan_windows(len(d), context, stride)]
    logits_out: list[torch.Tensor] = []
    targets_out: list[torch.Tensor] = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for b in range(0, len(jobs), batch_size):
            chunk = jobs[b : b + batch_size]
            ids, targets = window_batch(kept, chunk)
            z = model(ids.to(device)).float() * model.cfg.temperature  # [b, width, V], back to raw logits
            for r, (_, start, emit_from, end) in enumerate(chunk):
                logits_out.append(z[r, emit_from - start : end - start].cpu())
                targets_out.append(targets[r, emit_from - start : end - start])
    model.train(was_training)
    return torch.cat(logits_out), torch.cat(targets_out)


def _nll_slope(z: torch.Tensor, y: torch.Tensor, beta: float, chunk: int = 16_384) -> float:
    """d/dβ of the mean NLL of softmax(β z) at the targets: E_p[z] − z_y averaged; increasing in β (its derivative
    is the variance of z under p), so the NLL is convex in β and the root of this slope is its minimum."""
    total = 0.0
    for s in range(0, len(y), chunk):
        zc = z[s : s + chunk].double()
        p = torch.softmax(beta * zc, dim=-1)
        total += float(((p * zc).sum(-1) - zc.gather(1, y[s : s + chunk, None]).squeeze(1)).sum())
    return total / len(y)


def fit_temperature_logits(z: torch.Tensor, y: torch.Tensor, *, tol: float = 1e-4) -> float:
    """The temperature T = 1/β that minimises the mean NLL of `y` under softmax(z / T), by bisection on the convex
    NLL's slope in β, to a relative tolerance `tol` in β. Clamped to [1/16, 16]."""
    lo, hi = BETA_RANGE
    if _nll_slope(z, y, lo) >= 0:
        return 1 / lo
    if _nll_slope(z, y, hi) <= 0:
        return 1 / hi
    while hi - lo > tol * lo:
        mid = (lo * hi) ** 0.5  # geometric: the search spans two orders of magnitude
        if _nll_slope(z, y, mid) < 0:
            lo = mid
        else:
            hi = mid
    return float(1 / ((lo * hi) ** 0.5))


def require_fittable(model: object) -> None:
    """One clear line when `model` is not one of blt's own byte models (an hf: model keeps its released logits)."""
    from blt.bytelm.hf_blt import BltEntropyModel

    if not isinstance(model, ByteLM) or isinstance(model, BltEntropyModel):
        raise BltError(
            "a temperature is fitted for blt's own byte models; an hf: model is used as released: "
            "drop --fit-temperature"
        )


def fit_temperature(model: ByteLM, docs: Sequence[bytes | str], *, max_bytes: int = FIT_MAX_BYTES) -> float:
    """Maximum-likelihood temperature of `model` on `docs` (their first `max_bytes` bytes); the model's own
    temperature is ignored, so the result is absolute (apply it with `with_temperature`)."""
    require_fittable(model)
    z, y = heldout_logits(model, docs, max_bytes=max_bytes)
    return fit_temperature_logits(z, y)


def with_temperature(model: ByteLM, temperature: float) -> ByteLM:
    """A copy of `model` whose logits are divided by `temperature` (its card records it); `model` is unchanged."""
    if not (temperature > 0 and np.isfinite(temperature)):
        raise BltError(f"temperature must be a positive number, got {temperature}")
    tempered = copy.deepcopy(model)
    tempered.cfg = replace(model.cfg, temperature=float(temperature))
    if hasattr(model, "full_config"):
        tempered.full_config = replace(model.full_config, model=tempered.cfg)
    tempered.card = {**model.card, "temperature": float(temperature)}
    return tempered
