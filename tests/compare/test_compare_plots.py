"""The comparison plots: which files `compare_plots` writes (evenness_curve.png only with curves), that they are real
PNGs of a sensible size, the script grouping of by_language.png by hand, and that NaN or missing data does not crash.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from blt.compare.plots import (
    ENTROPY_COLOURS,
    compare_plots,
    family,
    language_order,
    reference_segmenter,
    script_of,
    segmenter_styles,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAMES = ["bpe", "tiktoken-o200k", "space", "fixed-2.07", "entropy-global"]
BASE_PLOTS = ["lengths.png", "evenness.png", "agreement.png", "by_language.png"]


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels, from the IHDR chunk that follows the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def synthetic_results(n_langs: int = 12, curves: bool = False) -> dict:
    rng = np.random.default_rng(0)
    scripts = ["Latn", "Latn", "Latn", "Cyrl", "Cyrl", "Arab"]
    by_language = {
        f"l{i:03d}_{scripts[i % len(scripts)]}": {n: float(rng.uniform(1, 8)) for n in NAMES} for i in range(n_langs)
    }
    results: dict = {
        "segmenters": [
            {"segmenter": n, "bytes_per_unit": 2.0 + i / 10, "bits_per_unit_cv": 0.5 + i / 10}
            for i, n in enumerate(NAMES)
        ],
        "_lengths": {n: rng.integers(1, 12, 500) for n in NAMES},
        "_bits_per_unit": {n: rng.gamma(2.0, 2.0, 500) for n in NAMES},
        "agreement_f1": {a: {b: 1.0 if a == b else 0.5 for b in NAMES} for a in NAMES},
        "by_language": by_language,
        "config": {"match": "bpe"},
    }
    if curves:
        results["curves"] = {
            "bpe": [
                {"bytes_per_unit": x, "bits_per_unit_cv": 0.8 - x / 10, "param": f"V={v}"}
                for x, v in ((1.8, 256), (2.0, 512), (2.3, 1024))
            ],
            "space": [{"bytes_per_unit": 3.6, "bits_per_unit_cv": 1.0, "param": ""}],  # one point: a marker
            "entropy-global": [
                {"bytes_per_unit": x, "bits_per_unit_cv": 0.3 * x, "param": f"θ={x}"} for x in (1.5, 2.0, 4.0, 8.0)
            ],
        }
        results["reference"] = {"segmenter": "bpe", "bytes_per_unit": 2.0}
    return results


def test_language_order_groups_by_script_by_hand() -> None:
    """Latn has 3 languages, Cyrl 2 (ties with Deva, broken by name), Deva 2, Arab 1; "en" and "pt_BR" (a region,
    not an ISO 15924 script) go to "other", last although it is as big as Cyrl. Within a script: by bpe ascending,
    a missing or NaN value last, ties by label."""
    per_lang = {
        "c_Latn": {"bpe": 3.0},
        "a_Latn": {"bpe": math.nan},
        "b_Latn": {"bpe": 1.5},
        "z_Deva": {"bpe": 2.0},
        "y_Deva": {"bpe": 2.0},
        "d_Cyrl": {"space": 9.0},
        "e_Cyrl": {"bpe": 4.0},
        "f_Arab": {"bpe": 1.0},
        "en": {"bpe": 2.0},
        "pt_BR": {"bpe": 1.0},
    }
    assert language_order(per_lang, "bpe") == [
        ("Latn", ["b_Latn", "c_Latn", "a_Latn"]),
        ("Cyrl", ["e_Cyrl", "d_Cyrl"]),
        ("Deva", ["y_Deva", "z_Deva"]),
        ("Arab", ["f_Arab"]),
        ("other", ["pt_BR", "en"]),
    ]
    assert language_order({}, "bpe") == []
    assert [script_of(s) for s in ("azb_Arab", "aii_Nbat", "en", "pt_BR", "x_", "zh_Hant_Hans")] == [
        "Arab",
        "Nbat",
        "other",
        "other",
        "other",
        "Hans",
    ]


def test_styles_set_entropy_rows_apart() -> None:
    styles = segmenter_styles(NAMES)
    assert [family(n) for n in NAMES] == ["tokeniser", "tokeniser", "rule", "rule", "entropy"]
    assert styles["entropy-global"]["color"] in ENTROPY_COLOURS
    assert styles["entropy-global"]["linewidth"] > styles["bpe"]["linewidth"]
    assert len({s["color"] for s in styles.values()}) == len(NAMES)
    assert reference_segmenter({"reference": {"segmenter": "space"}, "config": {"match": "bpe"}}, NAMES) == "space"
    assert reference_segmenter({"reference": None, "config": {"match": "bpe"}}, NAMES) == "bpe"
    assert reference_segmenter({}, NAMES) == "bpe"  # the first


def test_plots_are_pngs_and_the_curve_only_with_curves(tmp_path: Path) -> None:
    without = compare_plots(synthetic_results(), tmp_path / "a")
    assert without == BASE_PLOTS
    with_curves = compare_plots(synthetic_results(curves=True), tmp_path / "b")
    assert with_curves == [*BASE_PLOTS, "evenness_curve.png"]
    for name in with_curves:
        width, height = png_size(tmp_path / "b" / name)
        assert 300 <= width <= 3000 and 250 <= height <= 3000, (name, width, height)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(with_curves)  # no temp files left


def test_by_language_grows_down_with_the_languages(tmp_path: Path) -> None:
    """200 languages keep a legible row each: the figure gets taller, not denser, and no wider."""
    compare_plots({**synthetic_results(n_langs=20), "_lengths": {}, "_bits_per_unit": {}}, tmp_path / "few")
    compare_plots({**synthetic_results(n_langs=200), "_lengths": {}, "_bits_per_unit": {}}, tmp_path / "many")
    w_few, h_few = png_size(tmp_path / "few/by_language.png")
    w_many, h_many = png_size(tmp_path / "many/by_language.png")
    assert w_many == w_few
    assert (h_many - h_few) / 180 >= 15  # pixels per added row (0.17 in at 110 dpi ≈ 19)


def test_nan_empty_and_missing_data_do_not_crash(tmp_path: Path) -> None:
    """A segmenter without units or bits, NaN bits, NaN and missing per-language cells, a sparse agreement matrix,
    curves with a NaN point, an empty curve and no reference: every plot with some data is written."""
    results = synthetic_results(curves=True)
    results["_lengths"]["space"] = np.array([], dtype=np.int64)
    results["_bits_per_unit"]["space"] = np.array([])
    results["_bits_per_unit"]["bpe"] = np.array([1.0, math.nan, 3.0])
    results["segmenters"][0]["bits_per_unit_cv"] = math.nan
    del results["_lengths"]["fixed-2.07"]
    first = next(iter(results["by_language"]))
    results["by_language"][first] = {"bpe": math.nan}
    results["by_language"]["en"] = {}
    results["agreement_f1"] = {"bpe": {"space": math.nan}}
    results["curves"]["space"] = []
    results["curves"]["bpe"][0]["bits_per_unit_cv"] = math.nan
    results["reference"] = None
    assert compare_plots(results, tmp_path / "a") == [*BASE_PLOTS, "evenness_curve.png"]

    empty = {
        **synthetic_results(),
        "_lengths": {},
        "_bits_per_unit": {n: np.array([math.nan]) for n in NAMES},
        "by_language": {},
        "curves": {"bpe": [{"bytes_per_unit": math.nan, "bits_per_unit_cv": 1.0, "param": ""}]},
    }
    assert compare_plots(empty, tmp_path / "b") == ["lengths.png", "agreement.png"]  # lengths: "no units" panels
    assert compare_plots({"segmenters": [], "_lengths": {}, "_bits_per_unit": {}, "by_language": {}}, tmp_path) == []
