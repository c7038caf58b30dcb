"""Numba kernels behind :mod:`lrprop.metrics`: Kendall's τ-b of many sequences at once."""

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
