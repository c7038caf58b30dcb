"""Write videos into a versioned Parquet data set through fsspec.

Layout of a version (``<store>/datasets/<dataset>/<version>/``):

    action=<action>/split=<split>/part-0.parquet   one row per frame, one row group per video
    _manifest.json                                 written last (see :mod:`lrprop.store`)

Columns: dataset, video_id, frame_idx (int32), label (int64, null when unlabelled), height,
width (int32), jpeg (binary); action and split are the hive partition keys, so
``pyarrow.dataset.dataset(version_uri, partitioning="hive")`` reads all of them back.

Frames are stored as JPEG with the shorter side resized to ``frame_size``; a JPEG that already
has that size is kept byte for byte, so a round trip returns exactly the frames that went in.

The content hash is a SHA-256 over the videos in (action, split, video_id) order: ids, labels
and frame bytes, nothing about files or paths, so the same source gives the same hash on any
filesystem. Ingesting a source whose hash equals an existing version's writes no new version.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from lrprop import __version__, store
from lrprop.ingest.records import IngestError, Note, Problem, RawVideo
from lrprop.names import check_name
from lrprop.work_progress import WorkProgress

__all__ = ["DEFAULT_FRAME_SIZE", "FRAME_SCHEMA", "IngestResult", "ProcessedVideo", "ingest", "process_video"]

log = logging.getLogger(__name__)

FRAME_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("video_id", pa.string()),
        ("frame_idx", pa.int32()),
        ("label", pa.int64()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("jpeg", pa.binary()),
    ]
)
MANIFEST_FORMAT = "lrprop-dataset/1"
# The shorter side of stored frames when ingest.frame_size is not set: what the ResNet-50's
# 224-pixel crops read with some margin (docs/data.md)
DEFAULT_FRAME_SIZE = 256


@dataclass
class ProcessedVideo:
    """A video ready to write: JPEG frames of the configured size and checked labels."""

    video: RawVideo
    jpegs: list[bytes]
    sizes: list[tuple[int, int]]  # (height, width) per frame
    labels: np.ndarray | None
    notes: list[Note] = field(default_factory=list)

    def digest(self) -> bytes:
        """SHA-256 of this video's content (ids, labels, frame bytes)."""
        h = hashlib.sha256()
        labels = None if self.labels is None else self.labels.tolist()
        h.update(json.dumps([*self.video.key, len(self.jpegs), labels]).encode())
        for jpeg in self.jpegs:
            h.update(len(jpeg).to_bytes(8, "little"))
            h.update(jpeg)
        return h.digest()

    def table(self, dataset: str) -> pa.Table:
        n = len(self.jpegs)
        labels = [None] * n if self.labels is None else self.labels.tolist()
        return pa.table(
            {
                "dataset": [dataset] * n,
                "video_id": [self.video.video_id] * n,
                "frame_idx": np.arange(n, dtype=np.int32),
                "label": pa.array(labels, pa.int64()),
                "height": np.array([s[0] for s in self.sizes], np.int32),
                "width": np.array([s[1] for s in self.sizes], np.int32),
                "jpeg": pa.array(self.jpegs, pa.binary()),
            },
            schema=FRAME_SCHEMA,
        )


def _to_jpeg(name: str, frame: bytes | np.ndarray, frame_size: int, quality: int) -> tuple[bytes, tuple[int, int]]:
    """One frame as JPEG bytes with its shorter side at ``frame_size``; raises ValueError."""
    try:
        if isinstance(frame, np.ndarray):
            image = Image.fromarray(frame)
        else:
            image = Image.open(io.BytesIO(frame))
            image.load()  # decode now: a truncated file fails here, not later
    except (UnidentifiedImageError, OSError, ValueError, TypeError) as exc:
        raise ValueError(f"unreadable frame {name}: {exc}") from None
    w, h = image.size
    if min(w, h) == frame_size and image.format == "JPEG" and image.mode == "RGB" and isinstance(frame, bytes):
        return frame, (h, w)  # already right: keep the bytes exactly
    if min(w, h) != frame_size:
        scale = frame_size / min(w, h)
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue(), (image.size[1], image.size[0])


def _resample(n_from: int, n_to: int) -> np.ndarray:
    """Nearest indices that take a sequence of n_from items to n_to items."""
    return np.minimum(np.round(np.linspace(0, n_from - 1, n_to)).astype(int), n_from - 1)


def _integer_labels(labels) -> np.ndarray | str:
    """(L,) int64 labels, or why they are not integers."""
    labels = np.asarray(labels).reshape(-1)
    if labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)
    if labels.dtype.kind not in "iu":
        return f"labels are not integers (dtype {labels.dtype})"
    return labels.astype(np.int64)


def _past_a_gap(videos: dict[tuple[str, str, str], RawVideo]) -> list[Problem]:
    """The videos whose labels skip phases of their class: with no phase count given
    (``max_label``), a class's phases are numbered 0, 1, … without gaps, so a label past one
    (a 99 among phases 0–4) is a mistake, and read as a phase count it would claim 100 phases.
    Labels are read here once more (they are small); those that cannot be read or are not
    integers are left for :func:`process_video` to report."""
    labels_of: dict[tuple[str, str, str], np.ndarray] = {}
    for key, video in videos.items():
        try:
            labels = video.load_labels()
        except (OSError, ValueError):
            continue
        if labels is not None and not isinstance(labels := _integer_labels(labels), str):
            labels_of[key] = labels
    problems = []
    for action in sorted({key[0] for key in labels_of}):
        present = np.unique(np.concatenate([v for k, v in labels_of.items() if k[0] == action]))
        present = present[present >= 0]
        missing = np.setdiff1d(np.arange(present.max() + 1), present) if len(present) else present
        if not len(missing):
            continue
        gap = int(missing[0])
        for key, labels in sorted(labels_of.items()):
            if key[0] == action and (past := labels > gap).any():
                i = int(np.flatnonzero(past)[0])
                holes = [int(m) for m in missing if m < labels[i]]
                reason = (
                    f"label {labels[i]} of frame {i} is past {_phase_list(holes)}, which no video of {action!r} has: "
                    "a class's phases are numbered from 0 without gaps (--max-label declares a phase count that allows them)"
                )
                problems.append(Problem(*key, videos[key].source, reason))
    return problems


def _phase_list(phases: list[int]) -> str:
    """[5, 6, 7] -> "phases 5-7"; [3] -> "phase 3"; [1, 3] -> "phases 1, 3"."""
    if len(phases) == 1:
        return f"phase {phases[0]}"
    if phases == list(range(phases[0], phases[-1] + 1)):
        return f"phases {phases[0]}-{phases[-1]}"
    return "phases " + ", ".join(map(str, phases))


def process_video(video: RawVideo, frame_size: int, quality: int = 95, max_label: int | None = None) -> ProcessedVideo | Problem:
    """Load, check and encode one video; a Problem says why it cannot be used."""

    def problem(reason: str, file: str | None = None) -> Problem:
        return Problem(video.action, video.split, video.video_id, file or video.source, reason)

    try:
        frames = video.load_frames()
    except (OSError, ValueError) as exc:
        return problem(f"cannot read frames: {exc}")
    if not frames:
        return problem("empty video (no frames)")
    try:
        labels = video.load_labels()
    except FileNotFoundError as exc:
        return problem("missing label file", str(exc.filename or exc))
    except (OSError, ValueError) as exc:
        return problem(f"cannot read labels: {exc}")
    notes = []
    if labels is not None:
        labels = _integer_labels(labels)
        if isinstance(labels, str):
            return problem(labels)
        bad = (labels < -1) | ((labels >= max_label) if max_label is not None else False)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            limit = f"[-1, {max_label - 1}]" if max_label is not None else ">= -1"
            return problem(f"label {labels[i]} of frame {i} out of range {limit}")
        if len(labels) != len(frames):
            if not video.resample_mismatch:
                return problem(f"{len(labels)} labels for {len(frames)} frames")
            n = min(len(labels), len(frames))
            message = f"{len(frames)} frames and {len(labels)} labels: resampled the longer to {n} by nearest index"
            notes.append(Note(video.video_id, video.source, message))
            if len(frames) > n:
                frames = [frames[i] for i in _resample(len(frames), n)]
            else:
                labels = labels[_resample(len(labels), n)]
    jpegs, sizes = [], []
    for name, frame in frames:
        try:
            jpeg, size = _to_jpeg(name, frame, frame_size, quality)
        except ValueError as exc:
            return problem(str(exc), name)
        jpegs.append(jpeg)
        sizes.append(size)
    return ProcessedVideo(video, jpegs, sizes, labels, notes)


@dataclass
class IngestResult:
    """The version an ingestion produced (or found unchanged), its manifest, and what this
    ingestion skipped (for an unchanged version the manifest lists what its own run skipped)."""

    version: str
    manifest: dict
    created: bool  # False when an existing version had the same content
    skipped: list[dict] = field(default_factory=list)


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes and counts what passes through to ``target``."""

    def __init__(self, target) -> None:
        self.target, self.sha256, self.size = target, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        data = bytes(data)
        self.sha256.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size


def ingest(
    items: Iterable[RawVideo | Problem],
    *,
    store_uri: str,
    dataset: str,
    source: str,
    frame_size: int = DEFAULT_FRAME_SIZE,
    quality: int = 95,
    max_label: int | None = None,
    strict: bool = False,
    threads: int = 4,
    progress: bool = True,
    progress_logger=None,
) -> IngestResult:
    """Ingest the videos a reader yields into a new immutable version of ``dataset``.

    Args:
        items: the reader's videos and problems.
        store_uri: the store root (any fsspec URI).
        dataset: the data set's name (a path component: validated).
        source: where the data came from, for the manifest (no credentials in it).
        frame_size: the shorter side of stored frames, in pixels.
        quality: JPEG quality of re-encoded frames.
        max_label: labels must lie in [-1, max_label - 1] when given (-1 = unlabelled frame).
        strict: fail at the first problem instead of skipping the video and reporting it.
        threads: threads that decode and encode frames.
        progress: show a progress bar.
        progress_logger: where a line of the count goes every 30 s and at the end (e.g. Prefect's
            run logger); default this module's logger.

    Returns:
        the new version, or the existing one whose content hash is the same.

    Raises:
        IngestError: in strict mode at the first problem; or when nothing could be ingested.
    """
    store.check_store(store_uri)  # before reading a single video
    collection = store.datasets_collection(store_uri, dataset)
    tally = _Tally(strict)
    videos = _admitted(items, tally)
    if max_label is None:
        for problem in _past_a_gap(videos):
            tally.reject(problem)
            del videos[(problem.action, problem.split, problem.video_id)]
    version = store.new_version_id()
    version_uri = store.join(collection, version)
    partitions: dict[tuple[str, str], list[RawVideo]] = defaultdict(list)
    for key in sorted(videos):
        partitions[key[:2]].append(videos[key])

    shown = WorkProgress(
        sum(len(v) for v in partitions.values()),
        what=f"ingest {dataset}",
        unit="videos",
        logger=progress_logger or log,
        bar=progress,
    )
    try:
        with shown, ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            for (action, split), members in partitions.items():
                # map keeps the order, so files and the hash do not depend on timing.
                done = pool.map(lambda v: process_video(v, frame_size, quality, max_label), members)
                _write_partition(version_uri, dataset, action, split, done, tally, shown)
    except BaseException:
        store.remove(version_uri)  # no manifest was written: nothing visible; tidy up
        raise

    skipped = [p.as_dict() for p in tally.skipped]
    if not tally.digests:
        store.remove(version_uri)
        reasons = "; ".join(str(p) for p in tally.skipped[:5])
        raise IngestError(f"no usable video in {source}" + (f" (skipped: {reasons})" if reasons else ""))
    content_hash = hashlib.sha256(b"".join(tally.digests)).hexdigest()
    existing = _version_with_hash(collection, content_hash)
    if existing is not None:
        store.remove(version_uri)
        log.info("%s: unchanged content, keeping version %s", dataset, existing["version"])
        return IngestResult(existing["version"], existing, created=False, skipped=skipped)

    manifest = {
        "format": MANIFEST_FORMAT,
        "dataset": dataset,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(),
        "tool_version": __version__,
        "source": source,
        "frame_size": frame_size,
        "content_hash": content_hash,
        "counts": tally.counts,
        "num_phases": tally.phases,
        "files": tally.files,
        "skipped": skipped,
        "notes": tally.notes,
    }
    store.write_manifest(collection, version, manifest)
    return IngestResult(version, manifest, created=True, skipped=skipped)


@dataclass
class _Tally:
    """What an ingestion has written and skipped so far: the manifest's parts."""

    strict: bool
    skipped: list[Problem] = field(default_factory=list)
    digests: list[bytes] = field(default_factory=list)  # one per written video, in order
    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=lambda: defaultdict(dict))
    phases: dict[str, int] = field(default_factory=dict)
    files: list[dict] = field(default_factory=list)
    notes: list[dict] = field(default_factory=list)

    def reject(self, problem: Problem) -> None:
        """Skip and report a video, or in strict mode stop the ingestion."""
        if self.strict:
            raise IngestError(f"strict ingestion stopped: {problem}")
        log.warning("skipping %s", problem)
        self.skipped.append(problem)


def _admitted(items: Iterable[RawVideo | Problem], tally: _Tally) -> dict[tuple[str, str, str], RawVideo]:
    """The reader's videos by (action, split, video_id), each name checked and each id once;
    the reader's problems and the videos refused here go to ``tally``."""
    videos: dict[tuple[str, str, str], RawVideo] = {}
    seen_ids: dict[str, RawVideo] = {}
    for item in items:
        if isinstance(item, Problem):
            tally.reject(item)
            continue
        try:
            check_name(item.action, "action name")
            check_name(item.split, "split name")
        except ValueError as exc:  # the names become partition folders
            tally.reject(Problem(item.action, item.split, item.video_id, item.source, str(exc)))
            continue
        if item.video_id in seen_ids:
            first = seen_ids[item.video_id]
            tally.reject(
                Problem(item.action, item.split, item.video_id, item.source, f"duplicate video id (also at {first.source})")
            )
            continue
        seen_ids[item.video_id] = item
        videos[item.key] = item
    return videos


def _write_partition(
    version_uri: str,
    dataset: str,
    action: str,
    split: str,
    done: Iterable[ProcessedVideo | Problem],
    tally: _Tally,
    shown: WorkProgress,
) -> None:
    """Write one (action, split) partition file of the processed videos, one row group each,
    hashing its bytes as they go; a partition left with no video is removed."""
    rel = f"action={action}/split={split}/part-0.parquet"
    fs, fs_path = store.filesystem(store.join(version_uri, rel))
    store.make_parent(fs, fs_path)
    n_videos = n_frames = 0
    with fs.open(fs_path, "wb") as raw:
        sink = _HashingWriter(raw)
        with pq.ParquetWriter(sink, FRAME_SCHEMA, compression="none") as writer:
            for video in done:
                shown.advance()
                if isinstance(video, Problem):
                    tally.reject(video)
                    continue
                writer.write_table(video.table(dataset))
                tally.digests.append(video.digest())
                tally.notes.extend(n.as_dict() for n in video.notes)
                n_videos += 1
                n_frames += len(video.jpegs)
                if video.labels is not None and len(video.labels):
                    tally.phases[action] = max(tally.phases.get(action, 0), int(video.labels.max()) + 1)
    if n_videos == 0:
        fs.rm(fs_path)
        return
    tally.counts[action][split] = {"videos": n_videos, "frames": n_frames}
    tally.files.append({"path": rel, "size": sink.size, "sha256": sink.sha256.hexdigest(), "videos": n_videos, "rows": n_frames})


def _version_with_hash(collection: str, content_hash: str) -> dict | None:
    """The manifest of the newest complete version whose content hash is ``content_hash``."""
    for existing in reversed(store.list_versions(collection)):
        manifest = store.read_manifest(collection, existing)
        if manifest.get("content_hash") == content_hash:
            return manifest
    return None
