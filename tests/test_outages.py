"""Storage outages, injected (issue 14): a loopback proxy in front of moto's S3 server stops
forwarding for some seconds at a chosen request (tests/outage_proxy.py), while a real
``lrprop run`` (Prefect's temporary server, a local Ray) works against the bucket through it.

Oracles: what the bucket holds afterwards, read straight from moto (not through the proxy) with
lrprop's readers and ``store check``; the proxy's record of the outage; Prefect's log of its retries.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from outage_proxy import OutageProxy
from tiny import TINY_MODEL

from lrprop.registry.embeddings import list_embeddings
from lrprop.registry.store_audit import audit_store

pytestmark = pytest.mark.integration

TINY_RUN = {
    "data": {"frames_per_view": 8, "image_size": 32},
    "model": TINY_MODEL,
    "optim": {"epochs": 2},
    "pretrain": {"steps": 0},
    "synthetic": {"num_actions": 1, "train_videos": 4, "val_videos": 2, "length_range": [20, 36], "frame_size": 32},
    "eval": {"fractions": [0.5, 1.0], "ap_ks": [1, 5]},
}


def _run(tmp_path: Path, store: str, endpoint: str, config: dict, **env_vars: str) -> subprocess.CompletedProcess:
    """``lrprop run`` in a process of its own, its S3 client pointed at ``endpoint``."""
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAY_"))}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        **env_vars,
    )
    command = [sys.executable, "-m", "lrprop.cli", "run", "--config", str(path), "--store", store, "--run-name", "r1"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_an_outage_at_publish_is_retried_and_publishes_each_class_once(tmp_path, s3_bucket, s3_endpoint):
    root = f"{s3_bucket}/lrprop"
    proxy = OutageProxy(s3_endpoint.removeprefix("http://"), cut_on=rb"(PUT|POST) /[^ ]*/embeddings/", seconds=12)
    try:
        # botocore's own retries (and s3fs's around them) bridge a 12 s outage by themselves, as
        # they should; one attempt per call leaves it to the task's retries, which this tests.
        done = _run(tmp_path, root, proxy.url, TINY_RUN, AWS_MAX_ATTEMPTS="1")
    finally:
        proxy.close()
    assert done.returncode == 0, done.stderr[-4000:]
    assert len(proxy.cuts) == 1 and "/embeddings/synthetic/reach/" in proxy.cuts[0], proxy.cuts
    assert proxy.refused > 0  # the clients met the outage
    assert "Retry 1/3 will start" in done.stderr  # Prefect retried the task, the error being transient
    # Read from moto directly: one complete version of the class, whole.
    assert [(e["action"], e["n_versions"]) for e in list_embeddings(root)] == [("reach", 1)]
    assert [r for r in audit_store(root) if r.state == "damaged"] == []


# What an outage can cut while a class trains: one of a checkpoint's 5 files (lrprop.training.
# checkpoint), the first checkpoint and two files of the second let through; or the list of
# checkpoints Ray's controller writes after each (the second one).
_CHECKPOINT_CUTS = {
    "a checkpoint file": (rb"(PUT|POST) /[^ ]*/ray/reach/checkpoint_\d{4}-\d\d-\d\d_[^/ ]*/", 7),
    "ray's checkpoint list": (rb"(PUT|POST) /[^ ]*/ray/reach/checkpoint_manager_snapshot\.json", 1),
}


@pytest.mark.parametrize("cut", list(_CHECKPOINT_CUTS))
def test_an_outage_while_a_checkpoint_uploads_resumes_from_a_complete_one_and_finishes(tmp_path, s3_bucket, s3_endpoint, cut):
    from lrprop.training.checkpoint import verify_checkpoint

    root = f"{s3_bucket}/lrprop"
    config = {
        **TINY_RUN,
        "optim": {"epochs": 8},
        "train": {"checkpoint_epochs": 1, "keep_checkpoints": 3},
        # The restarted workers may meet the outage too: room for a few restarts
        "ray": {"max_failures": 5},
    }
    upload, after = _CHECKPOINT_CUTS[cut]
    proxy = OutageProxy(s3_endpoint.removeprefix("http://"), cut_on=upload, seconds=10, after=after)
    try:
        done = _run(tmp_path, root, proxy.url, config, AWS_MAX_ATTEMPTS="1")
    finally:
        proxy.close()
    assert len(proxy.cuts) == 1 and "/runs/r1/ray/reach/checkpoint_" in proxy.cuts[0], proxy.cuts
    assert proxy.refused > 0  # the clients met the outage
    assert done.returncode == 0, done.stderr[-4000:]
    if cut == "ray's checkpoint list":
        # The checkpoint whose record the outage cut is whole but unknown to the retried job: Ray
        # would leave it there for good; it is named and removed once the class is done. (A cut
        # file may go either way: the worker fails and Ray restarts it, or the controller, on the
        # same outage, fails too.)
        assert "a checkpoint Ray did not record (an upload cut short)" in done.stderr
    assert [(e["action"], e["n_versions"]) for e in list_embeddings(root)] == [("reach", 1)]
    # What the class's Ray run kept, read from moto directly: every checkpoint whole
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    entries = fs.ls(f"{root}/runs/r1/ray/reach", detail=True)
    kept = sorted(e["name"] for e in entries if e["type"] == "directory" and "/checkpoint_" in e["name"])
    assert kept
    for path in kept:
        local = tmp_path / "kept" / path.rsplit("/", 1)[-1]
        fs.get(path, str(local), recursive=True)
        verify_checkpoint(local)
