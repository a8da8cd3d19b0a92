"""Corpora as documents: local files, directories and globs (text, `.jsonl`/`.json`/`.parquet` records), Hugging
Face datasets, and the bundled `udhr` (UDHR excerpts from `gflanguages`, labelled by language) and `stdlib` (this
Python's standard library) corpora. `iter_documents(DataConfig)` is the one entry point; bytes are kept as they are
(invalid UTF-8 included), and a text longer than 64 KiB is cut at paragraph boundaries into several documents, so
that a held-out fraction of documents is near that fraction of the bytes. Record files are JSON, so UTF-8: a file
that is not is an error that names the line.
"""

from __future__ import annotations

import glob
import json
import os
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from blt.config import DataConfig
from blt.errors import BltError, brief

BUNDLED = ("udhr", "stdlib")
# Files a directory source picks up (case-insensitive): prose, markup and common source code.
TEXT_SUFFIXES = (
    ".txt",
    ".text",
    ".md",
    ".rst",
    ".tex",
    ".html",
    ".xml",
    ".csv",
    ".tsv",
    ".py",
    ".c",
    ".h",
    ".cc",
    ".cpp",
    ".hpp",
    ".rs",
    ".go",
    ".java",
    ".js",
    ".ts",
    ".sh",
)
RECORD_SUFFIXES = (".jsonl", ".json", ".parquet")
# The longest document. The train/validation split holds out whole documents (`data.is_validation`), so a corpus
# of a few big files would put a file's share, not the asked fraction, in validation: longer texts are cut into runs
# of paragraphs of at most this size (`piece_starts`). 64 KiB is 128 windows of the default 512-byte context.
DOCUMENT_BYTES = 1 << 16


@dataclass(frozen=True)
class Document:
    name: str  # file path, "udhr/en_Latn", "hf:name#index", ...
    data: bytes  # raw bytes; invalid UTF-8 is kept as is
    label: str | None = None  # language or corpus label where the source has one


def udhr_documents() -> Iterator[Document]:
    """UDHR excerpts from the `gflanguages` package: one document per language, labelled `lang_Script`."""
    import gflanguages

    fields = ("specimen_48", "specimen_36", "specimen_32", "specimen_21", "specimen_16")
    languages = gflanguages.LoadLanguages()
    for lang_id in sorted(languages):
        sample = languages[lang_id].sample_text
        parts: list[str] = []
        for name in fields:
            text = getattr(sample, name)
            if text and text not in parts:
                parts.append(text)
        if parts:
            yield Document(f"udhr/{lang_id}", "\n".join(parts).encode("utf-8"), lang_id)


def stdlib_documents() -> Iterator[Document]:
    """The running Python's standard-library sources (tests and site-packages excluded), one per module."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
    for path in sorted(root.rglob("*.py")):
        if skip.intersection(path.relative_to(root).parts):
            continue
        yield Document(f"stdlib/{path.relative_to(root)}", path.read_bytes(), "python")


def _parquet_documents(path: Path, text_field: str) -> Iterator[Document]:
    """One document per non-empty value of a Parquet file's text (or binary) column `text_field`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
        names = table.schema_arrow.names
        if text_field not in names:
            raise BltError(f"{path} has no column {text_field!r} (columns: {names}); set data.text_field")
        kind = table.schema_arrow.field(text_field).type
        value_kind = kind.value_type if pa.types.is_dictionary(kind) else kind
        text_kinds = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
        if not any(is_kind(value_kind) for is_kind in text_kinds):
            strings = [f.name for f in table.schema_arrow if pa.types.is_string(f.type)]
            raise BltError(
                f"{path}: column {text_field!r} holds {kind}, not text; set data.text_field to a string column "
                f"(string columns: {strings or 'none'})"
            )
        i = 0
        for batch in table.iter_batches(columns=[text_field]):
            for text in batch.column(0).to_pylist():
                if text:
                    yield Document(f"{path}#{i}", text if isinstance(text, bytes) else text.encode("utf-8"))
                i += 1
    except (pa.ArrowException, OSError) as exc:  # not Parquet, truncated, a corrupt page
        raise BltError(
            f"{path} is not a readable Parquet file ({brief(str(exc))}); it may be truncated or corrupted: "
            "write it again, or pass the text another way (.txt, .jsonl)"
        ) from None


def _json_rows(path: Path) -> Iterator[tuple[str, int, object]]:
    """(where, index, value) of each record of a `.json` file (an array, one object, or JSON Lines) or a `.jsonl`
    file (one value a line; blank lines skipped). JSON is UTF-8 (RFC 8259): other bytes are an error naming the
    line, not data to guess at."""
    data = path.read_bytes() if path.suffix.lower() == ".json" else None
    if data is not None:
        try:
            whole = json.loads(_utf8_text(data, f"{path}"))
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":  # "Extra data": more than one value, so JSON Lines
                raise BltError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
        else:
            rows = whole if isinstance(whole, list) else [whole]
            yield from ((f"{path}: item {i}", i, row) for i, row in enumerate(rows))
            return
    with path.open("rb") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            where = f"{path}: line {i + 1}"
            try:
                yield where, i, json.loads(_utf8_text(line, where))
            except json.JSONDecodeError as exc:
                raise BltError(f"{where} is not valid JSON ({exc.msg}, column {exc.colno})") from None


def _utf8_text(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")  # a leading byte-order mark is dropped
    except UnicodeDecodeError as exc:
        raise BltError(
            f"{where} is not UTF-8 ({exc.reason} at byte {exc.start}); JSON must be UTF-8: convert the file, "
            f"e.g. iconv -f latin1 -t utf-8"
        ) from None


def _records(path: Path, text_field: str) -> Iterator[Document]:
    """Documents from a .jsonl/.json/.parquet file's `text_field` (null or empty values are skipped)."""
    if path.suffix.lower() == ".parquet":
        yield from _parquet_documents(path, text_field)
        return
    for where, i, row in _json_rows(path):
        if not isinstance(row, dict):
            kind = {list: "an array", str: "a string"}.get(type(row), f"a {type(row).__name__}")
            raise BltError(f"{where} is {kind}, not an object with a {text_field!r} field")
        if text_field not in row:
            raise BltError(f"{where} has no field {text_field!r} (fields: {list(row)[:8]}); set data.text_field")
        text = row[text_field]
        if text is not None and not isinstance(text, str):
            raise BltError(
                f"{where}: field {text_field!r} holds {brief(repr(text), 40)} ({type(text).__name__}), not a "
                "string; set data.text_field to the text field"
            )
        if text:  # a lone surrogate (a "\\ud83d" escape cut from its pair) is kept as its bytes, like invalid UTF-8
            yield Document(f"{path}#{i}", text.encode("utf-8", "surrogatepass"))


def _file_documents(path: Path, text_field: str) -> Iterator[Document]:
    if path.suffix.lower() in RECORD_SUFFIXES:
        yield from _records(path, text_field)
    else:  # any other file is text; bytes are bytes, so invalid UTF-8 is kept, not an error
        yield Document(str(path), path.read_bytes())


def hf_documents(name: str, split: str, text_field: str, num_proc: int | None = None) -> Iterator[Document]:
    """A Hugging Face dataset, streamed; with `num_proc`, downloaded and prepared by that many processes into
    memory-mapped Arrow files first (faster for big corpora, and later reads come from disk). Offline (or an
    unknown name) gives one clear line."""
    import datasets

    spec, _, config = name.partition(":")
    try:
        if num_proc:
            ds = datasets.load_dataset(spec, config or None, split=split, num_proc=num_proc)
        else:
            ds = datasets.load_dataset(spec, config or None, split=split, streaming=True)
        for i, row in enumerate(ds):
            if text_field not in row:
                raise BltError(
                    f"dataset {name!r} has no field {text_field!r} (fields: {list(row)}); set data.text_field"
                )
            if row[text_field]:
                yield Document(f"hf:{name}#{i}", str(row[text_field]).encode("utf-8"))
    except BltError:
        raise
    except Exception as exc:  # datasets raises many types for "not reachable" / "not found"
        offline = any(
            os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
            for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
        )
        why = "the hub is offline (HF_DATASETS_OFFLINE/HF_HUB_OFFLINE set)" if offline else type(exc).__name__
        raise BltError(
            f"cannot load HF dataset {name!r}: {why}; pass local files, a directory or a glob "
            f"instead, or a bundled corpus ({', '.join(BUNDLED)})"
        ) from None


def _looks_like_path(source: str) -> bool:
    """HF names look like `name`, `org/name` or `name:config`; local paths are explicit, have a file suffix, or
    more than one `/` (corpora/train/kjv)."""
    explicit = source.startswith(("/", "./", "../", "~")) or source.partition(":")[0].count("/") > 1
    return explicit or Path(source).suffix in TEXT_SUFFIXES + RECORD_SUFFIXES


def resolve_source(source: str) -> list[Path] | str:
    """A source's files (sorted) or, for bundled and HF names, the name itself."""
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in TEXT_SUFFIXES + RECORD_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )  # skip hidden
        if not files:
            raise BltError(f"directory {path} holds no text files ({', '.join(TEXT_SUFFIXES + RECORD_SUFFIXES)})")
        return files
    if path.is_file():
        return [path]
    if path.exists():  # a FIFO, /dev/null, a socket: reading it would block or yield nothing
        raise BltError(
            f"{source} is not a regular file (a pipe, device or socket); pass a text file, directory or glob "
            "(to read a pipe, save it to a file first)"
        )
    if source in BUNDLED:
        return source
    if glob.has_magic(source):
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(source), recursive=True) if Path(p).is_file())
        if not files:
            raise BltError(f"glob {source!r} matches no files")
        return files
    if _looks_like_path(source):
        raise BltError(
            f"file {source} does not exist; pass a text file, directory, glob, "
            f"a bundled corpus ({', '.join(BUNDLED)}) or an HF dataset name"
        )
    return source  # an HF dataset name such as "wikitext:wikitext-2-raw-v1" or "org/name"


def piece_starts(data: bytes, max_bytes: int = DOCUMENT_BYTES) -> list[int]:
    """Where the pieces of a text longer than `max_bytes` start: each piece is a run of whole paragraphs (ending
    after a blank line) of at most `max_bytes` and more than half of it; without a paragraph break in that range, a
    run of whole lines; without a line break, `max_bytes` bytes (less the end of a cut UTF-8 character). The last
    piece is whatever remains. `[0]` for a text that fits; `data[a:b]` over consecutive starts gives back `data`."""
    assert max_bytes >= 4, max_bytes  # room for a whole UTF-8 character
    starts = [0]
    while len(data) - starts[-1] > max_bytes:
        start = starts[-1]
        low, high = start + max_bytes // 2, start + max_bytes  # the cut lies in (low, high]
        cut = max(data.rfind(b"\n\n", low, high) + 2, data.rfind(b"\n\r\n", low, high) + 3)  # after a blank line
        if cut <= low:
            cut = data.rfind(b"\n", low, high) + 1
        if cut <= low:  # no line break: cut before the character that byte `high` belongs to
            cut = high
            while cut > high - 3 and 0x80 <= data[cut] < 0xC0:  # a continuation byte (≤ 3 per character)
                cut -= 1
            cut = high if 0x80 <= data[cut] < 0xC0 else cut  # 4 continuation bytes in a row: invalid anyway
        starts.append(cut)
    return starts


def _pieces(doc: Document) -> Iterator[Document]:
    """A document of at most DOCUMENT_BYTES as is; a longer one as its pieces (`piece_starts`), named `name@offset`."""
    starts = piece_starts(doc.data)
    if len(starts) == 1:
        yield doc
        return
    for a, b in zip(starts, [*starts[1:], len(doc.data)], strict=True):
        yield Document(f"{doc.name}@{a}", doc.data[a:b], doc.label)


def iter_documents(cfg: DataConfig) -> Iterator[Document]:
    """Every document of every source in `cfg.sources`, in order; empty documents are skipped, and one longer than
    DOCUMENT_BYTES (a big text file, a book in a record) is cut at paragraph boundaries into several (`_pieces`)."""
    for source in cfg.sources:
        resolved = resolve_source(source)
        if resolved == "udhr":
            docs: Iterable[Document] = udhr_documents()
        elif resolved == "stdlib":
            docs = stdlib_documents()
        elif isinstance(resolved, str):
            docs = hf_documents(resolved, cfg.hf_split, cfg.text_field, cfg.hf_num_proc)
        else:
            docs = (d for p in resolved for d in _file_documents(p, cfg.text_field))
        for doc in docs:
            if doc.data:
                yield from _pieces(doc)
