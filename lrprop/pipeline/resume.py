"""A restarted Ray Train worker resumes from the newest *complete* checkpoint in the store (issue 14).

Ray hands a restarted or resumed worker the job's latest reported checkpoint
(``ray.train.get_checkpoint()``), and reports a checkpoint as made even when a storage outage cut
its upload short: one such checkpoint held only ``rng.safetensors``, and the job failed on it
three times without looking at the good ones before it. Here every checkpoint of the job, newest
first, is copied down and checked against its ``complete.json``
(:func:`lrprop.training.checkpoint.verify_checkpoint`) until one passes; those skipped are named
by their store URI in a warning.

A checkpoint whose upload an outage cut short may also never be recorded at all: when the Ray
Train controller itself fails writing its checkpoint list, the retried job starts from the list
before it, and Ray, which prunes only the checkpoints it knows, never removes the partial folder.
:func:`remove_orphan_checkpoints` removes those once the job has finished.
"""

from __future__ import annotations

import logging
import posixpath
import shutil
from pathlib import Path

from lrprop import store
from lrprop.training.checkpoint import verify_checkpoint

__all__ = ["newest_complete_checkpoint", "remove_orphan_checkpoints", "stored_checkpoints"]

log = logging.getLogger(__name__)

_PREFIX = "checkpoint_"  # how Ray Train names a job's checkpoints in its storage


def _checkpoint_dirs(filesystem, parent: str) -> list[str]:
    """The folders in ``parent`` that Ray Train named as checkpoints."""
    import pyarrow.fs as pafs

    return [
        info.path
        for info in filesystem.get_file_info(pafs.FileSelector(parent))
        if info.type == pafs.FileType.Directory and posixpath.basename(info.path).startswith(_PREFIX)
    ]


def stored_checkpoints(latest) -> list[str]:
    """The paths of ``latest``'s job's checkpoints (``ray.train.Checkpoint``s) in its storage, the
    newest first, none newer than ``latest``: the folders beside it that Ray named alike."""
    parent, name = posixpath.split(latest.path.rstrip("/"))
    found = _checkpoint_dirs(latest.filesystem, parent)
    older = [p for p in found if posixpath.basename(p) <= name]  # Ray pads the index: names sort
    return sorted(set(older) | {latest.path.rstrip("/")}, key=posixpath.basename, reverse=True)


def newest_complete_checkpoint(latest, into: str | Path, uri_of=lambda path: path) -> Path | None:
    """Copy the newest complete checkpoint of ``latest``'s job into ``into``; its local folder,
    or None (with a warning) when none is complete.

    Args:
        latest: the job's latest checkpoint (``ray.train.get_checkpoint()``).
        into: an empty local folder.
        uri_of: a storage path back to the URI the messages name.
    """
    import ray.train  # Ray

    into = Path(into)
    skipped = []
    for path in stored_checkpoints(latest):
        local = into / posixpath.basename(path)
        try:
            ray.train.Checkpoint(path, filesystem=latest.filesystem).to_directory(str(local))  # Ray
            verify_checkpoint(local, name=uri_of(path))
        except (OSError, ValueError) as exc:
            if store.is_transient(exc):
                raise  # the store did not answer: Ray restarts the worker, which looks again
            log.warning("not resuming from %s: %s", uri_of(path), exc)
            skipped.append(uri_of(path))
            shutil.rmtree(local, ignore_errors=True)
            continue
        if skipped:
            log.warning("resuming from %s, the newest complete checkpoint (skipped %s)", uri_of(path), skipped)
        return local
    log.warning("no complete checkpoint among %s: training from the start", skipped)
    return None


def remove_orphan_checkpoints(result, uri_of=lambda path: path) -> list[str]:
    """Remove the checkpoint folders in a finished Ray Train job's storage that Ray did not keep
    (``result``, a ``ray.train.Result``, lists those it did) and that are older than the newest
    it kept; their URIs, each named in a warning.

    Only a finished job's folder is swept: no worker of it is writing any more, and Ray has
    already pruned the ones it knew beyond ``CheckpointConfig.num_to_keep``. A newer folder is
    left: it can only be another process's upload under the same run name. The sweep is
    tidying: a store that fails during it is logged, never the class's failure.
    """
    kept = {c.path.rstrip("/") for c, _ in (result.best_checkpoints or [])}
    if result.checkpoint is not None:
        kept.add(result.checkpoint.path.rstrip("/"))
    if not kept:
        return []
    newest = max(posixpath.basename(p) for p in kept)  # Ray's names sort by time
    removed = []
    try:
        for path in sorted(_checkpoint_dirs(result.filesystem, result.path)):
            if path.rstrip("/") not in kept and posixpath.basename(path.rstrip("/")) < newest:
                log.warning("removing %s: a checkpoint Ray did not record (an upload cut short)", uri_of(path))
                result.filesystem.delete_dir(path)
                removed.append(uri_of(path))
    except Exception as exc:  # noqa: BLE001 - tidying after a finished class must not fail it
        log.warning("could not remove the checkpoints Ray did not record in %s: %s", uri_of(result.path), exc)
    return removed
