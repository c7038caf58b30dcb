"""Numba kernels behind :mod:`lrprop.dtw`: exact DTW and soft-DTW dynamic programmes.

Every kernel works on a batch of cost matrices ``cost`` of shape (B, Tx, Ty) with per-pair valid
lengths ``nx``, ``ny`` (B,) and runs the pairs in parallel (``prange``). All accumulation is in
float64. Cells beyond a pair's valid lengths are never read.

Moves are ↓ (i-1, j), → (i, j-1) and ↘ (i-1, j-1); a path starts at (0, 0) and ends at
(nx-1, ny-1).
"""

from __future__ import annotations

import math

import numba
import numpy as np

_INF = np.inf


@numba.njit(cache=True, nogil=True)
def _softmin3(a: float, b: float, c: float, gamma: float) -> float:
    """softmin_γ(a, b, c) = -γ log(e^{-a/γ} + e^{-b/γ} + e^{-c/γ}), stable for inf inputs."""
    m = min(a, min(b, c))
    if m == _INF:
        return _INF
    s = math.exp(-(a - m) / gamma) + math.exp(-(b - m) / gamma) + math.exp(-(c - m) / gamma)
    return m - gamma * math.log(s)


@numba.njit(parallel=True, cache=True, nogil=True)
def soft_dtw_forward(cost, nx, ny, gamma):
    """Soft-DTW accumulated costs.

    Args:
        cost: (B, Tx, Ty) float64.
        nx, ny: (B,) int64 valid lengths, 1 <= nx <= Tx, 1 <= ny <= Ty.
        gamma: smoothing γ > 0.

    Returns:
        R: (B, Tx + 2, Ty + 2) float64 with R[b, i + 1, j + 1] the soft-DTW value of the prefix
        pair (i, j); row/column 0 is the boundary (R[b, 0, 0] = 0, the rest +inf). The backward
        kernel reuses R, so it is returned whole.
    """
    B, Tx, Ty = cost.shape
    R = np.full((B, Tx + 2, Ty + 2), _INF)
    for b in numba.prange(B):
        R[b, 0, 0] = 0.0
        for i in range(1, nx[b] + 1):
            for j in range(1, ny[b] + 1):
                R[b, i, j] = cost[b, i - 1, j - 1] + _softmin3(R[b, i - 1, j - 1], R[b, i - 1, j], R[b, i, j - 1], gamma)
    return R


@numba.njit(parallel=True, cache=True, nogil=True)
def soft_dtw_backward(cost, R, nx, ny, gamma):
    """Expected alignment E = ∂R[n, m] / ∂cost (Cuturi & Blondel 2017, Algorithm 2).

    E_ij = Σ over the successors (i', j') ∈ {(i+1, j), (i, j+1), (i+1, j+1)} of
    E_i'j' · exp((R_i'j' - R_ij - cost_i'j') / γ), with E at the last valid cell equal to 1.

    Args:
        cost: (B, Tx, Ty) float64.
        R: (B, Tx + 2, Ty + 2) float64 from :func:`soft_dtw_forward`.
        nx, ny: (B,) int64 valid lengths.
        gamma: the γ of the forward pass.

    Returns:
        E: (B, Tx, Ty) float64, zero outside each pair's valid block.
    """
    B, Tx, Ty = cost.shape
    E_out = np.zeros((B, Tx, Ty))
    for b in numba.prange(B):
        n = nx[b]
        m = ny[b]
        # Local padded copies: index (i, j) here is cell (i-1, j-1) of the pair, with one
        # extra row/column after the valid block whose R is -inf so it contributes nothing.
        E = np.zeros((n + 2, m + 2))
        Rl = np.empty((n + 2, m + 2))
        D = np.zeros((n + 2, m + 2))
        for i in range(n + 2):
            for j in range(m + 2):
                Rl[i, j] = -_INF
        for i in range(1, n + 1):
            for j in range(1, m + 1):
                Rl[i, j] = R[b, i, j]
                D[i, j] = cost[b, i - 1, j - 1]
        Rl[n + 1, m + 1] = R[b, n, m]
        E[n + 1, m + 1] = 1.0
        for i in range(n, 0, -1):
            for j in range(m, 0, -1):
                r = Rl[i, j]
                a = math.exp((Rl[i + 1, j] - r - D[i + 1, j]) / gamma)
                c = math.exp((Rl[i, j + 1] - r - D[i, j + 1]) / gamma)
                d = math.exp((Rl[i + 1, j + 1] - r - D[i + 1, j + 1]) / gamma)
                E[i, j] = E[i + 1, j] * a + E[i, j + 1] * c + E[i + 1, j + 1] * d
        for i in range(n):
            for j in range(m):
                E_out[b, i, j] = E[i + 1, j + 1]
    return E_out


@numba.njit(parallel=True, cache=True, nogil=True)
def dtw_paths(cost, nx, ny):
    """Exact DTW of each pair: its optimal path and total cost.

    Ties in the backtrack prefer ↘, then ↓, then → (the order tslearn uses).

    Args:
        cost: (B, Tx, Ty) float64.
        nx, ny: (B,) int64 valid lengths.

    Returns:
        paths: (B, Tx + Ty - 1, 2) int64, rows 0..K_b-1 of pair b hold its path from (0, 0) to
            (nx-1, ny-1); the rest is -1.
        lengths: (B,) int64 path lengths K_b.
        totals: (B,) float64 accumulated cost along each path.
    """
    B, Tx, Ty = cost.shape
    K = Tx + Ty - 1
    paths = np.full((B, K, 2), -1, dtype=np.int64)
    lengths = np.zeros(B, dtype=np.int64)
    totals = np.zeros(B)
    for b in numba.prange(B):
        n = nx[b]
        m = ny[b]
        acc = np.full((n + 1, m + 1), _INF)
        acc[0, 0] = 0.0
        for i in range(1, n + 1):
            for j in range(1, m + 1):
                best = min(acc[i - 1, j - 1], min(acc[i - 1, j], acc[i, j - 1]))
                acc[i, j] = cost[b, i - 1, j - 1] + best
        totals[b] = acc[n, m]
        # Backtrack from the end, writing the path reversed, then flip it in place.
        i = n
        j = m
        k = 0
        while True:
            paths[b, k, 0] = i - 1
            paths[b, k, 1] = j - 1
            k += 1
            if i == 1 and j == 1:
                break
            # On the first row or column only one move is left; this also keeps the walk in
            # bounds whatever the costs hold (NaN compares false everywhere).
            if i == 1:
                j -= 1
                continue
            if j == 1:
                i -= 1
                continue
            diag = acc[i - 1, j - 1]
            up = acc[i - 1, j]
            left = acc[i, j - 1]
            if diag <= up and diag <= left:
                i -= 1
                j -= 1
            elif up <= left:
                i -= 1
            else:
                j -= 1
        lengths[b] = k
        for a in range(k // 2):
            for c in range(2):
                tmp = paths[b, a, c]
                paths[b, a, c] = paths[b, k - 1 - a, c]
                paths[b, k - 1 - a, c] = tmp
    return paths, lengths, totals
