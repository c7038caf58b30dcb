"""Training progress people can see while Ray Train works: each class's epoch, step, loss and ETA (issue 15).

    with TrainingProgress({"reach": 80, "swing": 80}, logger=get_run_logger()) as progress:
        ... make_trainer(..., progress=progress.board) ...   # each class's rank-0 worker reports to it

Each class's rank-0 Train worker sends every epoch's report (epoch, step, loss) to a
:class:`ProgressBoard`, a Ray actor that takes no CPU; this process reads it once a second. On a
terminal it draws one tqdm bar per class on stderr (epochs done of ``optim.epochs``, the step,
the loss and tqdm's ETA); it always logs one line per class to ``logger`` (the Prefect run
logger: the flow run's logs) at most every ``log_every_s`` and when a class finishes, so a run
without a terminal (a deployment, CI) shows its progress too.

A search (:mod:`lrprop.pipeline.tune`) needs no board: each trial's epochs reach Tune as its
results, in this process, where :class:`SearchProgress`, a Tune callback, counts them.

Ray's own worker output is not forwarded to this process (``ray.init(log_to_driver=False)``,
which keeps a run's terminal free of every worker's log lines), so a bar drawn in a worker
(``ray.experimental.tqdm_ray``) would not reach it: the board carries the numbers instead.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

log = logging.getLogger(__name__)

__all__ = ["ProgressBoard", "SearchProgress", "TrainingProgress", "progress_line", "trial_line"]


class ProgressBoard:
    """The latest report of each class: ``{name: {"epoch", "step", "loss", "done"}}`` (a Ray actor)."""

    def __init__(self) -> None:
        self._state: dict[str, dict] = {}

    def update(self, name: str, fields: dict) -> None:
        self._state[name] = {**self._state.get(name, {}), **fields}

    def snapshot(self) -> dict[str, dict]:
        return dict(self._state)


def progress_line(name: str, state: dict, total_epochs: int, elapsed_s: float, eta_s: float | None, unit: str = "epoch") -> str:
    """``reach: epoch 12/80, step 96, loss 1.234, 15 s elapsed, ETA 85 s`` (``done`` for the ETA
    once ``state["done"]``; no ETA when ``eta_s`` is None). Another ``unit`` counts in its own
    terms, with no step: ``reach: pretraining step 120/300, loss 2.1, 30 s elapsed, ETA 45 s``."""
    parts = [f"{name}: {unit} {int(state.get('epoch', 0))}/{total_epochs}"]
    if unit == "epoch":
        parts.append(f"step {int(state.get('step', 0))}")
    if state.get("loss") is not None:
        parts.append(f"loss {state['loss']:.4g}")
    parts.append(f"{elapsed_s:.0f} s elapsed")
    if state.get("done"):
        parts.append("done")
    elif eta_s is not None:
        parts.append(f"ETA {eta_s:.0f} s")
    return ", ".join(parts)


class TrainingProgress:
    """Shows the progress of the classes named in ``totals`` ({name: epochs}) while the
    ``with`` block runs (see the module).

    Args:
        totals: each class's ``optim.epochs`` (or ``pretrain.steps``, with that ``unit``).
        logger: where the lines go (a ``logging.Logger`` or Prefect's run logger).
        log_every_s: seconds between a class's log lines while it trains.
        bars: draw tqdm bars (default: when stderr is a terminal).
        poll_s: seconds between reads of the board.
        unit: what ``totals`` count: ``epoch``, or e.g. ``pretraining step``; a report's
            ``epoch`` is the count of units done.
    """

    def __init__(
        self,
        totals: dict[str, int],
        *,
        logger,
        log_every_s: float = 30.0,
        bars: bool | None = None,
        poll_s=1.0,
        unit: str = "epoch",
    ):
        self.totals = dict(totals)
        self.logger = logger
        self.log_every_s = log_every_s
        self.bars = sys.stderr.isatty() if bars is None else bars
        self.poll_s = poll_s
        self.unit = unit
        self.board = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bars: dict = {}
        self._logged: dict[str, tuple[float, int]] = {}  # name: (when, epoch) of its last line
        # name: (when, epoch) it was first seen at: its pace counts from there, not from a wait
        # for a free worker nor from the epochs a resumed run had done before
        self._first: dict[str, tuple[float, int]] = {}
        self._started = time.monotonic()

    def __enter__(self) -> TrainingProgress:
        import ray  # Ray

        # num_cpus=0: the board must never wait for a CPU the Train workers hold
        self.board = ray.remote(num_cpus=0)(ProgressBoard).remote()  # Ray
        if self.bars:
            from tqdm import tqdm

            unit_name = self.unit.split()[-1]  # "step" of "pretraining step"
            self._bars = {
                name: tqdm(total=total, desc=name, unit=unit_name, position=i, leave=True, file=sys.stderr, dynamic_ncols=True)
                for i, (name, total) in enumerate(self.totals.items())
            }
        self._thread = threading.Thread(target=self._poll, name="lrprop-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import ray  # Ray

        self._stop.set()
        failed = exc[0] is not None
        # A stopped or failed run does not wait for a last look at the board
        self._thread.join(timeout=2 if failed else 10)
        # Showing progress is never worth hiding the error that ended the block, or failing a
        # training that finished: Ray may be shut down already (a stopped run)
        try:
            if not failed and not self._thread.is_alive():
                self._show(final=True)
            for bar in self._bars.values():
                bar.close()
            ray.kill(self.board)  # Ray
        except Exception:  # noqa: BLE001
            pass

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self._show()
            except Exception:  # noqa: BLE001 - a display error ends the display, never the run
                return

    def _snapshot(self) -> dict[str, dict] | None:
        import ray  # Ray

        try:
            return ray.get(self.board.snapshot.remote(), timeout=10)  # Ray
        except Exception:  # noqa: BLE001 - progress is never worth failing a run for; the next poll tries again
            return None

    def _show(self, final: bool = False) -> None:
        snapshot = self._snapshot()
        if snapshot is None:
            return
        now = time.monotonic()
        elapsed = now - self._started
        for name, total in self.totals.items():
            state = snapshot.get(name)
            if state is None:
                continue
            epoch = int(state.get("epoch", 0))
            seen_at, seen_epoch = self._first.setdefault(name, (now, epoch))
            eta = (now - seen_at) / (epoch - seen_epoch) * max(0, total - epoch) if epoch > seen_epoch else None
            if name in self._bars:
                bar = self._bars[name]
                bar.n = min(epoch, total)
                loss = state.get("loss")
                shown = {"step": int(state.get("step", 0))} if self.unit == "epoch" else {}
                bar.set_postfix(**shown, loss="-" if loss is None else f"{loss:.4g}", refresh=False)
                bar.refresh()
            when, logged_epoch = self._logged.get(name, (self._started, -1))
            finished = bool(state.get("done")) or epoch >= total
            due = now - when >= self.log_every_s and epoch != logged_epoch
            if due or (finished and logged_epoch != epoch) or (final and logged_epoch != epoch):
                # final: the block ended without an error, so the class is done even where
                # optim.max_steps stopped it before its last epoch
                line = progress_line(name, {**state, "done": finished or final}, total, elapsed, eta, self.unit)
                self.logger.info("%s", line)
                self._logged[name] = (now, epoch)


def trial_line(
    trial: str, params: dict, epoch: int, total_epochs: int, metric: str, value: float | None, elapsed_s: float
) -> str:
    """``trial 7bb0c_00001 (T 20, α 0.00197, β 0.897): epoch 2/4, val_dtw_accuracy 0.4892, 30 s elapsed``."""
    shown = f"T {int(params['frames_per_view'])}, α {params['alpha']:.3g}, β {params['beta']:.3g}"
    result = f", {metric} {value:.4f}" if value is not None else ""
    return f"trial {trial} ({shown}): epoch {epoch}/{total_epochs}{result}, {elapsed_s:.0f} s elapsed"


class SearchProgress:
    """Shows a search's progress (a Tune callback: ``RunConfig(callbacks=[shown.callback])``).

    A line per trial at most every ``log_every_s`` and when it ends (:func:`trial_line`), and
    the count of trials ended, with the best so far, each time one ends
    (:class:`lrprop.work_progress.WorkProgress`: a bar of trials on a terminal). Tune's own
    console tables (``ray.tune_verbose``) say the same at more length and only on the console;
    these lines also reach the flow run's logs.

    Args:
        action: the class searched, for the lines.
        trials: the trials the search runs (``ray.tune_samples``).
        epochs: each trial's ``optim.epochs`` (ASHA may stop it sooner).
        metric: the result key the search maximises.
        logger: where the lines go (a ``logging.Logger`` or Prefect's run logger).
        log_every_s: seconds between a trial's lines while it trains.
        bars: draw the bar of trials (default: when stderr is a terminal).
    """

    def __init__(self, action: str, *, trials: int, epochs: int, metric: str, logger, log_every_s=30.0, bars=None):
        from ray import tune  # Ray

        from lrprop.work_progress import WorkProgress

        self.epochs, self.metric, self.logger, self.log_every_s = epochs, metric, logger, log_every_s
        # log_every_s=0: a line each time a trial ends, however soon after the last
        self.count = WorkProgress(trials, what=f"search {action}", unit="trials ended", logger=logger, log_every_s=0, bar=bars)
        self.best: tuple[float, str, dict] | None = None  # (value, trial, params)
        self.stopped_early = 0
        self.failed = 0
        self._logged: dict[str, float] = {}  # trial: when its last line was logged
        self._started = time.monotonic()
        outer = self

        self._open = False

        # Ray: called in this process, by Tune's controller. An error of a callback would fail
        # the search: showing progress never is worth that (_shielded)
        class Callback(tune.Callback):
            def setup(self, **info):
                outer._shielded(outer.open)

            def on_trial_result(self, iteration, trials, trial, result, **info):
                outer._shielded(outer.result, trial.trial_id, trial.config, result)

            def on_trial_complete(self, iteration, trials, trial, **info):
                outer._shielded(outer.ended, trial.trial_id, trial.config, trial.last_result or {}, failed=False)

            def on_trial_error(self, iteration, trials, trial, **info):
                outer._shielded(outer.ended, trial.trial_id, trial.config, trial.last_result or {}, failed=True)

            def on_experiment_end(self, trials, **info):
                outer._shielded(outer.close)

        self.callback = Callback()

    def _shielded(self, fn, *args, **kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a display error is logged, never raised into Tune
            log.debug("search progress: %s failed: %s", getattr(fn, "__name__", fn), exc)

    def open(self) -> None:
        """Start the count (and its bar)."""
        if not self._open:
            self.count.__enter__()
            self._open = True

    def close(self, *, failed: bool = False) -> None:
        """End the count: its last line, unless the search ``failed``; the bar closed either way."""
        if self._open:
            self._open = False
            self.count.__exit__(*((RuntimeError, None, None) if failed else (None, None, None)))

    def _line(self, trial: str, params: dict, result: dict, now: float) -> str:
        epoch = int(result["epoch"]) + 1 if "epoch" in result else 0  # Train reports epochs from 0
        value = result.get(self.metric)
        return trial_line(trial, params, epoch, self.epochs, self.metric, value, now - self._started)

    def result(self, trial: str, params: dict, result: dict) -> None:
        """A trial reported an epoch: its line, when due."""
        now = time.monotonic()
        if now - self._logged.get(trial, self._started) >= self.log_every_s:
            self.logger.info("%s", self._line(trial, params, result, now))
            self._logged[trial] = now
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and (self.best is None or value > self.best[0]):
            self.best = (float(value), trial, params)

    def ended(self, trial: str, params: dict, last: dict, *, failed: bool) -> None:
        """A trial ended (ran its epochs, stopped by ASHA, or failed): its last line and the count."""
        now = time.monotonic()
        epochs_run = int(last["epoch"]) + 1 if "epoch" in last else 0
        how = "failed" if failed else ("stopped early by ASHA" if epochs_run < self.epochs else "ran every epoch")
        self.failed += failed
        self.stopped_early += (not failed) and epochs_run < self.epochs
        self.logger.info("%s; %s", self._line(trial, params, last, now), how)
        self._logged[trial] = now
        note = f"{self.stopped_early} stopped early, {self.failed} failed"
        if self.best is not None:
            note += f"; best {self.metric} {self.best[0]:.4f} (trial {self.best[1]})"
        self.count.advance(note=note)
