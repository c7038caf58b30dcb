"""Numba kernels behind :mod:`lrprop.core.dtw`: exact DTW and soft-DTW dynamic programmes.

Every kernel works on a batch of cost matrices ``cost`` of shape (B, Tx, Ty) with per-pair valid
lengths ``nx``, ``ny`` (B,) and runs the pairs in parallel (``prange``). All accumulation is in
float64. Cells beyond a pair's valid lengths are never read.

Moves are ↓ (i-1, j), → (i, j-1) and ↘ (i-1, j-1); a path starts at (0, 0) and ends at
(nx-1, ny-1), except in :func:`dtw_subsequence_path`, whose path may start and end on any row.

The exact-DTW kernels take the cost in float32 or float64 (numba compiles one version for each):
a float32 value widened to float64 is exact, so reading float32 gives the path and total of the
float64 copy, without making it.
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


# exp and log as polynomials the compiler can vectorise: glibc's scalar exp and log bounded
# the soft-DTW kernel, and numba from PyPI has no vector maths library. On the arguments the
# kernel gives them (exp of x <= 0, log of [1, 3]) exp is within 1 ulp of libm's, log within 3.
_LN2_HI = 6.93147180369123816490e-01  # ln 2 in two parts (Cody & Waite): k·_LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_SQRT2 = 1.4142135623730951
# Fused multiply-adds allowed (one rounding instead of two; Horner's rule in half the
# instructions), nothing else of fast-math: no reassociation, NaN and inf kept.
_CONTRACT = {"contract"}


@numba.njit(cache=True, nogil=True, inline="always", fastmath=_CONTRACT)
def _exp_reduced(r):
    """exp(r) for |r| <= ln(2)/2: Taylor to degree 13 (remainder below 1e-17 relative)."""
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    return p * r + 1.0


@numba.njit(cache=True, nogil=True, inline="always", fastmath=_CONTRACT)
def _log_1_to_3(t):
    """log(t) for t in [1, 3]: t = 2^k·u with u in [√2/2, √2], log u = 2 atanh(s), s = (u-1)/(u+1).

    |s| <= 0.172, so the atanh series to s^23 leaves a remainder below 1e-19.
    """
    k = 0.0
    u = t
    if u > _SQRT2:
        u *= 0.5
        k = 1.0
    if u > _SQRT2:
        u *= 0.5
        k += 1.0
    s = (u - 1.0) / (u + 1.0)
    z = s * s
    p = 1.0 / 23.0
    p = p * z + 1.0 / 21.0
    p = p * z + 1.0 / 19.0
    p = p * z + 1.0 / 17.0
    p = p * z + 1.0 / 15.0
    p = p * z + 1.0 / 13.0
    p = p * z + 1.0 / 11.0
    p = p * z + 1.0 / 9.0
    p = p * z + 1.0 / 7.0
    p = p * z + 1.0 / 5.0
    p = p * z + 1.0 / 3.0
    p = p * z + 1.0
    return 2.0 * s * p + (k * _LN2_HI + k * _LN2_LO)


@numba.njit(cache=True, nogil=True, inline="always", fastmath=_CONTRACT)
def _exp_split(x):
    """exp(x) = exp(r) · 2^k for x in [_EXP_FLOOR - 1, 0]: (exp(r), the bits of the float 2^k).

    The caller multiplies by 2^k through a float64 view of the bits; the exponent stays
    normal because x > -700.
    """
    k = math.floor(x * _INV_LN2 + 0.5)
    return _exp_reduced(x - k * _LN2_HI - k * _LN2_LO), (np.int64(k) + 1023) << 52


@numba.njit(cache=True, nogil=True, fastmath=_CONTRACT)
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
    nd = n + m - 1  # anti-diagonals d = i + j; diagonal d holds rows max(0, d-m+1) .. min(n-1, d)
    # R in rolling anti-diagonals indexed by row + 1 (index 0 is the boundary row -1, +inf). The
    # cells of one diagonal do not depend on each other, so each step below is a loop over a
    # diagonal that the compiler vectorises, the exp and log included: faster than calling
    # glibc's, which was faster than a row-by-row walk (docs/benchmarks.md has the figures).
    r2 = np.full(n + 1, _INF)  # diagonal d - 2
    r1 = np.full(n + 1, _INF)  # diagonal d - 1
    r0 = np.full(n + 1, _INF)  # diagonal d
    # Per cell of the diagonal: the exp arguments (low - median) / γ and (low - max) / γ, the
    # exp of their reduced parts, and 2^k as bits and, through a view, as floats.
    x_mid, x_high = np.empty(n), np.empty(n)
    w_mid, w_high = np.empty(n), np.empty(n)
    bits_mid, bits_high = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    scale_mid, scale_high = bits_mid.view(np.float64), bits_high.view(np.float64)
    # P_k[offset[d] + (i - first row of d)] = the softmin weight cell (i, d - i) gives its
    # predecessor k (0: ↘ from (i-1, j-1), 1: ↓ from (i-1, j), 2: → from (i, j-1)), that is
    # ∂R_ij / ∂R_pred, stored diagonal by diagonal so both passes read and write them
    # contiguously. With them the backward pass is multiply-adds only: Cuturi & Blondel's
    # Algorithm 2 without its three exp per cell. Two slots of padding at each end.
    offset = np.zeros(nd + 2, dtype=np.int64)
    for d in range(nd):
        offset[d + 1] = offset[d] + min(n - 1, d) + 1 - max(0, d - m + 1)
    offset[nd + 1] = offset[nd]
    size = n * m + 4 if want_grad else 4
    P0, P1, P2 = np.empty(size), np.empty(size), np.empty(size)
    for pad in (0, 1, size - 2, size - 1, 2):  # the padding, and cell (0, 0): no predecessors
        P0[pad], P1[pad], P2[pad] = 0.0, 0.0, 0.0
    r0[1] = cost[0, 0]
    finite = abs(cost[0, 0]) < _INF  # checked in this pass rather than in one of its own
    for d in range(1, nd):
        r2, r1, r0 = r1, r0, r2
        first = max(0, d - m + 1)
        count = min(n - 1, d) + 1 - first
        # Only row d of diagonal d - 1 and row d - 1 of diagonal d - 2 (column -1) are read
        # outside the cells written so far; no diagonal has written them, so they are +inf.
        for q in range(count):
            i = first + q
            a, b, c = r2[i], r1[i], r1[i + 1]  # R[i-1, j-1], R[i-1, j], R[i, j-1]
            # softmin_γ(a, b, c) = low - γ log Σ exp((low - ·)/γ): the minimum's term is 1,
            # so two exp, of the median's and the maximum's distance to it.
            low = min(a, min(b, c))
            mid = max(min(a, b), min(max(a, b), c))
            high = max(a, max(b, c))
            x_mid[q] = max((low - mid) * inv_gamma, _EXP_FLOOR - 1.0)
            x_high[q] = max((low - high) * inv_gamma, _EXP_FLOOR - 1.0)
        for q in range(count):
            w_mid[q], bits_mid[q] = _exp_split(x_mid[q])
            w_high[q], bits_high[q] = _exp_split(x_high[q])
        base = 2 + offset[d]
        for q in range(count):
            i = first + q
            a, b, c = r2[i], r1[i], r1[i + 1]
            low = min(a, min(b, c))
            # exp, flushed to 0 below _TINY (see there)
            e_mid = w_mid[q] * scale_mid[q] if x_mid[q] > _EXP_FLOOR else 0.0
            e_high = w_high[q] * scale_high[q] if x_high[q] > _EXP_FLOOR else 0.0
            total = 1.0 + e_mid + e_high
            cell = cost[i, d - i]
            finite &= abs(cell) < _INF
            r0[i + 1] = cell + low - gamma * _log_1_to_3(total)
            if want_grad:
                # Each predecessor's weight, by which of low, median and max it is; equal
                # values get equal weights, as the exact formula gives them.
                mid = max(min(a, b), min(max(a, b), c))
                inv_total = 1.0 / total
                wl, wm, wh = inv_total, e_mid * inv_total, e_high * inv_total
                P0[base + q] = wl if a == low else (wm if a == mid else wh)
                P1[base + q] = wl if b == low else (wm if b == mid else wh)
                P2[base + q] = wl if c == low else (wm if c == mid else wh)
    if want_grad:
        # E_ij = Σ over the successors s of (i, j) of E_s · (the weight s gives (i, j)), walked
        # back diagonal by diagonal: ↓ (i+1, j) and → (i, j+1) lie on d + 1, ↘ on d + 2. Rolling
        # buffers indexed by row + 1 hold zeros just outside each diagonal, so a missing
        # successor adds 0 (its weight, read from the neighbouring slot, is finite).
        e2 = np.zeros(n + 2)  # diagonal d + 2
        e1 = np.zeros(n + 2)  # diagonal d + 1
        e0 = np.zeros(n + 2)  # diagonal d
        e0[n] = 1.0  # the last cell
        E[n - 1, m - 1] = 1.0
        for d in range(nd - 2, -1, -1):
            e2, e1, e0 = e1, e0, e2
            first = max(0, d - m + 1)
            stop = min(n - 1, d) + 1
            down = 2 + offset[d + 1] - max(0, d + 2 - m)  # P index of row i on diagonal d + 1, minus i
            diag = 2 + offset[d + 2] - max(0, d + 3 - m)  # ... on diagonal d + 2
            for i in range(first, stop):
                e = e1[i + 2] * P1[down + i + 1] + e2[i + 2] * P0[diag + i + 1] + e1[i + 1] * P2[down + i]
                e = e if e > _TINY else 0.0  # no subnormals (see _TINY)
                e0[i + 1] = e
                E[i, d - i] = e
            e0[first] = 0.0  # rows first - 1 and stop: read by diagonals d - 1 and d - 2
            e0[stop + 1] = 0.0
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


@numba.njit(cache=True, nogil=True, inline="always")
def step_back(i, j, diag, up, left):
    """The cell before (i, j) on the optimal path (1-based indices of the accumulated cost R),
    given diag = R[i-1, j-1], up = R[i-1, j] and left = R[i, j-1]: ↘ on ties, then ↓, then →
    (the order tslearn uses). On the first row or column only one move is left, which also keeps
    the walk in bounds whatever the costs hold (NaN compares false everywhere)."""
    if i == 1:
        return i, j - 1
    if j == 1:
        return i - 1, j
    if diag <= up and diag <= left:
        return i - 1, j - 1
    if up <= left:
        return i - 1, j
    return i, j - 1


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
        i, j = step_back(i, j, acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
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


@numba.njit(cache=True, nogil=True)
def dtw_subsequence_path(cost):
    """Exact subsequence DTW of one pair: the columns (the query) matched with a run of the rows.

    R_i0 = cost_i0 (a match may start on any row), R_ij = cost_ij + min(R_{i-1,j-1}, R_{i-1,j},
    R_{i,j-1}) for j >= 1; the match ends on the first row e where R_e,m-1 is least, and the
    path is backtracked from there, with :func:`dtw_path`'s ties (↘, then ↓, then →), until it
    reaches the first column, on its start row s.

    Args:
        cost: (n, m) float64 or float32 (accumulated in float64 either way).

    Returns:
        (path, K, total, s, e, bad): path (n + m - 1, 2) int64 whose rows 0..K-1 hold the path
        reversed, from (e, m - 1) back to (s, 0); total = R_e,m-1; bad: a cell of the cost is
        NaN or infinite (the path then stays inside the matrix but means nothing).
    """
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), _INF)  # R shifted by one: row 0 and column 0 are the +inf border
    finite = True
    for i in range(1, n + 1):
        # One loop from the first column, the open begin a branch in it, as in dtw_long._forward:
        # the first column set apart before a loop from the second ran at half the speed
        for j in range(1, m + 1):
            c = cost[i - 1, j - 1]
            finite &= abs(c) < _INF
            best = 0.0 if j == 1 else min(acc[i - 1, j - 1], min(acc[i - 1, j], acc[i, j - 1]))
            acc[i, j] = c + best
    end = 1
    for i in range(2, n + 1):
        if acc[i, m] < acc[end, m]:
            end = i
    path = np.empty((n + m - 1, 2), dtype=np.int64)
    i = end
    j = m
    k = 0
    while True:
        path[k, 0] = i - 1
        path[k, 1] = j - 1
        k += 1
        if j == 1:
            break
        i, j = step_back(i, j, acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
    return path, k, acc[end, m], i - 1, end - 1, not finite
