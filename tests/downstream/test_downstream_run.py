"""The downstream experiment end to end on tiny settings: a row per run with matched FLOPs, the summary over seeds
by hand, rates matched on the calibration documents, resume computing only missing runs, the output-directory
guards, the CLI and its mistakes, the shipped configs; and the byte-unit sanity check against `blt train`."""

from __future__ import annotations

import csv
import json
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO, assert_user_error, run_cli, save_spiky

import blt.downstream.run
from blt.config import ConfigError
from blt.downstream.config import downstream_from_dict, load_downstream, shipped_downstream
from blt.downstream.model import flops_per_byte
from blt.downstream.report import mean_std, summarise
from blt.downstream.run import calibration_split, run_downstream
from blt.errors import BltError


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    """Python's own sources as 2 kB documents: two modules to train on, eight documents of a third held out (two of
    them calibrate)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    train, held = tmp_path / "train", tmp_path / "held"
    train.mkdir()
    held.mkdir()
    for name in ("argparse.py", "dataclasses.py"):
        text = (stdlib / name).read_bytes()[:60_000]
        for j in range(0, len(text), 2000):
            (train / f"{name}.{j}.txt").write_bytes(text[j : j + 2000])
    text = (stdlib / "textwrap.py").read_bytes()
    for j in range(8):
        (held / f"{j}.txt").write_bytes(text[j * 2000 : (j + 1) * 2000])
    return {"train": train, "held": held, "model": save_spiky(tmp_path / "spiky")}


def config(corpus: dict[str, Path], **extra: Any) -> dict[str, Any]:
    return {
        "name": "tiny",
        "corpora": [{"name": "udhr", "sources": [str(corpus["train"])], "eval_sources": [str(corpus["held"])]}],
        "segmenters": [
            *("byte", "fixed", "space"),
            {"kind": "bpe", "vocab_size": 600},
            {"kind": "sp-unigram", "vocab_size": 600},
            "entropy-global",
        ],
        "seeds": [0, 1],
        "entropy_model": str(corpus["model"]),
        "model": {"d_local": 16, "local_heads": 2, "d_latent": 64, "latent_heads": 1, "context": 32},
        "reference_bytes_per_unit": 2.0,  # short units on this small corpus (BPE-600: ~2-3 bytes)
        "train": {"batch_size": 4, "max_steps": 4, "precision": "32-true", "accelerator": "cpu"},
        **extra,
    }


def test_a_row_per_run_with_matched_flops(tmp_path: Path, corpus: dict[str, Path]) -> None:
    cfg = downstream_from_dict(config(corpus))
    result = run_downstream(cfg, tmp_path / "out", warn=lambda m: None)
    rows = result["rows"]
    assert len(rows) == 6 * 2 and {r["seed"] for r in rows} == {0, 1}
    target = flops_per_byte(cfg.model, cfg.reference_bytes_per_unit)["total"]
    by = {r["segmenter"]: r for r in rows if r["seed"] == 0}
    assert set(by) == {
        *("byte", "fixed (rate-matched)", "space", "bpe-600", "sp-unigram-600", "entropy-global (rate-matched)")
    }
    for r in rows:  # training FLOPs/byte matched (one width step); inference counted on the scored text's units
        assert abs(r["train_flops_per_byte"] / (3 * target) - 1) < 0.1, r
        sized = downstream_from_dict(
            {**config(corpus), "model": {**config(corpus)["model"], "d_latent": r["d_latent"]}}
        )
        assert r["flops_per_byte"] == pytest.approx(flops_per_byte(sized.model, r["bytes_per_unit"])["total"], rel=1e-3)
        assert r["steps"] == 4 and r["train_bytes"] == 4 * 4 * 32 and r["eval_bytes"] == rows[0]["eval_bytes"]
        assert (r["boundary_bits_per_byte"] > 0) == (r["kind"] in ("space", "bpe", "sp-unigram"))
    assert by["byte"]["bytes_per_unit"] == 1 and by["byte"]["d_latent"] < cfg.model.d_latent
    # rate-matched rows match BPE's bytes/unit on the calibration documents
    for name in ("fixed (rate-matched)", "entropy-global (rate-matched)"):
        assert by[name]["calibration_bytes_per_unit"] == pytest.approx(
            by["bpe-600"]["calibration_bytes_per_unit"], rel=0.05
        )
    summary = {(s["segmenter"]): s for s in result["summary"]}
    pair = [r["bits_per_byte"] for r in rows if r["segmenter"] == "space"]
    assert summary["space"]["bits_per_byte"] == pytest.approx(np.mean(pair))
    assert summary["space"]["bits_per_byte_std"] == pytest.approx(np.std(pair, ddof=1))
    out = tmp_path / "out"
    for name in ("results.csv", "summary.csv", "report.md", "bits_vs_flops.png", "downstream.json"):
        assert (out / name).is_file(), name
    assert len(list(csv.DictReader((out / "results.csv").open()))) == 12
    meta = json.loads((out / "downstream.json").read_text())
    assert meta["complete"] and meta["corpora"]["udhr"]["calibration_documents"] == 2
    assert "bpe-600" in (out / "report.md").read_text()


def test_resume_runs_only_what_is_missing(
    tmp_path: Path, corpus: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = downstream_from_dict(
        {**config(corpus), "segmenters": ["byte", {"kind": "fixed", "patch_size": 3}], "rate": None}
    )
    out = tmp_path / "out"
    first = run_downstream(cfg, out, warn=lambda m: None)
    (out / "runs" / f"{sorted(p.stem for p in (out / 'runs').glob('*.json'))[0]}.json").unlink()
    calls = []
    real = blt.downstream.run.execute
    monkeypatch.setattr(blt.downstream.run, "execute", lambda run, threads=None: calls.append(run) or real(run))
    again = run_downstream(cfg, out, resume=True, warn=lambda m: None)
    assert len(calls) == 1
    keep = ("segmenter", "seed", "bits_per_byte")
    assert [{k: r[k] for k in keep} for r in again["rows"]] == [{k: r[k] for k in keep} for r in first["rows"]]
    with pytest.raises(BltError, match="--resume"):
        run_downstream(cfg, out)
    changed = downstream_from_dict({**config(corpus), "segmenters": ["byte"], "rate": None})
    with pytest.raises(BltError, match="different config"):
        run_downstream(changed, out, resume=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(BltError, match="not a blt downstream run"):
        run_downstream(cfg, tmp_path / "mine", force=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_calibration_split_by_hand() -> None:
    """Four documents of 10 bytes at 0.25: one calibrates (10 ≥ 0.25 · 40), three are scored; a single document is
    cut at the line break nearest its first quarter."""
    docs = [bytes([i]) * 10 for i in range(4)]
    calib, scored = calibration_split(docs, 0.25)
    assert len(calib) == 1 and len(scored) == 3 and set(calib) | set(scored) == set(docs)
    one = b"ab\ncd\nef\ngh\n"  # one big file: its head calibrates, cut at a line break
    assert calibration_split([one], 0.25) == ([b"ab\n"], [b"cd\nef\ngh\n"])
    assert calibration_split([one], 0.0) == ([], [one])


def test_mean_std_by_hand() -> None:
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([5.0]) == (5.0, 0.0)
    rows = [
        {
            "corpus": "c",
            "segmenter": "s",
            "bits_per_byte": b,
            "byte_bits_per_byte": b,
            "boundary_bits_per_byte": 0.0,
            "train_seconds": 1.0,
            "train_pflops": 0.0,
        }
        for b in (1.0, 3.0)
    ]
    assert summarise(rows)[0]["bits_per_byte"] == 2.0 and summarise(rows)[0]["bits_per_byte_std"] == pytest.approx(
        2**0.5
    )


def test_config_errors_all_at_once(corpus: dict[str, Path]) -> None:
    raw = config(
        corpus,
        segmenters=["surprisal-budget", {"kind": "bpe", "vocab_size": [300, 400]}, "byte", "byte", "fixed"],
        seeds=[],
        rate="sp-unigram",
        model={"d_latent": 30, "latent_heads": 4},
        train={"max_steps": 0, "budget_minutes": -1, "nope": 1},
    )
    with pytest.raises(ConfigError) as err:
        downstream_from_dict(raw)
    text = str(err.value)
    for part in (
        "surprisal-budget reads the byte",
        "one value per parameter",
        "appear twice",
        "seeds must be",
        "rate 'sp-unigram' names no segmenter",
        "so fixed cannot be rate-matched",
        "model.d_latent (30) must be a multiple",
        "train.max_steps",
        "train.budget_minutes",
        "unknown key train.nope",
    ):
        assert part in text, part


def test_shipped_configs_load() -> None:
    shipped = shipped_downstream()
    assert set(shipped) == {"cpu", "gpu"}
    for name in shipped:
        cfg = load_downstream(name)
        assert len(cfg.seeds) == 3 and {s.kind for s in cfg.segmenters} >= {
            "byte",
            "fixed",
            "space",
            "bpe",
            "entropy-global",
            "entropy-budget",
        }
        assert {c.name for c in cfg.corpora} == {"prose", "code"}
    assert (REPO / "configs" / "downstream").is_dir()


def test_cli_runs_and_refuses_mistakes(tmp_path: Path, corpus: dict[str, Path]) -> None:
    base = ["downstream", "cpu", "--data", str(corpus["train"]), "--eval-data", str(corpus["held"])]
    tiny = [
        "--segmenters",
        "byte,space",
        "--seeds",
        "0",
        "--steps",
        "2",
        "--set",
        f"entropy_model={corpus['model']}",
        "--set",
        "model.d_local=16",
        "--set",
        "model.local_heads=2",
        "--set",
        "model.d_latent=32",
        "--set",
        "model.context=32",
        "--set",
        "train.batch_size=2",
        "--set",
        "train.precision=32-true",
    ]
    code, out, err = run_cli(*base, *tiny, "--out", str(tmp_path / "o"), columns=200)
    assert code == 0, err
    assert "space" in out and "2 runs in" in out and (tmp_path / "o" / "report.md").is_file()
    assert_user_error([*base, *tiny, "--out", str(tmp_path / "o")], "already holds a downstream run")
    assert_user_error(["downstream", "nope.yaml"], "does not exist")
    assert_user_error(["downstream", "cpu", "--eval-data", str(corpus["held"])], "--eval-data needs --data")
    assert_user_error([*base, "--segmenters", "byte,unknownseg"], "unknown segmenter 'unknownseg'")
    code, out, _ = run_cli("downstream", "--list", columns=200)
    assert code == 0 and "cpu" in out and "gpu" in out


def test_byte_units_land_near_blt_train(tmp_path: Path) -> None:
    """The sanity check: with one-byte units the patch-level LM is a byte LM; trained as long on the same documents
    at about the same FLOPs/byte (158 k vs 156 k), its held-out bits/byte must land near those of `blt train`'s byte
    model scored the same way (windows of the context, no overlap). Seen here at 150 steps: 3.71 vs 4.12 (ratio
    0.90); at 400: 2.94 vs 3.24 (0.91). A leak (seeing the byte it predicts) would give far less, a broken decoder
    far more."""
    from blt.bytelm.checkpoint import load_model
    from blt.bytelm.data import build_cache
    from blt.bytelm.entropy import score
    from blt.bytelm.train import train
    from blt.compare.run import StreamDocuments
    from blt.config import Config, DataConfig, ModelConfig, TrainConfig
    from blt.downstream.model import PatchLMConfig
    from blt.downstream.train import DownstreamTrainConfig, build_split, evaluate, fit

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    data = tmp_path / "data"
    data.mkdir()
    for name in ("argparse.py", "subprocess.py", "typing.py", "inspect.py"):
        text = (stdlib / name).read_bytes()
        for j in range(0, len(text), 4000):
            (data / f"{name}.{j}.txt").write_bytes(text[j : j + 4000])
    held = [(stdlib / "dataclasses.py").read_bytes()[:30000]]
    steps, batch, context = 150, 16, 128
    data_cfg = DataConfig(sources=[str(data)], val_fraction=0.02)
    train_docs = list(StreamDocuments(build_cache(data_cfg).train))  # the documents blt train trains on

    def one(d: bytes) -> np.ndarray:
        return np.arange(len(d))

    patch_cfg = PatchLMConfig(d_local=32, local_heads=2, d_latent=32, latent_heads=2, context=context)
    down = DownstreamTrainConfig(batch_size=batch, max_steps=steps, warmup_steps=10, precision="32-true")
    module, _ = fit(patch_cfg, down, build_split(train_docs, one), seed=0, pays_boundaries=False)
    patch_bpb = evaluate(module.model, build_split(held, one), pays_boundaries=False)["bits_per_byte"]

    cfg = Config(
        model=ModelConfig(n_layers=4, d_model=32, n_heads=2, context=context),
        data=data_cfg,
        train=TrainConfig(
            batch_size=batch,
            max_steps=steps,
            warmup_steps=10,
            precision="32-true",
            val_every_steps=10**6,
            ckpt_every_steps=10**6,
            progress_bar=False,
        ),
    )
    lm = load_model(train(cfg, tmp_path / "run"))
    scores = score(lm, held, stride=context - 1)  # windows of context - 1 bytes after BOS, no overlap
    byte_bpb = float(sum(s.surprisal_nats.sum() for s in scores) / (np.log(2) * sum(map(len, held))))
    assert 0.8 < patch_bpb / byte_bpb < 1.2, (patch_bpb, byte_bpb)


def test_ctrl_c_says_what_is_saved(tmp_path: Path, corpus: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during the second run: the first run's row is on disk, and the message says how to finish."""
    cfg = downstream_from_dict({**config(corpus), "segmenters": ["byte"], "rate": None})
    real = blt.downstream.run.execute
    calls: list[Any] = []

    def interrupt(run: Any, threads: Any = None) -> Any:
        calls.append(run)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(run)

    monkeypatch.setattr(blt.downstream.run, "execute", interrupt)
    with pytest.raises(KeyboardInterrupt, match=r"1 of 2 runs are saved .* --resume"):
        run_downstream(cfg, tmp_path / "out", warn=lambda m: None)
    assert len(list((tmp_path / "out" / "runs").glob("*.json"))) == 1
    monkeypatch.setattr(blt.downstream.run, "execute", real)
    assert len(run_downstream(cfg, tmp_path / "out", resume=True, warn=lambda m: None)["rows"]) == 2


def test_one_big_file_in_many_scripts(tmp_path: Path, samples: dict[str, str]) -> None:
    """A corpus it never saw, as one file of UDHR specimens in many scripts: the held-out text is cut so a share
    of it calibrates the rate-matched rows (it used to fall back to the training split's values); a missing file is
    one line and exit 1."""
    big = tmp_path / "udhr_all.txt"
    big.write_text("\n\n".join(list(samples.values()) * 4), encoding="utf-8")
    args = [
        "downstream", "cpu", "--data", str(big), "--segmenters", "byte,fixed,bpe", "--seeds", "0", "--steps", "2",
        "--set", "model.context=64", "--set", "train.batch_size=2", "--set", "train.precision=32-true",
    ]  # fmt: skip
    code, out, err = run_cli(*args, "--out", str(tmp_path / "o"), columns=200)
    assert code == 0, err
    meta = json.loads((tmp_path / "o" / "downstream.json").read_text())
    assert meta["corpora"]["udhr_all"]["calibration_bytes"] > 0 and "fixed*" in out
    assert_user_error([*args[:3], str(tmp_path / "missing.txt"), *args[4:]], "does not exist")
