"""Align two videos with a trained model: embed both, DTW on the squared Euclidean distances of
their frames' embeddings, and what a person reads off the path (issue 16).

    model, config, _ = load_model("synthetic/reach@production", store_uri="lrprop-store")
    result = align_videos(model, config, "a.mp4", "b_frames/")
    result.alignment.path          # (K, 2) int64: frame i of A matched with frame j of B
    result.alignment.warp()        # (Ta,) the frame of B shown at each frame of A
    print(result.alignment.summary())

The path is the exact DTW path at any length (:func:`lrprop.core.dtw_long.dtw_path_long`: two
videos of 20 000 frames each align in 140 MB), and embedding streams each video's frames
from its file in chunks of ``eval.max_chunk`` (:mod:`lrprop.alignment.videos`), as evaluation
embeds the videos of a data set.

With ``subsequence=True`` B is a clip matched with the part of A it fits best (subsequence DTW,
:func:`lrprop.core.dtw_long.dtw_subsequence_path_long`): the path runs from (start, 0) to
(end, Tb - 1), and ``alignment.start``, ``alignment.end`` say which frames of A that is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lrprop.alignment.videos import FrameCountMismatch, VideoFrames, open_video
from lrprop.core.dtw import middle_matches
from lrprop.core.dtw_long import dtw_path_long, dtw_subsequence_path_long, sqeuclidean_rows

__all__ = [
    "Alignment",
    "VideoAlignment",
    "align_embeddings",
    "align_videos",
    "check_subsequence_lengths",
    "embed_video_file",
]


@dataclass(frozen=True)
class Alignment:
    """The DTW alignment of sequence A (Ta frames) with sequence B (Tb frames).

    Attributes:
        path: (K, 2) int64 rows (i, j) from (0, 0) to (Ta - 1, Tb - 1), i and j non-decreasing;
            for a subsequence match from (start, 0) to (end, Tb - 1).
        costs: (K,) float64, the squared Euclidean distance of the embeddings of each pair.
        len_a, len_b: Ta and Tb.
        start, end: the first and last frame of A that B matches (a subsequence match), None
            when the path runs through all of A.
    """

    path: np.ndarray
    costs: np.ndarray
    len_a: int
    len_b: int
    start: int | None = None
    end: int | None = None

    @property
    def total(self) -> float:
        """The accumulated cost along the path."""
        return float(self.costs.sum())

    @property
    def normalised_cost(self) -> float:
        """The mean cost of a step of the path (total / K): comparable across lengths."""
        return self.total / len(self.path)

    @property
    def matched_a(self) -> range:
        """The frames of A the path runs through: all of them, or start..end of a subsequence match."""
        return range(self.path[0, 0], self.path[-1, 0] + 1)

    @property
    def duration_ratio(self) -> float:
        """Tb / Ta, or Tb / (end - start + 1) for a subsequence match: B's length over that of
        the frames of A it matches."""
        return self.len_b / len(self.matched_a)

    def warp(self) -> np.ndarray:
        """(Ta,) int64: for each frame i of A, the middle of the frames of B the path matches with
        it (they are consecutive), so that B played at ``warp()`` follows A's time. Before a
        subsequence match's start it is B's first frame, after its end B's last."""
        first = self.matched_a.start
        inside = middle_matches(self.path - [first, 0], len(self.matched_a))
        return np.r_[np.zeros(first, dtype=np.int64), inside, np.full(self.len_a - self.matched_a.stop, self.len_b - 1)]

    def pace(self, window: int | None = None) -> np.ndarray:
        """(N,) float64 over the N frames of A matched (``matched_a``: all Ta, or start..end):
        frames of B per frame of A around each, over the frames i - window .. i + window (default
        5 % of N, at least 2), divided by ``duration_ratio``: 1 where B keeps its average pace, 2
        where it is twice as slow (spends twice the frames), 0.5 where twice as fast. A held
        frame of B counts as half a frame, so the ratio stays finite."""
        n = len(self.matched_a)
        w = window if window is not None else max(2, round(0.05 * n))
        warp = self.warp()[self.matched_a.start : self.matched_a.stop].astype(np.float64)
        lo = np.clip(np.arange(n) - w, 0, n - 1)
        hi = np.clip(np.arange(n) + w, 0, n - 1)
        span = np.maximum(hi - lo, 1)
        rate = np.maximum(warp[hi] - warp[lo], 0.5) / span
        return rate / self.duration_ratio

    def summary(self, window: int | None = None) -> str:
        """One line: the lengths, the frames of A a subsequence match found, the normalised cost
        and where the pace differs most."""
        matched = self.matched_a
        where = f"; B matches A frames {matched.start}-{matched.stop - 1}" if self.start is not None else ""
        there = " there" if self.start is not None else ""
        line = (
            f"A {self.len_a} frames, B {self.len_b} frames{where} (B/A {self.duration_ratio:.2f}{there}); "
            f"normalised cost {self.normalised_cost:.4g} per step of {len(self.path)}"
        )
        if len(matched) < 3:
            return line
        w = window if window is not None else max(2, round(0.05 * len(matched)))
        pace = self.pace(w)
        at = int(np.argmax(np.abs(np.log(pace))))
        factor = pace[at]
        how = f"{factor:.2f}x slower" if factor >= 1 else f"{1 / factor:.2f}x faster"
        lo, hi = matched.start + max(0, at - w), matched.start + min(len(matched) - 1, at + w)
        return line + f"; the pace differs most at A frames {lo}-{hi}: B {how} there than on average"


def check_subsequence_lengths(len_a: int, len_b: int, name_a: str = "A", name_b: str = "B") -> None:
    """Raise ValueError, naming both, when B is longer than A: a subsequence match finds B in a part of A."""
    if len_b > len_a:
        raise ValueError(
            f"{name_b} ({len_b} frames) is longer than {name_a} ({len_a} frames): a subsequence match finds B "
            "in a part of A, so B must be the shorter (swap them)"
        )


def align_embeddings(a: np.ndarray, b: np.ndarray, *, block_rows: int | None = None, subsequence: bool = False) -> Alignment:
    """The exact DTW alignment of two embedding sequences, a (Ta, E) and b (Tb, E), on the
    squared Euclidean cost of their rows, in O(Tb √Ta) memory (:mod:`lrprop.core.dtw_long`).

    With ``subsequence`` B (Tb <= Ta) is matched with the part of A it fits best, start..end
    (subsequence DTW: the path's first and last frame of A are free).

    Raises:
        ValueError: ``subsequence`` and B longer than A.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    start = end = None
    if subsequence:
        check_subsequence_lengths(len(a), len(b))
        path, _, start, end = dtw_subsequence_path_long(sqeuclidean_rows(a, b), len(a), len(b), block_rows=block_rows)
    else:
        path, _ = dtw_path_long(sqeuclidean_rows(a, b), len(a), len(b), block_rows=block_rows)
    costs = np.einsum("kd,kd->k", a[path[:, 0]] - b[path[:, 1]], a[path[:, 0]] - b[path[:, 1]])
    return Alignment(path, costs, len(a), len(b), start, end)


def embed_video_file(model, config, video: VideoFrames) -> np.ndarray:
    """(T, E) float32 embeddings of every frame of ``video``, streamed in chunks of ``eval.max_chunk``.

    A file whose header miscounts its frames is embedded again with the count decoded, so each
    frame gets the position evaluation would give it."""
    from lrprop.evaluation.evaluate import embed_chunks

    try:
        return embed_chunks(model, video.chunks(config.eval.max_chunk), len(video), image_size=config.data.image_size)
    except FrameCountMismatch as exc:
        video.num_frames = exc.decoded
    if video.num_frames == 0:
        raise ValueError(f"{video.uri}: a video with no frame")
    return embed_chunks(model, video.chunks(config.eval.max_chunk), len(video), image_size=config.data.image_size)


@dataclass(frozen=True)
class VideoAlignment:
    """:func:`align_videos`' result: the alignment, both videos and their embeddings (Ta, E), (Tb, E)."""

    alignment: Alignment
    a: VideoFrames
    b: VideoFrames
    emb_a: np.ndarray
    emb_b: np.ndarray


def align_videos(model, config, a_uri: str, b_uri: str, *, device: str = "auto", subsequence: bool = False) -> VideoAlignment:
    """Embed two videos (files or frame folders, local or store URIs) with ``model`` and align them.

    ``config`` is the model's (``data.image_size``, ``eval.max_chunk``); ``device`` as in
    training ("auto": CUDA when there is one); ``subsequence``: B is a clip matched with a part
    of A (:func:`align_embeddings`), refused before embedding when B has more frames than A.
    """
    from lrprop.training.train import resolve_device

    model = model.to(resolve_device(device)).eval()
    # Decoded at the model's input size: the transform's resize then changes nothing, its crop centres
    a = open_video(a_uri, short_side=config.data.image_size)
    b = open_video(b_uri, short_side=config.data.image_size)
    if subsequence:
        check_subsequence_lengths(len(a), len(b), a_uri, b_uri)
    emb_a, emb_b = embed_video_file(model, config, a), embed_video_file(model, config, b)
    for uri, emb in ((a_uri, emb_a), (b_uri, emb_b)):
        if not np.isfinite(emb).all():
            raise ValueError(f"{uri}: the model gave non-finite embeddings for {int((~np.isfinite(emb).all(1)).sum())} frames")
    if subsequence:  # again at the decoded lengths: a header can miscount
        check_subsequence_lengths(len(emb_a), len(emb_b), a_uri, b_uri)
    return VideoAlignment(align_embeddings(emb_a, emb_b, subsequence=subsequence), a, b, emb_a, emb_b)
