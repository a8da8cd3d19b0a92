"""`blt llm score|compare|segment` on a tiny Llama built locally (no download) and a tiny saved byte model: the
CLI's figures equal the library's, reports and plots are written, token patches equal `patch_starts`, and every
bad input is one red line with exit status 1."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from conftest import make_spiky_model, save_tiny_hf
from typer.testing import CliRunner

from blt.bytelm.checkpoint import save_model_dir
from blt.cli.llm import llm_app
from blt.config import Config
from blt.llm.report import TOKENIZER_WARNING
from blt.llm.scorers import aggregate, score_hf
from blt.llm.tokens import token_records
from blt.llm.views import RegionCuts, prompted, region_summary
from blt.patching.calibration import calibrate_threshold
from blt.patching.rules import patch_starts

transformers = pytest.importorskip("transformers")

TEXT = "the quick brown fox jumps over the lazy dog; héllo wörld ☃ 12"
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant: {% endif %}"
)


def _save_hf(path: Path) -> Path:
    """A 1-layer Llama with a ~300-token byte-level BPE (<s>/</s>, a chat template)."""
    return save_tiny_hf(path, TEXT, CHAT_TEMPLATE, seed=1)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(_save_hf(tmp_path_factory.mktemp("hf") / "tiny"))


@pytest.fixture(scope="module")
def byte_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = make_spiky_model(0)
    return save_model_dir(model, Config(model=model.cfg), {"steps": 0}, tmp_path_factory.mktemp("m") / "byte")


def run_llm(*args: str) -> tuple[int, str, str]:
    """Invoke `blt llm ...` through an app of its own (works before and after blt.cli registers the sub-app)."""
    app = typer.Typer()
    app.add_typer(llm_app, name="llm")
    result = CliRunner().invoke(app, ["llm", *map(str, args)], env={"COLUMNS": "80"})
    return result.exit_code, result.stdout, result.stderr


def ok_json(*args: str) -> dict:
    code, out, err = run_llm(*args, "--json")
    assert code == 0, (out, err)
    return json.loads(out)


def chat_response(dists: list[np.ndarray], sampled: list[int], k: int) -> dict:
    """An OpenAI chat completion reporting the top k of each distribution."""
    content = []
    for p, y in zip(dists, sampled, strict=True):
        top = [{"token": f"t{v}", "logprob": float(np.log(p[v]))} for v in np.argsort(-p, kind="stable")[:k]]
        content.append({"token": f"t{y}", "logprob": float(np.log(p[y])), "top_logprobs": top})
    return {"object": "chat.completion", "model": "m", "choices": [{"index": 0, "logprobs": {"content": content}}]}


P = [np.array([0.5, 0.2, 0.15, 0.1, 0.05]), np.array([0.7, 0.1, 0.1, 0.05, 0.05])]


# ------------------------------------------------------------------------------------------------------ score
def test_score_json_equals_library_aggregate(hf_dir: str) -> None:
    got = ok_json("score", "--model", hf_dir, "--text", TEXT)
    sc = score_hf(hf_dir, TEXT)
    assert got == json.loads(
        json.dumps(aggregate(sc) | {"prompted": prompted(sc), "regions": region_summary(sc, RegionCuts())})
    )
    assert got["prompted"] == "plain text (it has a chat template)" and sum(got["regions"]["shares"].values()) == 1
    assert got["mode"] == "teacher-forced" and got["chat_template"] is False and got["vocab_size"] == 300


def test_score_table_states_mode_template_tokenizer(hf_dir: str) -> None:
    code, out, err = run_llm("score", "--model", hf_dir, "--text", TEXT, "--chat", "--user", "say it")
    assert code == 0, err
    for want in ("teacher-forced", "chat template applied", "vocab sha1", "300", "branching factor", "bits per byte"):
        assert want in out, want
    assert ok_json("score", "--model", hf_dir, "--text", TEXT, "--chat")["chat_template"] is True


def test_score_generate_is_on_policy(hf_dir: str) -> None:
    args = ("score", "--model", hf_dir, "--text", "the cat", "--generate", "6", "--samples", "2", "--seed", "3")
    got = ok_json(*args)
    assert got["mode"] == "on-policy" and got["documents"] == 2 and 2 <= got["positions"] <= 12
    assert any("before temperature" in n for n in got["notes"])
    code, out, _ = run_llm(*args)
    assert code == 0 and "on-policy" in out and "before temperature" in " ".join(out.split())


def test_score_logprobs_json_gives_bounds(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(chat_response(P, [0, 2], k=2)))
    got = ok_json("score", "--logprobs-json", path, "--vocab-size", "5")
    assert got["mean_entropy_bits_lower"] <= got["mean_entropy_bits_upper"] and got["censored"] == 0
    true_bits = np.mean([-(p * np.log2(p)).sum() for p in P])
    assert got["mean_entropy_bits_lower"] <= true_bits <= got["mean_entropy_bits_upper"]
    code, out, _ = run_llm("score", "--logprobs-json", path, "--vocab-size", "5")
    assert code == 0 and f"[{got['mean_entropy_bits_lower']:.3f}, {got['mean_entropy_bits_upper']:.3f}]" in out


def test_score_out_writes_report(hf_dir: str, tmp_path: Path) -> None:
    code, out, err = run_llm("score", "--model", hf_dir, "--text", TEXT, "--out", tmp_path / "r")
    assert code == 0, err
    names = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"report.md", "results.json", "entropy_by_position.png", "entropy_histogram.png"} <= names
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["models"][0]["source"] == hf_dir and results["warnings"] == []
    report = (tmp_path / "r" / "report.md").read_text()
    assert "teacher-forced" in report and "entropy_histogram.png" in report


def test_score_token_by_token(hf_dir: str, tmp_path: Path) -> None:
    """--tokens, --spans, --jsonl, --csv, --html, --map and --out give the same per-token numbers as the library."""
    files = {k: tmp_path / f"t.{k}" for k in ("jsonl", "csv", "html", "png")}
    args = ["score", "--model", hf_dir, "--text", TEXT + "\nSecond line. Third sentence!", "--tokens"]
    args += ["--spans", "sentence", "--out", tmp_path / "r", "--map", files["png"]]
    args += [x for k in ("jsonl", "csv", "html") for x in (f"--{k}", files[k])]
    code, out, err = run_llm(*args)
    assert code == 0, err
    want = json.loads(json.dumps(list(token_records(score_hf(hf_dir, TEXT + "\nSecond line. Third sentence!")))))
    assert [json.loads(line) for line in files["jsonl"].read_text().splitlines()] == want
    with open(files["csv"], newline="") as f:  # a token holding "\n" is one quoted cell
        assert [r["token"] for r in csv.DictReader(f)] == [r["token"] for r in want]
    assert files["html"].read_text().count('class="u') == len(want) and files["png"].read_bytes()[:4] == b"\x89PNG"
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert (
        results["tokens"] == want
        and [r["text"] for r in results["spans"][0]["line"]][1] == "Second line. Third sentence!"
    )
    sentences = [r["text"] for r in results["spans"][0]["sentence"]]  # a lone line break (wrapping) goes on
    assert sentences == [TEXT + "\nSecond line. ", "Third sentence!"]
    assert {"tokens.html", "entropy_varentropy.png"} <= {p.name for p in (tmp_path / "r").iterdir()}
    flat = " ".join(out.split())
    assert "entropy (bits):" in flat and "Third sentence!" in flat and "│" in out  # no colours here: separators


def test_chat_auto_applies_each_models_template_where_it_has_one(hf_dir: str, tmp_path: Path) -> None:
    """Base (no template) vs instruct (a template) in one command: --chat auto prompts each as it can, and says so."""
    base = str(save_tiny_hf(tmp_path / "base", TEXT, None, seed=2))
    got = ok_json(
        "compare", "--model", hf_dir, "--model", base, "--text", "the cat", "--chat", "auto", "--generate", "3"
    )
    assert [m["chat_template"] for m in got["models"]] == [True, False]
    assert [m["prompted"] for m in got["models"]] == ["chat template applied", "plain text"]
    plain = ok_json("compare", "--model", hf_dir, "--model", base, "--text", "the cat")
    assert [m["prompted"] for m in plain["models"]] == ["plain text (it has a chat template)", "plain text"]
    code, _, err = run_llm("compare", "--model", hf_dir, "--model", base, "--text", "the cat", "--chat")
    assert code == 1 and "has no chat template" in err  # --chat alone still insists on a template
    page = tmp_path / "p.html"
    args = ("--text", "the cat", "--chat", "auto", "--generate", "3", "--html", page)
    assert run_llm("compare", "--model", hf_dir, "--model", base, *args)[0] == 0
    text = page.read_text()  # side by side, each sample under its prompt, each column saying how it was prompted
    assert text.count('<p class="doctitle">prompt: the cat</p>') == 2 and text.count('class="view"') == 2
    assert "on-policy, chat template applied" in text and "on-policy, plain text" in text


# ---------------------------------------------------------------------------------------------------- compare
def test_compare_hf_and_byte_model_warns_tokenizers_differ(hf_dir: str, byte_dir: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text(TEXT + "\n\nthe cat sat on the mat\n")
    out_dir = tmp_path / "cmp"
    args = ("compare", "--model", hf_dir, "--model", f"blt:{byte_dir}", "--prompts", prompts, "--out", out_dir)
    code, out, err = run_llm(*args)
    assert code == 0, err
    assert "warning:" in err and TOKENIZER_WARNING in " ".join(err.split())
    assert "bytes (UTF-8)" in out and "entropy per byte" in out
    results = json.loads((out_dir / "results.json").read_text())
    assert [m["source"] for m in results["models"]] == [hf_dir, f"blt:{byte_dir}"]
    assert all(m["documents"] == 2 for m in results["models"])
    assert TOKENIZER_WARNING in (out_dir / "report.md").read_text()
    assert (out_dir / "entropy_by_position.png").stat().st_size > 0 and (out_dir / "entropy_histogram.png").exists()


def test_compare_of_empty_samples_warns_and_saves_the_generations(
    hf_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instruct model compared without --chat ends each sample at its first token: a warning names --chat, and
    generations.jsonl shows the (empty) samples."""
    import blt.llm.scorers

    eos = transformers.AutoTokenizer.from_pretrained(hf_dir).eos_token_id
    monkeypatch.setattr(blt.llm.scorers, "_sample", lambda logits, *a: eos)
    prompts = tmp_path / "p.txt"
    prompts.write_text("the cat\nsay hi\n")
    out_dir = tmp_path / "cmp"
    args = ("compare", "--model", hf_dir, "--model", hf_dir, "--prompts", prompts, "--generate", "4", "--out", out_dir)
    code, out, err = run_llm(*args, "--samples", "2")
    assert code == 0, err
    flat = " ".join(err.split())
    assert "warning:" in err and "4 of 4 samples are empty" in flat and "pass --chat" in flat
    rows = [json.loads(line) for line in (out_dir / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and {r["text"] for r in rows} == {""} and {r["tokens"] for r in rows} == {1}
    assert [(r["prompt"], r["sample"]) for r in rows[:4]] == [(p, i) for p in ("the cat", "say hi") for i in (0, 1)]
    assert "generations.jsonl" in (out_dir / "report.md").read_text()


def test_without_the_llm_extra_the_extra_is_named(hf_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` fails, as when not installed
    compare = ("compare", "-m", hf_dir, "-m", "blt:default", "--text", "x")
    for args in (("score", "--model", hf_dir, "--text", "x"), compare):
        code, out, err = run_llm(*args)
        assert code == 1 and "Traceback" not in out + err, err
        assert err.startswith("error:") and "pip install 'blt-patcher[llm]'" in " ".join(err.split()), err


# ---------------------------------------------------------------------------------------------------- segment
def test_segment_json_equals_patch_starts(hf_dir: str) -> None:
    h = score_hf(hf_dir, TEXT).entropy_nats
    got = ok_json("segment", "--model", hf_dir, "--text", TEXT, "--threshold", "1.0")
    assert got["starts"] == patch_starts(h, threshold=1.0).tolist() and got["threshold_nats"] == 1.0
    assert sum(got["lengths"]) == len(h) == len(got["tokens"]) and np.allclose(got["entropies_nats"], h, atol=1e-6)
    got = ok_json("segment", "--model", hf_dir, "--text", TEXT, "--rule", "monotonic", "--target-tokens-per-patch", 3)
    theta = calibrate_threshold(h, 3, rule="monotonic")
    assert got["threshold_nats"] == pytest.approx(theta)
    assert got["starts"] == patch_starts(h, rule="monotonic", relative_threshold=theta).tolist()


def test_segment_terminal_html_plot(hf_dir: str, tmp_path: Path) -> None:
    args = ("segment", "--model", hf_dir, "--text", TEXT, "--target-tokens-per-patch", "3")
    code, out, err = run_llm(*args, "--html", tmp_path / "p.html", "--plot", tmp_path / "p.png")
    assert code == 0, err
    assert "│" in out and out.replace("│", "").splitlines()[0] == TEXT and "tokens/patch" in out
    assert "class='patch'" in (tmp_path / "p.html").read_text() and (tmp_path / "p.png").stat().st_size > 0


# -------------------------------------------------------------------------------------------------- bad input
def _files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "bad.json").write_text('{"choices": [\n  {"logprobs": \n')
    over = chat_response(P, [0, 1], k=2)
    over["choices"][0]["logprobs"]["content"][1]["top_logprobs"][1]["logprob"] = -0.1  # 0.7 + 0.905 > 1
    (tmp_path / "over.json").write_text(json.dumps(over))
    (tmp_path / "good.json").write_text(json.dumps(chat_response(P, [0, 1], k=2)))
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    return {p.stem: p for p in tmp_path.iterdir()}


BAD = [
    (["score", "--logprobs-json", "{bad}"], "not valid JSON (line"),
    (["score", "--logprobs-json", "{over}", "--vocab-size", "5"], "sum to"),
    (["score", "--model", "/no/such/model", "--text", "x"], "not found"),
    (["score", "--model", "blt:/no/such/model", "--text", "x"], "not found"),
    (["score", "--model", "{hf}", "--file", "/no/such/file.txt"], "does not exist"),
    (["score", "--model", "no-such-org/no-such-model", "--text", "x"], "offline"),
    (["score", "--logprobs-json", "{good}", "--generate", "5", "--vocab-size", "5"], "drop one"),
    (["score", "--model", "{hf}", "--text", ""], "empty"),
    (["score", "--model", "{hf}", "--file", "{empty}"], "empty"),
    (["score", "--model", "{hf}"], "give exactly one of --text, --file, --logprobs-json"),
    (["score", "--model", "{hf}", "--text", "x", "--file", "{empty}"], "(got --text and --file)"),
    (["score", "--text", "x"], "pass --model"),
    (["score", "--model", "blt:default", "--text", "x", "--generate", "3"], "byte model scores given text only"),
    (["score", "--model", "{hf}", "--text", "x", "--chat", "--dtype", "float8"], "dtype must be one of"),
    (["compare", "--model", "{hf}", "--text", "x"], "at least two models"),
    (["segment", "--model", "{hf}", "--text", "x"], "exactly one of --threshold"),
    (["segment", "--logprobs-json", "{good}"], "No such option"),
    (["score", "--model", "{hf}", "--text", "x", "--chat", "yes"], "--chat takes no value but 'auto'"),
    (["score", "--model", "{hf}", "--text", "x", "--region-cuts", "3"], "--region-cuts takes ENTROPY_BITS,VARENTROPY"),
    (["score", "--model", "{hf}", "--text", "x", "--region-cuts", "3,-1"], "two finite numbers > 0"),
    (["score", "--model", "{hf}", "--text", "x", "--tokens", "--json"], "with --json write the tokens with --jsonl"),
    (["score", "--model", "{hf}", "--text", "x", "--jsonl", "{empty}.csv"], "use a name ending in .jsonl"),
    (["score", "--logprobs-json", "{good}", "--vocab-size", "5", "--map", "{empty}.png"], "needs exact distributions"),
]


@pytest.mark.parametrize(("args", "pattern"), BAD)
def test_bad_input_is_one_red_line(args: list[str], pattern: str, hf_dir: str, tmp_path: Path) -> None:
    names = {k: str(v) for k, v in _files(tmp_path).items()} | {"hf": hf_dir}
    code, out, err = run_llm(*(a.format(**names) for a in args))
    if pattern == "No such option":  # typer's own usage error (exit 2), for an option a command lacks
        assert code == 2 and pattern in err
        return
    assert code == 1 and "Traceback" not in out + err, (code, out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert pattern in " ".join(err.split()), err


def test_gguf_without_extra_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    import blt.llm.scorers

    real = importlib.util.find_spec
    monkeypatch.setattr(
        blt.llm.scorers.importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name)
    )
    gguf = _files(tmp_path)["model"]
    code, _, err = run_llm("score", "--model", gguf, "--text", "x")
    assert code == 1 and err.startswith("error:") and "GGUF models need gguf" in " ".join(err.split()), err
