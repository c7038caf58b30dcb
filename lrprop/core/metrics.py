"""The five evaluation metrics of the paper (METHOD.md §5), numbers in and numbers out.

Inputs are per-video arrays: ``embs[v]`` (L_v, D) float embeddings of every frame of video v at
stride 1, ``labels[v]`` (L_v,) integer phase labels, the frames with a label < 0 already dropped
(:func:`drop_unlabelled`). Scores are fractions in [0, 1]; reports print percentages.

The all-pairs work (Kendall's τ, AP@K, DTW accuracy) is batched in :func:`all_pairs_scores`:
one distance product per query video serves all three, DTW paths and τ-b run in numba kernels
(:mod:`lrprop.core.dtw`, ``_metric_kernels``); no Python loop over frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from lrprop.core._metric_kernels import argmin_blocks, kendall_tau_b_rows, offer_to_column_lists, smallest_k_rows
from lrprop.core.dtw import dtw_path_blocks

__all__ = [
    "ap_at_k",
    "drop_unlabelled",
    "dtw_accuracy",
    "kendall_tau_b",
    "kendalls_tau",
    "phase_classification",
    "phase_progression",
]

FRACTIONS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0)
AP_KS = (1, 5, 10, 15, 20, 25, 30)


def drop_unlabelled(embs: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Keep the frames with a label >= 0 of each video (videos left empty are dropped)."""
    out_e, out_l = [], []
    for e, lab in zip(embs, labels, strict=True):
        keep = np.asarray(lab) >= 0
        if keep.any():
            out_e.append(np.asarray(e)[keep])
            out_l.append(np.asarray(lab)[keep])
    return out_e, out_l


def phase_classification(
    train_embs: Sequence[np.ndarray],
    train_labels: Sequence[np.ndarray],
    val_embs: Sequence[np.ndarray],
    val_labels: Sequence[np.ndarray],
    *,
    fractions: Sequence[float] = FRACTIONS,
    classifier: str = "svm",
) -> dict[float, float]:
    """Per-frame phase accuracy of a classifier fitted on a fraction of the training videos.

    For each f, the classifier is fitted on every frame of the first max(1, ⌊f·N⌋) training
    videos (data-set order) and predicts every validation frame; the score is the accuracy over
    all validation frames pooled.

    Args:
        classifier: "svm" (RBF kernel, C = 1, one-vs-one; the paper) or "logistic"
            (multinomial logistic regression, C = 1; SCL/CARL's choice).

    Returns:
        {f: accuracy}.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    if classifier not in ("svm", "logistic"):
        raise ValueError(f"classifier must be 'svm' or 'logistic', got {classifier!r}")
    x_val, y_val = np.concatenate(val_embs), np.concatenate(val_labels)
    n = len(train_embs)
    scores = {}
    for f in fractions:
        count = max(1, int(np.floor(f * n)))
        x, y = np.concatenate(train_embs[:count]), np.concatenate(train_labels[:count])
        if len(np.unique(y)) < 2:  # one class seen: every prediction is that class
            scores[f] = float(np.mean(y_val == y[0]))
            continue
        model = (
            SVC(kernel="rbf", C=1.0, decision_function_shape="ovo")
            if classifier == "svm"
            else LogisticRegression(C=1.0, max_iter=100_000)  # lbfgs, multinomial: as CARL
        )
        model.fit(x, y)
        scores[f] = float(np.mean(model.predict(x_val) == y_val))
    return scores


def _progress_targets(labels: np.ndarray, num_events: int) -> np.ndarray:
    """(L, num_events) targets: for key event c, (t - transition_c) / L, where transition_c is the
    last frame labelled c; NaN when the video has no frame labelled c."""
    L = len(labels)
    t = np.arange(L, dtype=np.float64)
    out = np.full((L, num_events), np.nan)
    for c in range(num_events):
        frames = np.flatnonzero(labels == c)
        if len(frames):
            out[:, c] = (t - frames[-1]) / L
    return out


def phase_progression(
    train_embs: Sequence[np.ndarray],
    train_labels: Sequence[np.ndarray],
    val_embs: Sequence[np.ndarray],
    val_labels: Sequence[np.ndarray],
    *,
    num_phases: int | None = None,
) -> float:
    """Mean R² over key events of linear regressions from embeddings to phase progress.

    Key event c (c = 0..K-2) is the transition out of phase c, at the last frame labelled c;
    the target of frame t is (t - transition_c) / L (L the video's length). One linear
    regression per key event is fitted on the training frames and scored (R²) on the
    validation frames; videos without phase c are left out of event c.

    Returns:
        the mean of the per-event R² (NaN when no event can be scored).
    """
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    K = num_phases if num_phases is not None else int(max(lab.max() for lab in [*train_labels, *val_labels])) + 1
    events = K - 1
    x_tr = np.concatenate(train_embs)
    y_tr = np.concatenate([_progress_targets(lab, events) for lab in train_labels])
    x_va = np.concatenate(val_embs)
    y_va = np.concatenate([_progress_targets(lab, events) for lab in val_labels])
    scores = []
    for c in range(events):
        tr, va = ~np.isnan(y_tr[:, c]), ~np.isnan(y_va[:, c])
        if tr.sum() < 2 or va.sum() < 2:
            continue
        model = LinearRegression().fit(x_tr[tr], y_tr[tr, c])
        scores.append(r2_score(y_va[va, c], model.predict(x_va[va])))
    return float(np.mean(scores)) if scores else float("nan")


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's τ-b of two equally long sequences (ties in either corrected; NaN if one is constant).

    τ_b = (C - D) / sqrt((n0 - n1)(n0 - n2)) over all pairs i < j, with C, D the concordant and
    discordant pairs, n0 the number of pairs, n1, n2 the pairs tied in x, in y.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"kendall_tau_b needs two equally long 1-D sequences, got {x.shape} and {y.shape}")
    return float(kendall_tau_b_rows(x, y[None])[0])


def kendalls_tau(val_embs: Sequence[np.ndarray], *, stride: int = 2) -> float:
    """Mean Kendall's τ-b of nearest-neighbour alignments over all ordered pairs of videos.

    For each ordered pair (i, j), i ≠ j: the frames of i at ``stride`` each find their nearest
    neighbour (squared Euclidean) among the frames of j at ``stride``; τ-b between 0..n-1 and
    the neighbours' indices. NaN values (a constant neighbour sequence) are dropped; the rest
    averaged. 1 for perfectly monotone alignments, -1 for reversed ones.
    """
    return all_pairs_scores(val_embs, None, tau_stride=stride, metrics=("kendalls_tau",))["kendalls_tau"]


def ap_at_k(
    val_embs: Sequence[np.ndarray],
    val_labels: Sequence[np.ndarray],
    *,
    ks: Sequence[int] = AP_KS,
    stride: int = 1,
) -> dict[int, float]:
    """Cross-video precision at K of phase retrieval.

    Each frame (at ``stride``) of each video queries the frames (at ``stride``) of all *other*
    videos; the score of a query is the fraction of its K nearest (squared Euclidean) with the
    query's label. Mean over a video's queries, then over videos.

    Returns:
        {K: score}.
    """
    return all_pairs_scores(val_embs, val_labels, ap_ks=ks, ap_stride=stride, metrics=("ap_at_k",))["ap_at_k"]


def dtw_accuracy(val_embs: Sequence[np.ndarray], val_labels: Sequence[np.ndarray], *, chunk_pairs: int = 256) -> float:
    """Mean over pairs of videos of the fraction of DTW path cells whose labels agree.

    For every unordered pair of videos: exact DTW on the squared-Euclidean cost of their
    embeddings; the score is the fraction of path cells (i, j) with labels_a[i] == labels_b[j].
    The pairs of a video with the later ones run through the DTW kernel ``chunk_pairs`` at a
    time, on the distance block of :func:`all_pairs_scores` (no per-pair copies).
    """
    return all_pairs_scores(val_embs, val_labels, chunk_pairs=chunk_pairs, metrics=("dtw_accuracy",))["dtw_accuracy"]


ALL_PAIRS_METRICS = ("kendalls_tau", "ap_at_k", "dtw_accuracy")


def all_pairs_scores(
    val_embs: Sequence[np.ndarray],
    val_labels: Sequence[np.ndarray] | None,
    *,
    tau_stride: int = 2,
    ap_ks: Sequence[int] = AP_KS,
    ap_stride: int = 1,
    chunk_pairs: int = 256,
    metrics: Sequence[str] = ALL_PAIRS_METRICS,
) -> dict:
    """Kendall's τ, AP@K and DTW accuracy of one class, from one half of the distance matrix.

    The three compare every video with the others through squared Euclidean distances between
    frames. For each query video v, the distances from its frames to the frames of the *later*
    videos come out of one matrix product, and each metric reads its frames from that block
    in both directions, since d(v, j) = d(j, v)ᵀ:

    - τ: each row's nearest neighbour inside each later video (v's alignment to j) and each
      column's nearest row (j's alignment to v), kept until j is the query;
    - AP@K: each row's K smallest among the later videos, and each column's running K smallest
      over the earlier videos, merged when the column's video is the query;
    - DTW accuracy: the paths of the unordered pairs (v, j > v) on the block's column blocks,
      through :func:`lrprop.core.dtw.dtw_path_blocks`.

    So the product covers each pair once (it took most of the evaluation's time when each
    metric made its own). Only the frames the asked metrics read enter it.

    Args:
        val_embs: per video (L_v, D) embeddings.
        val_labels: per video (L_v,) labels (AP@K and DTW accuracy need them).
        tau_stride, ap_ks, ap_stride, chunk_pairs: as for :func:`kendalls_tau`, :func:`ap_at_k`
            and :func:`dtw_accuracy`.
        metrics: which of ``ALL_PAIRS_METRICS`` to compute.

    Returns:
        {"kendalls_tau": float, "ap_at_k": {K: float}, "dtw_accuracy": float}, the asked ones.

    Raises:
        ValueError: an unknown metric, missing labels, a stride < 1, or a video whose
            embeddings are not finite (named by its index).
    """
    want = set(metrics)
    if not want <= set(ALL_PAIRS_METRICS):
        raise ValueError(f"unknown metrics {sorted(want - set(ALL_PAIRS_METRICS))}; known: {ALL_PAIRS_METRICS}")
    if want & {"ap_at_k", "dtw_accuracy"} and val_labels is None:
        raise ValueError("ap_at_k and dtw_accuracy need labels")
    if tau_stride < 1 or ap_stride < 1:
        raise ValueError(f"strides must be >= 1, got tau_stride={tau_stride}, ap_stride={ap_stride}")
    embs = [np.asarray(e, dtype=np.float64) for e in val_embs]
    labels = [np.asarray(lab) for lab in val_labels] if val_labels is not None else None
    n = len(embs)
    if n == 0:
        raise ValueError("all_pairs_scores needs at least one validation video")
    lengths = np.array([len(e) for e in embs])
    frame = np.concatenate([np.arange(length) for length in lengths])
    owner = np.repeat(np.arange(n), lengths)
    # Only the frames some asked metric reads enter the product: every `step`-th of each video.
    strides = {"kendalls_tau": tau_stride, "ap_at_k": ap_stride, "dtw_accuracy": 1}
    step = math.gcd(*(strides[m] for m in want))
    kept = np.flatnonzero(frame % step == 0)
    frame, owner = frame[kept], owner[kept]
    starts = np.searchsorted(owner, np.arange(n + 1))  # each video's columns (all of them when step is 1)
    gallery = np.concatenate(embs)
    query_aug, gallery_aug = _distance_factors(gallery[kept] if step > 1 else gallery, owner)

    tau = _TauPairs(frame, owner, starts, tau_stride, step) if "kendalls_tau" in want and n > 1 else None
    ap = _ApLists(frame, owner, starts, ap_stride, step, labels, ap_ks) if "ap_at_k" in want else None
    dtw = _DtwPairs(starts, lengths, labels, chunk_pairs) if "dtw_accuracy" in want else None
    scorers = [scorer for scorer in (tau, ap, dtw) if scorer is not None]
    # One BLAS thread per call, the query's rows split over numba's threads: the product
    # alternates with numba's parallel kernels, and OpenBLAS's own threads spin on the cores
    # after each product, starving the kernels (the whole took twice as long that way).
    threads = numba.get_num_threads()
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
        for v in range(n):
            first = starts[v + 1]
            d = _product(pool, threads, query_aug[starts[v] : first], gallery_aug[first:])  # (v's frames, later frames)
            np.maximum(d, 0.0, out=d)  # rounding can leave -1e-15 where frames coincide
            for scorer in scorers:
                scorer.add_query(v, d)

    return _means(want, tau, ap, dtw)


def _distance_factors(gallery: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, D) frames -> query and gallery factors, each (F, D + 2), whose product is the
    squared distances: [x, ‖x‖², 1] · [-2y, 1, ‖y‖²] = ‖x - y‖². The norms ride in the product
    instead of two more passes over its result, which took as long as the product itself.

    Raises:
        ValueError: a frame whose distances would not be finite, naming its video (``owner``).
    """
    sq_norm = np.einsum("fd,fd->f", gallery, gallery)
    bad = ~np.isfinite(4.0 * sq_norm)  # 4·max‖x‖² bounds every distance: finite here, finite there
    if bad.any():
        raise ValueError(f"embeddings of validation video {int(owner[np.argmax(bad)])} are not finite (or too large to square)")
    F, D = gallery.shape
    query_aug, gallery_aug = np.empty((F, D + 2)), np.empty((F, D + 2))
    query_aug[:, :D], query_aug[:, D], query_aug[:, D + 1] = gallery, sq_norm, 1.0
    np.multiply(gallery, -2.0, out=gallery_aug[:, :D])
    gallery_aug[:, D], gallery_aug[:, D + 1] = 1.0, sq_norm
    return query_aug, gallery_aug


def _means(want: set[str], tau: _TauPairs | None, ap: _ApLists | None, dtw: _DtwPairs | None) -> dict:
    """The asked metrics, each the mean over what its scorer collected (NaN when it has nothing:
    τ of a single video, DTW accuracy without pairs)."""
    out = {}
    if "kendalls_tau" in want:
        taus = np.concatenate(tau.taus) if tau is not None else np.array([])
        taus = taus[~np.isnan(taus)]
        out["kendalls_tau"] = float(taus.mean()) if len(taus) else float("nan")
    if ap is not None:
        out["ap_at_k"] = {k: float(np.mean(vals)) for k, vals in ap.scores.items()}
    if dtw is not None:
        out["dtw_accuracy"] = float(np.mean(dtw.scores)) if dtw.scores else float("nan")
    return out


def _product(pool: ThreadPoolExecutor, threads: int, query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """query @ gallery.T, (R, C), in bands of rows computed on the pool's threads (BLAS releases the GIL)."""
    out = np.empty((len(query), len(gallery)))
    bands = np.linspace(0, len(query), min(threads, len(query)) + 1).astype(int)
    jobs = [pool.submit(np.matmul, query[a:b], gallery.T, out=out[a:b]) for a, b in zip(bands[:-1], bands[1:], strict=True)]
    for job in jobs:
        job.result()
    return out


class _DtwPairs:
    """DTW accuracy of every unordered pair, fed one query video's block of later videos at a time."""

    def __init__(self, starts: np.ndarray, lengths: np.ndarray, labels: list[np.ndarray], chunk_pairs: int):
        self.starts, self.lengths, self.labels, self.chunk_pairs = starts, lengths, labels, chunk_pairs
        self.scores: list[float] = []

    def add_query(self, v: int, d: np.ndarray) -> None:
        """d: (v's frames, later videos' frames) squared distances (every frame: step is 1)."""
        n = len(self.lengths)
        for later_first in range(v + 1, n, self.chunk_pairs):
            later = np.arange(later_first, min(n, later_first + self.chunk_pairs))
            paths = dtw_path_blocks(d, self.starts[later] - self.starts[v + 1], self.lengths[later])
            for j, path in zip(later, paths, strict=True):
                self.scores.append(float(np.mean(self.labels[v][path[:, 0]] == self.labels[j][path[:, 1]])))


def _strided_columns(frame: np.ndarray, owner: np.ndarray, n: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """The product's columns at ``stride`` (every video's frames 0, stride, …) and where each of
    the n videos' share of them starts: (C,) and (n + 1,), from the (F,) frame index and video
    of each column (``owner`` sorted)."""
    cols = np.flatnonzero(frame % stride == 0)
    return cols, np.searchsorted(owner[cols], np.arange(n + 1))


class _TauPairs:
    """Kendall's τ of every ordered pair, fed one query video's block of later videos at a time.

    Args:
        frame, owner: (F,) frame index and video of each column of the product (frames at ``step``).
        video_starts: (n + 1,) each video's first column.
    """

    def __init__(self, frame: np.ndarray, owner: np.ndarray, video_starts: np.ndarray, stride: int, step: int):
        n = len(video_starts) - 1
        _, self.starts = _strided_columns(frame, owner, n, stride)
        self.video_starts = video_starts
        self.row_step = stride // step
        # The nearest neighbours of each video's frames in the earlier videos, found when those
        # were the query (column argmins), until the video's own turn.
        self.from_earlier: list[list[np.ndarray]] = [[] for _ in range(n)]
        self.taus: list[np.ndarray] = []

    def add_query(self, v: int, d: np.ndarray) -> None:
        """d: (v's frames at step, later videos' frames at step) squared distances."""
        n = len(self.from_earlier)
        forward, backward = argmin_blocks(d, self.video_starts[v + 1 :] - self.video_starts[v + 1], self.row_step)
        later = self.starts[v + 1 :] - self.starts[v + 1]  # each later video's share of `backward`
        for p, j in enumerate(range(v + 1, n)):
            self.from_earlier[j].append(backward[later[p] : later[p + 1]])
        rows = forward.shape[1]
        nearest = np.concatenate([np.asarray(self.from_earlier[v]).reshape(-1, rows), forward])
        self.from_earlier[v] = []
        self.taus.append(kendall_tau_b_rows(np.arange(rows, dtype=np.float64), nearest.astype(np.float64)))


class _ApLists:
    """AP@K of every video, fed one query video's block of later videos at a time.

    Each frame's K nearest among the earlier videos accumulate in running lists (the blocks'
    columns); its K nearest among the later videos come from its own block's rows. Ties are
    ordered by gallery index throughout, as one sort over all other videos would order them.
    """

    def __init__(self, frame, owner, video_starts, stride, step, labels, ks):
        self.cols, self.starts = _strided_columns(frame, owner, len(video_starts) - 1, stride)
        self.video_starts = video_starts
        self.row_step = stride // step
        self.stride = stride
        self.labels = labels
        self.gallery_labels = np.concatenate([lab[::stride] for lab in labels])  # the labels of self.cols
        self.ks = tuple(ks)
        k = max(self.ks)
        self.best_v = np.full((len(self.cols), k), np.inf)
        self.best_i = np.full((len(self.cols), k), -1, dtype=np.int64)
        self.scores = {k: [] for k in self.ks}

    def add_query(self, v: int, d: np.ndarray) -> None:
        """d: (v's frames at step, later videos' frames at step) squared distances."""
        own = slice(self.starts[v], self.starts[v + 1])
        later_first = self.starts[v + 1]
        block = d[:: self.row_step]
        if self.row_step > 1:
            # A C-ordered copy: numpy leaves a fancy-indexed block column-major, which the
            # kernels below would walk across the cache lines.
            block = np.ascontiguousarray(block[:, self.cols[later_first:] - self.video_starts[v + 1]])
        kk = min(self.best_v.shape[1], len(self.cols) - (own.stop - own.start))
        if kk < 1:  # no other video's frames
            for k in self.ks:
                self.scores[k].append(float("nan"))
            return
        values, indices = [self.best_v[own]], [self.best_i[own]]
        if block.shape[1]:
            offer_to_column_lists(block, own.start, self.best_v, self.best_i, later_first)
            nearest = smallest_k_rows(block, min(kk, block.shape[1]), 0, 0)
            values.append(np.take_along_axis(block, nearest, 1))
            indices.append(nearest + later_first)
        values, indices = np.hstack(values), np.hstack(indices)
        order = np.lexsort((indices, values))[:, :kk]  # by distance, then gallery index
        nearest = np.take_along_axis(indices, order, 1)
        hits = self.gallery_labels[nearest] == self.labels[v][:: self.stride][:, None]  # (n_v, kk)
        for k in self.ks:
            self.scores[k].append(float(hits[:, : min(k, kk)].mean()))
