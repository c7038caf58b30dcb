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


# Far from the optimal path, softmin weights and gradients can underflow into subnormal
# doubles, whose arithmetic takes a slow path on x86. Below 1e-290 they are flushed to zero:
# 280 orders of magnitude under the 1e-9 the gradients are held to. (On the embeddings of
# benchmarks/bench_dtw.py this changed no timing measurably; it guards costs of wider range.)
_TINY = 1e-290
_EXP_FLOOR = math.log(_TINY)


@numba.njit(cache=True, nogil=True, inline="always")
def _exp_neg(x):
    """exp(x) for x <= 0, flushed to zero where it would fall below _TINY."""
    return math.exp(x) if x > _EXP_FLOOR else 0.0


@numba.njit(cache=True, nogil=True)
def _soft_dtw_pair(cost, n, m, gamma, want_grad, E):
    """Soft-DTW of one pair, and its expected alignment when ``want_grad``.

    Args:
        cost: (Tx, Ty) float64, of which the block [:n, :m] is used.
        n, m: the valid lengths.
        gamma: smoothing γ > 0.
        want_grad: also compute E = ∂R[n-1, m-1] / ∂cost.
        E: (Tx, Ty) float64 zeros, written in [:n, :m] when want_grad.

    Returns:
        (R[n-1, m-1], the soft-DTW value; whether a valid cell of the cost is NaN or infinite).
    """
    inv_gamma = 1.0 / gamma
    # R in rolling anti-diagonals indexed by row + 1 (index 0 is the boundary row -1, +inf). The
    # cells of one diagonal do not depend on each other, so the CPU overlaps their exp and log
    # instead of waiting on the left neighbour as a row-by-row walk does. (With the weights
    # below, 2.5x faster than the row-by-row kernels this replaced: docs/benchmarks.md.)
    r2 = np.full(n + 1, _INF)  # diagonal d - 2
    r1 = np.full(n + 1, _INF)  # diagonal d - 1
    r0 = np.full(n + 1, _INF)  # diagonal d
    # P[i, j] = the softmin weights cell (i, j) gives its predecessors (↘ from (i-1, j-1),
    # ↓ from (i-1, j), → from (i, j-1)), i.e. ∂R_ij / ∂R_pred. With them the backward pass is
    # multiply-adds only; it is Cuturi & Blondel's Algorithm 2 without its three exp per cell.
    P = np.empty((n, m, 3)) if want_grad else np.empty((1, 1, 3))
    r0[1] = cost[0, 0]
    finite = abs(cost[0, 0]) < _INF  # checked in this pass rather than in one of its own
    if want_grad:
        P[0, 0, 0] = 0.0
        P[0, 0, 1] = 0.0
        P[0, 0, 2] = 0.0
    for d in range(1, n + m - 1):
        r2, r1, r0 = r1, r0, r2
        # Only row d of diagonal d - 1 and row d - 1 of diagonal d - 2 (column -1) are read
        # outside the cells written so far; no diagonal has written them, so they are +inf.
        for i in range(max(0, d - m + 1), min(n - 1, d) + 1):
            j = d - i
            a = r2[i]  # R[i-1, j-1]
            b = r1[i]  # R[i-1, j]
            c = r1[i + 1]  # R[i, j-1]
            # softmin_γ(a, b, c) = min - γ log Σ exp((min - ·)/γ); the minimum's term is 1.
            if a <= b and a <= c:
                low, wa, wb, wc = a, 1.0, _exp_neg((a - b) * inv_gamma), _exp_neg((a - c) * inv_gamma)
            elif b <= c:
                low, wa, wb, wc = b, _exp_neg((b - a) * inv_gamma), 1.0, _exp_neg((b - c) * inv_gamma)
            else:
                low, wa, wb, wc = c, _exp_neg((c - a) * inv_gamma), _exp_neg((c - b) * inv_gamma), 1.0
            total = wa + wb + wc
            c = cost[i, j]
            finite &= abs(c) < _INF
            r0[i + 1] = c + low - gamma * math.log(total)
            if want_grad:
                inv_total = 1.0 / total
                P[i, j, 0] = wa * inv_total
                P[i, j, 1] = wb * inv_total
                P[i, j, 2] = wc * inv_total
    if want_grad:
        # E_ij = Σ over the successors s of (i, j) of E_s · (the weight s gives (i, j)).
        E[n - 1, m - 1] = 1.0
        for i in range(n - 1, -1, -1):
            for j in range(m - 1, -1, -1):
                if i == n - 1 and j == m - 1:
                    continue
                e = 0.0
                if i + 1 < n:
                    e += E[i + 1, j] * P[i + 1, j, 1]
                    if j + 1 < m:
                        e += E[i + 1, j + 1] * P[i + 1, j + 1, 0]
                if j + 1 < m:
                    e += E[i, j + 1] * P[i, j + 1, 2]
                E[i, j] = e if e > _TINY else 0.0  # no subnormals (see _exp_neg)
    return r0[n], not finite


@numba.njit(parallel=True, cache=True, nogil=True)
def soft_dtw(cost, nx, ny, gamma, want_grad):
    """Soft-DTW of each pair, and its gradient with respect to the cost, in one pass.

    R_ij = cost_ij + softmin_γ(R_{i-1,j-1}, R_{i-1,j}, R_{i,j-1}); the value is R at the last
    valid cell; the gradient is the expected alignment E (Cuturi & Blondel 2017).

    Args:
        cost: (B, Tx, Ty) float64.
        nx, ny: (B,) int64 valid lengths, 1 <= nx <= Tx, 1 <= ny <= Ty.
        gamma: smoothing γ > 0.
        want_grad: compute E too (else E is a (B, 1, 1) placeholder).

    Returns:
        values: (B,) float64.
        E: (B, Tx, Ty) float64, zero outside each pair's valid block.
        bad: (B,) bool, a valid cell of the pair's cost is NaN or infinite.
    """
    B, Tx, Ty = cost.shape
    values = np.empty(B)
    bad = np.zeros(B, dtype=np.bool_)
    E = np.zeros((B, Tx, Ty)) if want_grad else np.zeros((B, 1, 1))
    for b in numba.prange(B):
        values[b], bad[b] = _soft_dtw_pair(cost[b], nx[b], ny[b], gamma, want_grad, E[b])
    return values, E, bad


@numba.njit(cache=True, nogil=True)
def _dtw_path_pair(cost, n, m, path):
    """Exact DTW of one pair: its optimal path written into ``path``, its length and total cost.

    Ties in the backtrack prefer ↘, then ↓, then → (the order tslearn uses).

    Args:
        cost: (>= n, >= m) float64, any strides (a view of a larger matrix is fine).
        n, m: the valid lengths.
        path: (>= n + m - 1, 2) int64, rows 0..K-1 receive the path from (0, 0) to (n-1, m-1).

    Returns:
        (K, total cost along the path, whether a valid cell of the cost is NaN or infinite).
    """
    acc = np.full((n + 1, m + 1), _INF)
    acc[0, 0] = 0.0
    finite = True
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            c = cost[i - 1, j - 1]
            finite &= abs(c) < _INF  # checked here rather than in a pass of its own
            best = min(acc[i - 1, j - 1], min(acc[i - 1, j], acc[i, j - 1]))
            acc[i, j] = c + best
    # Backtrack from the end, writing the path reversed, then flip it in place.
    i = n
    j = m
    k = 0
    while True:
        path[k, 0] = i - 1
        path[k, 1] = j - 1
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
    for a in range(k // 2):
        for c in range(2):
            tmp = path[a, c]
            path[a, c] = path[k - 1 - a, c]
            path[k - 1 - a, c] = tmp
    return k, acc[n, m], not finite


@numba.njit(parallel=True, cache=True, nogil=True)
def dtw_paths(cost, nx, ny):
    """Exact DTW of each pair: its optimal path and total cost.

    Args:
        cost: (B, Tx, Ty) float64.
        nx, ny: (B,) int64 valid lengths.

    Returns:
        paths: (B, Tx + Ty - 1, 2) int64, rows 0..K_b-1 of pair b hold its path from (0, 0) to
            (nx-1, ny-1); the rest is -1.
        lengths: (B,) int64 path lengths K_b.
        totals: (B,) float64 accumulated cost along each path.
        bad: (B,) bool, a valid cell of the pair's cost is NaN or infinite (its path is then
            meaningless, but stays inside the matrix).
    """
    B, Tx, Ty = cost.shape
    paths = np.full((B, Tx + Ty - 1, 2), -1, dtype=np.int64)
    lengths = np.zeros(B, dtype=np.int64)
    totals = np.zeros(B)
    bad = np.zeros(B, dtype=np.bool_)
    for b in numba.prange(B):
        lengths[b], totals[b], bad[b] = _dtw_path_pair(cost[b], nx[b], ny[b], paths[b])
    return paths, lengths, totals, bad


@numba.njit(parallel=True, cache=True, nogil=True)
def dtw_paths_blocks(cost, starts, widths):
    """Exact DTW of one sequence against several whose costs are column blocks of one matrix.

    Pair p's cost is ``cost[:, starts[p] : starts[p] + widths[p]]``: the distances from every
    frame of one video to all frames of a class, as one product gives them, need no copying.

    Args:
        cost: (Tx, total) float64.
        starts, widths: (P,) int64 column blocks.

    Returns:
        As :func:`dtw_paths`, for the P pairs.
    """
    P = starts.shape[0]
    Tx = cost.shape[0]
    longest = 0
    for p in range(P):
        longest = max(longest, widths[p])
    paths = np.full((P, Tx + longest - 1, 2), -1, dtype=np.int64)
    lengths = np.zeros(P, dtype=np.int64)
    totals = np.zeros(P)
    bad = np.zeros(P, dtype=np.bool_)
    for p in numba.prange(P):
        block = cost[:, starts[p] : starts[p] + widths[p]]
        lengths[p], totals[p], bad[p] = _dtw_path_pair(block, Tx, widths[p], paths[p])
    return paths, lengths, totals, bad
