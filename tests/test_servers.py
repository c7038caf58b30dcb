"""The cluster path on one machine: a real `prefect server` with a process work pool and a worker
running a deployment of `infra/prefect.yaml`'s entry point, and a `ray start --head` cluster that
`lrprop run --ray-address` and `lrprop tune --ray-address` send their jobs to (issue 15). Every server is a separate process on
127.0.0.1, started and stopped here; docs/cluster.md ("The cluster path on one machine") gives
the same steps by hand.

Integration tests (``pytest -m integration``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import _free_port
from test_pipeline import TINY_PIPELINE

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the environment's `prefect`, `ray` and `lrprop`


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This environment for a child process, with Prefect's home in ``tmp_path`` and no telemetry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAY_ADDRESS"))}
    return {
        **env,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
        **extra,
    }


def _wait_for(url: str, proc: subprocess.Popen, timeout_s: float, log: Path) -> None:
    """Until ``url`` answers (any HTTP status: a token-authenticated dashboard says 401)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{url} did not answer within {timeout_s} s (rc {proc.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.5)


def _stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout_s: float = 30) -> None:
    """Stop ``proc`` with ``sig`` (SIGINT: Prefect's server and worker, and `ray start --block`,
    clean up what they started), killing it if it has not exited in ``timeout_s``."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text("# lrprop run --config tiny.yaml\n" + yaml.safe_dump(TINY_PIPELINE))
    return path


@pytest.fixture
def ray_head(tmp_path):
    """A `ray start --head --block` cluster of 2 CPUs on 127.0.0.1 with token authentication;
    returns (GCS address, dashboard URL, the environment its drivers need)."""
    port, dashboard = _free_port(), _free_port()
    env = _env(tmp_path, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    log = tmp_path / "ray-head.log"
    # --block: the command stays in the foreground and its reaper stops this cluster's processes
    # when it ends (`ray stop` would stop every Ray on the machine)
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", "--disable-usage-stats"],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_for(f"http://127.0.0.1:{dashboard}/api/version", proc, 90, log)
        yield f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}", env
    finally:
        _stop(proc)
        # `ray start` names its cluster in <ray temp dir>/ray_current_cluster, where a later
        # ray.init() with no address would look for it, and leaves the file when it stops
        current = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
        if current.is_file() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()


def _cluster_state(dashboard: str, env: dict, what: str) -> list[dict]:
    """``ray.util.state.list_<what>`` of the cluster, asked from a child process (this one runs
    no Ray of its own here)."""
    listed = f"state.list_{what}(address=sys.argv[1], limit=10000, detail=True)"
    code = f"import json, sys; from ray.util import state; print(json.dumps([dict(x.__dict__) for x in {listed}], default=str))"
    out = subprocess.run([sys.executable, "-c", code, dashboard], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _lrprop(env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([str(BIN / "lrprop"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-5000:]
    return done


def test_lrprop_run_and_tune_with_a_ray_address_train_on_that_cluster(tmp_path, ray_head):
    address, dashboard, env = ray_head
    config, store_dir = _tiny_config(tmp_path), str(tmp_path / "store")
    run = _lrprop(env, tmp_path, "run", "--config", str(config), "--store", store_dir, "--run-name", "on-cluster",
                  "--ray-address", address)  # fmt: skip
    assert "published embeddings synthetic/reach" in run.stdout and "published embeddings synthetic/swing" in run.stdout
    # What a person watching sees on stderr (Prefect's console): each stage's count, no error line
    # The evaluation's count: reach's 4 + 3 videos, then its 3 validation videos' pace copies
    counts = ("ingest synthetic: 14/14 videos", "reach: epoch 2/2", "swing: epoch 2/2", "evaluate reach: 10/10 videos embedded")
    for line in counts:
        assert line in run.stderr, (line, run.stderr[-5000:])
    assert not re.search(r"\b(ERROR|WARNING)\b", run.stderr), run.stderr[-5000:]
    # It joined the cluster rather than start a Ray of its own: the cluster ran its Train jobs, each
    # class's workers were that cluster's actors, and the run was one of its drivers.
    actors = _cluster_state(dashboard, env, "actors")
    workers = [a for a in actors if a["class_name"] == "RayTrainWorker"]
    assert len(workers) >= 2, sorted({a["class_name"] for a in actors})

    # A search on the same cluster: its trials' Train workers are that cluster's actors too.
    tune = _lrprop(env, tmp_path, "tune", "--config", str(config), "--store", store_dir, "--action", "reach",
                   "--run-name", "search", "--ray-address", address, "--set", "ray.tune_samples=2")  # fmt: skip
    assert "best of 2 trials" in tune.stdout
    assert "search reach: 2/2 trials ended" in tune.stderr and "trial " in tune.stderr, tune.stderr[-5000:]
    assert not re.search(r"\b(ERROR|WARNING)\b", tune.stderr), tune.stderr[-5000:]
    actors = _cluster_state(dashboard, env, "actors")
    assert len([a for a in actors if a["class_name"] == "RayTrainWorker"]) >= len(workers) + 2
    drivers = [j.get("entrypoint") or "" for j in _cluster_state(dashboard, env, "jobs") if j.get("type") == "DRIVER"]
    assert any("lrprop run" in e for e in drivers) and any("lrprop tune" in e for e in drivers), drivers


def _api(base: str, path: str, body: dict | None = None) -> dict | list:
    """A call of Prefect's REST API (POST with ``body``, else GET)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}{path}", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _prefect(env: dict, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s
    )
    assert done.returncode == 0, f"prefect {' '.join(args)}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def _test_deployments(tmp_path: Path, config: Path, store_dir: Path, pool: str) -> Path:
    """``infra/prefect.yaml`` with the nightly deployment pointed at this test: its entry point
    and schedule as they are, this checkout as the working directory, a local store, no cluster."""
    spec = yaml.safe_load((REPO / "infra" / "prefect.yaml").read_text())
    spec["pull"] = [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
    nightly = next(d for d in spec["deployments"] if d["name"] == "retrain-and-evaluate-nightly")
    nightly["parameters"] = {"config_path": str(config), "store_uri": str(store_dir), "ray_address": None}
    nightly["work_pool"] = {"name": pool}
    spec["deployments"] = [nightly]
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_a_deployment_runs_on_a_prefect_server_through_a_process_worker(tmp_path):
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = _env(tmp_path, PREFECT_API_URL=api)
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=server_log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    worker = None
    try:
        _wait_for(f"{api}/health", server, 120, server_log)
        _prefect(env, "work-pool", "create", "lrprop-test", "--type", "process")
        spec = _test_deployments(tmp_path, _tiny_config(tmp_path), tmp_path / "store", "lrprop-test")
        _prefect(env, "deploy", "--all", "--prefect-file", str(spec))
        deployment = _api(api, "/deployments/name/retrain-and-evaluate-from-file/retrain-and-evaluate-nightly")
        # The nightly cron schedule is the server's: it would start a run at 02:00 UTC
        assert [(s["schedule"]["cron"], s["schedule"]["timezone"], s["active"]) for s in deployment["schedules"]] == [
            ("0 2 * * *", "UTC", True)
        ]
        worker = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", "lrprop-test", "--type", "process", "--limit", "1"],
            env=env, cwd=REPO, stdout=worker_log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        started = _prefect(
            env, "deployment", "run", "retrain-and-evaluate-from-file/retrain-and-evaluate-nightly", "-p", "run_name=nightly-test"
        )
        flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", started.stdout).group(1)
        deadline = time.monotonic() + 600
        while (state := _api(api, f"/flow_runs/{flow_run_id}")["state"]["type"]) not in ("COMPLETED", "FAILED", "CRASHED"):
            assert time.monotonic() < deadline, f"flow run still {state}:\n{worker_log.read_text()[-5000:]}"
            time.sleep(2)
        assert state == "COMPLETED", worker_log.read_text()[-8000:]
        # Its metrics artifact, read through the API, names the report and each class's published version.
        artifacts = _api(api, "/artifacts/filter", {"artifacts": {"key": {"any_": ["metrics-nightly-test"]}}})
        assert len(artifacts) == 1
        # made in the pipeline's flow run, a subflow of the deployment's
        made_in = _api(api, f"/flow_runs/{artifacts[0]['flow_run_id']}")
        assert _api(api, f"/task_runs/{made_in['parent_task_run_id']}")["flow_run_id"] == flow_run_id
        assert made_in["name"] == "nightly-test" and made_in["state"]["type"] == "COMPLETED"
        text = artifacts[0]["data"]
        assert f"Report: [{tmp_path / 'store'}/runs/nightly-test/evaluation/report.html]" in text
        for action in ("reach", "swing"):
            assert f"- {action}: `{tmp_path / 'store'}/embeddings/synthetic/{action}/v" in text
        assert "dtw_accuracy" in text and "time-stretch" in text
    finally:
        if worker is not None:
            _stop(worker)
        _stop(server)
