"""Unusual executions of an action: each video's alignment cost to the other videos of its class
(issue 16).

For videos v and w with embeddings x (Tv, D) and y (Tw, D), the normalised alignment cost is
the mean squared distance along their exact DTW path P (squared Euclidean cost):

    c(v, w) = (1 / |P|) Σ_{(i, j) ∈ P} |x_i − y_j|²

A video's score is the median of c(v, w) over the other videos w, in units of how the class's
videos spread (a robust z-score: the median and the median absolute deviation over the class):

    s(v) = median_w c(v, w),    z(v) = (s(v) − median_u s(u)) / (1.4826 · MAD_u s(u))

The median keeps one other unusual video from lifting a normal one's score; z > 3 is the usual
reading of "unusual". A video performed in another order (its phases shuffled), or of another
action, aligns badly with every other one, so its cost to all of them is high.

Shapes: videos [(Tv, D)].
"""

from __future__ import annotations

import numpy as np

from lrprop.core.dtw import dtw_paths_to_many

__all__ = ["alignment_costs", "outlier_scores"]


def alignment_costs(videos: list[np.ndarray]) -> np.ndarray:
    """(N, N) float64: c(v, w), the normalised cost of the exact DTW path of every pair (see the
    module); symmetric, each pair aligned once; 0 on the diagonal."""
    embs = [np.asarray(v, dtype=np.float64) for v in videos]
    n = len(embs)
    costs = np.zeros((n, n))
    for v in range(n - 1):
        paths, totals = dtw_paths_to_many(embs[v], embs[v + 1 :])  # the later videos: each pair once
        for k, (path, total) in enumerate(zip(paths, totals, strict=True)):
            costs[v, v + 1 + k] = costs[v + 1 + k, v] = total / len(path)
    return costs


def outlier_scores(videos: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each video's median cost to the others and its robust z-score (see the module).

    Returns:
        (scores (N,), z (N,), costs (N, N)); z is 0 everywhere when the class's scores do not
        spread (MAD 0).

    Raises:
        ValueError: fewer than 3 videos (a median of the others needs 2).
    """
    if len(videos) < 3:
        raise ValueError(f"outlier scores need at least 3 videos, got {len(videos)}")
    costs = alignment_costs(videos)
    others = ~np.eye(len(videos), dtype=bool)
    scores = np.array([np.median(costs[v][others[v]]) for v in range(len(videos))])
    centre = np.median(scores)
    spread = 1.4826 * np.median(np.abs(scores - centre))  # 1.4826: the MAD of a normal is 0.6745 σ
    z = (scores - centre) / spread if spread > 0 else np.zeros_like(scores)
    return scores, z, costs
