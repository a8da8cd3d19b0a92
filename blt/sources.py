"""Corpora as documents: local files, directories and globs (text, `.jsonl`/`.json`/`.parquet` records), Hugging
Face datasets, and the bundled `udhr` (UDHR excerpts from `gflanguages`, labelled by language) and `stdlib` (this
Python's standard library) corpora. `iter_documents(DataConfig)` is the one entry point; bytes are kept as they are
(invalid UTF-8 included).
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
from blt.errors import BltError

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


def _records(path: Path, text_field: str) -> Iterator[Document]:
    """Documents from a .jsonl/.json/.parquet file's `text_field`."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.ParquetFile(path)
        if text_field not in table.schema_arrow.names:
            raise BltError(
                f"{path} has no column {text_field!r} (columns: {table.schema_arrow.names}); set data.text_field"
            )
        i = 0
        for batch in table.iter_batches(columns=[text_field]):
            for text in batch.column(0).to_pylist():
                if text:
                    yield Document(f"{path}#{i}", text.encode("utf-8"))
                i += 1
        return
    with path.open("rb") as f:
        head = f.read(4096).lstrip(b" \t\r\n\xef\xbb\xbf")[:1]  # skip whitespace and a BOM
    if path.suffix == ".json" and head == b"[":
        rows = json.loads(path.read_bytes())
        lines: Iterable = (json.dumps(r) for r in rows)
    else:
        lines = path.open("rb")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BltError(f"{path}: line {i + 1} is not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or text_field not in row:
            raise BltError(f"{path}: line {i + 1} has no field {text_field!r}; set data.text_field")
        if row[text_field]:
            yield Document(f"{path}#{i}", str(row[text_field]).encode("utf-8"))


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


def iter_documents(cfg: DataConfig) -> Iterator[Document]:
    """Every document of every source in `cfg.sources`, in order; empty documents are skipped."""
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
                yield doc
