"""Bad-input cases: corpora in record formats, API logprobs files and damaged model files (one table of
`faults.Case`; see test_faults.py). Only true mistakes: a binary file or an image passed as a text corpus is data
(bytes are bytes), not an error, so it is not here."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from faults import Case, Kit

TINY_CONFIG = str(Path(__file__).parents[1] / "configs" / "tiny.yaml")


def calibrate(path: Path | str) -> list[str]:
    """`blt calibrate` reads the corpus before it loads the model: the cheapest command that meets a bad corpus."""
    return ["calibrate", "--data", str(path), "--target-bytes-per-patch", "4"]


def parquet(k: Kit, name: str, columns: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return k.write(name, buffer.getvalue())


def model_copy(k: Kit, name: str = "m") -> Path:
    return Path(shutil.copytree(k.model, k.dir / name))


def damaged_model(k: Kit, file: str, content: bytes | None) -> list[str]:
    """`blt entropy` with a copy of the tiny model whose `file` is replaced by `content` (None: deleted)."""
    path = model_copy(k)
    if content is None:
        (path / file).unlink()
    else:
        (path / file).write_bytes(content(path / file) if callable(content) else content)
    return ["entropy", "some text", "--model", str(path)]


def logprobs(k: Kit, content: bytes | str) -> list[str]:
    k.write("r.json", content)
    return ["llm", "score", "--logprobs-json", "r.json", "--vocab-size", "5"]


def chat(logprob: str = "-0.1", extra: str = "") -> str:
    """An OpenAI chat completion of one position, its logprob spelled as given (NaN and numbers alike)."""
    top = '[{"token": "a", "logprob": -0.1}]'
    entry = f'{{"token": "a", "logprob": {logprob}, "top_logprobs": {top}{extra}}}'
    return f'{{"choices": [{{"logprobs": {{"content": [{entry}]}}}}]}}'


LATIN1_JSONL = b'{"text": "fine"}\n{"text": "caf\xe9 cr\xe8me"}\n'

CASES = [
    # corpora: record files
    Case(
        "calibrate-parquet-int-text-column",
        lambda k: calibrate(parquet(k, "t.parquet", {"text": [1, 2], "body": ["a", "b"]})),
        "column 'text' holds int64, not text; set data.text_field to a string column (string columns: ['body'])",
    ),
    Case(
        "calibrate-parquet-corrupt",
        lambda k: calibrate(k.write("t.parquet", b"PAR1 half a parquet file")),
        "t.parquet is not a readable Parquet file",
    ),
    Case(
        "calibrate-parquet-truncated",
        lambda k: calibrate(
            k.write("t.parquet", parquet(k, "full.parquet", {"text": ["a" * 500] * 20}).read_bytes()[:300])
        ),
        "it may be truncated or corrupted",
    ),
    Case(
        "compare-json-array-malformed",
        lambda k: ["compare", "--data", str(k.write("r.json", '[{"text": "a"},\n {"text": ')), "--segmenters", "space"],
        "r.json is not valid JSON (line 2, column 11",
    ),
    Case(
        "calibrate-jsonl-latin1",
        lambda k: calibrate(k.write("r.jsonl", LATIN1_JSONL)),
        "r.jsonl: line 2 is not UTF-8 (invalid continuation byte at byte 13); JSON must be UTF-8",
    ),
    Case(
        "train-jsonl-latin1",
        lambda k: ["train", "--config", TINY_CONFIG, "--data", str(k.write("r.jsonl", LATIN1_JSONL)), "--out", "run"],
        "r.jsonl: line 2 is not UTF-8",
    ),
    Case(
        "calibrate-jsonl-line-not-an-object",
        lambda k: calibrate(k.write("r.jsonl", '{"text": "a"}\n["b", "c"]\n')),
        "r.jsonl: line 2 is an array, not an object with a 'text' field",
    ),
    Case(
        "calibrate-jsonl-no-text-field",
        lambda k: calibrate(k.write("r.jsonl", '{"content": "a", "id": 1}\n')),
        "line 1 has no field 'text' (fields: ['content', 'id']); set data.text_field",
    ),
    Case(
        "calibrate-jsonl-text-not-a-string",
        lambda k: calibrate(k.write("r.jsonl", '{"text": ["a", "b"]}\n')),
        "field 'text' holds ['a', 'b'] (list), not a string",
    ),
    Case(
        "calibrate-jsonl-empty",
        lambda k: calibrate(k.write("r.jsonl", "")),
        "contains no text",
    ),
    Case(
        "calibrate-glob-matches-nothing",
        lambda k: calibrate("corpus/**/*.txt"),
        "glob 'corpus/**/*.txt' matches no files",
    ),
    Case(
        "calibrate-directory-of-binary-files",
        lambda k: calibrate(k.write("d/photo.png", b"\x89PNG").parent),
        "holds no text files (.txt,",
    ),
    # API logprobs files
    Case(
        "llm-logprobs-bytes-out-of-range",
        lambda k: logprobs(k, chat(extra=', "bytes": [97, 300]')),
        "content[0].bytes must be a list of byte values 0..255, got [97, 300]",
    ),
    Case(
        "llm-logprobs-not-utf8",
        lambda k: logprobs(k, chat().encode().replace(b'"a"', b'"\xe9"', 1)),
        "r.json is not UTF-8 (invalid continuation byte at byte",
    ),
    Case(
        "llm-logprobs-nan",
        lambda k: logprobs(k, chat("NaN")),
        "content[0].logprob must be a log-probability ≤ 0, got nan",
    ),
    Case(
        "llm-logprobs-positive",
        lambda k: logprobs(k, chat("0.7")),
        "content[0].logprob must be a log-probability ≤ 0, got 0.7",
    ),
    Case(
        "llm-logprobs-empty-file",
        lambda k: logprobs(k, "\n"),
        "r.json is empty",
    ),
    Case(
        "llm-logprobs-legacy-bytes-token",
        lambda k: logprobs(
            k, json.dumps({"tokens": ["bytes:\\u2603"], "token_logprobs": [-0.1], "top_logprobs": [{"x": -0.1}]})
        ),
        "tokens[0] must spell bytes as \\xNN escapes",
    ),
    Case(
        "llm-score-file-not-utf8",
        lambda k: ["llm", "score", "--model", "m", "--file", k.write("t.txt", b"caf\xe9").name],
        "--file t.txt is not UTF-8 text (unexpected end of data at byte 3)",
    ),
    # damaged models
    Case(
        "entropy-card-garbage",
        lambda k: damaged_model(k, "card.json", b"{not json"),
        "card.json is not valid JSON (line 1: Expecting property name enclosed in double quotes); restore it",
    ),
    Case(
        "entropy-weights-missing",
        lambda k: damaged_model(k, "model.safetensors", None),
        "m is not a blt model: model.safetensors is missing",
    ),
    Case(
        "entropy-weights-truncated",
        lambda k: damaged_model(k, "model.safetensors", lambda p: p.read_bytes()[:1000]),
        "model.safetensors is not readable safetensors (Error while deserializing header",
    ),
    Case(
        "entropy-config-garbage",
        lambda k: damaged_model(k, "config.yaml", b"model: [unclosed\n"),
        "config.yaml is not valid YAML",
    ),
    Case(
        "info-weights-file-not-its-directory",
        lambda k: ["info", "--model", str(model_copy(k) / "model.safetensors")],
        "pass the model directory that holds model.safetensors",
    ),
    Case(
        "entropy-ckpt-garbage",
        lambda k: ["entropy", "x", "--model", str(k.write("g.ckpt", bytes(range(7, 250))))],
        "g.ckpt is not a readable checkpoint (UnpicklingError: Unsupported operand",
    ),
    Case(
        "entropy-ckpt-empty",
        lambda k: ["entropy", "x", "--model", str(k.write("g.ckpt", b""))],
        "g.ckpt is not a readable checkpoint (EOFError, an empty or cut-off file)",
    ),
]
