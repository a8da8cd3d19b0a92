"""Logits to information: per-position entropy, surprisal and varentropy (nats), and batched, windowed scoring of
arbitrarily long byte strings with a `ByteLM`.

Convention: for a byte string `b` of length n, entry `t` of every result is about byte `t` given `b[:t]`
(a BOS id supplies the context of byte 0). Inputs longer than the model's context go through overlapping windows;
every byte after the first window keeps at least `context - stride` bytes of context. Rows of a batch are
right-padded and the attention is causal, so a row's result never depends on the other rows or the batch size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from blt.bytelm.model import ByteLM
from blt.config import BOS_ID, PAD_ID
from blt.errors import BltError

LN2 = math.log(2)


def entropy_from_logp(logp: torch.Tensor) -> torch.Tensor:
    """log-probabilities [..., V] -> entropy [...] in nats; p = 0 entries (logits of -inf) contribute 0."""
    p = logp.exp()
    return -torch.where(p > 0, p * logp, 0.0).sum(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """logits [..., V] -> entropy [...] in nats, from `log_softmax` (stable for peaked distributions)."""
    return entropy_from_logp(torch.log_softmax(logits.float(), dim=-1))


def surprisal_from_logp(logp: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log-probabilities [..., V], targets [...] int -> -log p(target) [...] in nats."""
    return -logp.gather(-1, targets.unsqueeze(-1).long()).squeeze(-1)


def surprisal_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits [..., V], targets [...] int -> -log p(target) [...] in nats."""
    return surprisal_from_logp(torch.log_softmax(logits.float(), dim=-1), targets)


def varentropy_from_logp(logp: torch.Tensor, entropy_nats: torch.Tensor | None = None) -> torch.Tensor:
    """log-probabilities [..., V] -> varentropy [...] in nats²: the variance of -log p under p (p = 0 adds 0)."""
    p = logp.exp()
    h = (entropy_from_logp(logp) if entropy_nats is None else entropy_nats).unsqueeze(-1)
    return torch.where(p > 0, p * (-logp - h) ** 2, 0.0).sum(-1)


def varentropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """logits [..., V] -> varentropy [...] in nats²: the variance of -log p under p."""
    return varentropy_from_logp(torch.log_softmax(logits.float(), dim=-1))


def _moments(x: torch.Tensor) -> torch.Tensor:
    """logits [n, v] (float32 ones are overwritten) -> float64 [4, n]: the row max m and, with z = x - m, Σ eᶻ,
    Σ eᶻ·z, Σ eᶻ·z²: a few passes over a block small enough (of `head_stats`' block_elements) to stay in cache."""
    m = x.amax(-1, keepdim=True)  # [n, 1]
    z = x.float().sub_(m).clamp_(min=-1e4)  # -inf (masked) -> finite: eᶻ is 0 either way, and 0 * finite = 0
    e = z.exp()
    s, a = e.sum(-1), torch.linalg.vecdot(e, z)  # vecdot: accurate sums, no product buffer
    return torch.stack((m[:, 0].float(), s, a, torch.linalg.vecdot(e.mul_(z), z))).double()


def _finish(blocks: list[torch.Tensor], picked: torch.Tensor, above: torch.Tensor) -> np.ndarray:
    """`_moments` of K vocabulary blocks, the targets' logits [n] and the count of logits above each -> float64
    [5, n]: entropy, surprisal (nats), varentropy (nats²), top-1 mass, rank (1 + above). Re-based to the overall
    max m (block k's z shifts by d = m_k - m ≤ 0) with p = eᶻ / S: H = log S - E[z], varentropy = Var[z],
    surprisal = m + log S - x_target, top-1 = 1 / S."""
    mk, sk, ak, bk = torch.stack(blocks).unbind(1)  # each [K, n]
    m = mk.amax(0)
    d = mk - m
    w = d.exp()
    s, a, b = (w * sk).sum(0), (w * (ak + d * sk)).sum(0), (w * (bk + 2 * d * ak + d * d * sk)).sum(0)
    mean = a / s
    rank = above.double().to(s.device) + 1
    return torch.stack((s.log() - mean, m + s.log() - picked.double(), b / s - mean * mean, 1 / s, rank)).cpu().numpy()


def position_stats(logits: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """logits [n, V] (any float dtype; float32 ones are overwritten), targets [n] int -> float64 [5, n]: entropy
    (nats), surprisal (nats), varentropy (nats²), top-1 mass, rank of the target (1 = the most probable; ties
    count in the target's favour); sums in float32, combined in float64."""
    picked = logits.gather(-1, targets[:, None])[:, 0]  # before `_moments` overwrites the logits
    above = (logits > picked[:, None]).sum(-1)  # [n]
    return _finish([_moments(logits)], picked, above)


def head_stats(
    hidden: torch.Tensor, targets: torch.Tensor, head: torch.nn.Linear, softcap: float | None, block_elements: int
) -> np.ndarray:
    """`position_stats` of `head(hidden)`, then cap·tanh(logits / cap) if `softcap`; hidden [n, d] -> [5, n]. The
    logits come in blocks of all n positions × b = block_elements // n vocabulary entries: the output layer's
    weight is read once, and each block is reduced while in cache (2²¹ elements, 8 MiB of float32, suits CPUs).
    The rank counts the logits above the target's, computed first as one dot product per position (its own logit
    in its block is left out of the count, so rounding between the two never ranks a token below itself)."""
    block, picked, blocks = max(1, block_elements // len(hidden)), torch.empty_like(targets, dtype=hidden.dtype), []
    ref = (hidden * head.weight[targets]).sum(-1)  # [n] the targets' logits, for the rank
    ref = ref if head.bias is None else ref + head.bias[targets]
    ref = ref if softcap is None else ref.div(softcap).tanh_().mul_(softcap)
    above = torch.zeros_like(targets)
    for v in range(0, head.weight.shape[0], block):
        x = hidden @ head.weight[v : v + block].T  # [n, b]
        x = x if head.bias is None else x.add_(head.bias[v : v + block])
        x = x if softcap is None else x.div_(softcap).tanh_().mul_(softcap)
        hit = (targets >= v) & (targets < v + block)
        picked[hit] = x[hit, targets[hit] - v]
        gt = x > ref[:, None]  # [n, b]
        gt[hit, targets[hit] - v] = False
        above += gt.sum(-1)
        blocks.append(_moments(x))
    return _finish(blocks, picked, above)


@dataclass
class ByteScores:
    """Scores of one byte string: `entropy_nats[t]` and `surprisal_nats[t]` are about byte t (float32 [n])."""

    data: bytes
    entropy_nats: np.ndarray
    surprisal_nats: np.ndarray
    varentropy_nats2: np.ndarray | None = None  # with score(..., extra_stats=True)
    top1_mass: np.ndarray | None = None  # with score(..., extra_stats=True)
    rank: np.ndarray | None = None  # with score(..., extra_stats=True): 1 + bytes more probable than the actual one

    def __len__(self) -> int:
        return len(self.data)

    @property
    def bits_per_byte(self) -> float:
        return float(self.surprisal_nats.sum(dtype=np.float64) / (LN2 * len(self.data))) if self.data else 0.0


def as_bytes(text_or_bytes: str | bytes | bytearray | memoryview) -> bytes:
    return text_or_bytes.encode("utf-8") if isinstance(text_or_bytes, str) else bytes(text_or_bytes)


def plan_windows(n: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows over the n model inputs `[BOS, b_0, ..., b_{n-2}]` (position t predicts byte t).

    Returns `(start, emit_from, end)` triples: the window feeds inputs[start:end] and keeps the predictions for
    positions [emit_from, end). Windows advance by `stride`; the last one is aligned to the end. Together they
    emit every position exactly once, and each emitted position after the first window has ≥ context - stride
    positions of context before it.
    """
    if n <= context:
        return [(0, 0, n)] if n else []
    windows = []
    start, done = 0, 0
    while True:
        end = start + context
        if end >= n:
            start, end = n - context, n
        windows.append((start, done, end))
        done = end
        if end == n:
            return windows
        start += stride


def autocast_for(device: torch.device, precision: str) -> torch.autocast | nullcontext[None]:
    """`precision`: "32" (fp32), "bf16" (autocast), or "auto" (bf16 on CUDA and on CPUs with native bf16)."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" or cpu_has_bf16() else "32"
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision != "32":
        raise BltError(f"precision must be 'auto', '32' or 'bf16', got {precision!r}")
    return nullcontext()


def cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def window_batch(
    datas: Sequence[bytes], chunk: Sequence[tuple[int, int, int, int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ids and targets [len(chunk), widest window] for windows (doc, start, emit_from, end) of `plan_windows`:
    byte t of a window is predicted from the bytes before it (BOS before a document's first byte); right padding
    (PAD_ID inputs, 0 targets) is harmless to a causal model."""
    width = max(end - start for _, start, _, end in chunk)
    ids = torch.full((len(chunk), width), PAD_ID, dtype=torch.long)
    targets = torch.zeros((len(chunk), width), dtype=torch.long)
    for r, (i, start, _, end) in enumerate(chunk):
        row = np.frombuffer(datas[i], dtype=np.uint8)
        inputs = np.concatenate(([BOS_ID], row[: end - 1])) if start == 0 else row[start - 1 : end - 1]
        ids[r, : end - start] = torch.from_numpy(inputs.astype(np.int64))
        targets[r, : end - start] = torch.from_numpy(row[start:end].astype(np.int64))
    return ids, targets


@torch.inference_mode()
def score(
    model: ByteLM,
    texts: Iterable[str | bytes] | str | bytes,
    *,
    batch_size: int = 16,
    stride: int | None = None,
    precision: str = "32",
    device: str | torch.device | None = None,
    extra_stats: bool = False,
    progress: Callable[[int], None] | None = None,
) -> list[ByteScores]:
    """Per-byte entropy and surprisal (nats) of each input, under `model`.

    `stride` defaults to 3/4 of the model's context (each byte beyond the first window sees ≥ context/4 bytes).
    `precision="auto"` uses bf16 autocast where the hardware runs it natively: faster, and within ~1e-2 nats.
    `extra_stats=True` also fills varentropy (nats²), top-1 mass and the actual byte's rank. `progress(n)` is
    called after each batch with the number of bytes it scored (for a progress bar).
    """
    if isinstance(texts, (str, bytes, bytearray)):
        texts = [texts]
    datas = [as_bytes(t) for t in texts]
    context = model.context
    if stride is None:
        stride = max(1, (3 * context) // 4)
    if not 1 <= stride <= context:
        raise BltError(f"stride must be in [1, context={context}], got {stride}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    n_stats = 5 if extra_stats else 2  # entropy, surprisal[, varentropy, top-1 mass, rank]
    stats = [np.empty((n_stats, len(d)), dtype=np.float32) for d in datas]
    # (doc, start, emit_from, end) for every window; sorted by length so batches carry little padding.
    jobs = [(i, *w) for i, d in enumerate(datas) for w in plan_windows(len(d), context, stride)]
    jobs.sort(key=lambda j: j[3] - j[1], reverse=True)
    for b in range(0, len(jobs), batch_size):
        chunk = jobs[b : b + batch_size]
        ids, targets = window_batch(datas, chunk)
        ids, targets = ids.to(device), targets.to(device)
        with autocast_for(device, precision):
            logits = model(ids)  # [b, width, V]
        logp = torch.log_softmax(logits.float(), dim=-1)
        ent = entropy_from_logp(logp)  # [b, width]
        rows = [ent, surprisal_from_logp(logp, targets)]
        if extra_stats:
            above = (logp > -rows[1].unsqueeze(-1)).sum(-1)  # [b, width]: -surprisal is the target's log-prob
            rows += [varentropy_from_logp(logp, ent), logp.amax(-1).exp(), above.float() + 1]
        values = torch.stack(rows).cpu().numpy()  # [n_stats, b, width]
        for r, (i, start, emit_from, end) in enumerate(chunk):
            stats[i][:, emit_from:end] = values[:, r, emit_from - start : end - start]
        if progress is not None:
            progress(sum(end - emit_from for _, _, emit_from, end in chunk))
    model.train(was_training)
    return [ByteScores(d, *st) for d, st in zip(datas, stats, strict=True)]


def corpus_bits_per_byte(scores: Sequence[ByteScores]) -> float:
    """Σ surprisal / (ln 2 · Σ bytes) over all documents: a ratio of sums (lm-eval-harness convention)."""
    total_bytes = sum(len(s) for s in scores)
    if total_bytes == 0:
        raise BltError("no bytes to evaluate")
    return float(sum(s.surprisal_nats.sum(dtype=np.float64) for s in scores) / (LN2 * total_bytes))


def score_cached(
    model: ByteLM,
    docs: Sequence[bytes],
    *,
    batch_size: int = 16,
    precision: str = "32",
    cache: bool = True,
    model_sha: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[ByteScores]:
    """`score(model, docs)` through the on-disk score cache of `blt compare` (`blt.cache.scores_path`, keyed by
    the model's weights, the documents' bytes, precision and batch size): the same documents are scored once.
    `model_sha`: the model's `blt.cache.model_hash`, when the caller has it; `progress` as in `score` (a cache hit
    reports all bytes at once)."""
    if not cache:
        return score(model, docs, batch_size=batch_size, precision=precision, progress=progress)
    # Imported here: the cache modules import this one (they store `ByteScores`).
    from blt.bytelm.score_cache import load_scores, save_scores, scores_path

    path = scores_path(model, docs, precision=precision, batch_size=batch_size, model_sha=model_sha)
    scores = load_scores(path, docs)
    if scores is not None:
        if progress is not None:
            progress(sum(map(len, docs)))
        return scores
    scores = score(model, docs, batch_size=batch_size, precision=precision, progress=progress)
    save_scores(path, scores)
    return scores


def evaluate_corpus(
    model: ByteLM,
    docs: Iterable[bytes],
    *,
    batch_size: int = 16,
    precision: str = "32",
    chunk_bytes: int = 1 << 20,
    cache: bool = False,
    progress: Callable[[int], None] | None = None,
    online_lr: float | None = None,
) -> dict[str, float]:
    """Bits per byte of a document stream, scored in ~`chunk_bytes` groups so memory stays flat, with the mean
    predicted entropy (bits) and the calibration gap ((paid - predicted) / paid, as `blt compare` reports it; > 0: the
    model is overconfident). `cache=True` stores each
    group's scores (`score_cached`), so evaluating the same corpus again reads them back instead of scoring;
    `online_lr` scores online instead (`blt.bytelm.online`: a copy of the model learns from each window after
    scoring it, across the whole stream; never cached); `progress(n)` hears of every n bytes scored."""
    total_nats, entropy_nats, total_bytes, n_docs, group_bytes = 0.0, 0.0, 0, 0, 0
    group: list[bytes] = []
    model_sha = None
    if cache and online_lr is None:
        from blt.cache import model_hash

        model_sha = model_hash(model)  # once, not once per group
    online = None
    if online_lr is not None:
        from blt.bytelm.online import OnlineScorer

        online = OnlineScorer(model, lr=online_lr, precision=precision)

    def flush() -> None:
        nonlocal total_nats, entropy_nats, total_bytes, group_bytes
        scored = (
            online.score(group, progress)
            if online is not None
            else score_cached(
                model,
                group,
                cache=cache,
                model_sha=model_sha,
                batch_size=batch_size,
                precision=precision,
                progress=progress,
            )
        )
        for s in scored:
            total_nats += float(s.surprisal_nats.sum(dtype=np.float64))
            entropy_nats += float(s.entropy_nats.sum(dtype=np.float64))
            total_bytes += len(s)
        group.clear()
        group_bytes = 0

    for doc in docs:
        if doc:
            group.append(doc)
            n_docs += 1
            group_bytes += len(doc)
        if group_bytes >= chunk_bytes:
            flush()
    if group:
        flush()
    if total_bytes == 0:
        raise BltError("no bytes to evaluate")
    return {
        "bits_per_byte": total_nats / (LN2 * total_bytes),
        "mean_entropy_bits": entropy_nats / (LN2 * total_bytes),
        "calibration_gap": (total_nats - entropy_nats) / total_nats if total_nats > 0 else float("nan"),
        "bytes": total_bytes,
        "documents": n_docs,
    }
