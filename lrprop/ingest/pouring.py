"""The Pouring data set as released by TCC: TFRecord files of ``tf.train.SequenceExample``.

Files ``pouring_<split>*.tfrecord`` under the source folder; each record is one video with
context ``name`` (bytes), ``len`` (int64) and sequence features ``video`` (one JPEG per frame)
and ``frame_labels`` (int64 per frame). Read without TensorFlow (:mod:`lrprop.ingest.tfrecord`),
every CRC checked. A corrupt record ends the reading of its file: the videos before it are kept,
the rest of that file is reported as skipped.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator

import numpy as np

from lrprop import store
from lrprop.ingest.records import Problem, RawVideo
from lrprop.ingest.tfrecord import TFRecordError, parse_sequence_example, read_records

__all__ = ["read_pouring", "POURING_PHASES"]

POURING_PHASES = 5
_FILE = re.compile(r"^pouring_(?P<split>[a-z]+).*\.tfrecords?$")


def read_pouring(src: str, action: str = "pouring") -> Iterator[RawVideo | Problem]:
    """The videos of every ``pouring_<split>*.tfrecord`` file under ``src``, in file order."""
    fs, base = store.filesystem(src)
    if not fs.isdir(base):
        raise FileNotFoundError(f"no folder at {src!r}")
    files = sorted(p for p in fs.find(base) if _FILE.match(posixpath.basename(p)))
    if not files:
        raise FileNotFoundError(f"no pouring_<split>*.tfrecord files under {src!r}")
    for path in files:
        split = _FILE.match(posixpath.basename(path)).group("split")
        uri = fs.unstrip_protocol(path)
        done = 0  # records read whole
        with fs.open(path, "rb") as handle:
            try:
                for record in read_records(handle, uri):
                    yield _video(record, uri, done, split, action)
                    done += 1
            except TFRecordError as exc:
                yield Problem(action, split, f"record{done}+", uri, f"{exc}; this and the later records of the file are skipped")


def _video(record: bytes, uri: str, index: int, split: str, action: str) -> RawVideo | Problem:
    where = f"{uri}#record{index}"
    try:
        example = parse_sequence_example(record)
    except ValueError as exc:
        return Problem(action, split, f"record{index}", where, f"not a SequenceExample ({exc})")
    name = example.context.get("name")
    video_id = name[0].decode(errors="replace") if name else f"{posixpath.basename(uri)}-{index}"
    video_id = re.sub(r"[^A-Za-z0-9._-]", "_", video_id)  # ids become path components later
    frames = [f[0] for f in example.feature_lists.get("video", []) if f]
    labels = example.feature_lists.get("frame_labels")
    declared = example.context.get("len")
    if declared and declared[0] != len(frames):
        return Problem(action, split, video_id, where, f"context len {declared[0]} but {len(frames)} frames")
    if labels is None:
        return Problem(action, split, video_id, where, "no frame_labels feature")
    label_array = np.array([f[0] if f else -2 for f in labels], dtype=np.int64)
    return RawVideo(
        action=action,
        split=split,
        video_id=video_id,
        source=where,
        load_frames=lambda: [(f"{where}/frame{i}", jpeg) for i, jpeg in enumerate(frames)],
        load_labels=lambda: label_array,
    )
