"""What the trainer reads videos through: a ``VideoSource``, and an in-memory one.

A source is indexed 0..len-1 and reads only the frames asked for, so a source backed by files or
object storage (the Parquet reader) decodes just the frames a view samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Video", "VideoSource", "InMemoryVideos"]


@dataclass(frozen=True)
class Video:
    """One video held in memory.

    Attributes:
        video_id: unique within its data set.
        frames: (L, H, W, 3) uint8 RGB.
        labels: (L,) int64 phase label per frame (< 0 = unlabelled), or None.
    """

    video_id: str
    frames: np.ndarray
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(
                f"video {self.video_id!r}: frames must be (L, H, W, 3) uint8, got {self.frames.shape} {self.frames.dtype}"
            )
        if len(self.frames) == 0:
            raise ValueError(f"video {self.video_id!r} has no frames")
        if self.labels is not None and len(self.labels) != len(self.frames):
            raise ValueError(f"video {self.video_id!r}: {len(self.labels)} labels for {len(self.frames)} frames")


@runtime_checkable
class VideoSource(Protocol):
    """Random access to the videos of one action class (or of a whole data set)."""

    def __len__(self) -> int: ...

    def video_id(self, index: int) -> str: ...

    def num_frames(self, index: int) -> int: ...

    def read_frames(self, index: int, frame_indices: np.ndarray) -> np.ndarray:
        """(n,) frame indices -> (n, H, W, 3) uint8, in the order asked (repeats allowed)."""
        ...

    def labels(self, index: int) -> np.ndarray | None: ...


# A source may also offer ``read_encoded(index, frame_indices) -> list[bytes]``: the frames'
# JPEG bytes, in the order asked, for decoding on the GPU (``data.decode_on: device``).
# ParquetVideos does; sources of decoded frames (InMemoryVideos) do not.


class InMemoryVideos:
    """A ``VideoSource`` over a list of :class:`Video`."""

    def __init__(self, videos: list[Video]) -> None:
        ids = [v.video_id for v in videos]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"duplicate video ids: {dup}")
        self.videos = list(videos)

    def __len__(self) -> int:
        return len(self.videos)

    def video_id(self, index: int) -> str:
        return self.videos[index].video_id

    def num_frames(self, index: int) -> int:
        return len(self.videos[index].frames)

    def read_frames(self, index: int, frame_indices: np.ndarray) -> np.ndarray:
        return self.videos[index].frames[np.asarray(frame_indices)]

    def labels(self, index: int) -> np.ndarray | None:
        return self.videos[index].labels
