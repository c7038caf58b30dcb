"""Each lrprop run's Prefect flow run: named after the run, with its process recorded, and the
flow runs of a process killed outright marked Crashed when the run is started again (issue 14).

A SIGTERM or SIGINT lets ``lrprop run`` mark its own flow run Crashed (:mod:`lrprop.interrupts`).
A SIGKILL, the OOM killer or a lost machine does not: the flow run stays Running in Prefect's
database for good. Every flow run of a run therefore carries the run's name and its process as
Prefect's own ``infrastructure_pid`` (``host:pid``), and when a run of that name starts again
(a resume), the Running flow runs of the same flow and name whose process on this host is gone
are set Crashed, saying so. One whose process is alive, or on another host, is left alone and
named in a warning: two processes of one run would write the same checkpoints.
"""

from __future__ import annotations

import logging
import os
import socket

from lrprop.interrupts import process_alive

__all__ = ["claim_run"]

log = logging.getLogger(__name__)


def _owner(infrastructure_pid: str | None) -> tuple[str, int] | None:
    host, _, pid = (infrastructure_pid or "").rpartition(":")
    return (host, int(pid)) if host and pid.isdigit() else None


def claim_run(run_name: str) -> list[str]:
    """Name the current flow run ``run_name`` and record its process; mark Crashed the other
    Running flow runs of this flow and name whose process on this host is gone. Returns their
    ids; nothing outside a flow run."""
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
        client.update_flow_run(me, name=run_name, infrastructure_pid=f"{host}:{os.getpid()}")
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
            # This process is not the old one: a restarted container reuses its host name and pid
            gone = owner is not None and owner[0] == host and (owner[1] == os.getpid() or not process_alive(owner[1]))
            if not gone:
                log.warning(
                    "flow run %s of run %r is still Running (process %s): two processes of one run write the same checkpoints",
                    other.id,
                    run_name,
                    other.infrastructure_pid or "unknown",
                )
                continue
            message = (
                f"its process ({other.infrastructure_pid}) is gone, killed without a chance to stop; "
                f"run {run_name!r} was started again"
            )
            client.set_flow_run_state(other.id, Crashed(message=message), force=True)
            log.warning("flow run %s of run %r marked Crashed: %s", other.id, run_name, message)
            marked.append(str(other.id))
    return marked
