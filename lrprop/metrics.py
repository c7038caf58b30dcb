"""The five evaluation metrics of the paper (METHOD.md §5), numbers in and numbers out.

Inputs are per-video arrays: ``embs[v]`` (L_v, D) float embeddings of every frame of video v at
stride 1, ``labels[v]`` (L_v,) integer phase labels, the frames with a label < 0 already dropped
(:func:`drop_unlabelled`). Scores are fractions in [0, 1]; reports print percentages.

The all-pairs work (Kendall's τ, AP@K, DTW accuracy) is batched in :func:`all_pairs_scores`:
one distance product per query video serves all three, DTW paths and τ-b run in numba kernels
(:mod:`lrprop.dtw`, ``_metric_kernels``); no Python loop over frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lrprop._metric_kernels import kendall_tau_b_rows, smallest_k_rows
from lrprop.dtw import dtw_path_blocks

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
    """Kendall's τ, AP@K and DTW accuracy of one class, from one distance product per video.

    The three compare every video with the others through squared Euclidean distances between
    frames. For each query video, the distances from all its frames to all frames of the class
    come out of one matrix product, and each metric reads its frames from that block (τ and
    AP@K at their strides, DTW accuracy the column blocks of the later videos, through
    :func:`lrprop.dtw.dtw_path_blocks`). Computed separately, the three products took most of
    the evaluation's time. Only the frames the asked metrics read enter the product.

    Args:
        val_embs: per video (L_v, D) embeddings.
        val_labels: per video (L_v,) labels (AP@K and DTW accuracy need them).
        tau_stride, ap_ks, ap_stride, chunk_pairs: as for :func:`kendalls_tau`, :func:`ap_at_k`
            and :func:`dtw_accuracy`.
        metrics: which of ``ALL_PAIRS_METRICS`` to compute.

    Returns:
        {"kendalls_tau": float, "ap_at_k": {K: float}, "dtw_accuracy": float}, the asked ones.
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
    lengths = np.array([len(e) for e in embs])
    frame = np.concatenate([np.arange(length) for length in lengths])
    owner = np.repeat(np.arange(n), lengths)
    # Only the frames some asked metric reads enter the product: every `step`-th of each video.
    strides = {"kendalls_tau": tau_stride, "ap_at_k": ap_stride, "dtw_accuracy": 1}
    step = math.gcd(*(strides[m] for m in want))
    kept = np.flatnonzero(frame % step == 0)
    frame, owner = frame[kept], owner[kept]
    starts = np.searchsorted(owner, np.arange(n + 1))  # each video's columns (all of them when step is 1)
    gallery = np.concatenate(embs)[kept]
    # [x, ‖x‖², 1] · [-2y, 1, ‖y‖²] = ‖x - y‖²: the norms ride in the product instead of two more
    # passes over its (L_v, all frames) result, which took as long as the product itself.
    gallery_aug = np.hstack([-2.0 * gallery, np.ones((len(gallery), 1)), (gallery * gallery).sum(1, keepdims=True)])

    tau_cols = np.flatnonzero(frame % tau_stride == 0)  # every video's frames at tau_stride
    tau_starts = np.searchsorted(owner[tau_cols], np.arange(n + 1))
    ap_cols = np.flatnonzero(frame % ap_stride == 0)
    ap_starts = np.searchsorted(owner[ap_cols], np.arange(n + 1))
    ap_gallery_labels = np.concatenate(labels)[kept][ap_cols] if labels is not None else None
    taus, ap_scores, dtw_scores = [], {k: [] for k in ap_ks}, []
    only_dtw = want == {"dtw_accuracy"}

    for v in range(n):
        query = embs[v][::step]
        first = starts[v + 1] if only_dtw else 0  # DTW accuracy alone needs the later videos only
        d = np.hstack([query, (query * query).sum(1, keepdims=True), np.ones((len(query), 1))]) @ gallery_aug[first:].T
        np.maximum(d, 0.0, out=d)  # rounding can leave -1e-15 where frames coincide
        if "kendalls_tau" in want and n > 1:
            block = d[:: tau_stride // step][:, tau_cols]
            nearest = np.stack([block[:, tau_starts[j] : tau_starts[j + 1]].argmin(1) for j in range(n) if j != v])
            taus.append(kendall_tau_b_rows(np.arange(block.shape[0], dtype=np.float64), nearest.astype(np.float64)))
        if "dtw_accuracy" in want:  # step is 1
            for later_first in range(v + 1, n, chunk_pairs):
                later = np.arange(later_first, min(n, later_first + chunk_pairs))
                for j, path in zip(later, dtw_path_blocks(d, starts[later] - first, lengths[later]), strict=True):
                    dtw_scores.append(float(np.mean(labels[v][path[:, 0]] == labels[j][path[:, 1]])))
        if "ap_at_k" in want:
            block = d[:: ap_stride // step][:, ap_cols] if ap_stride > step else d
            own = range(ap_starts[v], ap_starts[v + 1])
            _ap_of_video(block, own, ap_gallery_labels, labels[v][::ap_stride], ap_ks, ap_scores)

    out = {}
    if "kendalls_tau" in want:
        tau = np.concatenate(taus) if taus else np.array([])
        tau = tau[~np.isnan(tau)]
        out["kendalls_tau"] = float(tau.mean()) if len(tau) else float("nan")
    if "ap_at_k" in want:
        out["ap_at_k"] = {k: float(np.mean(vals)) for k, vals in ap_scores.items()}
    if "dtw_accuracy" in want:
        out["dtw_accuracy"] = float(np.mean(dtw_scores)) if dtw_scores else float("nan")
    return out


def _ap_of_video(d: np.ndarray, own: range, gallery_labels: np.ndarray, query_labels: np.ndarray, ks, scores) -> None:
    """Append one query video's precision at each K to ``scores``.

    Args:
        d: (queries, gallery frames) squared distances.
        own: the columns of the query's own video (excluded).
    """
    kk = min(max(ks), d.shape[1] - len(own))
    if kk < 1:
        for k in ks:
            scores[k].append(float("nan"))
        return
    nearest = smallest_k_rows(d, kk, own.start, own.stop)  # ordered by distance, ties by index
    hits = gallery_labels[nearest] == query_labels[:, None]  # (n_v, kk)
    for k in ks:
        scores[k].append(float(hits[:, : min(k, kk)].mean()))
