"""A run started again finds the flow runs its name left Running (lrprop/pipeline/flow_runs.py,
issue 14): one whose process is gone, or whose pid a later process has since been given, is
marked Crashed; one whose process on this host still runs stops the new one; one on another host
is only warned of.

Against Prefect's own temporary server (the session's harness); the processes are real ones
started here, and the oracle for "another process of that pid" is the kernel's start time of each.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

from lrprop.interrupts import process_start_ticks, process_started_at
from lrprop.pipeline.flow_runs import RunInUse, claim_run

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _claiming_flow():
    from prefect import flow

    @flow(name="lrprop-claim-test")
    def claiming(run_name: str) -> list[str]:
        return claim_run(run_name)

    return claiming


def _left_running(claiming, run_name: str) -> str:
    """A Running flow run of ``claiming`` named ``run_name``, as a killed process leaves one."""
    from prefect import get_client
    from prefect.states import Running

    with get_client(sync_client=True) as client:
        return str(client.create_flow_run(claiming, name=run_name, state=Running()).id)


def _set_owner(flow_run_id: str, owner: str) -> None:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run_id, infrastructure_pid=owner)


def _state(flow_run_id: str) -> tuple[str, str]:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    return state.type.value, state.message or ""


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_gone_process_is_marked_crashed():
    claiming = _claiming_flow()
    name = f"r-{uuid.uuid4().hex[:8]}"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = _left_running(claiming, name)
    _set_owner(left, f"{socket.gethostname()}:{dead.pid}")
    assert claiming(name) == [left]
    state, message = _state(left)
    assert state == "CRASHED" and f":{dead.pid}) is gone" in message
    # The new flow run records its own process with the kernel's start time of it
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
    owners = sorted(r.infrastructure_pid for r in runs)
    assert f"{socket.gethostname()}:{os.getpid()}:{process_start_ticks(os.getpid())}" in owners


def test_a_live_process_of_the_run_on_this_host_stops_the_new_one():
    claiming = _claiming_flow()
    name = f"r-{uuid.uuid4().hex[:8]}"
    owner = _sleeper()
    try:
        left = _left_running(claiming, name)
        _set_owner(left, f"{socket.gethostname()}:{owner.pid}:{process_start_ticks(owner.pid)}")
        with pytest.raises(RunInUse, match=rf"run '{name}' is already running here: flow run {left}, process {owner.pid}"):
            claiming(name)
        assert _state(left)[0] == "RUNNING"
    finally:
        owner.kill()
        owner.wait()


def test_a_pid_given_to_a_later_process_is_not_the_runs():
    claiming = _claiming_flow()
    name = f"r-{uuid.uuid4().hex[:8]}"
    left = _left_running(claiming, name)
    later = _sleeper()  # alive, holding the pid the flow run names, but not the process it recorded
    try:
        started = process_start_ticks(later.pid)
        assert started is not None and started > 0  # the oracle: the kernel's start time of it
        _set_owner(left, f"{socket.gethostname()}:{later.pid}:{started - 1}")
        assert claiming(name) == [left]
        assert _state(left)[0] == "CRASHED"
    finally:
        later.kill()
        later.wait()


def test_a_flow_run_on_another_host_is_only_warned_of(caplog):
    claiming = _claiming_flow()
    name = f"r-{uuid.uuid4().hex[:8]}"
    left = _left_running(claiming, name)
    _set_owner(left, "some-other-host:1")
    with caplog.at_level(logging.WARNING, logger="lrprop.pipeline.flow_runs"):
        assert claiming(name) == []
    assert _state(left)[0] == "RUNNING"
    assert "some-other-host:1, not on this host" in caplog.text


def test_a_process_start_time_is_the_kernels():
    before = time.time()
    child = _sleeper()
    try:
        started = process_started_at(child.pid)
        assert before - 1.0 <= started <= time.time() + 1.0  # boot time is whole seconds
    finally:
        child.kill()
        child.wait()
    assert process_started_at(child.pid) is None  # reaped: gone
