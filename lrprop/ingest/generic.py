"""Generic folders: ``<root>/<split>/<action>/<video_id>/`` frames, or ``<video_id>.<ext>`` videos.

    <root>/<split>/<action>/<video_id>/000000.jpg …   frame images, in file-name order
    <root>/<split>/<action>/<video_id>.mp4             or a video file (PyAV decodes it)
    <root>/<split>/<action>/<video_id>.npy             labels beside: one int per frame
    <root>/<split>/<action>/<video_id>.csv             or as CSV: one int per line (a header
                                                       line "label" is allowed)

Labels are optional, but within one ``<split>/<action>`` folder either every video has them or
none does: a video without labels among labelled ones is reported as a missing label file.
This is also the layout ``lrprop synth`` writes.
"""

from __future__ import annotations

import functools
import io
import posixpath
from collections.abc import Iterator

import numpy as np

from lrprop import store
from lrprop.ingest.records import Frame, Problem, RawVideo

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "decode_video_file",
    "frame_folder_loader",
    "label_loader",
    "parse_label_file",
    "read_generic",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg")
LABEL_SUFFIXES = (".npy", ".csv")


def parse_label_file(name: str, data: bytes) -> np.ndarray:
    """Labels from the bytes of a ``.npy`` (no pickle) or ``.csv`` file; ValueError if malformed."""
    if name.endswith(".npy"):
        try:
            return np.load(io.BytesIO(data), allow_pickle=False).reshape(-1)
        except (ValueError, OSError) as exc:
            raise ValueError(f"{name}: not a readable .npy array ({exc})") from None
    lines = [ln.strip() for ln in data.decode("utf-8", errors="replace").splitlines() if ln.strip()]
    if lines and not lines[0].lstrip("-").isdigit():
        lines = lines[1:]  # a header
    try:
        return np.array([int(ln.split(",")[-1]) for ln in lines], dtype=np.int64)
    except ValueError as exc:
        raise ValueError(f"{name}: not one integer label per line ({exc})") from None


def decode_video_file(uri: str) -> list[Frame]:
    """Every frame of a video file as (name, (H, W, 3) uint8) with PyAV; ValueError if it fails."""
    try:
        import av
    except ImportError:
        raise ValueError("decoding video files needs PyAV: pip install 'lrprop[video]'") from None
    data = store.read_bytes(uri)
    try:
        with av.open(io.BytesIO(data)) as container:
            return [(f"{uri}#{i}", f.to_ndarray(format="rgb24")) for i, f in enumerate(container.decode(video=0))]
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        raise ValueError(f"{uri}: cannot decode video ({exc})") from None


def read_generic(root: str, *, resample_mismatch: bool = False) -> Iterator[RawVideo | Problem]:
    """The videos under ``root`` in the generic layout, in sorted order."""
    fs, base = store.filesystem(root)
    if not fs.isdir(base):
        raise FileNotFoundError(f"no folder at {root!r}")
    uri_of = lambda path: fs.unstrip_protocol(path)  # noqa: E731

    def folders(path: str) -> list[str]:
        return sorted(p for p in fs.ls(path, detail=False) if fs.isdir(p) and not posixpath.basename(p).startswith("."))

    for split_dir in folders(base):
        split = posixpath.basename(split_dir)
        for action_dir in folders(split_dir):
            action = posixpath.basename(action_dir)
            entries = {posixpath.basename(p): p for p in fs.ls(action_dir, detail=False)}
            labelled = any(n.endswith(LABEL_SUFFIXES) for n in entries)
            # video id -> its frame folder or video file (extensions in any case)
            sources = {n: p for n, p in entries.items() if fs.isdir(p)}
            for n, p in entries.items():
                stem, ext = posixpath.splitext(n)
                if ext.lower() in VIDEO_SUFFIXES and stem not in sources:
                    sources[stem] = p
            yield from _unused_files(entries, sources, action, split, uri_of)
            for video_id in sorted(sources):
                label_path = next((entries[video_id + s] for s in LABEL_SUFFIXES if video_id + s in entries), None)
                where = sources[video_id]
                if fs.isdir(where):
                    yield from _not_frames(fs, where, action, split, video_id, uri_of)
                    load_frames = frame_folder_loader(fs, where)
                else:
                    load_frames = functools.partial(decode_video_file, uri_of(where))
                if label_path is None and labelled:
                    yield Problem(
                        action,
                        split,
                        video_id,
                        uri_of(where),
                        f"missing label file {video_id}.npy/.csv (other videos here have labels)",
                    )
                    continue
                yield RawVideo(
                    action=action,
                    split=split,
                    video_id=video_id,
                    source=uri_of(where),
                    load_frames=load_frames,
                    load_labels=label_loader(fs, label_path),
                    resample_mismatch=resample_mismatch,
                )


def _unused_files(entries: dict[str, str], sources: dict[str, str], action: str, split: str, uri_of) -> Iterator[Problem]:
    """A Problem for each file of an action folder that no video reads: a file of a type this
    layout does not know (it may be a video in a format not listed), a label file with no video
    of its name, a second video file of a name already taken. No file beside the videos is left
    out without a word; hidden files (``.DS_Store``) aside."""
    for name, path in sorted(entries.items()):
        stem, ext = posixpath.splitext(name)
        if name.startswith(".") or name in sources or path in sources.values():
            continue
        if ext.lower() in LABEL_SUFFIXES:
            if stem not in sources:
                yield Problem(action, split, stem, uri_of(path), f"label file {name} has no video {stem} beside it")
        elif ext.lower() in VIDEO_SUFFIXES:  # another source of the same name is the video
            used = posixpath.basename(sources[stem])
            yield Problem(action, split, stem, uri_of(path), f"{name} is not read: {used} is video {stem}")
        else:
            known = ", ".join(VIDEO_SUFFIXES + LABEL_SUFFIXES)
            reason = f"unsupported file type {ext or '(none)'!r}; known: {known} and frame folders"
            yield Problem(action, split, stem, uri_of(path), reason)


def _not_frames(fs, folder: str, action: str, split: str, video_id: str, uri_of) -> Iterator[Problem]:
    """A Problem for each entry of a frame folder that is not an image (hidden files aside): the
    video is read without it, and it is said."""
    for path in sorted(fs.ls(folder, detail=False)):
        name = posixpath.basename(path.rstrip("/"))
        if not name.startswith(".") and (fs.isdir(path) or not name.lower().endswith(IMAGE_SUFFIXES)):
            what = "a folder" if fs.isdir(path) else "not an image"
            reason = f"{video_id}/{name} is not read: {what} (the frames of {video_id} are its {', '.join(IMAGE_SUFFIXES)} files)"
            yield Problem(action, split, video_id, uri_of(path), reason)


def frame_folder_loader(fs, folder: str):
    """A loader of the image files of ``folder``, in file-name order."""

    def load() -> list[Frame]:
        names = sorted(p for p in fs.ls(folder, detail=False) if p.lower().endswith(IMAGE_SUFFIXES))
        return [(fs.unstrip_protocol(p), fs.cat_file(p)) for p in names]

    return load


def label_loader(fs, path: str | None):
    """A loader of the labels in ``path`` (.npy or .csv), or of None when there is no file."""
    if path is None:
        return lambda: None
    return lambda: parse_label_file(path, fs.cat_file(path))
