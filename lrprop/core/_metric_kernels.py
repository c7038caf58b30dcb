"""Numba kernels behind :mod:`lrprop.core.metrics`: Kendall's τ-b of many sequences at once."""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _tau_b(x, y) -> float:
    """Kendall's τ-b of two equally long 1-D sequences (NaN if either is constant)."""
    n = x.shape[0]
    s = 0.0
    nx = 0
    ny = 0
    for i in range(n):
        for j in range(i + 1, n):
            sx = (x[j] > x[i]) - (x[j] < x[i])
            sy = (y[j] > y[i]) - (y[j] < y[i])
            s += sx * sy
            nx += sx != 0
            ny += sy != 0
    if nx == 0 or ny == 0:
        return math.nan
    return s / math.sqrt(float(nx) * float(ny))


@numba.njit(parallel=True, cache=True, nogil=True)
def kendall_tau_b_rows(x, ys):
    """τ-b of ``x`` (n,) against each row of ``ys`` (R, n), in parallel over rows; (R,) float64."""
    out = np.empty(ys.shape[0])
    for r in numba.prange(ys.shape[0]):
        out[r] = _tau_b(x, ys[r])
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def smallest_k_rows(d, k, skip_start, skip_end):
    """The k smallest entries of each row of ``d``, outside columns [skip_start, skip_end).

    Args:
        d: (R, C) float64.
        k: how many, 1 <= k <= C - (skip_end - skip_start).

    Returns:
        (R, k) int64 column indices, ordered by value, then by index (so ties are deterministic).
    """
    R, C = d.shape
    out = np.empty((R, k), dtype=np.int64)
    for r in numba.prange(R):
        best_v = np.full(k, np.inf)
        best_i = np.full(k, C, dtype=np.int64)
        filled = 0
        for c in range(C):
            if skip_start <= c < skip_end:
                continue
            v = d[r, c]
            # Columns come in increasing order, so an equal value never displaces a kept one.
            if filled == k and not v < best_v[k - 1]:
                continue
            pos = min(filled, k - 1)
            while pos > 0 and v < best_v[pos - 1]:
                best_v[pos] = best_v[pos - 1]
                best_i[pos] = best_i[pos - 1]
                pos -= 1
            best_v[pos] = v
            best_i[pos] = c
            filled = min(filled + 1, k)
        out[r] = best_i
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def argmin_blocks(d, starts, step):
    """Nearest neighbours both ways inside each column block of ``d``, at a stride, in one pass.

    Block p is ``d[::step, starts[p]:starts[p + 1]:step]``: the distances from the frames of one
    video to those of video p, both at ``step``. Reading the strides here, instead of slicing
    them out first, saves a copy whose column-major layout made this pass several times slower
(docs/benchmarks.md, "All-pairs evaluation of one class").

    Args:
        d: (R, C) float64.
        starts: (P + 1,) int64 column offsets of the blocks.

    Returns:
        row_arg: (P, ⌈R/step⌉) int64, each (strided) row's argmin inside block p, counted in
            the block's strided columns;
        col_arg: (Σ_p ⌈width_p/step⌉,) int64, each strided column's argmin over the strided
            rows, block after block.
        Ties go to the lowest index, as ``np.argmin``.
    """
    R = d.shape[0]
    P = starts.shape[0] - 1
    rows = (R + step - 1) // step
    out_starts = np.zeros(P + 1, dtype=np.int64)
    for p in range(P):
        out_starts[p + 1] = out_starts[p] + (starts[p + 1] - starts[p] + step - 1) // step
    row_arg = np.zeros((P, rows), dtype=np.int64)
    col_arg = np.zeros(out_starts[P], dtype=np.int64)
    for p in numba.prange(P):
        a, b, o = starts[p], starts[p + 1], out_starts[p]
        col_best = np.full(out_starts[p + 1] - o, np.inf)
        for r in range(rows):
            best = np.inf
            for c in range(a, b, step):
                v = d[r * step, c]
                k = (c - a) // step
                if v < best:
                    best = v
                    row_arg[p, r] = k
                if v < col_best[k]:
                    col_best[k] = v
                    col_arg[o + k] = r
    return row_arg, col_arg


@numba.njit(parallel=True, cache=True, nogil=True)
def offer_to_column_lists(d, row_base, best_v, best_i, col_base):
    """Offer every entry of ``d`` to its column's running list of the k smallest.

    Column c's list is ``best_v[col_base + c]`` (values, ascending; +inf marks an empty slot)
    and ``best_i[col_base + c]`` (their indices); entry (r, c) carries index ``row_base + r``.
    Callers offer rows in increasing index order, so an equal value never displaces a kept one
    and ties stay ordered by index.

    Args:
        d: (R, C) float64.
        best_v: (N, k) float64, updated in place.
        best_i: (N, k) int64, updated in place.
    """
    R, C = d.shape
    k = best_v.shape[1]
    width = 64  # columns per task: each row's slice of them is contiguous in memory
    for chunk in numba.prange((C + width - 1) // width):
        c0 = chunk * width
        c1 = min(C, c0 + width)
        for r in range(R):
            for c in range(c0, c1):
                v = d[r, c]
                g = col_base + c
                if not v < best_v[g, k - 1]:
                    continue
                pos = k - 1
                while pos > 0 and v < best_v[g, pos - 1]:
                    best_v[g, pos] = best_v[g, pos - 1]
                    best_i[g, pos] = best_i[g, pos - 1]
                    pos -= 1
                best_v[g, pos] = v
                best_i[g, pos] = row_base + r
