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
