"""A stopped run tidies up (issue 14): SIGTERM to ``lrprop run`` while it trains marks its Prefect
flow run Crashed, stops Ray and Prefect's temporary server and removes the Train workers' local
checkpoint folders; a second signal exits at once. A killed worker's folder is removed by the
next one (lrprop/interrupts.py).

The run is a real ``lrprop run`` process on the embedded defaults (Prefect's temporary server, a
local Ray). Oracles: the operating system's process table (every process whose environment
carries this test's mark), the temporary folder, and Prefect's own record of the flow run, read
back through its client.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml
from tiny import TINY_MODEL

from lrprop.interrupts import WORKER_DIR_PREFIX, remove_left_worker_dirs

TINY_RUN = {
    "data": {"frames_per_view": 8, "image_size": 32},
    "model": TINY_MODEL,
    "optim": {"epochs": 1000},  # it is stopped long before
    "pretrain": {"steps": 0},
    "synthetic": {"num_actions": 1, "train_videos": 4, "val_videos": 2, "length_range": [20, 36], "frame_size": 32},
}


def _marked_processes(mark: str) -> list[int]:
    """The processes whose environment carries ``mark``: the run, and all it started (Ray's,
    Prefect's server), which inherit its environment."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if mark.encode() in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
            except OSError:  # gone, or not ours to read
                pass
    return found


class _Run:
    """``lrprop run`` in a process of its own, with its own Prefect home and temporary folder."""

    def __init__(self, tmp_path: Path):
        self.mark = f"lrprop-test-{uuid.uuid4().hex[:8]}"
        # Short: Ray puts its sockets under the temporary folder, and socket paths are short
        self.tmp = Path(tempfile.mkdtemp(prefix="lrp-", dir="/tmp"))
        self.store = tmp_path / "store"
        config = tmp_path / "tiny.yaml"
        config.write_text(yaml.safe_dump(TINY_RUN))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAY_"))}
        self.env.update(
            LRPROP_TEST_MARK=self.mark,
            TMPDIR=str(self.tmp),
            PREFECT_HOME=str(tmp_path / "prefect"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        )
        self.stderr = tmp_path / "stderr.txt"
        command = [sys.executable, "-m", "lrprop.cli", "run", "--config", str(config), "--store", str(self.store)]
        command += ["--run-name", "r1"]
        with open(self.stderr, "w") as err:
            self.process = subprocess.Popen(command, env=self.env, stdout=subprocess.DEVNULL, stderr=err)

    def wait_until_training(self, timeout_s: float = 240) -> None:
        """Until the class has a checkpoint in the store and its worker a local folder."""
        deadline = time.monotonic() + timeout_s
        while not (list(self.store.glob("runs/r1/ray/reach/checkpoint_*")) and list(self.tmp.glob(f"{WORKER_DIR_PREFIX}*"))):
            assert self.process.poll() is None, self.stderr.read_text()[-3000:]
            assert time.monotonic() < deadline, "the run did not start training"
            time.sleep(0.2)

    def left(self, timeout_s: float = 15) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while (pids := _marked_processes(self.mark)) and time.monotonic() < deadline:
            time.sleep(0.5)
        return pids

    def kill_what_is_left(self) -> None:
        for pid in _marked_processes(self.mark):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def _flow_runs(env: dict) -> list[dict]:
    """Every flow run in Prefect's database: name, state, its state's message, oldest first."""
    code = (
        "import asyncio, json\n"
        "from prefect.client.orchestration import get_client\n"
        "from prefect.client.schemas.sorting import FlowRunSort\n"
        "async def runs():\n"
        "    async with get_client() as client:\n"
        "        found = await client.read_flow_runs(sort=FlowRunSort.EXPECTED_START_TIME_ASC)\n"
        "        return [{'name': r.name, 'state': r.state.type.value, 'message': r.state.message or ''} for r in found]\n"
        "print(json.dumps(asyncio.run(runs())))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _flow_run_states(env: dict) -> list[str]:
    return [run["state"] for run in _flow_runs(env)]


@pytest.fixture
def training_run(tmp_path):
    """A ``lrprop run`` that is training; whatever it leaves is killed afterwards."""
    run = _Run(tmp_path)
    try:
        run.wait_until_training()
        yield run
    finally:
        run.kill_what_is_left()


@pytest.mark.integration
def test_sigterm_stops_the_run_marking_it_crashed_and_leaves_no_process_or_folder(training_run):
    run = training_run
    run.process.send_signal(signal.SIGTERM)
    rc = run.process.wait(timeout=60)
    stderr = run.stderr.read_text()
    assert rc == 128 + signal.SIGTERM, stderr[-3000:]
    last = [line for line in stderr.splitlines() if line.startswith("lrprop:")][-1]
    assert last == "lrprop: stopped by SIGTERM; a run started again under its --run-name resumes it"
    assert run.left() == []  # Ray's processes, its dashboard agent, Prefect's temporary server
    assert list(run.tmp.glob(f"{WORKER_DIR_PREFIX}*")) == []
    assert _flow_run_states(run.env) == ["CRASHED"]


@pytest.mark.integration
def test_a_second_signal_exits_at_once(training_run):
    run = training_run
    run.process.send_signal(signal.SIGINT)
    time.sleep(0.3)  # the first one's clean-up takes seconds (Ray's shutdown)
    second = time.monotonic()
    run.process.send_signal(signal.SIGINT)
    assert run.process.wait(timeout=30) == 128 + signal.SIGINT
    assert time.monotonic() - second < 5


@pytest.mark.integration
def test_a_run_killed_outright_is_marked_crashed_when_started_again(training_run, tmp_path):
    """SIGKILL leaves no chance to mark the flow run; it stays Running until the run's name is
    started again, which finds its process gone and marks it Crashed."""
    first = training_run
    first.kill_what_is_left()  # SIGKILL: the run and all it started (Ray, Prefect's server)
    first.process.wait(timeout=30)
    assert _flow_run_states(first.env) == ["RUNNING"]  # what SIGKILL leaves
    again = _Run(tmp_path)  # the same store, Prefect home and --run-name
    try:
        again.wait_until_training()
        runs = _flow_runs(again.env)
        assert [(r["name"], r["state"]) for r in runs] == [("r1", "CRASHED"), ("r1", "RUNNING")]
        assert "its process (" in runs[0]["message"] and f":{first.process.pid}) is gone" in runs[0]["message"]
    finally:
        again.kill_what_is_left()


def test_a_killed_workers_folder_is_removed_and_a_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = tmp_path / f"{WORKER_DIR_PREFIX}{dead.pid}-abc"
    live = tmp_path / f"{WORKER_DIR_PREFIX}{os.getpid()}-def"
    other = tmp_path / "lrprop-ckpt-not-a-pid"
    for folder in (gone, live, other):
        (folder / "step_00000002").mkdir(parents=True)
    assert remove_left_worker_dirs(tmp_path) == [gone]
    assert not gone.exists() and live.exists() and other.exists()


def test_a_processs_descendants_are_found_through_its_children():
    from lrprop.interrupts import _descendants

    # A child that starts a grandchild and waits: both are this process's descendants
    child = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import time; time.sleep(30)'])"]
    )
    children = Path(f"/proc/{child.pid}/task/{child.pid}/children")  # the kernel's own list
    grandchildren: list[int] = []
    try:
        deadline = time.monotonic() + 20
        while not (grandchildren := [int(p) for p in children.read_text().split()]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert grandchildren
        assert {child.pid, *grandchildren} <= _descendants()
    finally:
        for pid in grandchildren:  # only these: the session's own Ray is a descendant too
            os.kill(pid, signal.SIGKILL)
        child.wait()


def test_a_zombie_is_not_taken_for_a_live_process():
    """An exited process not yet reaped (its parent, here this test, has not waited for it)
    still answers kill(pid, 0): Ray's orphaned workers in a container whose first process reaps
    none stay so, and a stop would wait for them and keep their folders."""
    from lrprop.interrupts import process_alive

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{child.pid}/stat")
    deadline = time.monotonic() + 20
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_alive(child.pid) is False
    child.wait()
    assert process_alive(os.getpid()) is True
