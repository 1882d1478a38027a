"""The run report's training line says how training ended."""
from __future__ import annotations

import pytest

from msrec.pipeline.report import format_report

TRAINING = {"epochs_run": 2, "max_epochs": 10, "learning_rate": 0.003, "best_epoch": 1, "best_val_auc": 0.685,
            "val_auc": [0.685, 0.66]}


@pytest.mark.parametrize("stop, says", [
    ({"stopped_on_drop": True, "second_epoch_stopped_at": 0.25}, "stopped 25% into epoch 2 on a fall beyond the noise"),
    ({"stopped_on_drop": True, "second_epoch_stopped_at": None}, "; stopped on a fall beyond the noise"),
    ({"stopped_on_drop": False, "second_epoch_stopped_at": None}, "(per epoch: 0.6850 0.6600)"),
])
def test_the_training_line_names_the_stop(stop, says):
    text = format_report({"date": "2026-11-01", "model": "sarnet", "window": 1,
                          "counts": {"read": 10, "accepted": 10, "quarantined": 0},
                          "training": {**TRAINING, **stop}})
    [line] = [x for x in text.splitlines() if "best epoch 1" in x]
    assert line.endswith(says)
