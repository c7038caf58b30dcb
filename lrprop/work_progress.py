"""Progress of work counted in items (videos ingested, videos embedded, trials searched), shown
to people: a tqdm bar on a terminal and a log line at most every ``log_every_s`` (issue 15).

    with WorkProgress(500, what="ingest synthetic", unit="videos", logger=log) as shown:
        for video in videos:
            ...
            shown.advance()
    # logs "ingest synthetic: 120/500 videos, 24 s elapsed, ETA 76 s" every 30 s and
    #      "ingest synthetic: 500/500 videos, 98 s elapsed, done" at the end

The log lines are what a run without a terminal (a deployment, CI) shows: give Prefect's run
logger to put them in the flow run's logs. The ETA is the pace so far times what is left, the
same rule as a training's (:mod:`lrprop.pipeline.progress`); none before the first item is done.
Training has its own display, fed by the Train workers: this one counts in the process that
does the work.
"""

from __future__ import annotations

import logging
import sys
import time

__all__ = ["WorkProgress", "count_line"]


def count_line(what: str, done: int, total: int, unit: str, elapsed_s: float, eta_s: float | None, note: str = "") -> str:
    """``ingest: 120/500 videos, 24 s elapsed, ETA 76 s`` (``done`` for the ETA when ``done >= total``;
    no ETA when ``eta_s`` is None); ``note`` is appended after a semicolon."""
    parts = [f"{what}: {done}/{total} {unit}", f"{elapsed_s:.0f} s elapsed"]
    if done >= total:
        parts.append("done")
    elif eta_s is not None:
        parts.append(f"ETA {eta_s:.0f} s")
    return ", ".join(parts) + (f"; {note}" if note else "")


class WorkProgress:
    """Counts ``total`` items of work while the ``with`` block runs (see the module).

    Args:
        total: items to do.
        what: the work's name, at the start of each line (``ingest synthetic``, ``evaluate reach``).
        unit: the items' name, plural (``videos``, ``videos embedded``).
        logger: where the lines go (a ``logging.Logger`` or Prefect's run logger); None: nowhere.
        log_every_s: seconds between two lines while work remains.
        bar: draw a tqdm bar on stderr (default: when stderr is a terminal).
    """

    def __init__(
        self,
        total: int,
        *,
        what: str,
        unit: str,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
        log_every_s: float = 30.0,
        bar: bool | None = None,
    ):
        self.total = int(total)
        self.what = what
        self.unit = unit
        self.logger = logger
        self.log_every_s = log_every_s
        self.done = 0
        self.note = ""
        self._bar_wanted = sys.stderr.isatty() if bar is None else bar
        self._bar = None
        self._started = time.monotonic()
        self._logged_at = self._started
        self._logged_done = -1

    def __enter__(self) -> WorkProgress:
        self._started = self._logged_at = time.monotonic()
        if self._bar_wanted:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total, desc=self.what, unit=self.unit.split()[0].rstrip("s") or self.unit, leave=False, file=sys.stderr
            )
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()
        if exc[0] is None and self._logged_done != self.done:
            self._log()  # the last count, always: "done", or how far it got

    def advance(self, n: int = 1, note: str | None = None) -> None:
        """``n`` more items done; ``note`` (e.g. the best trial so far) replaces the line's note."""
        self.done += n
        if note is not None:
            self.note = note
        if self._bar is not None:
            self._bar.update(n)
            if self.note:
                self._bar.set_postfix_str(self.note, refresh=False)
        now = time.monotonic()
        if now - self._logged_at >= self.log_every_s or self.done >= self.total:
            self._log(now)

    def line(self, now: float | None = None) -> str:
        """The current count as :func:`count_line` writes it."""
        now = time.monotonic() if now is None else now
        elapsed = now - self._started
        eta = elapsed / self.done * max(0, self.total - self.done) if self.done else None
        return count_line(self.what, self.done, self.total, self.unit, elapsed, eta, self.note)

    def _log(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._logged_at, self._logged_done = now, self.done
        if self.logger is not None:
            self.logger.info("%s", self.line(now))
