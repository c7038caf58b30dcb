"""A clean stop on SIGTERM or SIGINT (issue 14): what a scheduler, ``kill`` or Ctrl-C asks of a run.

    with stop_cleanly():          # the CLI, around a command's work
        retrain_and_evaluate(...)

The first signal raises :class:`Interrupted` (a ``KeyboardInterrupt``) in the main thread, so
that everything unwinds: Prefect marks the flow run Crashed ("aborted by an interrupt signal"),
``finally`` blocks run, and on the way out Ray is shut down (its local processes with it), the
Train workers' local checkpoint folders that this stop left behind are removed, and Prefect's
temporary server is stopped (its exit handler). A second signal exits at once.

Python's default for SIGTERM ends the process without any of that, and ``ray.init`` puts its own
handler in place (it kills Ray's processes, then ``sys.exit``): :func:`keeping_signal_handlers`
keeps the handler that was there before Ray's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "Interrupted",
    "WORKER_DIR_PREFIX",
    "keeping_signal_handlers",
    "process_alive",
    "process_start_ticks",
    "process_started_at",
    "remove_left_worker_dirs",
    "stop_cleanly",
    "worker_dir_prefix",
]

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)
# The local checkpoint folder of a Train worker: <tmp>/lrprop-ckpt-<pid>-<random>, named by its
# process so that a folder whose process is gone can be told from one in use.
WORKER_DIR_PREFIX = "lrprop-ckpt-"
_WORKER_DIR = re.compile(rf"{re.escape(WORKER_DIR_PREFIX)}(\d+)-")
# How long a stop waits for the local Train workers to exit after Ray's shutdown (on a loaded
# 2-core machine they took seconds; the test of a stop failed without the wait)
_WORKERS_EXIT_S = 15.0


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal; ``signum`` is the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _exit_now(signum: int, frame) -> None:
    os._exit(128 + signum)  # the second signal: the user wants it gone, not tidied


def _interrupt(signum: int, frame) -> None:
    for s in SIGNALS:
        signal.signal(s, _exit_now)
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_cleanly() -> Iterator[None]:
    """Run the block so that SIGTERM or SIGINT stops it cleanly (the module's docstring).

    Raises:
        Interrupted: after the clean-up, for the caller to exit with ``128 + signum``.
    """
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous = {s: signal.signal(s, _interrupt) for s in SIGNALS}
    try:
        yield
    except KeyboardInterrupt:
        _shut_down_ray()
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def keeping_signal_handlers() -> Iterator[None]:
    """Put back the SIGTERM and SIGINT handlers the block replaced (``ray.init`` replaces SIGTERM's)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in saved.items():
            if handler is not None:  # None: set from outside Python, which cannot be put back
                signal.signal(s, handler)


def _shut_down_ray() -> None:
    """Shut down this process's Ray, if it has one: the ``fit()`` calls waiting on it in other
    threads then return, the Train workers of a local Ray are stopped with it (a cluster's
    share the fate of this driver), and the folders they leave here are removed."""
    try:
        import ray  # Ray
    except ImportError:
        return
    if not ray.is_initialized():
        return
    log.warning("stopping Ray")
    # The local Train workers are this process's descendants (under the raylet). Ray's shutdown
    # returns before they have exited, and the folder of a live process is kept: wait for them.
    ours = _descendants() & _worker_dir_pids()
    ray.shutdown()  # Ray
    deadline = time.monotonic() + _WORKERS_EXIT_S
    while (ours := {pid for pid in ours if process_alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    remove_left_worker_dirs()


def _stat_fields(stat: Path) -> list[str]:
    """A ``/proc/<pid>/stat`` file's fields after the command name: [state, ppid, …]. The name,
    in parentheses, may itself hold spaces and parentheses.

    Raises:
        OSError: the process is gone (or there is no ``/proc``).
    """
    return stat.read_text().rsplit(")", 1)[1].split()


def _descendants() -> set[int]:
    """This process's descendants, from ``/proc`` (none where there is no ``/proc``)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(_stat_fields(stat)[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = set(), [os.getpid()]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _worker_dirs(root: str | Path | None = None) -> Iterator[tuple[Path, int]]:
    """The Train workers' local folders under ``root`` (the temporary folder), each with the
    process its name gives."""
    for path in Path(root or tempfile.gettempdir()).glob(f"{WORKER_DIR_PREFIX}*"):
        if (match := _WORKER_DIR.match(path.name)) and path.is_dir():
            yield path, int(match.group(1))


def _worker_dir_pids(root: str | Path | None = None) -> set[int]:
    """The processes named by the Train workers' local folders under ``root``."""
    return {pid for _, pid in _worker_dirs(root)}


def worker_dir_prefix() -> str:
    """The ``tempfile`` prefix of this process's local checkpoint folder."""
    return f"{WORKER_DIR_PREFIX}{os.getpid()}-"


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (possibly another user's); a zombie, exited
    but not reaped (orphaned Ray workers in a container whose first process reaps none), does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    try:
        return _stat_fields(Path(f"/proc/{pid}/stat"))[0] != "Z"
    except (OSError, IndexError):  # no /proc (macOS), or gone since
        return True


def process_start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat``'s field 22):
    exact, and with its pid it names one process for as long as the machine runs; None where it
    is gone or there is no ``/proc``."""
    try:
        return int(_stat_fields(Path(f"/proc/{pid}/stat"))[19])
    except (OSError, IndexError, ValueError):
        return None


def process_started_at(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch, to about a second: the kernel
    gives its boot time in whole seconds); None where it is gone or there is no ``/proc``."""
    ticks = process_start_ticks(pid)
    try:
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
    except (OSError, IndexError, ValueError, StopIteration):
        return None
    return None if ticks is None else boot + ticks / os.sysconf("SC_CLK_TCK")


def remove_left_worker_dirs(root: str | Path | None = None) -> list[Path]:
    """Remove the Train workers' local checkpoint folders under ``root`` (the temporary
    folder) whose process is gone: a killed worker leaves its folder, a restarted one or a
    stopped run removes it. Folders of live processes are kept. Returns the removed folders."""
    removed = []
    for path, pid in _worker_dirs(root):
        if not process_alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.info("removed the local checkpoint folders of stopped Train workers: %s", [str(p) for p in removed])
    return removed
