"""What a run shows while it trains: each class's epoch, step, loss and ETA (issue 15)."""

from __future__ import annotations

import logging

from lrprop.pipeline.progress import TrainingProgress, progress_line


def test_a_progress_line_names_the_epoch_step_loss_and_eta():
    state = {"epoch": 12, "step": 96, "loss": 1.23456}
    assert progress_line("reach", state, 80, 15.4, 85.0) == "reach: epoch 12/80, step 96, loss 1.235, 15 s elapsed, ETA 85 s"
    assert progress_line("reach", {**state, "done": True}, 80, 15.4, 85.0).endswith("15 s elapsed, done")
    assert progress_line("swing", {}, 80, 0.0, None) == "swing: epoch 0/80, step 0, 0 s elapsed"


class _Board(TrainingProgress):
    """The display with its board's snapshots given by the test instead of read from Ray."""

    snapshots: list[dict] = []

    def _snapshot(self):
        return self.snapshots.pop(0)


def test_the_display_logs_each_class_when_due_and_when_it_finishes_with_an_eta_from_its_own_pace(caplog, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("lrprop.pipeline.progress.time.monotonic", lambda: clock[0])
    shown = _Board({"reach": 10, "swing": 10}, logger=logging.getLogger("test.progress"), log_every_s=30.0, bars=False)
    shown.snapshots = [
        {"reach": {"epoch": 2, "step": 8, "loss": 2.0}},  # t=110: first seen; swing waits for a worker
        {"reach": {"epoch": 4, "step": 16, "loss": 1.5}, "swing": {"epoch": 1, "step": 4, "loss": 3.0}},  # t=120
        {"reach": {"epoch": 7, "step": 28, "loss": 1.0}, "swing": {"epoch": 3, "step": 12, "loss": 2.5}},  # t=140
        {"reach": {"epoch": 10, "step": 40, "loss": 0.5}, "swing": {"epoch": 4, "step": 16, "loss": 2.0}},  # t=150
    ]
    with caplog.at_level(logging.INFO, logger="test.progress"):
        for t in (110.0, 120.0, 140.0, 150.0):
            clock[0] = t
            shown._show()
    lines = [r.getMessage() for r in caplog.records]
    # reach: logged at 140 (30 s after the start, ETA from 5 epochs in 30 s: 3 left take 18 s), and when done at 150.
    assert lines == [
        "reach: epoch 7/10, step 28, loss 1, 40 s elapsed, ETA 18 s",
        "swing: epoch 3/10, step 12, loss 2.5, 40 s elapsed, ETA 70 s",
        "reach: epoch 10/10, step 40, loss 0.5, 50 s elapsed, done",
    ]
