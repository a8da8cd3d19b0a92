"""Trainable tokeniser segmenters — byte-level BPE and SentencePiece — and what every tokeniser segmenter shares
(`TokenSegmenter`), each mapping raw bytes to token start offsets over those bytes, losslessly. Pretrained ones
(tiktoken, any Hugging Face tokenizer) live in `blt.segment.pretrained`.

Each class has `name`, `vocab_size`, `starts(data) -> [U] int64` (strictly increasing, `starts[0] == 0`; the tokens
`data[s_i:s_{i+1}]` concatenate to `data` exactly, asserted on every call), `encode(text) -> list[int]` and
`decode(ids) -> str`; the trainable ones add `train(docs, vocab_size)`, `save(path)` and `load(path)` (one file: a
versioned JSON header line, then the library's own model).

Tokenisers take `str`, so bytes are split into maximal valid-UTF-8 runs and invalid bytes (`utf8_pieces`): the runs
are tokenised and each invalid byte is a token of its own. A run over `CHUNK_CHARS` characters is cut after a newline
followed by a non-space character, where GPT-2-style and tiktoken pre-tokenisers split anyway.
"""

from __future__ import annotations

import bisect
import io
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blt.cache import cache_dir, cache_key, discard_entry, documents_hash, open_entry, publish
from blt.errors import BltError

FORMAT, FORMAT_VERSION = "blt-tokenizer", 1  # the header line of saved files
CHUNK_CHARS = 1 << 20  # longest run given to a tokeniser in one call: bounds per-call memory on huge documents
SP_SENTENCE_BYTES = 4096  # SentencePiece drops training sentences over max_sentence_length (4192): we cut below
_INVALID = re.compile("[\udc80-\udcff]")  # how surrogateescape spells an undecodable byte
_SAFE_CUT = re.compile(r"\n(?=\S)")


def default_vocab_size(n_train_bytes: int) -> int:
    """The power of two nearest √n_train_bytes, clamped to [512, 32768]: 100 kB → 512, 1 MB → 1024, 10 MB → 4096,
    100 MB → 8192, ≥ 1 GB → 32768. A square-root law lets the vocabulary grow with the corpus while each type keeps
    ≈ √n occurrences to be estimated from."""
    exponent = round(np.log2(max(float(n_train_bytes), 1.0)) / 2)
    return int(min(max(2**exponent, 512), 32768))


# ------------------------------------------------------------------------------------- bytes → text runs → starts
def utf8_pieces(data: bytes) -> Iterator[str | int]:
    """`data` as maximal valid-UTF-8 runs (`str`) and invalid bytes (`int`, one per byte), in order."""
    text, pos = data.decode("utf-8", "surrogateescape"), 0
    for m in _INVALID.finditer(text):
        if m.start() > pos:
            yield text[pos : m.start()]
        yield ord(m.group()) - 0xDC00
        pos = m.end()
    if pos < len(text):
        yield text[pos:]


def _chunks(text: str, limit: int) -> Iterator[str]:
    """`text` in pieces of ≤ `limit` characters, cut after a newline followed by a non-space (else hard at `limit`)."""
    cuts, start = ([m.end() for m in _SAFE_CUT.finditer(text)] if len(text) > limit else []), 0
    while len(text) - start > limit:
        i = bisect.bisect_right(cuts, start + limit) - 1
        end = cuts[i] if i >= 0 and cuts[i] > start else start + limit
        yield text[start:end]
        start = end
    yield text[start:]


def _segment(data: bytes | str, run_lengths: Callable[[str], np.ndarray]) -> np.ndarray:
    """Token starts [U] int64 over `data`, from `run_lengths(run) -> [T] token byte lengths` on each text run."""
    data = data.encode() if isinstance(data, str) else bytes(data)
    parts = [np.zeros(0, np.int64)]
    for piece in utf8_pieces(data):
        if isinstance(piece, int):  # an invalid byte is a token of its own
            parts.append(np.ones(1, np.int64))
        else:
            parts.extend(np.asarray(run_lengths(chunk), np.int64) for chunk in _chunks(piece, CHUNK_CHARS))
    lengths = np.concatenate(parts)
    lengths = lengths[lengths > 0]  # a zero-width token (a dummy-prefix "▁") covers no byte: no unit
    assert int(lengths.sum()) == len(data), "tokens must concatenate to the input"
    return np.concatenate([[0], np.cumsum(lengths[:-1])]).astype(np.int64) if len(lengths) else lengths


def _texts(docs: Iterable[bytes | str]) -> Iterator[str]:
    """The valid-UTF-8 runs of each document: what a tokeniser learns from (invalid bytes are bytes to it anyway)."""
    for doc in docs:
        yield from (p for p in utf8_pieces(doc.encode() if isinstance(doc, str) else bytes(doc)) if isinstance(p, str))


def _too_large(vocab_size: int, what: str, n: int) -> str:
    return (
        f"vocab_size {vocab_size} is too large for this corpus: {what} can build at most {n} tokens from it; "
        f"pass vocab_size ≤ {n} (--vocab-size {n}) or train on more text"
    )


def _damaged(path: str | Path, kind: str, e: Exception) -> str:
    reason = str(e).strip().partition("\n")[0] or type(e).__name__
    return f"{path} is damaged: its {kind} model does not load ({reason}); train and save the tokenizer again"


class TokenSegmenter:
    """Shared plumbing: `starts` over bytes from `_run_lengths` over text runs; save/load with a versioned header."""

    kind = ""
    name: str
    vocab_size: int | None

    def _run_lengths(self, text: str) -> np.ndarray:
        raise NotImplementedError

    def starts(self, data: bytes | str) -> np.ndarray:
        """[U] int64 token start offsets over `data` (bytes; a str is UTF-8 encoded first)."""
        return _segment(data, self._run_lengths)

    def segments(self, data: bytes | str) -> list[bytes]:
        """The tokens of `data` as bytes: `b"".join(...)` gives `data` back."""
        data = data.encode() if isinstance(data, str) else bytes(data)
        bounds = np.append(self.starts(data), len(data))
        return [data[s:e] for s, e in zip(bounds[:-1], bounds[1:], strict=True)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, vocab_size={self.vocab_size})"

    def _write(self, path: str | Path, payload: bytes, **header: Any) -> None:
        head = {"format": FORMAT, "version": FORMAT_VERSION, "kind": self.kind, "name": self.name, **header}
        Path(path).write_bytes(json.dumps(head).encode() + b"\n" + payload)

    @classmethod
    def _read(cls, path: str | Path) -> tuple[dict[str, Any], bytes]:
        line, _, payload = Path(path).read_bytes().partition(b"\n")
        try:
            head = json.loads(line)
            assert isinstance(head, dict) and head.get("format") == FORMAT
        except (ValueError, AssertionError):
            raise BltError(f"{path} is not a blt tokenizer file (written by .save); expected {cls.kind}") from None
        if (head.get("kind"), head.get("version")) != (cls.kind, FORMAT_VERSION):
            raise BltError(
                f"{path} holds a {head.get('kind')} tokenizer, format version {head.get('version')}; "
                f"{cls.__name__} reads {cls.kind} version {FORMAT_VERSION}: load it with the matching class"
            )
        return head, payload


# ------------------------------------------------------------------------------------- byte-level BPE
class ByteBPE(TokenSegmenter):
    """Byte-level BPE (HF `tokenizers`) with GPT-2 pre-tokenisation; the 256 bytes are always in the vocabulary."""

    kind = "bytebpe"

    def __init__(self, tokenizer: Any, name: str = "bpe") -> None:
        self.tokenizer, self.name = tokenizer, name
        self.vocab_size: int | None = tokenizer.get_vocab_size()

    @classmethod
    def train(
        cls, docs: Iterable[bytes | str], vocab_size: int, *, name: str = "bpe", at_most: bool = False, **opts: Any
    ) -> ByteBPE:
        """Learn merges on `docs` up to exactly `vocab_size` tokens (256 bytes + merges), or with `at_most` until
        the merges run out below it (every pre-token of the training text one token); `opts` go to BpeTrainer."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if vocab_size < 256:
            raise BltError(f"a byte-level BPE vocabulary holds the 256 bytes: pass vocab_size ≥ 256, got {vocab_size}")
        tok = Tokenizer(models.BPE())
        # use_regex=True is GPT-2's split (contractions, letter runs, digit runs, punctuation, spaces)
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()  # all 256 bytes, so every input is representable
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet, show_progress=False, **opts)
        tok.train_from_iterator(_texts(docs), trainer)
        n = tok.get_vocab_size()
        if n != vocab_size and not at_most:  # merges ran out: every pre-token is already one token
            raise BltError(_too_large(vocab_size, "byte-level BPE", n))
        return cls(tok, name)

    def _run_lengths(self, text: str) -> np.ndarray:
        # ByteLevel spells each byte as one character: a token's string length is its byte length
        return np.fromiter(map(len, self.tokenizer.encode(text).tokens), np.int64)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def save(self, path: str | Path) -> None:
        self._write(path, self.tokenizer.to_str().encode())

    @classmethod
    def load(cls, path: str | Path) -> ByteBPE:
        from tokenizers import Tokenizer

        head, payload = cls._read(path)
        try:
            return cls(Tokenizer.from_str(payload.decode()), head["name"])
        except Exception as e:  # tokenizers raises a bare Exception on a cut or garbled model
            raise BltError(_damaged(path, cls.kind, e)) from None


# ------------------------------------------------------------------------------------- SentencePiece
# SentencePiece made lossless (../shared/REFERENCE.md) and deterministic; train(**opts) overrides any of these
SP_LOSSLESS: dict[str, Any] = {
    "normalization_rule_name": "identity",
    "add_dummy_prefix": False,
    "remove_extra_whitespaces": False,
    "byte_fallback": True,
    "character_coverage": 1.0,
    "allow_whitespace_only_pieces": True,
    "max_sentence_length": 2 * SP_SENTENCE_BYTES,
    "input_sentence_size": 0,  # keep every (cut) sentence
    "shuffle_input_sentence": False,
    "train_extremely_large_corpus": False,
    "num_threads": 2,
    "minloglevel": 2,  # no training log
}
_SP_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
_SP_TOO_LOW = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")


def _sp_sentences(docs: Iterable[bytes | str]) -> Iterator[str]:
    """Training sentences of ≤ SP_SENTENCE_BYTES bytes, cut after a newline, else before a space, else at a character
    boundary, so SentencePiece drops nothing."""
    for text in _texts(docs):
        data, pos = text.encode(), 0
        while len(data) - pos > SP_SENTENCE_BYTES:
            window = data[pos : pos + SP_SENTENCE_BYTES]
            cut = window.rfind(b"\n") + 1 or max(window.rfind(b" "), 0) or SP_SENTENCE_BYTES
            while 0x80 <= data[pos + cut] < 0xC0:  # a hard cut: back to the start of a character
                cut -= 1
            yield data[pos : pos + cut].decode()
            pos += cut
        if pos < len(data):
            yield data[pos:].decode()


class SentencePieceSegmenter(TokenSegmenter):
    """SentencePiece (unigram or BPE) configured losslessly (`SP_LOSSLESS`). Starts come from SentencePiece's byte
    offsets, a byte-fallback piece being one byte. `decode` spells a literal "▁" of the input as a space."""

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes, *, model_type: str = "unigram", name: str | None = None) -> None:
        import sentencepiece as spm

        self.model_proto, self.model_type = bytes(model_proto), model_type
        self.processor = spm.SentencePieceProcessor(model_proto=self.model_proto)
        self.vocab_size: int | None = self.processor.vocab_size()
        self.name = name or f"sp-{model_type}"
        self._is_byte = np.array([self.processor.IsByte(i) for i in range(self.processor.vocab_size())], dtype=bool)

    @classmethod
    def train(
        cls,
        docs: Iterable[bytes | str],
        vocab_size: int,
        *,
        model_type: str = "unigram",
        name: str | None = None,
        at_most: bool = False,
        **opts: Any,
    ) -> SentencePieceSegmenter:
        """Train on `docs` at exactly `vocab_size` pieces, or with `at_most` at most that many (SentencePiece's soft
        limit: as many as the corpus supports); `opts` override SentencePieceTrainer options."""
        import sentencepiece as spm

        if model_type not in ("unigram", "bpe"):
            raise BltError(f"model_type must be 'unigram' or 'bpe', got {model_type!r}")
        model, spec = io.BytesIO(), {**SP_LOSSLESS, "model_type": model_type, "vocab_size": vocab_size, **opts}
        if at_most:
            spec["hard_vocab_limit"] = False
        try:
            spm.SentencePieceTrainer.train(sentence_iterator=_sp_sentences(docs), model_writer=model, **spec)
        except RuntimeError as e:
            if m := _SP_TOO_HIGH.search(str(e)):
                raise BltError(_too_large(vocab_size, f"SentencePiece {model_type}", int(m[2]))) from None
            if m := _SP_TOO_LOW.search(str(e)):
                raise BltError(
                    f"vocab_size {vocab_size} is too small for this corpus: at character_coverage=1.0 "
                    f"SentencePiece needs a piece per distinct character plus 259 byte/control pieces, "
                    f"{m[2]} here; pass vocab_size ≥ {m[2]} (--vocab-size {m[2]}) or "
                    f"character_coverage=0.9995 (rare characters then fall back to bytes)"
                ) from None
            raise BltError(f"SentencePiece training failed: {e}") from e
        return cls(model.getvalue(), model_type=model_type, name=name)

    def _run_lengths(self, text: str) -> np.ndarray:
        try:  # recent sentencepiece
            out = self.processor.encode(text, out_type="offset_mapping", return_bytes=True)
            ids, offsets = out["ids"], out["offsets"]
        except (TypeError, ValueError, RuntimeError):  # older releases: the immutable proto has byte begin/end
            pieces = self.processor.encode(text, out_type="immutable_proto").pieces
            ids, offsets = [p.id for p in pieces], [(p.begin, p.end) for p in pieces]
        spans = np.asarray(offsets, np.int64).reshape(-1, 2)  # [T, 2] byte offsets
        # the byte-fallback pieces of one character report (b, b), ..., (b, b), (b, b + n): each is one byte
        return np.where(self._is_byte[np.asarray(ids, np.int64)], 1, spans[:, 1] - spans[:, 0])

    def encode(self, text: str) -> list[int]:
        return self.processor.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        return self.processor.decode(list(ids))

    def save(self, path: str | Path) -> None:
        self._write(path, self.model_proto, model_type=self.model_type)

    @classmethod
    def load(cls, path: str | Path) -> SentencePieceSegmenter:
        head, payload = cls._read(path)
        try:
            return cls(payload, model_type=head["model_type"], name=head["name"])
        except Exception as e:  # sentencepiece raises RuntimeError (or worse) on a cut or garbled model
            raise BltError(_damaged(path, cls.kind, e)) from None


# ---------------------------------------------------------------------------------------------- tokenisers
def cached_tokenizer(
    kind: str,
    vocab: int,
    train_docs: Sequence[bytes],
    *,
    train_sha: str | None = None,
    cache: bool = True,
    at_most: bool = False,
) -> tuple[Any, Path | None, float]:
    """A trained tokeniser — `bpe` (byte-level BPE), `sp-unigram` or `sp-bpe` (SentencePiece) — of `vocab` (with
    `at_most`: as large as the training text supports up to `vocab`) on `train_docs`, trained once per (kind, vocab,
    at_most, training bytes) and then loaded from the sealed entry
    `<cache>/tokenizers/<key>/` (`tokenizer.tok` and `meta.json`). Returns (tokeniser, its `.tok` file or None when
    `cache` is off, training seconds of the run that trained it). A damaged entry is retrained."""
    cls = ByteBPE if kind == "bpe" else SentencePieceSegmenter
    limit = {"at_most": True} if at_most else {}  # exact sizes keep the keys they always had
    key = cache_key("tokenizer", kind=kind, vocab=vocab, train=train_sha or documents_hash(train_docs), **limit)
    entry = cache_dir("tokenizers") / key if cache else None
    if entry is not None and open_entry(entry, "tokenizer cache entry") is not None:
        try:
            seconds = float(json.loads((entry / "meta.json").read_text())["train_seconds"])
            return cls.load(entry / "tokenizer.tok"), entry / "tokenizer.tok", seconds
        except (BltError, OSError, ValueError, KeyError, TypeError) as e:  # sealed, yet unreadable: a broken writer
            discard_entry(entry, f"the tokenizer cache entry {entry} does not load ({e}); retraining")
    t = time.perf_counter()
    if kind == "bpe":
        seg: Any = ByteBPE.train(train_docs, vocab, at_most=at_most)
    else:
        seg = SentencePieceSegmenter.train(train_docs, vocab, model_type=kind.removeprefix("sp-"), at_most=at_most)
    seconds = time.perf_counter() - t
    if entry is None:
        return seg, None, seconds

    def fill(tmp: Path) -> None:
        seg.save(tmp / "tokenizer.tok")
        (tmp / "meta.json").write_text(json.dumps({"train_seconds": seconds, "kind": kind, "vocab": vocab}))

    publish(entry, fill, "tokenizer cache entry")
    return seg, entry / "tokenizer.tok", seconds
