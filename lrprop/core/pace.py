"""Copies of a video played at another pace, and how far an alignment is from the true frames.

Does an embedding follow what a video shows, or where a frame sits in it and how fast it plays?
Make a copy B of a video A whose frames are A's own, in order, at a known other pace, align A
with B, and measure how far the frames the path matches are from the true ones. Arrays in,
numbers out.

A copy is a monotone frame map ``true``, (m,) int64: B's frame j shows A's frame true[j].

- :func:`repaced_maps`: B plays the whole of A at a pace that changes, B longer than A
  (``stretch`` times, 1.4 by default): two power warps, fast then slow and slow then fast
  (:func:`power_map`), and a piecewise-linear warp with speed changes and a pause, a stretch of
  B that holds one frame of A (:func:`paused_map`).
- :func:`trimmed_maps`: B is A without its first part, or without its last part, at A's pace.

:func:`pace_maps` draws both for one video, seeded by (seed, the video's index), so an
evaluation scores the same copies every time.

:func:`path_error` scores an alignment path against ``true``; :func:`stretch_error` scores the
time stretch, which needs no model: B's frame j is A's frame j (n − 1) / (m − 1). Both are
fractions of A's length n (× 100: percent of the video, as the tables print them), lower is
better. Trap: a model that reads its frames' positions (LRProp's sinusoidal positions, spread
over each video's length) drifts towards the time stretch, not towards 0.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MIN_FRAMES",
    "PACE_KINDS",
    "execution_map",
    "matched_frames",
    "pace_maps",
    "path_error",
    "paused_map",
    "piecewise_map",
    "power_map",
    "repaced_maps",
    "stretch_error",
    "trimmed_maps",
]

# The two kinds of copies: the keys of the pace metric (``pace/repaced``, ``pace/trimmed``).
PACE_KINDS = ("repaced", "trimmed")
MIN_FRAMES = 3  # the shortest video copied: a trimmed copy keeps at least 2 frames

STRETCH = 1.4  # a re-paced copy's length over the video's
GAMMA_RANGES = ((0.5, 0.7), (1.4, 1.8))  # the power warps' γ: fast then slow, slow then fast
SPEED_RANGE = (0.5, 2.0)  # the pieces' relative speeds in the paused warp
PAUSE_RANGE = (0.08, 0.15)  # the pause, as a fraction of the copy's frames
CUT_RANGE = (0.15, 0.30)  # the part a trimmed copy cuts off, as a fraction of the video's frames


def power_map(n: int, m: int, gamma: float) -> np.ndarray:
    """true[j] = round((n − 1) · (j / (m − 1))^γ), j = 0..m − 1: the whole video, fast then slow
    for γ < 1, slow then fast for γ > 1 (γ = 1: the time stretch, rounded).

    Returns:
        (m,) int64, non-decreasing, from 0 to n − 1.
    """
    _check_lengths(n, m)
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    return np.round((n - 1) * np.linspace(0.0, 1.0, m) ** gamma).astype(np.int64)


def piecewise_map(n: int, b_knots: np.ndarray, a_knots: np.ndarray) -> np.ndarray:
    """The piecewise-linear map through the points (b_knots[k], a_knots[k]), rounded:
    true[j] = round(interp(j, b_knots, a_knots)), j = 0..m − 1 with m − 1 = b_knots[-1].

    A piece whose two A knots are equal holds that frame of A: a pause.

    Args:
        n: A's length.
        b_knots: (K,) strictly increasing, from 0 to m − 1 (an integer).
        a_knots: (K,) non-decreasing, from 0 to n − 1.

    Returns:
        (m,) int64.
    """
    b = np.asarray(b_knots, dtype=np.float64)
    a = np.asarray(a_knots, dtype=np.float64)
    if b.shape != a.shape or b.ndim != 1 or len(b) < 2:
        raise ValueError(f"b_knots and a_knots must be two (K,) arrays, K >= 2, got {b.shape} and {a.shape}")
    if not (np.all(np.diff(b) > 0) and np.all(np.diff(a) >= 0)):
        raise ValueError("b_knots must increase and a_knots must not decrease")
    if b[0] != 0 or a[0] != 0 or a[-1] != n - 1 or b[-1] != round(b[-1]):
        raise ValueError(f"the knots must run from (0, 0) to (m - 1, {n - 1}), m an integer")
    m = int(b[-1]) + 1
    return np.round(np.interp(np.arange(m), b, a)).astype(np.int64)


def paused_map(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """A drawn piecewise-linear map of A's n frames onto m: three pieces of A, cut at two points
    drawn in the middle 60 % of A, each played at a relative speed drawn in ``SPEED_RANGE``,
    and a pause at one of the two cuts, held for a drawn ``PAUSE_RANGE`` share P of the m
    frames (P >= 2 steps of B: at least P consecutive frames of B show that frame of A).

    Returns:
        (m,) int64, non-decreasing, from 0 to n − 1.
    """
    _check_lengths(n, m)
    pause = max(2, round(rng.uniform(*PAUSE_RANGE) * m))
    if m - 1 - pause < 1:
        raise ValueError(f"a copy of {m} frames is too short for a pause of {pause}")
    cuts = np.sort(rng.uniform(0.2, 0.8, 2)) * (n - 1)
    speeds = rng.uniform(*SPEED_RANGE, 3)
    paused_at = int(rng.integers(2))  # at the first cut or the second
    a_knots = np.r_[0.0, cuts, n - 1.0]
    steps = np.diff(a_knots) / speeds  # B's steps per piece, before scaling to m − 1 − pause
    steps *= (m - 1 - pause) / steps.sum()
    b_knots = np.cumsum(np.r_[0.0, steps])
    # The pause: the cut's A frame held over `pause` steps of B, the pieces after it moved on.
    b_knots = np.r_[b_knots[: paused_at + 2], b_knots[paused_at + 1 :] + pause]
    a_knots = np.r_[a_knots[: paused_at + 2], a_knots[paused_at + 1 :]]
    b_knots[-1] = m - 1  # exactly, whatever the rounding of the sums
    return piecewise_map(n, b_knots, a_knots)


def repaced_maps(n: int, rng: np.random.Generator, *, stretch: float = STRETCH) -> list[np.ndarray]:
    """The re-paced copies of a video of n frames, each m = round(stretch · n) frames: a power
    warp with γ drawn in each of ``GAMMA_RANGES`` (:func:`power_map`) and a paused warp
    (:func:`paused_map`)."""
    m = max(2, round(stretch * n))
    maps = [power_map(n, m, rng.uniform(*gammas)) for gammas in GAMMA_RANGES]
    return [*maps, paused_map(n, m, rng)]


def trimmed_maps(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The trimmed copies of a video of n frames, at its pace: A without its first c frames, and
    A without its last c' frames, c and c' drawn in ``CUT_RANGE`` of n (at least 1, at most
    n − 2)."""
    if n < MIN_FRAMES:
        raise ValueError(f"a trimmed copy needs a video of at least {MIN_FRAMES} frames, got {n}")
    head, tail = (min(n - 2, max(1, round(rng.uniform(*CUT_RANGE) * n))) for _ in range(2))
    return [np.arange(head, n, dtype=np.int64), np.arange(0, n - tail, dtype=np.int64)]


def pace_maps(n: int, *, seed: int, video_index: int) -> dict[str, list[np.ndarray]]:
    """Every copy of one video: {"repaced": :func:`repaced_maps`, "trimmed": :func:`trimmed_maps`},
    drawn with ``numpy.random.default_rng([seed, video_index])``: the same copies for the same
    video every time, other copies for another video or seed.

    Args:
        n: the video's length, at least ``MIN_FRAMES``.
        seed: the evaluation's seed of the draws.
        video_index: the video's index in its split.
    """
    if n < MIN_FRAMES:
        raise ValueError(f"pace copies need a video of at least {MIN_FRAMES} frames, got {n}")
    rng = np.random.default_rng([seed, video_index])
    return {"repaced": repaced_maps(n, rng), "trimmed": trimmed_maps(n, rng)}


def matched_frames(path: np.ndarray, m: int) -> np.ndarray:
    """(m,) float64: for each frame j of B, the mean of the frames of A that ``path`` matches
    with it.

    Args:
        path: (K, 2) int rows (i, j), i a frame of A, j a frame of B (as
            :func:`lrprop.core.dtw.dtw_path` of A's rows against B's columns gives them).
        m: B's length.

    Raises:
        ValueError: a frame of B the path does not match (a path from (0, 0) to (n − 1, m − 1)
            matches every one).
    """
    path = np.asarray(path)
    if path.ndim != 2 or path.shape[1] != 2 or len(path) == 0:
        raise ValueError(f"path must be (K, 2), K >= 1, got {path.shape}")
    cols = path[:, 1].astype(np.int64)
    if cols.min() < 0 or cols.max() >= m:
        raise ValueError(f"the path's frames of B must lie in [0, {m - 1}]")
    counts = np.bincount(cols, minlength=m)
    if (counts == 0).any():
        raise ValueError(f"the path matches no frame of A with frames {np.flatnonzero(counts == 0)[:5].tolist()}… of B")
    return np.bincount(cols, weights=path[:, 0].astype(np.float64), minlength=m) / counts


def path_error(path: np.ndarray, true: np.ndarray, n: int) -> float:
    """The mean distance of the frames a path matches from the true ones, as a fraction of A's
    length:

        error = (1 / m) Σ_j |mean{i : (i, j) ∈ path} − true[j]| / n

    Args:
        path: (K, 2) rows (i, j), i a frame of A (n frames), j a frame of B (see :func:`matched_frames`).
        true: (m,) B's frame j shows A's frame true[j].
        n: A's length.
    """
    true = np.asarray(true, dtype=np.float64)
    return float(np.abs(matched_frames(path, len(true)) - true).mean() / n)


def stretch_error(true: np.ndarray, n: int) -> float:
    """The time stretch's error on a copy: :func:`path_error` of the map j ↦ j (n − 1) / (m − 1)
    (B's first frame on A's first, its last on A's last, evenly between), which needs no model:

        error = (1 / m) Σ_j |j (n − 1) / (m − 1) − true[j]| / n      (m = 1: B's one frame on A's first)
    """
    true = np.asarray(true, dtype=np.float64)
    m = len(true)
    stretched = np.arange(m) * (n - 1) / (m - 1) if m > 1 else np.zeros(1)
    return float(np.abs(stretched - true).mean() / n)


def execution_map(moments_a: np.ndarray, moments_b: np.ndarray) -> np.ndarray:
    """The true correspondence of two different executions of an action: for each frame j of B,
    the (fractional) frame of A at B's moment, by linear interpolation of A's frame indices
    over A's moments (clamped to A's first and last frame).

    A moment is how far through the action a frame is (a generator's phase plus how far its pose
    has gone towards the next key pose: :func:`lrprop.data.generator.phase_trajectory`); two
    executions show the same pose at the same moment, whatever their timing.

    Args:
        moments_a: (n,) increasing.
        moments_b: (m,).

    Returns:
        (m,) float64, a ``true`` for :func:`path_error` and :func:`stretch_error`.
    """
    moments_a = np.asarray(moments_a, dtype=np.float64)
    if moments_a.ndim != 1 or len(moments_a) < 2 or not np.all(np.diff(moments_a) > 0):
        raise ValueError("moments_a must be (n,) increasing, n >= 2")
    return np.interp(np.asarray(moments_b, dtype=np.float64), moments_a, np.arange(len(moments_a), dtype=np.float64))


def _check_lengths(n: int, m: int) -> None:
    if n < 2 or m < 2:
        raise ValueError(f"a copy needs a video and a copy of at least 2 frames each, got {n} and {m}")
