"""Configs: every shipped YAML loads; all problems come back in one `ConfigError`; `--set` overrides parse by the
type of the field they target; semantic checks; Config -> YAML -> Config is the identity."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from blt.config import (
    Config,
    ConfigError,
    DataConfig,
    ModelConfig,
    TrainConfig,
    config_from_dict,
    load_config,
    parse_overrides,
)
from blt.errors import BltError

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(REPO_CONFIGS.glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------- shipped files


def test_configs_directory_holds_the_required_files() -> None:
    names = {p.name for p in CONFIGS}
    assert {"tiny.yaml", "small.yaml", "base.yaml", "blt-entropy-100m.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_validates(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    # The YAML mirrors the dataclasses 1:1: every key in the file is a field and its value is the loaded value.
    raw = yaml.safe_load(path.read_text())
    for section, values in raw.items():
        for key, value in values.items():
            loaded = getattr(getattr(cfg, section), key)
            assert loaded == value or (isinstance(loaded, list) and loaded == [value]), (section, key)


def test_blt_entropy_100m_has_the_shape_of_blts_released_model() -> None:
    """Pagnoni et al. 2024: 14 layers, dim 768, 12 heads, 512-byte window."""
    m = load_config(next(p for p in CONFIGS if p.name == "blt-entropy-100m.yaml")).model
    assert (m.n_layers, m.d_model, m.n_heads, m.context) == (14, 768, 12, 512)


def test_defaults_validate() -> None:
    assert load_config() == Config()


# ---------------------------------------------------------------------------------------------- one error for all


def test_unknown_keys_and_type_errors_are_all_reported_in_one_error(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  n_layer: 2\n  d_model: wide\ntrain:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "model.n_layer" in msg and "train.learning_rate" in msg and "model.d_model" in msg
    assert "'wide'" in msg
    # The valid keys of each offending section are listed so the typo can be fixed in one pass.
    assert "n_layers" in msg and "lr" in msg and "warmup_steps" in msg
    assert str(path) in msg


def test_unknown_section_is_reported_with_the_valid_sections(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown section 'optim'.*model, data, train"):
        load_config(write(tmp_path, "optim:\n  lr: 1\n"))


def test_section_that_is_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="section 'model' must be a mapping"):
        load_config(write(tmp_path, "model: [1, 2]\n"))


def test_top_level_that_is_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_missing_file_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "model: {n_layers: [\n"))


def test_config_error_is_a_blt_error() -> None:
    assert issubclass(ConfigError, BltError)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("model", "n_layers", "2"),  # a quoted number is a string, not an int
        ("model", "n_layers", 2.5),
        ("model", "tie_embeddings", "yes please"),
        ("model", "n_layers", True),  # bool is an int in Python, but not a layer count
        ("train", "lr", True),
        ("train", "max_time", 5),
        ("data", "sources", {"a": 1}),
        ("data", "hf_num_proc", 0),  # ≥ 1, or null to stream
    ],
)
def test_type_errors_name_the_field_and_the_value(section: str, key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"{section}\.{key} must be"):
        config_from_dict({section: {key: value}})


def test_semantic_errors_are_reported_together_with_key_errors() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"model": {"d_model": 30, "n_heads": 4, "n_layer": 2}})
    assert "model.n_layer" in str(info.value) and "divisible" in str(info.value)


# ---------------------------------------------------------------------------------------------- --set overrides


def test_set_float_written_without_a_dot_is_a_float() -> None:
    """YAML 1.1 (PyYAML) reads `1e-3` as the string '1e-3'; the float field turns it into 0.001."""
    assert yaml.safe_load("1e-3") == "1e-3"
    cfg = load_config(overrides=["train.lr=1e-3"])
    assert cfg.train.lr == 0.001 and isinstance(cfg.train.lr, float)


def test_set_float_in_a_yaml_file_written_without_a_dot(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "train:\n  lr: 3e-4\n")).train.lr == 3e-4


def test_set_int_where_a_float_is_expected_becomes_a_float() -> None:
    cfg = load_config(overrides=["train.lr=1"])
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)


def test_set_list_of_sources() -> None:
    assert load_config(overrides=["data.sources=[a.txt, b.txt]"]).data.sources == ["a.txt", "b.txt"]


def test_set_single_source_becomes_a_list() -> None:
    assert load_config(overrides=["data.sources=corpus.txt"]).data.sources == ["corpus.txt"]


def test_set_null_on_an_optional_field() -> None:
    path_cfg = load_config(overrides=["model.sliding_window=8"])
    assert path_cfg.model.sliding_window == 8
    assert load_config(overrides=["model.sliding_window=8", "model.sliding_window=null"]).model.sliding_window is None


def test_set_devices_as_number_or_auto() -> None:
    assert load_config(overrides=["train.devices=4"]).train.devices == 4
    assert load_config(overrides=["train.devices=auto"]).train.devices == "auto"


def test_set_devices_other_string_is_rejected() -> None:
    with pytest.raises(ConfigError, match="train.devices must be a number or 'auto'"):
        load_config(overrides=["train.devices=four"])


def test_set_max_time_stays_a_string() -> None:
    """`00:00:10:00` must not become a number; `1:00:00:00` is a YAML 1.1 base-60 int (60³ = 216000) if parsed
    as YAML, but a `--set` on a string field takes the text as typed."""
    assert load_config(overrides=["train.max_time=00:00:10:00"]).train.max_time == "00:00:10:00"
    assert yaml.safe_load("1:00:00:00") == 216000
    assert load_config(overrides=["train.max_time=1:00:00:00"]).train.max_time == "1:00:00:00"


def test_set_bool() -> None:
    assert load_config(overrides=["train.progress_bar=false"]).train.progress_bar is False
    assert load_config(overrides=["model.tie_embeddings=true"]).model.tie_embeddings is True


def test_set_overrides_the_file_and_keeps_the_rest(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  n_layers: 3\n  d_model: 64\ntrain:\n  lr: 0.01\n")
    cfg = load_config(path, ["model.n_layers=5", "train.seed=7"])
    assert (cfg.model.n_layers, cfg.model.d_model, cfg.train.lr, cfg.train.seed) == (5, 64, 0.01, 7)


def test_later_set_wins() -> None:
    assert load_config(overrides=["train.seed=1", "train.seed=2"]).train.seed == 2


def test_set_value_may_contain_equals_signs() -> None:
    assert load_config(overrides=["data.text_field=a=b"]).data.text_field == "a=b"


def test_parse_overrides_nests_raw_strings() -> None:
    nested = parse_overrides(["train.lr=1e-3", "model.n_layers=2"])
    assert nested == {"train": {"lr": "1e-3"}, "model": {"n_layers": "2"}}


@pytest.mark.parametrize("bad", ["foo", "a.b.c=1", "train=1", ".lr=1", "train.=1", "=1"])
def test_bad_set_forms_are_rejected(bad: str) -> None:
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(overrides=[bad])


def test_all_bad_set_forms_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_overrides(["foo", "a.b.c=1", "train.lr=1"])
    assert "'foo'" in str(info.value) and "'a.b.c=1'" in str(info.value)


def test_set_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown key train\.nope .*valid train keys: .*\blr\b"):
        load_config(overrides=["train.nope=1"])


def test_set_unknown_section() -> None:
    with pytest.raises(ConfigError, match="unknown section 'trian'"):
        load_config(overrides=["trian.lr=1"])


def test_set_wrong_type_is_reported() -> None:
    with pytest.raises(ConfigError, match=r"model\.n_layers must be int, got 'two'"):
        load_config(overrides=["model.n_layers=two"])


# ---------------------------------------------------------------------------------------------- semantic checks


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["model.d_model=30", "model.n_heads=4"], "divisible"),
        (["model.d_model=6", "model.n_heads=2"], "must be even for rotary"),  # head size 3
        (["data.val_fraction=1.0"], "val_fraction"),
        (["data.val_fraction=1.5"], "val_fraction"),
        (["data.val_fraction=-0.1"], "val_fraction"),
        (["model.vocab_size=258"], "vocab_size"),
        (["model.sliding_window=0"], "sliding_window"),
        (["model.dropout=1.0"], "dropout"),
        (["model.n_layers=0"], "n_layers"),
        (["train.lr=0"], "train.lr"),
        (["train.batch_size=0"], "batch_size"),
        (["data.sources=[]"], "data.sources is empty"),
    ],
)
def test_semantic_checks(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(overrides=overrides)


def test_several_semantic_errors_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["model.d_model=30", "model.n_heads=4", "data.val_fraction=1", "train.lr=-1"])
    msg = str(info.value)
    assert "divisible" in msg and "val_fraction" in msg and "train.lr" in msg


def test_val_fraction_zero_is_allowed() -> None:
    assert load_config(overrides=["data.val_fraction=0"]).data.val_fraction == 0.0


# ---------------------------------------------------------------------------------------------- round trip


def test_round_trip_of_defaults(tmp_path: Path) -> None:
    cfg = Config()
    assert load_config(write(tmp_path, cfg.to_yaml())) == cfg


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_round_trip_of_shipped_configs(path: Path, tmp_path: Path) -> None:
    cfg = load_config(path)
    assert load_config(write(tmp_path, cfg.to_yaml())) == cfg


def test_to_yaml_has_exactly_the_dataclass_fields() -> None:
    raw = yaml.safe_load(Config().to_yaml())
    for name, cls in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig)):
        assert list(raw[name]) == [f.name for f in dataclasses.fields(cls)]


@settings(max_examples=40, deadline=None)
@given(
    lr=st.floats(1e-8, 10, allow_nan=False),
    max_time=st.one_of(st.none(), st.sampled_from(["00:00:10:00", "1:00:00:00", "10:12:30:00"])),
    devices=st.one_of(st.just("auto"), st.integers(1, 64)),
    window=st.one_of(st.none(), st.integers(1, 4096)),
    sources=st.lists(st.sampled_from(["udhr", "stdlib", "a b.txt", "dir/*.jsonl", "1e-3", "null", "yes"]), min_size=1),
    heads=st.sampled_from([1, 2, 4]),
)
def test_round_trip_property(
    tmp_path_factory: pytest.TempPathFactory,
    lr: float,
    max_time: str | None,
    devices: int | str,
    window: int | None,
    sources: list[str],
    heads: int,
) -> None:
    """Config -> to_yaml -> load_config is the identity, including strings YAML 1.1 would read as other types."""
    cfg = Config(
        model=ModelConfig(n_heads=heads, sliding_window=window),
        data=DataConfig(sources=sources),
        train=TrainConfig(lr=lr, max_time=max_time, devices=devices),
    )
    path = tmp_path_factory.mktemp("rt") / "c.yaml"
    path.write_text(cfg.to_yaml())
    assert load_config(path) == cfg


def test_unquoted_base60_time_in_a_yaml_file_is_reported(tmp_path: Path) -> None:
    """`max_time: 1:00:00:00` unquoted is the YAML 1.1 int 216000, not a time string: the error names the field."""
    with pytest.raises(ConfigError, match=r"train\.max_time must be str \| None, got 216000"):
        load_config(write(tmp_path, "train:\n  max_time: 1:00:00:00\n"))


# ---------------------------------------------------------------------------------------------- Trainer-bound fields


def test_trainer_bound_fields_are_rejected_in_one_error_before_lightning_sees_them() -> None:
    """Every field that reaches `L.Trainer` is checked here: Lightning's own errors are tracebacks, and came only
    after the run directory was written."""
    bad = {
        "max_time": "abc",
        "precision": "bogus",
        "accelerator": "tpu",
        "strategy": "nope",
        "devices": 0,
        "val_every_steps": 0,
        "log_every_steps": 0,
        "num_nodes": 0,
        "num_workers": -1,
        "lr": 0,
        "grad_clip": -1,
        "seed": -1,
    }
    with pytest.raises(ConfigError) as info:
        config_from_dict({"train": bad})
    msg = str(info.value)
    for key in bad:
        assert f"train.{key} must" in msg, key


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("train.max_time", "00:00:00:00", "longer than zero"),
        ("train.max_time", "1:2:3", "DD:HH:MM:SS"),
        ("train.max_time", "00:00:75:00", "DD:HH:MM:SS"),
        ("train.lr", ".nan", "train.lr must be > 0"),
        ("train.grad_clip", ".nan", "train.grad_clip must be ≥ 0"),
        ("train.beta2", "1.0", "train.beta2 must be in [0, 1)"),
        ("model.ffn_hidden", "0", "model.ffn_hidden must be ≥ 1"),
        ("model.norm_eps", "0", "model.norm_eps must be > 0"),
        ("model.rope_base", "-1", "model.rope_base must be > 0"),
        ("data.max_bytes", "-5", "data.max_bytes must be ≥ 1"),
        ("data.sources", "['']", "empty name"),
        ("train.seed", str(2**32), "train.seed must be in"),
    ],
)
def test_more_semantic_checks(key: str, value: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[f"{key}={value}"])
    assert needle in str(info.value)


def test_valid_trainer_settings_pass() -> None:
    cfg = load_config(
        overrides=["train.max_time=01:02:03:04", "train.precision=bf16-mixed", "train.strategy=ddp", "train.devices=2"]
    )
    assert cfg.train.max_time == "01:02:03:04" and cfg.train.devices == 2


def test_the_accepted_names_are_lightnings() -> None:
    """ACCELERATORS/PRECISIONS/STRATEGIES (kept in config.py so it need not import Lightning) are all names the
    installed Lightning accepts."""
    import typing

    from lightning.fabric.connector import _PRECISION_INPUT_STR
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    from blt.config import ACCELERATORS, PRECISIONS, STRATEGIES

    assert set(ACCELERATORS) <= {"auto", "gpu", *AcceleratorRegistry.available_accelerators()}
    assert set(PRECISIONS) <= {"auto", "32", "16", "64", "bf16", *typing.get_args(_PRECISION_INPUT_STR)}
    assert set(STRATEGIES) <= {"auto", *StrategyRegistry.available_strategies()}


# ---------------------------------------------------------------------------------------------- messages


def test_set_errors_name_the_override_not_the_file(tmp_path: Path) -> None:
    """A bad `--set` value is blamed on `--set key=value`; the file's own problems stay under the file's name."""
    path = write(tmp_path, "model:\n  n_layer: 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["train.lr=fast", "train.batch_size=0", "model.nope=1"])
    msg = str(info.value)
    assert msg.startswith(f"{path}: unknown key model.n_layer")
    assert "--set train.lr=fast: train.lr must be float, got 'fast'" in msg
    assert "--set train.batch_size=0: train.batch_size must be ≥ 1, got 0" in msg
    assert "--set model.nope=1: unknown key model.nope" in msg
    with pytest.raises(ConfigError) as info:
        load_config(REPO_CONFIGS / "tiny.yaml", ["model.n_heads=3"])
    assert str(info.value).startswith("--set model.n_heads=3: model.d_model (32) must be divisible")
    assert "tiny.yaml" not in str(info.value)


def test_yaml_syntax_error_says_where_and_what(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "model:\n  n_layers: 2\n d_model: 3\n"))
    msg = str(info.value)
    assert "is not valid YAML: line 3, column 2:" in msg and "expected <block end>" in msg


def test_config_that_is_a_directory_or_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory; pass a YAML file"):
        load_config(tmp_path)
    binary = tmp_path / "c.yaml"
    binary.write_bytes(b"model: \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(binary)


def test_top_level_list_with_overrides_is_still_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a mapping with sections model, data, train, got list"):
        load_config(write(tmp_path, "- 1\n"), ["train.lr=1"])
