"""Training progress people can see while Ray Train works: each class's epoch, step, loss and ETA (issue 15).

    with TrainingProgress({"reach": 80, "swing": 80}, logger=get_run_logger()) as progress:
        ... make_trainer(..., progress=progress.board) ...   # each class's rank-0 worker reports to it

Each class's rank-0 Train worker sends every epoch's report (epoch, step, loss) to a
:class:`ProgressBoard`, a Ray actor that takes no CPU; this process reads it once a second. On a
terminal it draws one tqdm bar per class on stderr (epochs done of ``optim.epochs``, the step,
the loss and tqdm's ETA); it always logs one line per class to ``logger`` (the Prefect run
logger: the flow run's logs) at most every ``log_every_s`` and when a class finishes, so a run
without a terminal (a deployment, CI) shows its progress too.

Ray's own worker output is not forwarded to this process (``ray.init(log_to_driver=False)``,
which keeps a run's terminal free of every worker's log lines), so a bar drawn in a worker
(``ray.experimental.tqdm_ray``) would not reach it: the board carries the numbers instead.
"""

from __future__ import annotations

import sys
import threading
import time

__all__ = ["ProgressBoard", "TrainingProgress", "progress_line"]


class ProgressBoard:
    """The latest report of each class: ``{name: {"epoch", "step", "loss", "done"}}`` (a Ray actor)."""

    def __init__(self) -> None:
        self._state: dict[str, dict] = {}

    def update(self, name: str, fields: dict) -> None:
        self._state[name] = {**self._state.get(name, {}), **fields}

    def snapshot(self) -> dict[str, dict]:
        return dict(self._state)


def progress_line(name: str, state: dict, total_epochs: int, elapsed_s: float, eta_s: float | None) -> str:
    """``reach: epoch 12/80, step 96, loss 1.234, 15 s elapsed, ETA 85 s`` (``done`` for the ETA
    once ``state["done"]``; no ETA when ``eta_s`` is None)."""
    parts = [f"{name}: epoch {int(state.get('epoch', 0))}/{total_epochs}", f"step {int(state.get('step', 0))}"]
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
        totals: each class's (or trial's) ``optim.epochs``.
        logger: where the lines go (a ``logging.Logger`` or Prefect's run logger).
        log_every_s: seconds between a class's log lines while it trains.
        bars: draw tqdm bars (default: when stderr is a terminal).
        poll_s: seconds between reads of the board.
    """

    def __init__(self, totals: dict[str, int], *, logger, log_every_s: float = 30.0, bars: bool | None = None, poll_s=1.0):
        self.totals = dict(totals)
        self.logger = logger
        self.log_every_s = log_every_s
        self.bars = sys.stderr.isatty() if bars is None else bars
        self.poll_s = poll_s
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

            self._bars = {
                name: tqdm(total=total, desc=name, unit="epoch", position=i, leave=True, file=sys.stderr, dynamic_ncols=True)
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
                bar.set_postfix(step=int(state.get("step", 0)), loss="-" if loss is None else f"{loss:.4g}", refresh=False)
                bar.refresh()
            when, logged_epoch = self._logged.get(name, (self._started, -1))
            finished = bool(state.get("done")) or epoch >= total
            due = now - when >= self.log_every_s and epoch != logged_epoch
            if due or (finished and logged_epoch != epoch) or (final and logged_epoch != epoch):
                self.logger.info("%s", progress_line(name, {**state, "done": finished}, total, elapsed, eta))
                self._logged[name] = (now, epoch)
