"""Penn Action in its released layout, with the phase labels of the alignment benchmarks.

    <src>/frames/<id>/000001.jpg …            the frames of video <id>
    <src>/labels/<id>.mat                      MATLAB file; field ``action`` names the action
    <phase_labels>/<split>/<action>/<id>.npy   one phase label per frame (TCC/CARL release)

A video belongs to the data set when it has a phase-label file; its split and action folder come
from that file's path, and the action name itself from the ``.mat`` (a disagreement is
reported). strum_guitar and jump_rope have no phase labels in the benchmark and are skipped with
a reason. When frame and label counts differ, the longer is resampled by nearest index to the
shorter and a note goes into the manifest (METHOD.md §6).
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Iterator

import numpy as np

from lrprop import store
from lrprop.ingest.generic import frame_folder_loader, label_loader
from lrprop.ingest.records import Problem, RawVideo

__all__ = ["read_pennaction", "EXCLUDED_ACTIONS"]

EXCLUDED_ACTIONS = ("strum_guitar", "jump_rope")
_EXCLUDED = "action excluded from the benchmark (METHOD.md §6)"


def _mat_action(data: bytes, name: str) -> str:
    """The ``action`` field of a Penn Action label file."""
    from scipy.io import loadmat

    try:
        mat = loadmat(io.BytesIO(data), variable_names=["action"])
    except (ValueError, OSError, TypeError, NotImplementedError) as exc:
        raise ValueError(f"{name}: not a readable .mat file ({exc})") from None
    if "action" not in mat:
        raise ValueError(f"{name}: no 'action' field")
    value = np.asarray(mat["action"]).reshape(-1)
    return str(value[0]).strip()


def read_pennaction(src: str, phase_labels: str | None = None) -> Iterator[RawVideo | Problem]:
    """The videos of Penn Action under ``src`` that have phase labels under ``phase_labels``.

    ``phase_labels`` defaults to ``<src>/phase_labels``.
    """
    fs, base = store.filesystem(src)
    labels_root = phase_labels or store.join(src, "phase_labels")
    lfs, lbase = store.filesystem(labels_root)
    if not lfs.isdir(lbase):
        raise FileNotFoundError(f"no phase-label folder at {labels_root!r}")
    for label_file in sorted(lfs.find(lbase)):
        if not label_file.endswith(".npy"):
            continue
        rel = posixpath.relpath(label_file, lbase).split("/")
        if len(rel) != 3:
            continue  # not <split>/<action>/<id>.npy
        split, folder_action, name = rel
        video_id = name[: -len(".npy")]
        frames_dir = posixpath.join(base, "frames", video_id)
        mat_path = posixpath.join(base, "labels", f"{video_id}.mat")
        label_uri = lfs.unstrip_protocol(label_file)
        if folder_action in EXCLUDED_ACTIONS:
            yield Problem(folder_action, split, video_id, label_uri, _EXCLUDED)
            continue
        if not fs.exists(mat_path):
            yield Problem(folder_action, split, video_id, fs.unstrip_protocol(mat_path), "missing label file")
            continue
        try:
            action = _mat_action(fs.cat_file(mat_path), fs.unstrip_protocol(mat_path))
        except ValueError as exc:
            yield Problem(folder_action, split, video_id, fs.unstrip_protocol(mat_path), str(exc))
            continue
        if action in EXCLUDED_ACTIONS:
            yield Problem(action, split, video_id, fs.unstrip_protocol(mat_path), _EXCLUDED)
            continue
        if action != folder_action:
            yield Problem(
                folder_action,
                split,
                video_id,
                fs.unstrip_protocol(mat_path),
                f"the .mat says action {action!r} but the phase labels are filed under {folder_action!r}",
            )
            continue
        if not fs.isdir(frames_dir):
            yield Problem(action, split, video_id, fs.unstrip_protocol(frames_dir), "missing frame folder")
            continue
        yield RawVideo(
            action=action,
            split=split,
            video_id=video_id,
            source=fs.unstrip_protocol(frames_dir),
            load_frames=frame_folder_loader(fs, frames_dir),
            load_labels=label_loader(lfs, label_file),
            resample_mismatch=True,
        )
