"""adapt(): fine-tuning on a corpus with early stopping on a held-out slice, keeping the best weights (the starting
ones included), and the record of what it did in the model's card."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from conftest import make_model, save_spiky

from blt.bytelm.adapt import PATIENCE, KeepBest, adapt
from blt.bytelm.checkpoint import load_model, save_model_dir
from blt.bytelm.entropy import evaluate_corpus
from blt.config import load_config

REPO = Path(__file__).resolve().parents[2]

DOCS = [(f"note {i}: the cat sat on the mat, and the dog sat on the log. " * 6).encode() for i in range(80)]


def _weights_equal(a: Any, b: Any) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


class _Module(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.model = torch.nn.Linear(1, 1)


def test_keep_best_stops_after_patience_validations_without_a_gain() -> None:
    """Held-out bits/byte 3.0 (start), 2.9, 2.95, 2.8995, 2.91: 2.9 is a gain; 2.95 a miss; 2.8995 gains only
    0.0005 < MIN_GAIN (a miss); 2.91 the third miss in a row, so the run is told to stop. The weights kept are the
    ones of step 1 (2.9), copied then: later changes to the module do not reach them."""
    keep = KeepBest(patience=3)
    module, trainer = _Module(), SimpleNamespace(global_step=0, should_stop=False)
    for step, bpb in enumerate([3.0, 2.9, 2.95, 2.8995, 2.91]):
        trainer.global_step = step
        with torch.no_grad():
            module.model.weight.fill_(float(step))
        assert not trainer.should_stop
        keep._record(trainer, module, bpb)  # type: ignore[arg-type]
    assert trainer.should_stop and keep.stopped_early
    assert (keep.best, keep.best_step, keep.misses) == (2.9, 1, 3)
    assert float(keep.best_state["weight"]) == 1.0


def test_adapt_trains_on_exactly_the_given_documents(tmp_path: Path) -> None:
    """The tuned model keeps its shape; its card says it ran the 2 steps asked, on exactly the given documents (train
    + held-out bytes = their total; the held-out slice handed back is some of them), validated before the first step
    and after each, and kept the step whose held-out bits/byte was lowest; its weights are that step's (the original
    ones when it is step 0)."""
    lm = load_model(save_spiky(tmp_path / "spiky"))
    heldout: list[bytes] = []
    tuned = adapt(lm, DOCS, 2, heldout=heldout)
    record = tuned.card["adapt"]
    assert tuned.cfg == lm.cfg and record["steps_run"] == 2 and record["validations"] == 3
    assert tuned.card["train_bytes"] + tuned.card["val_bytes"] == sum(map(len, DOCS))
    assert heldout and set(heldout) < set(DOCS) and sum(map(len, heldout)) == tuned.card["val_bytes"]
    assert tuned.card["steps"] == record["best_step"] and not record["stopped_early"]
    assert record["heldout_bits_per_byte_after"] <= record["heldout_bits_per_byte_before"]
    assert _weights_equal(tuned, lm) == (record["best_step"] == 0)


def test_adapt_keeps_the_starting_weights_when_training_only_hurts(tmp_path: Path) -> None:
    """A learning rate of 300 wrecks the untrained (uniform, ln 260 nats) model at once: every validation is NaN or
    worse than the start (a NaN loss must not read as 0 bits/byte), so the run stops after PATIENCE validations
    (step budget 100 -> one every 10 steps -> stopped at step 10·PATIENCE) and adapt returns the starting weights,
    bit for bit, with the held-out number unchanged."""
    cfg = load_config(REPO / "configs" / "tiny.yaml", [])
    lm = load_model(save_model_dir(make_model(0), cfg, {"steps": 0}, tmp_path / "model"))
    lm.full_config = replace(lm.full_config, train=replace(lm.full_config.train, lr=1000.0))  # adapt uses 0.3·lr
    tuned = adapt(lm, DOCS, 100)
    record = tuned.card["adapt"]
    assert record["stopped_early"] and record["steps_run"] == 10 * PATIENCE
    assert record["best_step"] == 0 == tuned.card["steps"]
    assert record["heldout_bits_per_byte_after"] == record["heldout_bits_per_byte_before"]
    assert _weights_equal(tuned, lm)


@pytest.mark.slow
def test_adapt_gains_on_repetitive_text_and_the_record_is_the_truth(tmp_path: Path) -> None:
    """On text that repeats one pattern, 40 steps lower the held-out slice's bits/byte, the weights kept are a
    trained step's, and scored directly the adapted model pays less on documents of that text too."""
    lm = load_model(save_spiky(tmp_path / "spiky"))
    tuned = adapt(lm, DOCS, 40)
    record = tuned.card["adapt"]
    assert record["best_step"] > 0 and record["heldout_bits_per_byte_after"] < record["heldout_bits_per_byte_before"]
    before = evaluate_corpus(lm, DOCS[:8], cache=False)["bits_per_byte"]
    after = evaluate_corpus(tuned, DOCS[:8], cache=False)["bits_per_byte"]
    assert after < before


def test_adapt_with_a_time_budget_stops_on_the_clock(tmp_path: Path) -> None:
    """A time budget alone: no step count is known, so the run ends when Lightning's timer says (after > 0 steps,
    far before the 10^9-step horizon)."""
    lm = load_model(save_spiky(tmp_path / "spiky"))
    tuned = adapt(lm, DOCS, 0, minutes=0.05, patience=10**6)  # 3 seconds
    assert 0 < tuned.card["adapt"]["steps_run"] < 10**6
