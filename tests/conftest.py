"""Shared fixtures: a fresh root in fsspec's memory filesystem; and, for the integration tests,
an S3 server on loopback, a local Ray, Prefect.

The integration three are session-wide and started only by tests that ask for them:
moto's S3 server as a separate process (an in-process one can deadlock against native clients
that hold the GIL), a Ray of 2 CPUs started after the S3 variables are set so its workers
inherit them, and one Prefect test harness (a temporary server and database).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest


@pytest.fixture
def memory_root():
    """A fresh root in fsspec's process-wide memory filesystem, emptied afterwards."""
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]
    yield f"memory://lrprop-test-{uuid.uuid4().hex}"
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1; the AWS_* variables point boto3/s3fs at it."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"moto server did not start on {endpoint}")
            time.sleep(0.2)
    saved = {
        k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint
    )
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A fresh bucket; returns its s3:// URI."""
    import s3fs

    name = f"lrprop-{uuid.uuid4().hex[:10]}"
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir(name)
    return f"s3://{name}"


@pytest.fixture
def local_ray(s3_endpoint):
    """A local Ray of 2 CPUs for one test (shut down after it; nothing else touched).

    One per test, not per session: a Tune search started in the same Ray after a finished
    Train job was seen to wait forever for its trials' workers here (see the closing notes).
    """
    import ray

    from lrprop.pipeline.distributed import init_local_ray

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    # The dashboard stays on: Ray Train needs its State API to clean up a finished run's
    # placement group; without it later jobs starve waiting for resources. Started as lrprop
    # starts it, so that Ray Train finds this cluster's State API when another Ray runs here.
    init_local_ray(num_cpus=2, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One temporary Prefect server and database for the session."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
