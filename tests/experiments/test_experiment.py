"""Experiment configs: grid expansion (counts, order, labels, stable ids), validation with every problem in one
error, `--set` overrides, and every shipped experiment loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from blt.config import ConfigError
from blt.errors import BltError
from blt.experiments.config import (
    METRICS,
    Cell,
    apply_overrides,
    expand,
    experiment_from_dict,
    load_experiment,
    resolve_experiment,
    shipped_experiments,
)

GRID = {
    "name": "g",
    "corpora": ["udhr", {"name": "code", "sources": ["stdlib"], "max_bytes": 1000}],
    "models": ["default"],
    "segmenters": [
        {"kind": "bpe", "vocab_size": [300, 400]},
        "space",
        {"kind": "fixed", "patch_size": 3},
        {"kind": "entropy-global", "target_bytes_per_patch": [2, 3.5], "max_patch_length": [None, 8]},
        {"kind": "entropy-monotonic", "threshold": 0.5},
    ],
}


def test_grid_expands_to_the_product_in_a_stable_order() -> None:
    """Per corpus and model: bpe ×2, space, fixed ×1, global 2 targets × 2 limits = 4, monotonic ×1 → 9 cells;
    two corpora → 18. Parameters inside an entry vary in sorted-name order (max_patch_length, then target)."""
    cfg = experiment_from_dict(GRID)
    cells = expand(cfg)
    assert len(cells) == 18 and len({c.id for c in cells}) == 18
    labels = [c.label for c in cells[:9]]
    assert labels == [
        "bpe-300",
        "bpe-400",
        "space",
        "fixed-3",
        "entropy-global@2",
        "entropy-global@3.5",
        "entropy-global@2/max8",
        "entropy-global@3.5/max8",
        "entropy-monotonic θ0.5",
    ]
    assert [c.corpus for c in cells] == ["udhr"] * 9 + ["code"] * 9
    assert cells[4].param == {"max_patch_length": None, "target_bytes_per_patch": 2.0}
    assert cfg.corpora[1].max_bytes == 1000 and cfg.corpora[0].sources == ["udhr"]
    assert expand(experiment_from_dict(GRID)) == cells  # same config, same cells, same ids


def test_cell_ids_follow_every_parameter() -> None:
    a = Cell("c", "m", "bpe", (("vocab_size", 300),))
    assert a.id == Cell("c", "m", "bpe", (("vocab_size", 300),)).id
    assert len({a.id, Cell("c", "m", "bpe", (("vocab_size", 301),)).id, Cell("d", "m", "bpe", a.params).id}) == 3
    assert Cell("c", None, "bpe", a.params).id != a.id


def test_models_multiply_the_grid() -> None:
    cfg = experiment_from_dict({**GRID, "models": ["default", "runs/other"]})
    assert len(expand(cfg)) == 36


def test_every_problem_is_reported_at_once() -> None:
    raw = {
        "name": "bad",
        "corpora": [{"name": "x"}, 5],
        "models": ["default"],
        "metrics": ["bytes_per_unit", "bogus"],
        "eval_fraction": 2,
        "colour": "red",
        "segmenters": [
            {"kind": "wordpiece"},
            {"kind": "space", "vocab_size": 100},
            {"kind": "entropy-global", "threshold": 1.0, "target_bytes_per_patch": 4},
            {"kind": "bpe", "vocab_size": [100]},
            {"kind": "fixed", "patch_size": []},
            {"kind": "sp-bpe", "vocab_size": "big"},
            {"kind": "entropy-budget", "budget": 6.0, "target_bytes_per_patch": 4},
            {"kind": "entropy-budget", "threshold": 1.0},
            {"kind": "surprisal-budget", "budget": -1},
        ],
    }
    with pytest.raises(ConfigError) as info:
        experiment_from_dict(raw)
    msg = str(info.value)
    for part in (
        "unknown key colour",
        "corpora[0] needs sources",
        "corpora[1] must be a name or a mapping",
        "unknown metric 'bogus'",
        "eval_fraction must be in (0, 1), got 2",
        "segmenters[0]: unknown segmenter 'wordpiece'",
        "segmenters[1] (space): unknown parameter 'vocab_size' (it takes no parameters)",
        "segmenters[2] (entropy-global): threshold and target_bytes_per_patch conflict in one cell",
        "segmenters[3].vocab_size must be ≥ 260",
        "empty grid: segmenters[4].patch_size lists no values",
        "segmenters[5].vocab_size must be int or a list, got 'big'",
        "segmenters[6] (entropy-budget): budget and target_bytes_per_patch conflict in one cell",
        "segmenters[7] (entropy-budget): unknown parameter 'threshold' (it takes target_bytes_per_patch, budget, "
        "max_patch_length)",
        "segmenters[8].budget must be > 0, got -1.0",
    ):
        assert part in msg, part
    assert isinstance(info.value, BltError) and "\n" not in msg


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"corpora": []}, "empty grid: no corpora"),
        ({"segmenters": []}, "empty grid: no segmenters"),
        ({"models": []}, "entropy segmenters need a byte model"),
        ({"corpora": ["udhr", "udhr"]}, "corpus names must be unique"),
        ({"precision": "fp8"}, "precision must be 32, bf16 or auto"),
    ],
)
def test_one_bad_field(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        experiment_from_dict({**GRID, **change})


def test_metrics_subset_must_name_known_metrics() -> None:
    cfg = experiment_from_dict({**GRID, "metrics": ["bytes_per_unit", "bits_per_unit_cv"]})
    assert cfg.metrics == ["bytes_per_unit", "bits_per_unit_cv"] and set(cfg.metrics) <= set(METRICS)


def test_overrides_set_values_and_list_items() -> None:
    raw = apply_overrides(GRID, ["max_eval_bytes=5000", "segmenters.0.vocab_size=[512]", "models=[a, b]"])
    cfg = experiment_from_dict(raw)
    assert cfg.max_eval_bytes == 5000 and cfg.models == ["a", "b"]
    assert cfg.segmenters[0].params == {"vocab_size": [512]}
    assert GRID["segmenters"][0]["vocab_size"] == [300, 400]  # the original is untouched
    with pytest.raises(ConfigError) as info:
        apply_overrides(GRID, ["segmenters.9.kind=bpe", "noequals", "models.x.y=1"])
    msg = str(info.value)
    assert "segmenters.9.kind does not address" in msg and "'noequals': expected key=value" in msg
    assert "models.x.y does not address" in msg


def test_load_experiment_from_a_file_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in GRID.items() if k != "name"}))
    cfg = load_experiment(path, ["eval_fraction=0.2"])
    assert cfg.name == "mine" and cfg.eval_fraction == 0.2  # the name defaults to the file's stem
    (tmp_path / "broken.yaml").write_text("corpora: [udhr\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_experiment(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match="does not exist; pass a YAML path or a shipped name"):
        resolve_experiment(tmp_path / "missing.yaml")


def test_every_shipped_experiment_loads_and_expands() -> None:
    shipped = shipped_experiments()
    assert {"patch-size-sweep", "multilingual", "code-vs-prose", "equal-info"} <= set(shipped)
    for name, path in shipped.items():
        cfg = load_experiment(name)
        assert resolve_experiment(name) == path and cfg.name == name and cfg.description
        cells = expand(cfg)
        assert len(cells) >= 10 and len({c.id for c in cells}) == len(cells)
    sweep = expand(load_experiment("patch-size-sweep"))
    targets = {c.param["target_bytes_per_patch"] for c in sweep if c.kind == "entropy-global"}
    assert targets == {2, 3, 4, 5, 6, 8}  # the BLT paper's range of patch sizes
    assert {c.param["vocab_size"] for c in sweep if c.kind == "bpe"} == {2048, 4096, 8192, 16384}
    assert len(sweep) == 26


def test_budget_kinds_expand_with_their_budget_or_target_and_a_grader() -> None:
    """entropy-budget and the surprisal-budget oracle take a target or a budget (nats), labelled @target and
    B<budget>; the oracle needs a byte model like the entropy kinds; `grader` names a second model."""
    segs = [
        {"kind": "entropy-budget", "target_bytes_per_patch": [2, 4.5], "max_patch_length": [16]},
        {"kind": "entropy-budget", "budget": 6.25},
        {"kind": "surprisal-budget", "target_bytes_per_patch": 3},
    ]
    cfg = experiment_from_dict({**GRID, "corpora": ["udhr"], "segmenters": segs, "grader": "runs/other"})
    assert cfg.grader == "runs/other" and cfg.segmenters[1].params == {"budget": [6.25]}
    labels = [c.label for c in expand(cfg)]
    assert labels[:2] == ["entropy-budget@2/max16", "entropy-budget@4.5/max16"]
    assert labels[2:] == ["entropy-budget B6.25", "surprisal-budget@3"]
    with pytest.raises(ConfigError, match="entropy segmenters need a byte model"):
        experiment_from_dict({**GRID, "segmenters": segs[2:], "models": []})
    assert experiment_from_dict(GRID).grader is None


def test_the_equal_information_experiment_covers_the_issue() -> None:
    """configs/experiments/equal-info.yaml (issue #13): budget, global, monotonic, fixed, BPE, SentencePiece and the
    surprisal oracle over 2–8 bytes/unit; prose, code, scripts and unseen kinds, each evaluated on held-out text
    (eval_sources apart from the training sources); a second model grades."""
    cfg = load_experiment("equal-info")
    kinds = {s.kind for s in cfg.segmenters}
    assert {"entropy-budget", "entropy-global", "entropy-monotonic", "surprisal-budget", "fixed", "bpe"} <= kinds
    assert "sp-unigram" in kinds and cfg.grader
    cells = expand(cfg)
    for kind in ("entropy-budget", "entropy-global", "surprisal-budget"):
        assert {c.param["target_bytes_per_patch"] for c in cells if c.kind == kind} == {2, 3, 4, 5, 6, 8}
    assert {c.param["patch_size"] for c in cells if c.kind == "fixed"} == {2, 3, 4, 5, 6, 8}
    assert {c.name for c in cfg.corpora} == {"english", "docs", "code", "scripts", "unseen"}
    for corpus in cfg.corpora:
        assert corpus.eval_sources and not set(corpus.eval_sources) & set(corpus.sources)
        assert all("/train/" in p for p in corpus.sources) and not any("/train/" in p for p in corpus.eval_sources)


def test_the_documented_example_is_a_valid_experiment() -> None:
    """docs/experiments.md's YAML: 1 corpus × 2 models × (bpe 2 + global 3×2 + space + tiktoken) = 20 cells."""
    import re

    text = (Path(__file__).resolve().parents[2] / "docs" / "experiments.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert block is not None
    cfg = experiment_from_dict(yaml.safe_load(block[1]))
    assert len(expand(cfg)) == 20 and cfg.metrics == ["bytes_per_unit", "bits_per_unit_cv", "word_boundary_f1"]
