"""What a run shows while it works: each class's epoch, step, loss and ETA, the count of videos
ingested and embedded, a search's trials (issue 15)."""

from __future__ import annotations

import logging

from lrprop.pipeline.progress import SearchProgress, TrainingProgress, progress_line
from lrprop.work_progress import WorkProgress, count_line


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


def test_the_last_line_of_a_class_that_max_steps_stopped_early_says_done():
    shown = _Board({"reach": 10}, logger=logging.getLogger("test.progress"), log_every_s=30.0, bars=False)
    shown.snapshots = [{"reach": {"epoch": 3, "step": 12, "loss": 1.0}}]
    lines = []
    shown.logger = type("L", (), {"info": lambda self, fmt, line: lines.append(line)})()
    shown._show(final=True)  # the block ended without an error after epoch 3 of 10
    assert lines == ["reach: epoch 3/10, step 12, loss 1, 0 s elapsed, done"]


def test_a_count_line_names_the_count_the_time_and_the_eta():
    assert (
        count_line("ingest synthetic", 120, 500, "videos", 24.2, 76.4)
        == "ingest synthetic: 120/500 videos, 24 s elapsed, ETA 76 s"
    )
    assert count_line("ingest", 500, 500, "videos", 98.0, 0.0) == "ingest: 500/500 videos, 98 s elapsed, done"
    assert (
        count_line("search reach", 0, 8, "trials ended", 5.0, None, "best 0.5")
        == "search reach: 0/8 trials ended, 5 s elapsed; best 0.5"
    )


def _clocked(monkeypatch) -> list[float]:
    """A clock the test moves (``time.monotonic``, which every module here reads)."""
    clock = [100.0]
    monkeypatch.setattr("time.monotonic", lambda: clock[0])
    return clock


def test_work_progress_logs_when_due_and_at_the_end_with_the_eta_of_its_pace(caplog, monkeypatch):
    clock = _clocked(monkeypatch)
    with caplog.at_level(logging.INFO, logger="test.count"):
        with WorkProgress(10, what="evaluate reach", unit="videos", logger=logging.getLogger("test.count"), bar=False) as shown:
            for t in (110.0, 120.0, 130.0, 135.0):  # 4 videos; the 3rd is 30 s after the start
                clock[0] = t
                shown.advance()
            clock[0] = 150.0
            shown.advance(6)
    # at 130: 3 done in 30 s, 7 left at that pace take 70 s; at 150 the last count, done
    assert [r.getMessage() for r in caplog.records] == [
        "evaluate reach: 3/10 videos, 30 s elapsed, ETA 70 s",
        "evaluate reach: 10/10 videos, 50 s elapsed, done",
    ]


def test_work_progress_ended_by_an_error_adds_no_line_and_an_unfinished_count_says_how_far_it_got(caplog, monkeypatch):
    clock = _clocked(monkeypatch)
    logger = logging.getLogger("test.count")
    with caplog.at_level(logging.INFO, logger="test.count"):
        try:
            with WorkProgress(4, what="ingest", unit="videos", logger=logger, bar=False) as shown:
                shown.advance()
                raise RuntimeError("a corrupt video")
        except RuntimeError:
            pass
        assert caplog.records == []
        with WorkProgress(4, what="ingest", unit="videos", logger=logger, bar=False) as shown:
            clock[0] = 104.0
            shown.advance(2)  # a reader that yields fewer videos than it announced
    assert [r.getMessage() for r in caplog.records] == ["ingest: 2/4 videos, 4 s elapsed, ETA 4 s"]


def test_search_progress_logs_trials_when_due_and_counts_the_ended_with_the_best_so_far(caplog, monkeypatch):
    clock = _clocked(monkeypatch)
    logger = logging.getLogger("test.search")
    shown = SearchProgress("reach", trials=3, epochs=4, metric="val_dtw_accuracy", logger=logger, bars=False)
    a = {"frames_per_view": 20, "alpha": 0.00197, "beta": 0.8966}
    b = {"frames_per_view": 40, "alpha": 0.01, "beta": 1.5}
    with caplog.at_level(logging.INFO, logger="test.search"):
        shown.open()
        for t, trial, params, epoch, value in [
            (110.0, "t0", a, 0, 0.40),  # not due: 10 s after the start
            (131.0, "t0", a, 1, 0.45),  # due
            (132.0, "t1", b, 0, 0.50),  # due: its first line
            (140.0, "t0", a, 2, 0.47),  # not due: 9 s after its last
        ]:
            clock[0] = t
            shown.result(trial, params, {"epoch": epoch, "val_dtw_accuracy": value})
        clock[0] = 141.0
        shown.ended("t1", b, {"epoch": 0, "val_dtw_accuracy": 0.50}, failed=False)  # ASHA stopped it after 1 epoch
        clock[0] = 150.0
        shown.result("t0", a, {"epoch": 3, "val_dtw_accuracy": 0.55})
        shown.ended("t0", a, {"epoch": 3, "val_dtw_accuracy": 0.55}, failed=False)
        shown.ended("t2", a, {}, failed=True)  # failed before its first result
        shown.close()
    assert [r.getMessage() for r in caplog.records] == [
        "trial t0 (T 20, α 0.00197, β 0.897): epoch 2/4, val_dtw_accuracy 0.4500, 31 s elapsed",
        "trial t1 (T 40, α 0.01, β 1.5): epoch 1/4, val_dtw_accuracy 0.5000, 32 s elapsed",
        "trial t1 (T 40, α 0.01, β 1.5): epoch 1/4, val_dtw_accuracy 0.5000, 41 s elapsed; stopped early by ASHA",
        # 1 of 3 in 41 s: 2 more at that pace take 82 s
        "search reach: 1/3 trials ended, 41 s elapsed, ETA 82 s; "
        "1 stopped early, 0 failed; best val_dtw_accuracy 0.5000 (trial t1)",
        "trial t0 (T 20, α 0.00197, β 0.897): epoch 4/4, val_dtw_accuracy 0.5500, 50 s elapsed; ran every epoch",
        "search reach: 2/3 trials ended, 50 s elapsed, ETA 25 s; "
        "1 stopped early, 0 failed; best val_dtw_accuracy 0.5500 (trial t0)",
        "trial t2 (T 20, α 0.00197, β 0.897): epoch 0/4, 50 s elapsed; failed",
        "search reach: 3/3 trials ended, 50 s elapsed, done; 1 stopped early, 1 failed; best val_dtw_accuracy 0.5500 (trial t0)",
    ]


def test_pretraining_progress_counts_steps_not_epochs(caplog, monkeypatch):
    assert progress_line("reach", {"epoch": 120, "loss": 2.1}, 300, 30.0, 45.0, "pretraining step") == (
        "reach: pretraining step 120/300, loss 2.1, 30 s elapsed, ETA 45 s"
    )
    clock = _clocked(monkeypatch)
    shown = _Board({"reach": 300}, logger=logging.getLogger("test.pretrain"), bars=False, unit="pretraining step")
    shown.snapshots = [{"reach": {"epoch": 100, "loss": 3.0}}, {"reach": {"epoch": 300, "loss": 2.0}}]
    with caplog.at_level(logging.INFO, logger="test.pretrain"):
        for t in (110.0, 160.0):  # first seen at 100 steps; all 300 done 50 s later
            clock[0] = t
            shown._show()
    assert [r.getMessage() for r in caplog.records] == ["reach: pretraining step 300/300, loss 2, 60 s elapsed, done"]


def test_a_search_display_error_never_reaches_tune():
    from types import SimpleNamespace

    shown = SearchProgress("reach", trials=2, epochs=4, metric="val_dtw_accuracy", logger=logging.getLogger("t"), bars=False)
    shown.log_every_s = 0
    odd = SimpleNamespace(trial_id="t0", config={"frames_per_view": "twenty"}, last_result={})  # no alpha: trial_line fails
    shown.callback.setup()
    shown.callback.on_trial_result(0, [], odd, {"epoch": 0})  # would raise KeyError unshielded
    shown.callback.on_trial_complete(0, [], odd)
    shown.callback.on_experiment_end([])
    assert not shown._open
