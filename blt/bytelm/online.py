"""Online adaptation (dynamic evaluation, Krause et al. 2018): the byte model keeps learning from the text while it
scores it.

The text is read in the same overlapping windows as `entropy.score` (`plan_windows`). Each window is scored first
(its entropies and surprisals are kept, computed by the model as it is *before* the window), and then the model
takes one Adam step on the surprisal of the bytes just scored. So no byte is ever predicted by a model that has
seen it, and the bits/byte stays an honest code length (a decoder can replay the same updates). Documents are read
in order and the model carries what it learnt from one to the next; the caller's model is never changed (a copy
learns).

Cost: one forward and one backward pass per window with a batch of one, against batched forward passes for
`score`; `scripts/bench_bpb.py` prints both speeds.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import numpy as np
import torch

from blt.bytelm.entropy import (
    ByteScores,
    as_bytes,
    autocast_for,
    entropy_from_logp,
    plan_windows,
    surprisal_from_logp,
    window_batch,
)
from blt.bytelm.model import ByteLM
from blt.errors import BltError

ONLINE_LR = 3e-4  # Adam's step size while scoring; measured on the unseen sets in docs/benchmarks.md


class OnlineScorer:
    """A copy of `model` that learns as it scores: `score(texts)` may be called many times (a corpus in groups) and
    the model carries what it learnt from call to call. `lr` is Adam's step size (0: exactly `score`'s values, one
    window at a time); `stride` as for `score` (default 3/4 of the context)."""

    def __init__(self, model: ByteLM, *, lr: float = ONLINE_LR, stride: int | None = None, precision: str = "32"):
        if not (isinstance(lr, (int, float)) and 0 <= lr < 1):  # NaN fails too
            raise BltError(f"the online learning rate must be in [0, 1), got {lr!r} (--online-lr; default {ONLINE_LR})")
        context = model.context
        self.stride = max(1, (3 * context) // 4) if stride is None else stride
        if not 1 <= self.stride <= context:
            raise BltError(f"stride must be in [1, context={context}], got {self.stride}")
        self.lr, self.precision, self.context = float(lr), precision, context
        self.device = next(model.parameters()).device
        self.learner = copy.deepcopy(model).eval()  # eval: no dropout while scoring; gradients still flow
        self.learner.requires_grad_(True)
        self.optimizer = torch.optim.Adam(self.learner.parameters(), lr=lr) if lr > 0 else None
        self.bytes_learnt = 0

    def score(
        self, texts: Iterable[str | bytes] | str | bytes, progress: Callable[[int], None] | None = None
    ) -> list[ByteScores]:
        """Per-byte entropy and surprisal (nats) of each input, in order; `progress(n)` hears of every n bytes."""
        if isinstance(texts, (str, bytes, bytearray)):
            texts = [texts]
        out = []
        with torch.inference_mode(False), torch.enable_grad():
            for data in (as_bytes(t) for t in texts):
                out.append(self._score_one(data, progress))
        return out

    def _score_one(self, data: bytes, progress: Callable[[int], None] | None) -> ByteScores:
        stats = np.empty((2, len(data)), dtype=np.float32)
        for start, emit_from, end in plan_windows(len(data), self.context, self.stride):
            ids, targets = window_batch([data], [(0, start, emit_from, end)])  # [1, w] each
            ids, targets = ids.to(self.device), targets.to(self.device)
            with autocast_for(self.device, self.precision):
                logits = self.learner(ids)  # [1, w, V]
            logp = torch.log_softmax(logits.float(), dim=-1)
            surprisal = surprisal_from_logp(logp, targets)[0, emit_from - start :]  # [emitted]
            entropy = entropy_from_logp(logp.detach())[0, emit_from - start :]
            stats[0, emit_from:end] = entropy.cpu().numpy()
            stats[1, emit_from:end] = surprisal.detach().cpu().numpy()
            if self.optimizer is not None:  # learn from the bytes just scored, never before scoring them
                self.optimizer.zero_grad(set_to_none=True)
                surprisal.mean().backward()  # type: ignore[no-untyped-call]  # torch leaves it untyped
                self.optimizer.step()
            self.bytes_learnt += end - emit_from
            if progress is not None:
                progress(end - emit_from)
        return ByteScores(data, stats[0], stats[1])


def score_online(
    model: ByteLM,
    texts: Iterable[str | bytes] | str | bytes,
    *,
    lr: float = ONLINE_LR,
    stride: int | None = None,
    precision: str = "32",
    progress: Callable[[int], None] | None = None,
) -> list[ByteScores]:
    """Per-byte entropy and surprisal (nats) of each input, the model learning as it goes (see the module's
    docstring); `model` itself is not changed."""
    return OnlineScorer(model, lr=lr, stride=stride, precision=precision).score(texts, progress)
