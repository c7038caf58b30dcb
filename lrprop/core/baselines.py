"""Reference embeddings that bracket a model: the label-free time-stretch baseline below, a
label oracle above (METHOD.md §5 item 6). Arrays in, arrays out.

Both are 1-D per-frame embeddings scored exactly as a model's (:func:`lrprop.evaluation.evaluate.score_embeddings`):
the same videos, the same frames kept, the same classifier and strides.

- :func:`time_stretch_embeddings`: frame i of a video of L frames is i / L. It needs no model
  and no labels; every video whose phases come in one order aligns well on it, so a learned
  embedding is worth what it adds above it.
- :func:`phase_progress_embeddings`: frame t of phase k is k + w·u, u ∈ [0, 1) its progress
  through its run of phase k. It reads the labels, so it shows what knowing the phase and the
  progress within it scores; it is not a bound on every metric (see its docstring).

:func:`metrics_gain` is a model's gain over a reference, key by key: metric − reference for the
scores, reference − metric for the errors (:data:`LOWER_IS_BETTER`), so a gain is positive
where the model does better.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["LOWER_IS_BETTER", "lower_is_better", "metrics_gain", "phase_progress_embeddings", "time_stretch_embeddings"]

# The metrics that are errors, lower is better (the top-level keys of a class's metrics): the
# pace errors of lrprop.core.pace, in fractions of a video's length.
LOWER_IS_BETTER = frozenset({"pace"})


def time_stretch_embeddings(lengths: Sequence[int]) -> list[np.ndarray]:
    """The time-stretch baseline: frame i of a video of L frames embeds as the point i / L.

    e_v[i] = i / L_v,  i = 0..L_v − 1.

    L is the video's whole length, unlabelled frames included, as a model sees the video;
    drop the unlabelled frames afterwards (:func:`lrprop.core.metrics.drop_unlabelled`), as for a
    model's embeddings.

    Args:
        lengths: (n,) the number of frames of each video.

    Returns:
        per video an (L_v, 1) float64 array.
    """
    out = []
    for length in lengths:
        length = int(length)
        if length < 1:
            raise ValueError(f"a video needs at least one frame, got length {length}")
        out.append((np.arange(length, dtype=np.float64) / length)[:, None])
    return out


def default_progress_weight(max_length: int) -> float:
    """w = 1 / (1 + √(2·L_max)): the largest weight of the within-phase progress for which
    exact DTW between two videos of at most L_max frames, with the same phases in the same
    order, never pairs frames of different phases (see :func:`phase_progress_embeddings`)."""
    return 1.0 / (1.0 + math.sqrt(2.0 * max(1, int(max_length))))


def phase_progress_embeddings(labels: Sequence[np.ndarray], *, progress_weight: float | None = None) -> list[np.ndarray]:
    """The label oracle: phase index plus weighted progress within the phase's run.

    e_v[t] = k + w · r / n, for frame t the r-th (from 0) of a run of n consecutive labelled
    frames of phase k (unlabelled frames skipped: a run is what is left once they are dropped).
    Frames with a label < 0 get NaN, to be dropped with :func:`lrprop.core.metrics.drop_unlabelled`.

    Why the weight w < 1: with squared-Euclidean costs, two frames of the same phase cost less
    than w², two of different phases at least (1 − w)², and a DTW path between videos of La and
    Lb frames has fewer than La + Lb cells. So for w ≤ 1 / (1 + √(La + Lb)), the default
    (:func:`default_progress_weight` over all the videos given), the path that keeps every
    phase with itself is the cheapest, whenever both videos show the same phases in the same
    order: DTW accuracy 1. Phases are clusters less than w wide, one apart: the SVM separates
    them (phase classification 1), and so does the logistic regression unless a phase has
    only a frame or two among many (its C = 1 penalty then favours the larger class). τ and
    AP@K read the progress inside a phase.

    Trap: it is not an upper bound on every metric. Phase progression's target counts frames
    from a key event over the whole video's length, which the time-stretch baseline carries
    linearly and this embedding only piecewise; and in a short phase many frames of one video
    find the same nearest frame of another, ties that lower Kendall's τ-b. On both it can
    score at or below the baseline.

    Give the training and validation videos in one call: the classifier fitted on the
    training videos must see the same w as the validation videos it predicts.

    Args:
        labels: per video (L_v,) integer phase labels, < 0 for unlabelled frames.
        progress_weight: w; default :func:`default_progress_weight` of the longest video.

    Returns:
        per video an (L_v, 1) float64 array.
    """
    labels = [np.asarray(lab) for lab in labels]
    if progress_weight is None:
        progress_weight = default_progress_weight(max((len(lab) for lab in labels), default=1))
    if not 0.0 <= progress_weight < 1.0:
        raise ValueError(f"progress_weight must lie in [0, 1), got {progress_weight}")
    out = []
    for lab in labels:
        emb = np.full((len(lab), 1), np.nan)
        kept = np.flatnonzero(lab >= 0)
        phases = lab[kept].astype(np.float64)
        if len(kept):
            starts = np.flatnonzero(np.r_[True, phases[1:] != phases[:-1]])  # first frame of each run
            runs = np.diff(np.r_[starts, len(kept)])
            offset = np.arange(len(kept)) - np.repeat(starts, runs)
            emb[kept, 0] = phases + progress_weight * offset / np.repeat(runs, runs)
        out.append(emb)
    return out


def lower_is_better(name: str) -> bool:
    """Whether the metric ``name`` is an error (lower is better): its key in a class's metrics
    (``pace``), a path to a nested one (``pace/repaced``, as ``promotion.metric`` names it) or
    its flattened name in a table (the same)."""
    return str(name).split("/", 1)[0] in LOWER_IS_BETTER


def metrics_gain(metrics: Mapping, reference: Mapping) -> dict:
    """The gain of ``metrics`` over ``reference``, key by key, for the keys both hold (nested
    dicts recursed): metrics − reference, or reference − metrics under a key of
    :data:`LOWER_IS_BETTER` (an error: the gain is how much lower it is). Positive: better.

    E.g. {"dtw_accuracy": 0.9, "ap_at_k": {5: 0.8}, "pace": {"repaced": 0.05}} over
    {"dtw_accuracy": 0.6, "ap_at_k": {5: 0.5}, "pace": {"repaced": 0.15}}
    = {"dtw_accuracy": 0.3, "ap_at_k": {5: 0.3}, "pace": {"repaced": 0.1}}. Keys whose values are
    neither numbers nor dicts on both sides are left out.
    """
    return _gain(metrics, reference, errors=False)


def _gain(metrics: Mapping, reference: Mapping, *, errors: bool) -> dict:
    out = {}
    for key, value in metrics.items():
        if key not in reference:
            continue
        other = reference[key]
        error = errors or lower_is_better(key)
        if isinstance(value, Mapping) and isinstance(other, Mapping):
            out[key] = _gain(value, other, errors=error)
        elif isinstance(value, (int, float, np.number)) and isinstance(other, (int, float, np.number)):
            out[key] = float(other) - float(value) if error else float(value) - float(other)
    return out
