"""Each lrprop run's Prefect flow run: named after the run, with its process recorded, and the
flow runs of a process killed outright marked Crashed when the run is started again (issue 14).

A SIGTERM or SIGINT lets ``lrprop run`` mark its own flow run Crashed (:mod:`lrprop.interrupts`).
A SIGKILL, the OOM killer or a lost machine does not: the flow run stays Running in Prefect's
database for good. Every flow run of a run therefore carries the run's name and its process as
Prefect's own ``infrastructure_pid`` (``host:pid:start``, ``start`` the kernel's start time of
the process in clock ticks), and when a run of that name starts again
(a resume), the Running flow runs of the same flow and name whose process on this host is gone
are set Crashed, saying so; a live process of that pid with another start time (a pid the system
gave again, or a restarted container's) is not its owner. One whose process on this host is alive
stops the new one (:class:`RunInUse`): two processes of one run would write the same
checkpoints. One on another host is left alone and named in a warning: its process cannot be
seen from here.
"""

from __future__ import annotations

import logging
import os
import socket

from lrprop.failures import PermanentError
from lrprop.interrupts import process_alive, process_start_ticks

__all__ = ["RunInUse", "claim_run"]

log = logging.getLogger(__name__)


class RunInUse(PermanentError):
    """A run name is being run by another live process on this host."""


def _owner(infrastructure_pid: str | None) -> tuple[str, int, int | None] | None:
    """(host, pid, start ticks) of ``host:pid:start``; start None in the older ``host:pid``."""
    parts = (infrastructure_pid or "").split(":")
    if len(parts) not in (2, 3) or not parts[0] or not all(p.isdigit() for p in parts[1:]):
        return None
    return parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else None


def _owner_gone(pid: int, start: int | None) -> bool:
    """Whether process ``pid`` on this host, started at ``start`` (clock ticks since boot; None:
    not recorded), is gone: dead, this process, or a live one of another start time."""
    if pid == os.getpid() or not process_alive(pid):
        return True
    now = process_start_ticks(pid)
    # Ticks against ticks, both the kernel's: no wall clock, whose steps would make a live owner look new
    return start is not None and now is not None and now != start


def claim_run(run_name: str) -> list[str]:
    """Name the current flow run ``run_name`` and record its process; mark Crashed the other
    Running flow runs of this flow and name whose process on this host is gone. Returns their
    ids; nothing outside a flow run.

    Raises:
        RunInUse: a Running flow run of this flow and name belongs to a live process on this host.
    """
    from prefect import get_client, runtime
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterName,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    me = runtime.flow_run.id
    if me is None:
        return []
    host = socket.gethostname()
    marked = []
    with get_client(sync_client=True) as client:
        owner = f"{host}:{os.getpid()}" + (f":{start}" if (start := process_start_ticks(os.getpid())) is not None else "")
        client.update_flow_run(me, name=run_name, infrastructure_pid=owner)
        running = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[runtime.flow_run.flow_name])),
            flow_run_filter=FlowRunFilter(
                name=FlowRunFilterName(any_=[run_name]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])),
            ),
        )
        for other in running:
            if str(other.id) == str(me):
                continue
            owner = _owner(other.infrastructure_pid)
            here = owner is not None and owner[0] == host
            if here and not _owner_gone(owner[1], owner[2]):
                raise RunInUse(
                    f"run {run_name!r} is already running here: flow run {other.id}, process {owner[1]}; "
                    f"stop it (kill -TERM {owner[1]}) or start this one under another --run-name"
                )
            if not here:
                log.warning(
                    "flow run %s of run %r is still Running (process %s, not on this host): "
                    "two processes of one run write the same checkpoints",
                    other.id,
                    run_name,
                    other.infrastructure_pid or "unknown",
                )
                continue
            message = (
                f"its process ({owner[0]}:{owner[1]}) is gone, killed without a chance to stop; "
                f"run {run_name!r} was started again"
            )
            client.set_flow_run_state(other.id, Crashed(message=message), force=True)
            log.warning("flow run %s of run %r marked Crashed: %s", other.id, run_name, message)
            marked.append(str(other.id))
    return marked
