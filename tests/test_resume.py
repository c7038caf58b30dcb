"""Checkpoints are complete or not used: ``complete.json`` is checked before a resume, and a Ray
worker resumes from the newest complete checkpoint in the store (issue 14: an outage cut an
upload short, Ray recorded the checkpoint as made, and the job failed on it three times)."""

from __future__ import annotations

import logging
import shutil
from unittest import mock

import pytest
import torch

from lrprop.pipeline.resume import newest_complete_checkpoint, stored_checkpoints
from lrprop.training.checkpoint import COMPLETE_FILE, load_checkpoint, save_checkpoint, verify_checkpoint


def _checkpoint(directory, step: int):
    """A real checkpoint of a tiny model at ``step`` (its weights all ``step``)."""
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float(step))
    optimizer = torch.optim.Adam(model.parameters())
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    return save_checkpoint(
        directory, model=model, optimizer=optimizer, scheduler=scheduler, step=step, epoch=0, batch_in_epoch=step, config={}
    )


def _stored(tmp_path, steps):
    """The checkpoints at ``steps`` as Ray stores a job's: ``checkpoint_000000``, … in one folder."""
    job = tmp_path / "store" / "runs" / "r" / "ray" / "reach"
    for index, step in enumerate(steps):
        shutil.copytree(_checkpoint(tmp_path / "local", step), job / f"checkpoint_{index:06d}")
    return job


def _latest(job):
    import ray.train

    return ray.train.Checkpoint(str(sorted(job.iterdir())[-1]))


def _weight(path) -> float:
    model = torch.nn.Linear(3, 2)
    load_checkpoint(path, model=model, restore_rng=False)
    return float(model.weight.detach()[0, 0])


def test_a_checkpoint_lists_its_files_and_any_missing_short_or_changed_one_is_named(tmp_path):
    path = _checkpoint(tmp_path, 5)
    verify_checkpoint(path)  # as written
    for file, damage, message in [
        ("optimizer.safetensors", lambda f: f.unlink(), "optimizer.safetensors is missing"),
        ("model.safetensors", lambda f: f.write_bytes(f.read_bytes()[:-7]), "model.safetensors has"),
        ("state.json", lambda f: f.write_bytes(f.read_bytes().replace(b'"step": 5', b'"step": 6')), "state.json's sha256"),
    ]:
        copy = tmp_path / f"copy-{file}"
        shutil.copytree(path, copy)
        damage(copy / file)
        with pytest.raises(ValueError, match=f"^s3://b/ckpt: (incomplete|damaged) checkpoint, {message}"):
            verify_checkpoint(copy, name="s3://b/ckpt")


def test_a_checkpoint_without_its_list_passes_only_with_every_file_resuming_needs(tmp_path):
    path = _checkpoint(tmp_path, 5)
    (path / COMPLETE_FILE).unlink()
    verify_checkpoint(path)  # as lrprop wrote them before complete.json
    (path / "optimizer.safetensors").unlink()
    with pytest.raises(ValueError, match="no complete.json and no optimizer.safetensors"):
        verify_checkpoint(path)


def test_a_worker_resumes_from_the_newest_complete_checkpoint_and_names_those_it_skips(tmp_path, caplog):
    job = _stored(tmp_path, [10, 20, 30])
    assert [p.rsplit("/", 1)[1] for p in stored_checkpoints(_latest(job))] == [
        "checkpoint_000002",
        "checkpoint_000001",
        "checkpoint_000000",
    ]
    # What the outage left: the newest upload holds only the RNG state (and its list), the one
    # before it a model cut short.
    for name in ("model.safetensors", "optimizer.safetensors", "state.json"):
        (job / "checkpoint_000002" / name).unlink()
    model = job / "checkpoint_000001" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:-1])

    caplog.set_level(logging.WARNING, logger="lrprop.pipeline.resume")
    restored = tmp_path / "restored"
    restored.mkdir()
    local = newest_complete_checkpoint(_latest(job), restored, uri_of=lambda p: "s3://bucket/" + p.rsplit("/", 1)[1])
    assert local is not None and _weight(local) == 10.0  # checkpoint_000000's step-10 weights
    messages = [r.getMessage() for r in caplog.records]
    assert "not resuming from s3://bucket/checkpoint_000002: s3://bucket/checkpoint_000002: incomplete checkpoint" in messages[0]
    assert "s3://bucket/checkpoint_000001: incomplete checkpoint, model.safetensors has" in messages[1]
    assert messages[2].startswith("resuming from s3://bucket/checkpoint_000000, the newest complete checkpoint")


def test_a_worker_with_no_complete_checkpoint_starts_over_saying_so(tmp_path, caplog):
    job = _stored(tmp_path, [10])
    (job / "checkpoint_000000" / "state.json").unlink()
    caplog.set_level(logging.WARNING, logger="lrprop.pipeline.resume")
    assert newest_complete_checkpoint(_latest(job), tmp_path / "restored") is None
    assert "no complete checkpoint among" in caplog.records[-1].getMessage()
    assert "training from the start" in caplog.records[-1].getMessage()


def test_a_store_that_does_not_answer_is_not_taken_for_an_incomplete_checkpoint(tmp_path):
    """A transient error while copying a checkpoint down is raised (Ray restarts the worker),
    not a reason to fall back to an older checkpoint and lose the epochs after it."""
    import ray.train

    job = _stored(tmp_path, [10, 20])
    with mock.patch.object(ray.train.Checkpoint, "to_directory", side_effect=ConnectionError("store down")):
        with pytest.raises(ConnectionError, match="store down"):
            newest_complete_checkpoint(_latest(job), tmp_path / "restored")


def test_a_finished_job_keeps_the_checkpoints_ray_recorded_and_loses_those_it_never_did(tmp_path, caplog):
    """The orphan an outage leaves when Ray's controller fails recording a checkpoint: Ray's
    result lists the checkpoints it kept; every other checkpoint folder goes, nothing else."""
    import pyarrow.fs as pafs
    import ray.train
    from ray.train import Result

    from lrprop.pipeline.resume import remove_orphan_checkpoints

    job = _stored(tmp_path, [10, 20, 30, 40, 50])
    (job / "checkpoint_000001" / "model.safetensors").unlink()  # the cut upload, never recorded
    # checkpoint_000004, newer than any Ray kept, can only be another process's: left alone
    (job / "checkpoint_manager_snapshot.json").write_text("{}")  # Ray's own files stay
    kept = [ray.train.Checkpoint(str(job / f"checkpoint_{i:06d}")) for i in (2, 3)]
    result = Result(
        metrics={},
        checkpoint=kept[-1],
        error=None,
        path=str(job),
        best_checkpoints=[(c, {}) for c in kept],
        _storage_filesystem=pafs.LocalFileSystem(),
    )
    caplog.set_level(logging.WARNING, logger="lrprop.pipeline.resume")
    removed = remove_orphan_checkpoints(result, uri_of=lambda p: "s3://bucket/" + p.rsplit("/", 1)[1])
    assert removed == ["s3://bucket/checkpoint_000000", "s3://bucket/checkpoint_000001"]
    left = sorted(p.name for p in job.iterdir())
    assert left == ["checkpoint_000002", "checkpoint_000003", "checkpoint_000004", "checkpoint_manager_snapshot.json"]
    assert "removing s3://bucket/checkpoint_000001: a checkpoint Ray did not record" in caplog.records[-1].getMessage()
    for c in kept:
        verify_checkpoint(c.path)


def test_a_class_whose_last_checkpoint_is_not_whole_is_not_exported(tmp_path):
    """The model a run evaluates and publishes is read from its last stored checkpoint, and
    checked against that checkpoint's complete.json as it is read, naming the file."""
    from tiny import tiny

    from lrprop.config import config_from_dict
    from lrprop.pipeline.distributed import export_checkpoint
    from lrprop.training.checkpoint import MODEL_FILE
    from lrprop.training.train import build_model

    config = tiny()
    model = build_model(config_from_dict(config))
    optimizer = torch.optim.Adam(model.parameters())
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    made = save_checkpoint(
        tmp_path / "local",
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        step=3,
        epoch=1,
        batch_in_epoch=0,
        config=config,
    )
    exported = export_checkpoint(str(made), tmp_path / "out", {"action": "reach"})
    assert (exported / MODEL_FILE).is_file()
    (made / MODEL_FILE).write_bytes((made / MODEL_FILE).read_bytes()[:-9])
    with pytest.raises(ValueError, match=rf"^{made}: incomplete checkpoint, {MODEL_FILE} has \d+ of its \d+ bytes"):
        export_checkpoint(str(made), tmp_path / "out2", {"action": "reach"})
