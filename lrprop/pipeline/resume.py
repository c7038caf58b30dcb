"""A restarted Ray Train worker resumes from the newest *complete* checkpoint in the store (issue 14).

Ray hands a restarted or resumed worker the job's latest reported checkpoint
(``ray.train.get_checkpoint()``), and reports a checkpoint as made even when a storage outage cut
its upload short: one such checkpoint held only ``rng.safetensors``, and the job failed on it
three times without looking at the good ones before it. Here every checkpoint of the job, newest
first, is copied down and checked against its ``complete.json``
(:func:`lrprop.training.checkpoint.verify_checkpoint`) until one passes; those skipped are named
by their store URI in a warning.
"""

from __future__ import annotations

import logging
import posixpath
import shutil
from pathlib import Path

from lrprop import store
from lrprop.training.checkpoint import verify_checkpoint

__all__ = ["newest_complete_checkpoint", "stored_checkpoints"]

log = logging.getLogger(__name__)

_PREFIX = "checkpoint_"  # how Ray Train names a job's checkpoints in its storage


def stored_checkpoints(latest) -> list[str]:
    """The paths of ``latest``'s job's checkpoints (``ray.train.Checkpoint``s) in its storage, the
    newest first, none newer than ``latest``: the folders beside it that Ray named alike."""
    import pyarrow.fs as pafs

    parent, name = posixpath.split(latest.path.rstrip("/"))
    found = [
        info.path
        for info in latest.filesystem.get_file_info(pafs.FileSelector(parent))
        if info.type == pafs.FileType.Directory and posixpath.basename(info.path).startswith(_PREFIX)
    ]
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
