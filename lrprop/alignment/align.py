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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lrprop.alignment.videos import FrameCountMismatch, VideoFrames, open_video
from lrprop.core.dtw import middle_matches
from lrprop.core.dtw_long import dtw_path_long, sqeuclidean_rows

__all__ = ["Alignment", "VideoAlignment", "align_embeddings", "align_videos", "embed_video_file"]


@dataclass(frozen=True)
class Alignment:
    """The DTW alignment of sequence A (Ta frames) with sequence B (Tb frames).

    Attributes:
        path: (K, 2) int64 rows (i, j) from (0, 0) to (Ta - 1, Tb - 1), i and j non-decreasing.
        costs: (K,) float64, the squared Euclidean distance of the embeddings of each pair.
        len_a, len_b: Ta and Tb.
    """

    path: np.ndarray
    costs: np.ndarray
    len_a: int
    len_b: int

    @property
    def total(self) -> float:
        """The accumulated cost along the path."""
        return float(self.costs.sum())

    @property
    def normalised_cost(self) -> float:
        """The mean cost of a step of the path (total / K): comparable across lengths."""
        return self.total / len(self.path)

    @property
    def duration_ratio(self) -> float:
        """Tb / Ta."""
        return self.len_b / self.len_a

    def warp(self) -> np.ndarray:
        """(Ta,) int64: for each frame i of A, the middle of the frames of B the path matches with
        it (they are consecutive), so that B played at ``warp()`` follows A's time."""
        return middle_matches(self.path, self.len_a)

    def pace(self, window: int | None = None) -> np.ndarray:
        """(Ta,) float64: frames of B per frame of A around each frame of A, over the frames
        i - window .. i + window (default 5 % of Ta, at least 2), divided by Tb / Ta: 1 where B
        keeps its average pace, 2 where it is twice as slow (spends twice the frames), 0.5 where
        twice as fast. A held frame of B counts as half a frame, so the ratio stays finite."""
        w = window if window is not None else max(2, round(0.05 * self.len_a))
        warp = self.warp().astype(np.float64)
        lo = np.clip(np.arange(self.len_a) - w, 0, self.len_a - 1)
        hi = np.clip(np.arange(self.len_a) + w, 0, self.len_a - 1)
        span = np.maximum(hi - lo, 1)
        rate = np.maximum(warp[hi] - warp[lo], 0.5) / span
        return rate / self.duration_ratio

    def summary(self, window: int | None = None) -> str:
        """One line: the lengths, the normalised cost and where the pace differs most."""
        line = (
            f"A {self.len_a} frames, B {self.len_b} frames (B/A {self.duration_ratio:.2f}); "
            f"normalised cost {self.normalised_cost:.4g} per step of {len(self.path)}"
        )
        if self.len_a < 3:
            return line
        w = window if window is not None else max(2, round(0.05 * self.len_a))
        pace = self.pace(w)
        at = int(np.argmax(np.abs(np.log(pace))))
        factor = pace[at]
        how = f"{factor:.2f}x slower" if factor >= 1 else f"{1 / factor:.2f}x faster"
        lo, hi = max(0, at - w), min(self.len_a - 1, at + w)
        return line + f"; the pace differs most at A frames {lo}-{hi}: B {how} there than on average"


def align_embeddings(a: np.ndarray, b: np.ndarray, *, block_rows: int | None = None) -> Alignment:
    """The exact DTW alignment of two embedding sequences, a (Ta, E) and b (Tb, E), on the
    squared Euclidean cost of their rows, in O(Tb √Ta) memory (:mod:`lrprop.core.dtw_long`)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    path, _ = dtw_path_long(sqeuclidean_rows(a, b), len(a), len(b), block_rows=block_rows)
    costs = np.einsum("kd,kd->k", a[path[:, 0]] - b[path[:, 1]], a[path[:, 0]] - b[path[:, 1]])
    return Alignment(path, costs, len(a), len(b))


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


def align_videos(model, config, a_uri: str, b_uri: str, *, device: str = "auto") -> VideoAlignment:
    """Embed two videos (files or frame folders, local or store URIs) with ``model`` and align them.

    ``config`` is the model's (``data.image_size``, ``eval.max_chunk``); ``device`` as in
    training ("auto": CUDA when there is one).
    """
    from lrprop.training.train import resolve_device

    model = model.to(resolve_device(device)).eval()
    # Decoded at the model's input size: the transform's resize then changes nothing, its crop centres
    a = open_video(a_uri, short_side=config.data.image_size)
    b = open_video(b_uri, short_side=config.data.image_size)
    emb_a, emb_b = embed_video_file(model, config, a), embed_video_file(model, config, b)
    for uri, emb in ((a_uri, emb_a), (b_uri, emb_b)):
        if not np.isfinite(emb).all():
            raise ValueError(f"{uri}: the model gave non-finite embeddings for {int((~np.isfinite(emb).all(1)).sum())} frames")
    return VideoAlignment(align_embeddings(emb_a, emb_b), a, b, emb_a, emb_b)
