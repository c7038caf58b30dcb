"""A ``VideoSource`` over a version of an ingested Parquet data set (see lrprop.ingest.writer).

Opening reads the manifest and the small columns (video_id, frame_idx, label) of the selected
partitions; frames stay in storage until a view asks for them. Each video is one row group, so
reading a view fetches one row group's JPEG bytes (cached for the last ``cache_videos`` videos)
and decodes only the frames the view samples. Works the same on local paths and ``s3://``; the
filesystem is reopened in each process, so the source is safe in forked DataLoader workers.
"""

from __future__ import annotations

import io
import os
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from lrprop import store

__all__ = ["ClassData", "ParquetVideos"]


@dataclass(frozen=True)
class _VideoEntry:
    file: str  # URI of the partition file
    row_group: int
    video_id: str
    num_frames: int
    labels: np.ndarray | None


@contextmanager
def _naming(what: str):
    """Damaged Parquet raised as a ValueError naming ``what``: pyarrow's ArrowInvalid (a footer
    that is not Parquet's) and the OSError it raises for corrupt compressed pages. An OSError of
    the store (a connection, a missing file) is raised as it is, for the retries that follow it."""
    try:
        yield
    except (pa.ArrowInvalid, OSError) as exc:
        if isinstance(exc, FileNotFoundError | PermissionError) or store.is_transient(exc):
            raise
        raise ValueError(f"{what}: not a readable Parquet file ({exc})") from exc


@dataclass(frozen=True)
class ClassData:
    """One action class of one version of an ingested data set in a store: what every Ray job of
    a class (its training workers, its pretraining actor, a search's trials) reads.

    ``store`` is an absolute URI (:func:`lrprop.store.absolute`): the jobs run in other directories.
    """

    store: str
    dataset: str
    version: str
    action: str

    def videos(self, split: str | None, **options) -> ParquetVideos:
        """The class's videos of ``split`` (:class:`ParquetVideos`; ``options`` are its own)."""
        return ParquetVideos(self.store, self.dataset, version=self.version, action=self.action, split=split, **options)


class ParquetVideos:
    """The videos of one data-set version, optionally one action and one split.

    Args:
        store_uri: the store root.
        dataset: the data set's name.
        version: a version id; default the latest complete version.
        action: one action class, or None for all.
        split: one split (e.g. "train", "val"), or None for all.
        cache_videos: row groups kept decoded-to-bytes in memory.
        storage_options: fsspec options for the store, e.g. an endpoint; never credentials
            (:func:`lrprop.store.check_storage_options`).
    """

    def __init__(
        self,
        store_uri: str,
        dataset: str,
        *,
        version: str | None = None,
        action: str | None = None,
        split: str | None = "train",
        cache_videos: int = 32,
        storage_options: dict | None = None,
    ) -> None:
        self.options = storage_options or {}
        collection = store.datasets_collection(store_uri, dataset)
        self.manifest = store.read_manifest(collection, version, **self.options)
        self.version = self.manifest["version"]
        self.dataset, self.action, self.split = dataset, action, split
        root = self._root = store.join(collection, self.version)
        self._cache: OrderedDict[int, list[bytes]] = OrderedDict()
        self._cache_size = cache_videos
        self._fs, self._pid = None, None
        self._videos: list[_VideoEntry] = []
        for entry in self.manifest["files"]:
            parts = dict(p.split("=", 1) for p in entry["path"].split("/")[:-1])
            if (action is not None and parts.get("action") != action) or (split is not None and parts.get("split") != split):
                continue
            self._index(store.join(root, entry["path"]))
        if not self._videos:
            known = sorted({f["path"].rsplit("/", 1)[0] for f in self.manifest["files"]})
            raise ValueError(f"{dataset} {self.version}: no videos for action={action} split={split}; it has {known}")

    def _filesystem(self):
        if self._fs is None or self._pid != os.getpid():
            self._fs, _ = store.filesystem(self._root, **self.options)
            self._pid = os.getpid()
        return self._fs

    def _index(self, uri: str) -> None:
        fs, path = store.filesystem(uri, **self.options)
        with fs.open(path, "rb") as handle, _naming(uri):
            parquet = pq.ParquetFile(handle)
            for rg in range(parquet.num_row_groups):
                table = parquet.read_row_group(rg, columns=["video_id", "frame_idx", "label"])
                ids = table.column("video_id").unique().to_pylist()
                if len(ids) != 1:
                    raise ValueError(f"{uri}: row group {rg} holds {len(ids)} videos, expected 1")
                order = table.column("frame_idx").to_numpy()
                if not np.array_equal(order, np.arange(len(order))):
                    raise ValueError(f"{uri}: frames of video {ids[0]} are not stored in order")
                label_col = table.column("label")
                labels = None if label_col.null_count == len(label_col) else label_col.fill_null(-1).to_numpy()
                self._videos.append(_VideoEntry(uri, rg, ids[0], len(order), labels))

    def __len__(self) -> int:
        return len(self._videos)

    def video_id(self, index: int) -> str:
        return self._videos[index].video_id

    def num_frames(self, index: int) -> int:
        return self._videos[index].num_frames

    def labels(self, index: int) -> np.ndarray | None:
        return self._videos[index].labels

    def _jpegs(self, index: int) -> list[bytes]:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        entry = self._videos[index]
        _, path = store.filesystem(entry.file, **self.options)
        with self._filesystem().open(path, "rb") as handle, _naming(f"{entry.file} (video {entry.video_id!r})"):
            jpegs = pq.ParquetFile(handle).read_row_group(entry.row_group, columns=["jpeg"]).column("jpeg").to_pylist()
        self._cache[index] = jpegs
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return jpegs

    def read_encoded(self, index: int, frame_indices: np.ndarray) -> list[bytes]:
        """(n,) frame indices -> their JPEG bytes, in the order asked (repeats allowed), for a
        decoder elsewhere (on the GPU: ``data.decode_on: device``)."""
        jpegs = self._jpegs(index)
        return [jpegs[i] for i in np.asarray(frame_indices).tolist()]

    def read_frames(self, index: int, frame_indices: np.ndarray) -> np.ndarray:
        """(n,) frame indices -> (n, H, W, 3) uint8, decoding only those frames."""
        jpegs = self._jpegs(index)
        decoded: dict[int, np.ndarray] = {}
        for i in np.asarray(frame_indices).tolist():
            if i not in decoded:
                try:
                    decoded[i] = np.asarray(Image.open(io.BytesIO(jpegs[i])).convert("RGB"))
                except (OSError, SyntaxError) as exc:  # PIL's UnidentifiedImageError is an OSError: not the store's
                    entry = self._videos[index]
                    where = f"{entry.file}: frame {i} of video {entry.video_id!r}"
                    raise ValueError(f"{where} is not a readable JPEG ({exc})") from exc
        return np.stack([decoded[i] for i in np.asarray(frame_indices).tolist()])
