"""The frames of a video the user gives: a video file (PyAV) or a folder of images, read as a
stream of chunks, never the whole decoded video in memory (issue 16).

    video = open_video("swing.mp4", short_side=64)
    len(video), video.fps                  # frames, frames per second (None for a folder)
    for chunk in video.chunks(1000):       # (n, H, W, 3) uint8, n <= 1000, in order
        ...

Every frame is resized as it is decoded so that its shorter side is ``short_side`` pixels
(bilinear, as ingestion resizes the frames it stores), so a chunk of 1000 frames of a 1080p
video holds 1000 small frames, not 6 GB. Paths are local or any store URI (fsspec).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from lrprop import store
from lrprop.ingest.generic import IMAGE_SUFFIXES, VIDEO_SUFFIXES

__all__ = ["FrameCountMismatch", "VideoFrames", "open_video"]


class FrameCountMismatch(ValueError):
    """A video file decoded to another number of frames than its header said (``decoded``)."""

    def __init__(self, uri: str, decoded: int, expected: int):
        super().__init__(f"{uri}: decoded {decoded} frames where its header says {expected}")
        self.decoded = decoded


def _resized(image: Image.Image, short_side: int | None) -> np.ndarray:
    image = image.convert("RGB")
    if short_side is not None:
        w, h = image.size
        scale = short_side / min(w, h)
        if scale != 1:
            image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
    return np.asarray(image)


@dataclass
class VideoFrames:
    """A video's frames, read on demand (see the module). ``open_video`` makes one."""

    uri: str
    num_frames: int
    fps: float | None
    short_side: int | None
    _files: list[str] | None = None  # a folder's image files, in order; None: a video file

    def __len__(self) -> int:
        return self.num_frames

    def frames(self) -> Iterator[np.ndarray]:
        """Each frame, (H, W, 3) uint8, in order."""
        if self._files is not None:
            fs, _ = store.filesystem(self.uri)
            for path in self._files:
                try:
                    with fs.open(path, "rb") as f:
                        yield _resized(Image.open(f), self.short_side)
                except (UnidentifiedImageError, OSError) as exc:
                    raise ValueError(f"{fs.unstrip_protocol(path)}: not a readable image ({exc})") from None
            return
        yield from _decoded(self.uri, self.short_side)

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        """Consecutive chunks of ``size`` frames (the last one shorter), (n, H, W, 3) uint8.

        Raises:
            FrameCountMismatch: the file held another number of frames than its header said
                (after the last chunk; a reader sets ``num_frames`` to what it decoded and reads again).
        """
        buffer: list[np.ndarray] = []
        seen = 0
        frames = self.frames()
        for frame in frames:
            seen += 1
            if seen > self.num_frames:  # more than announced: count the rest, then say how many
                seen += sum(1 for _ in frames)
                raise FrameCountMismatch(self.uri, seen, self.num_frames)
            buffer.append(frame)
            if len(buffer) == size:
                yield np.stack(buffer)
                buffer = []
        if buffer:
            yield np.stack(buffer)
        if seen != self.num_frames:
            raise FrameCountMismatch(self.uri, seen, self.num_frames)


def _decoded(uri: str, short_side: int | None) -> Iterator[np.ndarray]:
    import av  # PyAV: lrprop[video]

    fs, path = store.filesystem(uri)
    try:
        with fs.open(path, "rb") as f, av.open(f) as container:
            for frame in container.decode(video=0):
                yield _resized(frame.to_image(), short_side)
    except (av.error.FFmpegError, IndexError) as exc:
        raise ValueError(f"{uri}: cannot decode video ({exc})") from None


def _counted(uri: str) -> tuple[int, float | None]:
    """Frames and frame rate of a video file: the header's count when it has one, else a count
    of the decoded frames (a pass that keeps none of them)."""
    try:
        import av  # PyAV: lrprop[video]
    except ImportError:
        raise ValueError(f"{uri}: reading video files needs PyAV: pip install 'lrprop[video]'") from None
    fs, path = store.filesystem(uri)
    try:
        with fs.open(path, "rb") as f, av.open(f) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate) if stream.average_rate else None
            if stream.frames > 0:
                return int(stream.frames), fps
            return sum(1 for _ in container.decode(video=0)), fps
    except (av.error.FFmpegError, IndexError) as exc:
        raise ValueError(f"{uri}: cannot decode video ({exc})") from None


def open_video(uri: str, *, short_side: int | None = None) -> VideoFrames:
    """A video file (``.mp4``, ``.mov``, …) or a folder of image files (in file-name order).

    Raises:
        FileNotFoundError: nothing at ``uri``.
        ValueError: not a video file nor a folder of images, or a video that does not decode.
    """
    fs, path = store.filesystem(uri)
    if fs.isdir(path):
        files = sorted(p for p in fs.ls(path, detail=False) if p.lower().endswith(IMAGE_SUFFIXES))
        if not files:
            raise ValueError(f"{uri}: a folder with no image file ({', '.join(IMAGE_SUFFIXES)})")
        return VideoFrames(uri, len(files), None, short_side, files)
    if not fs.exists(path):
        raise FileNotFoundError(f"no video at {uri}")
    if not path.lower().endswith(VIDEO_SUFFIXES):
        raise ValueError(f"{uri}: not a video file ({', '.join(VIDEO_SUFFIXES)}) nor a folder of images")
    num_frames, fps = _counted(uri)
    if num_frames == 0:
        raise ValueError(f"{uri}: a video with no frame")
    return VideoFrames(uri, num_frames, fps, short_side)
