"""Ray Train restarts a worker only when a restart can help (issue 14): a SIGKILLed worker is
restarted and resumes from its newest checkpoint; a worker whose data is damaged stops the
class at once, with one error naming the file, and is not restarted.

Integration tests (``pytest -m integration``; CI runs them) on a local Ray of 2 CPUs. The oracle
for "restarted" is Ray's own record: the Train worker actors its State API lists, dead or alive.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import pytest
from tiny import TINY_MODEL

from lrprop.config import config_from_dict
from lrprop.failures import PermanentError
from lrprop.ingest.synthetic import ensure_synthetic_dataset
from lrprop.pipeline.distributed import train_classes

pytestmark = pytest.mark.integration

EPOCHS = 60  # about 0.1 s each here: long enough to kill the worker part way


def _config(**ray):
    return config_from_dict(
        {
            "data": {"frames_per_view": 8, "image_size": 32},
            "model": TINY_MODEL,
            "optim": {"epochs": EPOCHS, "lr": 1e-3},
            "pretrain": {"steps": 0},
            "train": {"log_every": 0, "checkpoint_epochs": 1, "keep_checkpoints": 2},
            "synthetic": {"num_actions": 1, "train_videos": 4, "val_videos": 2, "length_range": [20, 36], "frame_size": 32},
            "ray": {"max_failures": 2, "start_timeout_s": 90, **ray},
        }
    )


def _train_workers() -> list:
    """Every Ray Train worker actor this cluster has made, dead or alive."""
    import ray
    from ray.util.state import list_actors

    return list_actors(address=ray.get_runtime_context().gcs_address, filters=[("class_name", "=", "RayTrainWorker")])


def test_a_sigkilled_worker_is_restarted_and_resumes_from_its_newest_checkpoint(tmp_path, local_ray):
    import json
    import threading

    config = _config()
    root = str(tmp_path / "store")
    version = ensure_synthetic_dataset(config, root)
    checkpoints = tmp_path / "store" / "runs" / "r1" / "ray" / "reach"
    killed, errors = [], []

    def kill_the_worker_after_two_checkpoints():
        try:
            deadline = time.monotonic() + 240
            while not (alive := [a for a in _train_workers() if a.state == "ALIVE" and a.pid]):
                assert time.monotonic() < deadline, "no Train worker started"
                time.sleep(0.2)
            while len(list(checkpoints.glob("checkpoint_*"))) < 2:
                assert time.monotonic() < deadline, "no checkpoint was written"
                time.sleep(0.02)
            os.kill(alive[0].pid, signal.SIGKILL)
            killed.append(alive[0].pid)
        except Exception as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    watcher = threading.Thread(target=kill_the_worker_after_two_checkpoints, daemon=True)
    watcher.start()
    runs = train_classes(config, root, dataset="synthetic", version=version, actions=["reach"], run_name="r1")
    watcher.join(timeout=10)
    assert not errors and killed, errors
    assert runs["reach"].metrics["epoch"] == EPOCHS - 1  # the run finished
    assert len(_train_workers()) == 2  # one restart
    # Ray counts the reports of a run across its restarts (its checkpoint manager's snapshot).
    # A restart that resumed from the newest checkpoint reports each epoch once; one that
    # started over would have reported the epochs before the kill twice.
    snapshot = json.loads((checkpoints / "checkpoint_manager_snapshot.json").read_text())
    assert snapshot["current_report_index"] == EPOCHS
    # The restarted worker removed the folder its killed predecessor left (lrprop.interrupts).
    assert list(Path(tempfile.gettempdir()).glob(f"lrprop-ckpt-{killed[0]}-*")) == []


def test_a_worker_whose_data_is_damaged_stops_at_once_naming_the_file_and_is_not_restarted(tmp_path, local_ray, capsys):
    config = _config()
    root = str(tmp_path / "store")
    version = ensure_synthetic_dataset(config, root)
    (damaged,) = (tmp_path / "store" / "datasets" / "synthetic").glob("*/action=reach/split=train/*.parquet")
    damaged.write_bytes(damaged.read_bytes()[:100])

    started = time.monotonic()
    with pytest.raises(PermanentError) as caught:
        train_classes(config, root, dataset="synthetic", version=version, actions=["reach"], run_name="r1")
    message = str(caught.value)
    assert message.startswith("training failed for ['reach']: reach: rank 0: ValueError: ")
    assert f"{damaged}: not a readable Parquet file" in message and message.endswith("(a retry cannot fix this; not retried)")
    assert len(_train_workers()) == 1  # ray.max_failures is 2: without the stop Ray would have made 3
    assert time.monotonic() - started < 60
