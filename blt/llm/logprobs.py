"""Top-k logprobs JSON from APIs (OpenAI chat completions, legacy completions, vLLM; one response, a list of
them, or a JSONL file) read as a bounded `blt.llm.scorers.TokenScores`. An API reports only the top k log-probabilities
of each position, so the entropy is known only as an interval: `entropy_bounds_nats` gives the tightest one given
the vocabulary size, and `parse_logprobs_json` applies it per position. Nats inside, bits in reports.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from blt.errors import BltError, brief
from blt.llm.scorers import TokenScores

CENSORED_LOGPROB = -9999.0  # what OpenAI/vLLM report for a sampled token outside the top k (vLLM: also for -inf)
SUM_TOLERANCE = 1e-4  # rounded logprobs may sum this far above 1 before it is an error


def entropy_bounds_nats(known: np.ndarray, cap: float, vocab_size: int | None, *, where: str = "") -> np.ndarray:
    """[lower, upper, residual]: bounds (nats) on the entropy of a distribution over `vocab_size` tokens given the
    `known` probabilities, every other token having probability ≤ `cap` (q_k, the k-th largest; 1 when k = 0).

    H = H_k + H_R: H_k = -Σ q log q over the known, H_R = Σ f(p_j) over the M = V - |known| others, with
    f(p) = -p log p, Σ p_j = R = 1 - Σ q and 0 ≤ p_j ≤ cap. f is concave, so the least H_R lies at a vertex of that
    polytope, where every p_j but one is 0 or cap: n = ⌊R/cap⌋ tokens at cap and one at r = R - n·cap, so
    H ≥ H_k - n·cap·log(cap) - r·log(r) (≥ H_k - R log cap, since r ≤ cap); the packing attains it: it is the
    minimum. The greatest H_R is at the uniform p_j = R/M (feasible iff R ≤ M·cap): H ≤ H_k - R log(R/M), also
    attained. Probabilities summing above 1 + SUM_TOLERANCE are an error; up to it, R = 0 and the bounds meet."""
    total = float(known.sum())
    if total > 1 + SUM_TOLERANCE:
        raise BltError(f"{where}: the top-k probabilities sum to {total:.6f} > 1; they are not one distribution")
    h_known, residual = float(-(known * np.log(np.where(known > 0, known, 1))).sum()), max(0.0, 1.0 - total)
    if residual <= 1e-12:  # float rounding of a complete distribution
        return np.array([h_known, h_known, 0.0])
    if vocab_size is None:
        raise BltError(f"{where}: mass {residual:.3g} lies outside the top k; pass --vocab-size N (vocab_size=N)")
    unseen = vocab_size - len(known)
    if unseen < 1 or residual > unseen * cap * (1 + 1e-9) + 1e-12:  # (float slack)
        fix = f"is --vocab-size {vocab_size} the model's vocabulary size?"
        raise BltError(f"{where}: residual mass {residual:.3g} exceeds {unseen} unseen tokens × q_k = {cap:.3g}; {fix}")
    n = math.floor(residual / cap)
    r = residual - n * cap
    lower = h_known - n * cap * math.log(cap) - (r * math.log(r) if r > 0 else 0.0)
    return np.array([lower, h_known - residual * math.log(residual / unseen), residual])


def _field(obj: Any, key: str | int, where: str, kind: type | tuple[type, ...] = object) -> Any:
    """obj[key], checked to be a `kind` (numbers: log-probabilities, ≤ 0 and not NaN); else an error naming it."""
    try:
        value = obj[key]
    except (KeyError, IndexError, TypeError):
        raise BltError(f"{where} is missing") from None
    number, names = kind == (int, float), " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else [kind]))
    if not isinstance(value, kind) or isinstance(value, bool) or number and not value <= 1e-6:  # NaN too
        raise BltError(f"{where} must be {'a log-probability ≤ 0' if number else names}, got {brief(repr(value), 60)}")
    return min(value, 0.0) if number else value


def _positions(lp: Any, where: str) -> list[tuple[str, str, bytes, float, list[tuple[str, float]]]]:
    """(field, token, bytes, logprob, [(token, logprob) of the top k]) per position of a chat `content` list (or a
    bare list of positions) or of a legacy completions object, whose None entries (an echoed first token) are
    skipped and whose "bytes:\\xe2\\x80" tokens are spelled out."""
    out, number = [], (int, float)
    if isinstance(lp, dict) and "tokens" in lp:
        tokens, values = _field(lp, "tokens", f"{where}.tokens", list), lp.get("token_logprobs")
        tops = lp.get("top_logprobs") or [{}] * len(tokens)
        if not isinstance(values, list) or not len(tokens) == len(values) == len(tops):
            raise BltError(f"{where}: tokens, token_logprobs and top_logprobs must be lists of one length")
        for i in (i for i, v in enumerate(values) if v is not None):
            f, top = f"{where}.top_logprobs[{i}]", _field(tops, i, f"{where}.top_logprobs[{i}]", dict)
            pairs = [(t, _field(top, t, f"{f}[{t!r}]", number)) for t in top]
            token = _field(tokens, i, f"{where}.tokens[{i}]", str)
            raw = token.encode()
            if token.startswith("bytes:"):  # "bytes:\\xe2\\x80": a token that is part of a character
                try:
                    raw = token[6:].encode().decode("unicode_escape").encode("latin-1")
                except UnicodeError:  # a bad escape, or a character above \\xff
                    raise BltError(f"{where}.tokens[{i}] must spell bytes as \\xNN escapes, got {token!r}") from None
            value = _field(values, i, f"{where}.token_logprobs[{i}]", number)
            out.append((f"{where}.tokens[{i}]", token, raw, value, pairs))
        return out
    content = lp.get("content") if isinstance(lp, dict) else lp
    if not isinstance(content, list):
        raise BltError(f"{where} must hold `content` (chat), `tokens` (completions), or be a list of positions")
    for i in range(len(content)):
        f = f"{where}.content[{i}]" if isinstance(lp, dict) else f"{where}[{i}]"
        entry = _field(content, i, f, dict)
        token, tops, g = _field(entry, "token", f"{f}.token", str), entry.get("top_logprobs") or [], f"{f}.top_logprobs"
        if not isinstance(tops, list):  # a string or a {token: logprob} dict would be walked as a list of entries
            raise BltError(f"{g} must be a list of {{token, logprob}} objects, got {brief(repr(tops), 60)}")
        alternatives = [_field(a, "token", f"{g}[{j}].token", str) for j, a in enumerate(tops)]
        values = [_field(a, "logprob", f"{g}[{j}].logprob", number) for j, a in enumerate(tops)]
        pairs = list(zip(alternatives, values, strict=True))
        raw = _token_bytes(entry, f"{f}.bytes") if entry.get("bytes") is not None else token.encode()
        out.append((f, token, raw, _field(entry, "logprob", f"{f}.logprob", number), pairs))
    return out


def _token_bytes(entry: dict, where: str) -> bytes:
    """A chat position's `bytes`: the token's UTF-8 bytes as a list of integers 0..255."""
    values = entry["bytes"]
    if not isinstance(values, list) or not all(type(b) is int and 0 <= b <= 255 for b in values):
        raise BltError(f"{where} must be a list of byte values 0..255, got {brief(repr(values), 60)}")
    return bytes(values)


def _documents(obj: Any, where: str) -> list[tuple[str, Any]]:
    """(field, logprobs) per document: every choice of a response, or of each response in a list."""
    if isinstance(obj, list) and obj and all(isinstance(x, dict) and "choices" in x for x in obj):
        return [d for i, x in enumerate(obj) for d in _documents(x, f"{where}[{i}]")]
    if not isinstance(obj, dict) or "choices" not in obj:
        return [(where, obj)]
    choices = _field(obj, "choices", f"{where}.choices", list)
    names = [f"{where}.choices[{i}].logprobs" for i in range(len(choices))]
    return [(f, _field(c, "logprobs", f, (dict, list))) for f, c in zip(names, choices, strict=True)]


def read_json(path: str | Path) -> Any:
    """A JSON document, or a JSONL file of them (as a list); errors name the line."""
    if not Path(path).is_file():
        raise BltError(f"logprobs file {path} does not exist")
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a byte-order mark (PowerShell writes one) is dropped
    except UnicodeDecodeError as e:
        raise BltError(
            f"{path} is not UTF-8 ({e.reason} at byte {e.start}); JSON must be UTF-8: save the API response as UTF-8"
        ) from None
    if not text.strip():
        raise BltError(f"logprobs file {path} is empty; pass the saved API response (JSON or JSONL)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg != "Extra data":
            raise BltError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    docs = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            docs += [json.loads(line)] if line.strip() else []
        except json.JSONDecodeError as e:
            raise BltError(f"{path}: line {n} is not valid JSON (column {e.colno}: {e.msg})") from None
    return docs


def parse_logprobs_json(
    obj_or_path: Any, *, vocab_size: int | None = None, mode: str = "on-policy", source: str | None = None
) -> TokenScores:
    """Entropy bounds from top-k logprobs: OpenAI or vLLM chat completions (`choices[*].logprobs.content`), legacy
    completions (`choices[*].logprobs.tokens/token_logprobs/top_logprobs`), a bare list of per-position dicts, a
    list of responses, or a JSONL file of responses (a path, or the parsed object); each choice is a document.
    Per position the known probabilities are the top k plus the sampled token when it is reported outside them;
    the k-th largest caps all others (`entropy_bounds_nats`; `vocab_size` is needed when mass is left over). A
    sampled logprob of -9999.0 is censored (outside the top k, value unknown): surprisal NaN, flagged. Alternatives
    at -9999.0 (vLLM's -inf) carry no mass and are dropped. The sampled token's rank is known when it is among the
    top k (1 + alternatives above it), else NaN (it is > k). `mode`: "teacher-forced" for echoed prompts."""
    if vocab_size is not None and vocab_size < 2:  # else every position fails with a puzzling "-1 unseen tokens"
        raise BltError(f"--vocab-size must be the model's vocabulary size (≥ 2 tokens), got {vocab_size}")
    where = str(obj_or_path) if isinstance(obj_or_path, (str, Path)) else "logprobs"
    obj = read_json(obj_or_path) if isinstance(obj_or_path, (str, Path)) else obj_or_path
    rows, names, pieces, doc_ids, positions = [], [], [], [], []
    for doc, (f, lp) in enumerate(_documents(obj, where)):
        for pos, (field_, token, raw, value, top) in enumerate(_positions(lp, f)):
            alternatives = [(t, v) for t, v in top if v > CENSORED_LOGPROB]
            q = np.sort(np.exp([v for _, v in alternatives]))[::-1]
            censored = value <= CENSORED_LOGPROB
            listed = any(t == token and abs(v - value) <= 1e-4 for t, v in alternatives)
            known = np.append(q, [] if censored or listed else [math.exp(value)])
            bounds = entropy_bounds_nats(known, q[-1] if len(q) else 1.0, vocab_size, where=field_)
            rank = 1 + sum(v > value for t, v in alternatives if t != token) if listed else math.nan  # else > k
            rows.append(
                [math.nan if censored else -value, known.max() if len(q) else math.nan, *bounds, censored, rank]
            )
            names.append(token), pieces.append(raw), doc_ids.append(doc), positions.append(pos)
    if not rows:
        raise BltError(f"{where}: no positions with logprobs")
    a, nan = (
        np.asarray(rows, np.float64).T,
        np.full(len(rows), np.nan),
    )  # [7, T]: s, top-1, lower, upper, R, censored, rank
    head = obj[0] if isinstance(obj, list) and obj and isinstance(obj[0], dict) else obj  # the first response
    head = head if isinstance(head, dict) else {}
    meta = dict(source=source or where, tokenizer=str(head.get("model", "unknown")), vocab_size=vocab_size, mode=mode)
    meta |= dict(
        chat_template="chat" in str(head.get("object", "")), context=None, doc_ids=doc_ids, positions=positions
    )
    bounds = dict(censored=a[5] > 0, entropy_lower_nats=a[2], entropy_upper_nats=a[3], residual_mass=a[4], rank=a[6])
    return TokenScores(names, pieces, a[0], nan, nan, a[1], **meta, **bounds)
