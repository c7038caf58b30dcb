"""What ``lrprop align`` writes: the path as CSV, the cost matrix with the path as a picture, and
a side-by-side video of A with B warped onto A's time (issue 16).

Each is streamed or pooled so that long videos cost little memory: the picture pools the cost
matrix to at most ``max_side`` pixels a side as it computes it a block of rows at a time; the
video decodes both inputs frame by frame. Every file is written to a temporary sibling and
renamed into place, so a failed run leaves no half-written file under its final name.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from lrprop.alignment.align import Alignment
from lrprop.alignment.videos import VideoFrames, open_video
from lrprop.core.dtw_long import sqeuclidean_rows

__all__ = [
    "new_figure",
    "pooled_cost",
    "write_aligned_video",
    "write_alignment_csv",
    "write_cost_picture",
    "written_atomically",
]


@contextmanager
def written_atomically(path: Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` (same suffix: the writers pick the format by it) to write
    in the block; renamed to ``path`` when the block ends, removed when it raises."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def new_figure(width: float, height: float):
    """A matplotlib Figure of its own (no pyplot: a notebook's figures and backend are left alone)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=120)


def write_alignment_csv(path: Path, alignment: Alignment) -> Path:
    """``frame_a,frame_b,cost``: one row per step of the path."""
    with written_atomically(path) as tmp, tmp.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["frame_a", "frame_b", "cost"])
        for (i, j), c in zip(alignment.path.tolist(), alignment.costs.tolist(), strict=True):
            out.writerow([i, j, f"{c:.6g}"])
    return Path(path)


def pooled_cost(emb_a: np.ndarray, emb_b: np.ndarray, max_side: int = 800, block_rows: int = 256) -> np.ndarray:
    """The (Ta, Tb) squared Euclidean cost, mean-pooled over blocks of ceil(Ta / max_side) x
    ceil(Tb / max_side) cells (partial blocks at the edges: the mean of their cells), computed
    ``block_rows`` rows at a time: (ceil(Ta / fa), ceil(Tb / fb)) float64."""
    ta, tb = len(emb_a), len(emb_b)
    fa, fb = -(-ta // max_side), -(-tb // max_side)
    rows = sqeuclidean_rows(emb_a, emb_b)
    step = max(1, block_rows // fa) * fa  # whole pooled rows per block
    col_starts = np.arange(0, tb, fb)
    col_counts = np.diff(np.r_[col_starts, tb])
    out = np.empty((-(-ta // fa), len(col_starts)))
    for r0 in range(0, ta, step):
        block = rows(r0, min(r0 + step, ta))  # (n, Tb)
        row_starts = np.arange(0, len(block), fa)
        row_counts = np.diff(np.r_[row_starts, len(block)])
        sums = np.add.reduceat(np.add.reduceat(block, row_starts, axis=0), col_starts, axis=1)
        out[r0 // fa : r0 // fa + len(row_starts)] = sums / np.outer(row_counts, col_counts)
    return out


def write_cost_picture(path: Path, alignment: Alignment, emb_a: np.ndarray, emb_b: np.ndarray, *, title: str = "") -> Path:
    """The cost matrix (pooled, :func:`pooled_cost`) with the DTW path drawn over it, as PNG; for
    a subsequence match, the rows of A where it starts and ends as dashed lines."""
    cost = pooled_cost(emb_a, emb_b)
    fig = new_figure(6.4, 6.4 * min(2.0, max(0.5, alignment.len_a / alignment.len_b)))
    ax = fig.subplots()
    shown = ax.imshow(
        cost, cmap="viridis", aspect="auto", extent=(0, alignment.len_b, alignment.len_a, 0), interpolation="nearest"
    )
    keep = np.unique(np.linspace(0, len(alignment.path) - 1, min(len(alignment.path), 5000)).astype(int))
    ax.plot(alignment.path[keep, 1] + 0.5, alignment.path[keep, 0] + 0.5, color="white", linewidth=1.2, label="DTW path")
    # The time stretch over the frames of A matched: all of A, or start..end of a subsequence
    matched = alignment.matched_a
    stretch = {"color": "white", "linewidth": 0.8, "linestyle": ":"}
    ax.plot([0, alignment.len_b], [matched.start, matched.stop], **stretch, label="time stretch")
    if alignment.start is not None:
        edge = {"color": "orange", "linewidth": 0.9, "linestyle": "--"}
        for row in (matched.start, matched.stop):  # the top of the first frame matched, the bottom of the last
            ax.axhline(row, **edge)
        ax.plot([], [], **edge, label=f"B matches A frames {matched.start}-{matched.stop - 1}")
    ax.set_xlabel(f"frame of B ({alignment.len_b})")
    ax.set_ylabel(f"frame of A ({alignment.len_a})")
    ax.set_title(title or f"normalised cost {alignment.normalised_cost:.4g}", fontsize=9)
    ax.legend(loc="lower left", fontsize=7)
    fig.colorbar(shown, ax=ax, label="squared distance of embeddings", fraction=0.046, pad=0.04)
    fig.tight_layout()
    with written_atomically(path) as tmp:
        fig.savefig(tmp)
    return Path(path)


def _at_height(frame: np.ndarray, height: int) -> np.ndarray:
    h, w = frame.shape[:2]
    if h == height:
        return frame
    return np.asarray(Image.fromarray(frame).resize((max(1, round(w * height / h)), height), Image.Resampling.BILINEAR))


def _side_by_side(a: VideoFrames, b: VideoFrames, warp: np.ndarray, height: int, shown: range):
    """Each frame i in ``shown`` of A beside the frame ``warp[i]`` of B, both ``height`` pixels
    high, even sizes.

    Raises:
        ValueError: A or B decodes to fewer frames than were aligned (the file changed since)."""
    b_frames = b.frames()
    j, current = -1, None
    for i, frame in enumerate(a.frames()):
        if i < shown.start:
            continue
        if i >= shown.stop:
            break
        while j < warp[i]:
            current = next(b_frames, None)
            if current is None:
                raise ValueError(f"{b.uri}: fewer than the {warp[i] + 1} frames aligned")
            j += 1
        both = np.concatenate([_at_height(frame, height), _at_height(current, height)], axis=1)
        yield both[: both.shape[0] // 2 * 2, : both.shape[1] // 2 * 2]  # yuv420p wants even sides


def write_aligned_video(
    path: Path, alignment: Alignment, a_uri: str, b_uri: str, *, height: int = 160, fps: float | None = None
) -> Path:
    """A beside B warped onto A's time (frame i of A beside frame ``warp()[i]`` of B): an MP4
    (H.264) at A's frame rate (or ``fps``; 25 when neither is known), or a GIF when ``path``
    ends in ``.gif`` (held in memory: for videos of a few thousand frames at most). For a
    subsequence match, only the frames of A that B matches (start..end).

    Raises:
        ValueError: a GIF of more than 3000 frames; a video that decodes to fewer frames than
            were aligned; PyAV missing.
    """
    path = Path(path)
    if height < 2:
        raise ValueError(f"the side-by-side video's height must be at least 2 pixels, got {height}")
    a, b = open_video(a_uri), open_video(b_uri)
    rate = fps or a.fps or 25.0
    shown = alignment.matched_a
    frames = _side_by_side(a, b, alignment.warp(), height, shown)
    if path.suffix.lower() == ".gif":
        if len(shown) > 3000:
            raise ValueError(f"{path}: a GIF of {len(shown)} frames would not fit in memory; write an .mp4")
        images = [Image.fromarray(f) for f in frames]
        with written_atomically(path) as tmp:
            images[0].save(tmp, save_all=True, append_images=images[1:], duration=round(1000 / rate), loop=0)
        return path
    try:
        import av  # PyAV: lrprop[video]
    except ImportError:
        raise ValueError("writing an .mp4 needs PyAV: pip install 'lrprop[video]', or write a .gif (--video gif)") from None

    with written_atomically(path) as tmp, av.open(str(tmp), mode="w") as container:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream("libx264", rate=Fraction(rate).limit_denominator(1001))
                stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
