"""The five evaluation metrics of the paper (METHOD.md §5), numbers in and numbers out.

Inputs are per-video arrays: ``embs[v]`` (L_v, D) float embeddings of every frame of video v at
stride 1, ``labels[v]`` (L_v,) integer phase labels, the frames with a label < 0 already dropped
(:func:`drop_unlabelled`). Scores are fractions in [0, 1]; reports print percentages.

The all-pairs work (Kendall's τ, AP@K, DTW accuracy) is batched: distances by matrix products,
DTW paths by the batched kernels of :mod:`lrprop.dtw`; no Python loop over frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lrprop._metric_kernels import kendall_tau_b_rows
from lrprop.dtw import dtw_path

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


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (n, m) between the rows of a (n, D) and b (m, D), in float64."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


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
    subs = [np.asarray(e)[::stride] for e in val_embs]
    gallery = np.concatenate(subs)
    bounds = np.cumsum([0] + [len(s) for s in subs])
    taus = []
    for i, query in enumerate(subs):
        d = _sqdist(query, gallery)  # (n_i, all frames) in one product
        others = [j for j in range(len(subs)) if j != i]
        if not others:
            continue
        nearest = np.stack([d[:, bounds[j] : bounds[j + 1]].argmin(1) for j in others])  # (N - 1, n_i)
        taus.append(kendall_tau_b_rows(np.arange(len(query), dtype=np.float64), nearest.astype(np.float64)))
    taus = np.concatenate(taus) if taus else np.array([])
    taus = taus[~np.isnan(taus)]
    return float(taus.mean()) if len(taus) else float("nan")


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
    subs = [np.asarray(e)[::stride] for e in val_embs]
    labs = [np.asarray(lab)[::stride] for lab in val_labels]
    gallery, gallery_labels = np.concatenate(subs), np.concatenate(labs)
    owner = np.concatenate([np.full(len(s), v) for v, s in enumerate(subs)])
    kmax = max(ks)
    per_video = {k: [] for k in ks}
    for v, (query, qlab) in enumerate(zip(subs, labs)):
        d = _sqdist(query, gallery)
        d[:, owner == v] = np.inf  # other videos only
        available = int((owner != v).sum())
        kk = min(kmax, available)
        nearest = np.argpartition(d, kk - 1, axis=1)[:, :kk] if kk < d.shape[1] else np.argsort(d, axis=1)[:, :kk]
        # order the kk nearest by distance (ties by index, for determinism)
        order = np.lexsort((nearest, np.take_along_axis(d, nearest, 1)), axis=1)
        nearest = np.take_along_axis(nearest, order, 1)
        hits = gallery_labels[nearest] == qlab[:, None]  # (n_v, kk)
        for k in ks:
            per_video[k].append(float(hits[:, : min(k, kk)].mean()))
    return {k: float(np.mean(vals)) for k, vals in per_video.items()}


def dtw_accuracy(val_embs: Sequence[np.ndarray], val_labels: Sequence[np.ndarray], *, chunk_pairs: int = 256) -> float:
    """Mean over pairs of videos of the fraction of DTW path cells whose labels agree.

    For every unordered pair of videos: exact DTW on the squared-Euclidean cost of their
    embeddings; the score is the fraction of path cells (i, j) with labels_a[i] == labels_b[j].
    Pairs are batched (``chunk_pairs`` at a time, fewer for long videos so the padded cost
    batch stays near 256 MB) through the DTW kernels.
    """
    n = len(val_embs)
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    if not pairs:
        return float("nan")
    T = max(len(e) for e in val_embs)
    # Bound the padded cost batch to about 256 MB, whatever the video lengths.
    per_chunk = max(1, min(chunk_pairs, (256 << 20) // (8 * T * T)))
    scores = []
    for start in range(0, len(pairs), per_chunk):
        chunk = pairs[start : start + per_chunk]
        cost = np.zeros((len(chunk), T, T))
        for p, (a, b) in enumerate(chunk):
            cost[p, : len(val_embs[a]), : len(val_embs[b])] = _sqdist(val_embs[a], val_embs[b])
        nx = np.array([len(val_embs[a]) for a, _ in chunk])
        ny = np.array([len(val_embs[b]) for _, b in chunk])
        for (a, b), path in zip(chunk, dtw_path(cost, nx, ny)):
            scores.append(float(np.mean(val_labels[a][path[:, 0]] == val_labels[b][path[:, 1]])))
    return float(np.mean(scores))
