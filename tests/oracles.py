"""Definition-level oracles of the alignment metrics, shared by the tests: scipy's Kendall's τ
and tslearn's DTW, loop by loop over the pairs of videos, as METHOD.md §5 states them."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import kendalltau
from tslearn.metrics import dtw_path_from_metric


def kendalls_tau_oracle(embs: list[np.ndarray], stride: int) -> float:
    """Mean τ-b over ordered pairs (i, j), i ≠ j: frames of i at ``stride``, their nearest
    neighbours (squared Euclidean) among the frames of j at ``stride``; NaNs dropped."""
    taus = []
    for i, a in enumerate(embs):
        for j, b in enumerate(embs):
            if i == j:
                continue
            nn = np.argmin(cdist(a[::stride], b[::stride], "sqeuclidean"), axis=1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scipy warns on constant / 1-element inputs
                taus.append(kendalltau(np.arange(len(nn)), nn).statistic)
    taus = np.asarray(taus, dtype=np.float64)
    return float(np.mean(taus[~np.isnan(taus)]))


def dtw_accuracy_oracle(embs: list[np.ndarray], labels: list[np.ndarray]) -> float:
    """Mean over unordered pairs of the share of tslearn's DTW path cells (squared Euclidean
    cost) whose two frames have the same label."""
    scores = []
    for a in range(len(embs)):
        for b in range(a + 1, len(embs)):
            path, _ = dtw_path_from_metric(cdist(embs[a], embs[b], "sqeuclidean"), metric="precomputed")
            path = np.asarray(path)
            scores.append(np.mean(labels[a][path[:, 0]] == labels[b][path[:, 1]]))
    return float(np.mean(scores))
