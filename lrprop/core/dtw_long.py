"""Exact DTW paths of long pairs (tens of thousands of frames each) in little memory.

A (Tx, Ty) pair of 20 000 frames each would need 3.2 GB for its float64 cost matrix and as much
again for the accumulated cost that :func:`lrprop.core.dtw.dtw_path` keeps. Here neither is
ever whole: the cost comes in blocks of ``block_rows`` rows from a function (e.g. the squared
Euclidean distances of two embedding sequences, :func:`sqeuclidean_rows`), and the dynamic
programme runs twice.

1. Forward: the accumulated cost R row by row, keeping only the row at the end of each block
   (a checkpoint): ceil(Tx / block_rows) rows of Ty + 1 values.
2. Backward: from the last block to the first, recompute the block's rows of R from the
   checkpoint above it and backtrack through them, from where the path entered the block.

The recurrence, the order of its ``min`` and the backtrack's ties (↘, then ↓, then →) are those
of :func:`lrprop.core.dtw.dtw_path`, and every value of R is computed by the same float64
operations from the same cost values, so the path and its total are that function's exactly
(tested on costs both can hold), not an approximation: no band, no coarsening.

Memory: 8 (Ty + 1)(ceil(Tx / b) + 2b) bytes for b = ``block_rows``: the checkpoints, one
block's cost and its R; plus the path (at most Tx + Ty - 1 rows). The default b, max(256,
√(Tx / 2)), keeps it O(Ty √Tx): 91 MiB for 20 000 × 20 000 frames, 1.9 GiB for 200 000 × 200 000.
Time: two passes of the programme and two computations of the cost, where the in-memory path
takes one.

:func:`dtw_subsequence_path_long` runs the same two passes for subsequence DTW (a short query,
the columns, matched with a run of the rows): the first column of R is the cost itself, so a
block's rows still follow from the checkpoint above it; the forward pass also keeps R's last
column (Tx values), whose least value is where the match ends, and the backward pass starts in
that block and stops where the path reaches the first column. It recomputes only the blocks the
match spans, so it takes about one pass plus the match's share of a second.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numba
import numpy as np

from lrprop.core._dtw_kernels import step_back

__all__ = [
    "default_block_rows",
    "dtw_path_long",
    "dtw_subsequence_path_long",
    "long_path_memory_bytes",
    "sqeuclidean_rows",
]

_INF = np.inf


def sqeuclidean_rows(x: np.ndarray, y: np.ndarray) -> Callable[[int, int], np.ndarray]:
    """The rows of the squared Euclidean cost of two sequences, a block at a time.

    cost[i, j] = |x_i|² + |y_j|² - 2 x_i · y_j, clipped at 0 (rounding can make it slightly
    negative), in float64.

    Args:
        x: (Tx, D) and y: (Ty, D) arrays.

    Returns:
        ``rows(r0, r1)`` -> (r1 - r0, Ty) float64, the cost of frames r0..r1-1 of x against all of y.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be (Tx, D) and (Ty, D), got {x.shape} and {y.shape}")
    xx = np.einsum("id,id->i", x, x)
    yy = np.einsum("jd,jd->j", y, y)

    def rows(r0: int, r1: int) -> np.ndarray:
        block = x[r0:r1] @ y.T  # (r1 - r0, Ty)
        block *= -2.0
        block += xx[r0:r1, None]
        block += yy[None, :]
        np.maximum(block, 0.0, out=block)
        return block

    return rows


def default_block_rows(tx: int) -> int:
    """max(256, ceil(√(tx / 2))): near the b that minimises ceil(tx / b) + 2b, the rows of R kept."""
    return max(256, math.ceil(math.sqrt(tx / 2)))


def long_path_memory_bytes(tx: int, ty: int, block_rows: int | None = None, *, subsequence: bool = False) -> int:
    """The bytes :func:`dtw_path_long` (or, ``subsequence``, :func:`dtw_subsequence_path_long`)
    holds at most for a (tx, ty) pair: checkpoints, one block's cost and accumulated cost, the
    path, and for a subsequence R's last column."""
    block_rows = block_rows or default_block_rows(tx)
    blocks = -(-tx // block_rows)
    last_column = tx if subsequence else 0
    return 8 * ((blocks + 1) * (ty + 1) + block_rows * ty + (block_rows + 1) * (ty + 1) + 2 * (tx + ty) + last_column)


@numba.njit(cache=True, nogil=True)
def _forward(cost, above, acc, open_begin):
    """Rows of R below ``above`` (R's row just above the block, Ty + 1 values with R[., 0] = inf
    except at the origin): acc[0] = above, acc[k + 1] = R of the block's row k. With
    ``open_begin`` R's first column is the cost itself (a subsequence match may start on any
    row). Returns whether a cell of the block's cost is NaN or infinite."""
    rows, m = cost.shape
    finite = True
    acc[0, :] = above
    for k in range(rows):
        acc[k + 1, 0] = _INF
        # One loop from the first column, the open begin a branch in it: the first column set
        # apart before a loop from the second ran at half the speed (numba 0.68; docs/benchmarks.md)
        for j in range(1, m + 1):
            c = cost[k, j - 1]
            finite &= abs(c) < _INF
            if open_begin and j == 1:
                best = 0.0
            else:
                best = min(acc[k, j - 1], min(acc[k, j], acc[k + 1, j - 1]))
            acc[k + 1, j] = c + best
    return not finite


@numba.njit(cache=True, nogil=True)
def _backtrack_block(acc, r0, i, j, path, k, open_begin):
    """Walk the path back through a block whose R rows r0..r0 + rows are ``acc`` (1-based R
    indices: acc[0] is R's row r0), from cell (i, j) of R (1-based) until it leaves the block
    (i == r0) or reaches its start: the origin, or with ``open_begin`` any cell of the first
    column; each cell (i - 1, j - 1) is written at path[k], path[k + 1], …

    Returns (i, j, k, done): where the walk stopped and whether it reached the start."""
    while i > r0:
        path[k, 0] = i - 1
        path[k, 1] = j - 1
        k += 1
        if j == 1 and (open_begin or i == 1):
            return i, j, k, True
        # the move lrprop.core.dtw.dtw_path's backtrack makes, read off this block's rows of R
        i, j = step_back(i, j, acc[i - 1 - r0, j - 1], acc[i - 1 - r0, j], acc[i - r0, j - 1])
    return i, j, k, False


def dtw_path_long(
    cost_rows: Callable[[int, int], np.ndarray], tx: int, ty: int, *, block_rows: int | None = None
) -> tuple[np.ndarray, float]:
    """Exact DTW path of one (tx, ty) pair whose cost comes a block of rows at a time.

    R_ij = cost_ij + min(R_{i-1,j-1}, R_{i-1,j}, R_{i,j-1}), backtracked from (tx - 1, ty - 1)
    preferring ↘, then ↓, then → on ties: :func:`lrprop.core.dtw.dtw_path`'s path and total.

    Args:
        cost_rows: ``cost_rows(r0, r1)`` -> (r1 - r0, ty) array, rows r0..r1-1 of the cost (e.g.
            :func:`sqeuclidean_rows`); called twice for each block, with the same bounds.
        tx, ty: the pair's lengths.
        block_rows: rows of the cost held at once (default :func:`default_block_rows`; memory:
            :func:`long_path_memory_bytes`).

    Returns:
        (path, total): path (K, 2) int64 of (i, j) rows from (0, 0) to (tx - 1, ty - 1); total
        the accumulated cost along it.

    Raises:
        FloatingPointError: a cell of the cost is NaN or infinite.
        ValueError: a block of the wrong shape, or lengths < 1.
    """
    path, total, _, _ = _path_by_blocks(cost_rows, tx, ty, block_rows, open_begin=False)
    return path, total


def dtw_subsequence_path_long(
    cost_rows: Callable[[int, int], np.ndarray], tx: int, ty: int, *, block_rows: int | None = None
) -> tuple[np.ndarray, float, int, int]:
    """Exact subsequence DTW of a query (the ty columns) in a longer sequence (the tx rows), the
    cost a block of rows at a time: :func:`lrprop.core.dtw.dtw_subsequence_path`'s path, total,
    start and end, in :func:`long_path_memory_bytes` (``subsequence=True``) bytes.

    R_i0 = cost_i0, R_ij = cost_ij + min(R_{i-1,j-1}, R_{i-1,j}, R_{i,j-1}) for j >= 1; the
    match ends on the first row e where R_e,ty-1 is least, and is backtracked from there,
    preferring ↘, then ↓, then → on ties, to its start row s in the first column.

    Args:
        cost_rows: ``cost_rows(r0, r1)`` -> (r1 - r0, ty) array, rows r0..r1-1 of the cost (e.g.
            :func:`sqeuclidean_rows`); called once for each block, and again for those the
            match spans.
        tx, ty: the lengths, ty <= tx.
        block_rows: rows of the cost held at once (default :func:`default_block_rows`).

    Returns:
        (path, total, s, e): path (K, 2) int64 of (i, j) rows from (s, 0) to (e, ty - 1); total
        the accumulated cost along it; s and e the first and last row matched.

    Raises:
        FloatingPointError: a cell of the cost is NaN or infinite.
        ValueError: ty > tx, a block of the wrong shape, or lengths < 1.
    """
    if ty > tx:
        raise ValueError(f"the query ({ty} columns) is longer than the sequence it is to be found in ({tx} rows)")
    return _path_by_blocks(cost_rows, tx, ty, block_rows, open_begin=True)


def _path_by_blocks(
    cost_rows: Callable[[int, int], np.ndarray], tx: int, ty: int, block_rows: int | None, *, open_begin: bool
) -> tuple[np.ndarray, float, int, int]:
    """The two passes of the module: (path (K, 2), total, first row, last row) of the exact DTW
    path, anchored at both corners or, ``open_begin``, a subsequence match."""
    block_rows = block_rows or default_block_rows(tx)
    if tx < 1 or ty < 1 or block_rows < 1:
        raise ValueError(f"tx, ty and block_rows must be >= 1, got {tx}, {ty}, {block_rows}")
    starts = list(range(0, tx, block_rows))

    def block(b: int) -> np.ndarray:
        r0, r1 = starts[b], min(starts[b] + block_rows, tx)
        cost = np.asarray(cost_rows(r0, r1))
        if cost.dtype not in (np.float32, np.float64):  # the kernels read either (see _dtw_kernels)
            cost = cost.astype(np.float64)
        cost = np.ascontiguousarray(cost)
        if cost.shape != (r1 - r0, ty):
            raise ValueError(f"cost_rows({r0}, {r1}) gave shape {cost.shape}, not {(r1 - r0, ty)}")
        return cost

    # checkpoints[b] is R's row starts[b] (the row above block b); R's row 0 is the origin's,
    # or for a subsequence all +inf (its first column is the cost, whatever lies above)
    checkpoints = np.empty((len(starts) + 1, ty + 1))
    checkpoints[0] = _INF
    checkpoints[0, 0] = _INF if open_begin else 0.0
    last_column = np.empty(tx if open_begin else 0)  # R[., ty - 1]: where a subsequence may end
    acc = np.empty((block_rows + 1, ty + 1))
    for b in range(len(starts)):
        cost = block(b)
        if _forward(cost, checkpoints[b], acc[: len(cost) + 1], open_begin):
            raise FloatingPointError(f"non-finite cost in rows {starts[b]}..{starts[b] + len(cost) - 1}")
        checkpoints[b + 1] = acc[len(cost)]
        if open_begin:
            last_column[starts[b] : starts[b] + len(cost)] = acc[1 : len(cost) + 1, ty]
    end = int(np.argmin(last_column)) if open_begin else tx - 1  # argmin: the first of equal ends
    total = float(last_column[end]) if open_begin else float(checkpoints[-1, ty])

    path = np.empty((tx + ty - 1, 2), dtype=np.int64)
    i, j, k = end + 1, ty, 0
    for b in range(end // block_rows, -1, -1):
        cost = block(b)
        _forward(cost, checkpoints[b], acc[: len(cost) + 1], open_begin)
        i, j, k, done = _backtrack_block(acc, starts[b], i, j, path, k, open_begin)
        if done:
            break
    return path[:k][::-1].copy(), total, i - 1, end
