"""What a data-set reader hands to the writer: videos to ingest, and problems to report.

A reader finds videos and yields :class:`RawVideo` items whose frames and labels load lazily
(so listing a data set is cheap and loading happens in the writer's worker threads), or
:class:`Problem` items for videos it could already tell are unusable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["RawVideo", "Problem", "Note", "Frame", "IngestError"]

# One frame as read from the source: its name (file or record) and either encoded image bytes
# (JPEG, PNG, …) or an already decoded (H, W, 3) uint8 RGB array (frames of a video file).
Frame = tuple[str, "bytes | np.ndarray"]


class IngestError(ValueError):
    """Ingestion cannot go on (strict mode, or a source that cannot be read at all)."""


@dataclass(frozen=True)
class RawVideo:
    """A video to ingest.

    Attributes:
        action, split, video_id: where it goes; ids are unique within a data set.
        source: the file or folder it came from, for reports.
        load_frames: returns the frames in order; raises on an unreadable source.
        load_labels: returns (L,) integer phase labels, or None when the video has none.
        resample_mismatch: when frame and label counts differ, resample the longer by nearest
            index to the shorter (Penn Action) instead of rejecting the video.
    """

    action: str
    split: str
    video_id: str
    source: str
    load_frames: Callable[[], list[Frame]]
    load_labels: Callable[[], np.ndarray | None]
    resample_mismatch: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.action, self.split, self.video_id)


@dataclass(frozen=True)
class Problem:
    """A video left out, and why; it goes into the manifest's ``skipped`` list."""

    action: str
    split: str
    video_id: str
    file: str
    reason: str

    def as_dict(self) -> dict:
        return {"action": self.action, "split": self.split, "video_id": self.video_id, "file": self.file, "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.file}: {self.action}/{self.split}/{self.video_id}: {self.reason}"


@dataclass(frozen=True)
class Note:
    """Something changed on the way in that a user should know (e.g. labels resampled)."""

    video_id: str
    file: str
    message: str

    def as_dict(self) -> dict:
        return {"video_id": self.video_id, "file": self.file, "message": self.message}
