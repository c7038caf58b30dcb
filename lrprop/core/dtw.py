"""Dynamic time warping for pairs of embedding sequences: costs, exact paths and soft-DTW.

Everything is batched over pairs, with per-pair valid lengths: a pair b uses the cells
``[:x_lengths[b], :y_lengths[b]]`` of its cost matrix and ignores the padding beyond them.
Moves are ↓ (i+1, j), → (i, j+1) and ↘ (i+1, j+1), from (0, 0) to the last valid cell.

The dynamic programmes run in float64: on the CPU in numba kernels (``_dtw_kernels``), and for
a CUDA input on its GPU in Triton kernels (``_dtw_triton``). Paths come back to the CPU as
index arrays either way. The exact-DTW kernels read a float32 cost as it is (widening each value
to float64 is exact, so the path and total are those of its float64 copy), rather than copying
the whole cost to float64 first.

:func:`dtw_subsequence_path` is subsequence DTW: a short sequence (the columns) matched with
the run of a longer one (the rows) that it fits best, the path free to start and end on any row.

Shapes: x (B, Tx, D), y (B, Ty, D), cost (B, Tx, Ty).
"""

from __future__ import annotations

import numpy as np
import torch

from lrprop.core import _dtw_kernels, _dtw_triton
from lrprop.core.dtw_long import dtw_path_long, dtw_subsequence_path_long, sqeuclidean_rows

# Above this many valid cells, a single pair's exact path is computed a block of rows at a time
# (lrprop.core.dtw_long.dtw_path_long: the same path and total, no accumulated-cost matrix)
LONG_PAIR_CELLS = 25_000_000
# Above this many cells (a query against all its references), dtw_paths_to_many aligns each pair a
# block of rows at a time: 4e7 float64 cells are 320 MB for the cost and as much again in the kernel
MANY_IN_MEMORY_CELLS = 40_000_000

__all__ = [
    "pairwise_sqeuclidean",
    "dtw_path",
    "dtw_path_blocks",
    "dtw_paths_to_many",
    "dtw_alignment",
    "dtw_distance",
    "dtw_subsequence_path",
    "middle_matches",
    "soft_dtw",
    "soft_dtw_divergence",
]


def pairwise_sqeuclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between every frame of x and every frame of y.

    D_ij = ‖x_i‖² + ‖y_j‖² - 2 x_i·y_j, by a matrix product (never a (B, Tx, Ty, D) expansion),
    clamped at 0 against rounding.

    Args:
        x: (B, Tx, D) or (Tx, D).
        y: (B, Ty, D) or (Ty, D).

    Returns:
        (B, Tx, Ty) or (Tx, Ty).
    """
    if x.dim() == 3 and y.dim() == 3:
        return _PairwiseSqEuclidean.apply(x, y)
    if x.dim() == 2 and y.dim() == 2:
        return _PairwiseSqEuclidean.apply(x[None], y[None])[0]
    return ((x * x).sum(-1).unsqueeze(-1) + (y * y).sum(-1).unsqueeze(-2) - 2.0 * (x @ y.transpose(-1, -2))).clamp_min(0.0)


class _PairwiseSqEuclidean(torch.autograd.Function):
    """(B, Tx, D), (B, Ty, D) -> (B, Tx, Ty) squared distances, with the gradient in closed form.

    Forward: one fused product-and-add (fewer temporaries than ‖x‖² + ‖y‖² - 2 x·y; 25 % faster
    at B=16, T=240). Backward: ∂/∂x_i = 2 (Σ_j G_ij x_i - Σ_j G_ij y_j), one batched product per
    input, where autograd's chain through the norms, the broadcast and the clamp took three
    times as many kernels (soft-DTW from embeddings: 10 % faster at B=16, T=240). G is zero where
    the clamp cut, as for torch's clamp_min. The backward is made of differentiable ops, so
    second derivatives work too.
    """

    @staticmethod
    def forward(ctx, x, y):
        x_sq = (x * x).sum(-1).unsqueeze(-1)  # (B, Tx, 1)
        y_sq = (y * y).sum(-1).unsqueeze(-2)  # (B, 1, Ty)
        raw = torch.baddbmm(x_sq + y_sq, x, y.transpose(-1, -2), alpha=-2.0)
        ctx.save_for_backward(x, y, raw >= 0)
        return raw.clamp_min(0.0)

    @staticmethod
    def backward(ctx, grad):
        x, y, kept = ctx.saved_tensors
        # Under autocast the product, and so its gradient, is in bf16 while x and y are not.
        grad = (grad * kept).to(x.dtype)
        grad_x = grad_y = None
        if ctx.needs_input_grad[0]:
            grad_x = 2.0 * (grad.sum(-1, keepdim=True) * x - torch.bmm(grad, y))
        if ctx.needs_input_grad[1]:
            grad_y = 2.0 * (grad.sum(-2).unsqueeze(-1) * y - torch.bmm(grad.transpose(-1, -2), x))
        return grad_x, grad_y


def _kernel_array(cost) -> np.ndarray:
    """A tensor or array as a C-contiguous numpy array the exact-DTW kernels read: float32 and
    float64 as they are (no copy when already contiguous on the CPU), anything else as float64."""
    if isinstance(cost, torch.Tensor):
        cost = cost.detach()
        if cost.dtype not in (torch.float32, torch.float64):
            cost = cost.to(torch.float64)  # e.g. bfloat16, which numpy has no type for
        arr = cost.cpu().numpy()
    else:
        arr = np.asarray(cost)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return np.ascontiguousarray(arr)


def _as_batch(cost) -> tuple[np.ndarray, bool]:
    """(Tx, Ty) or (B, Tx, Ty) tensor/array -> contiguous float32 or float64 (B, Tx, Ty), was_2d."""
    arr = _kernel_array(cost)
    if arr.ndim == 2:
        return np.ascontiguousarray(arr[None]), True
    if arr.ndim != 3:
        raise ValueError(f"cost must have shape (Tx, Ty) or (B, Tx, Ty), got {tuple(arr.shape)}")
    return np.ascontiguousarray(arr), False


def _lengths(lengths, batch: int, full: int, name: str) -> np.ndarray:
    """Per-pair valid lengths as int64 (B,), defaulting to the full size; checked in range."""
    if lengths is None:
        return np.full(batch, full, dtype=np.int64)
    if isinstance(lengths, torch.Tensor):
        lengths = lengths.detach().cpu().numpy()
    out = np.broadcast_to(np.asarray(lengths, dtype=np.int64), (batch,)).copy()
    if out.min() < 1 or out.max() > full:
        raise ValueError(f"{name} must lie in [1, {full}], got {out.tolist()}")
    return out


def dtw_path(cost, x_lengths=None, y_lengths=None):
    """Exact DTW path of each pair.

    R_ij = cost_ij + min(R_{i-1,j-1}, R_{i-1,j}, R_{i,j-1}); the path is backtracked from the
    last valid cell, preferring ↘ on ties.

    Args:
        cost: (B, Tx, Ty) or (Tx, Ty) tensor or array.
        x_lengths, y_lengths: (B,) valid lengths, default the full sizes.

    Returns:
        For a batch, a list of B int64 arrays (K_b, 2) of (i, j) rows from (0, 0) to
        (x_lengths[b] - 1, y_lengths[b] - 1); for a single (Tx, Ty) cost, one such array.

    Raises:
        FloatingPointError: a valid cell of the cost is NaN or infinite.
    """
    paths, _, single = _exact_dtw(cost, x_lengths, y_lengths)
    return paths[0] if single else paths


def dtw_path_blocks(cost, starts, widths) -> list[np.ndarray]:
    """Exact DTW paths of one sequence against several, their costs column blocks of one matrix.

    Pair p's cost is ``cost[:, starts[p] : starts[p] + widths[p]]`` (all rows): the distances
    from the frames of one video to the frames of many, as one matrix product gives them, are
    aligned without copying each pair into a batch.

    Args:
        cost: (Tx, total) array.
        starts, widths: (P,) column blocks inside ``cost``.

    Returns:
        A list of P int64 arrays (K_p, 2), as :func:`dtw_path` returns them.

    Raises:
        FloatingPointError: a cell of a block is NaN or infinite.
        ValueError: a block reaches outside ``cost`` or is empty.
    """
    arr = _kernel_array(cost)
    starts = np.asarray(starts, dtype=np.int64)
    widths = np.asarray(widths, dtype=np.int64)
    if arr.ndim != 2 or starts.shape != widths.shape or starts.ndim != 1:
        raise ValueError(f"cost must be (Tx, total) and starts, widths (P,), got {arr.shape}, {starts.shape}, {widths.shape}")
    if len(starts) and (starts.min() < 0 or widths.min() < 1 or (starts + widths).max() > arr.shape[1]):
        raise ValueError(f"column blocks must lie inside the {arr.shape[1]} columns of cost and be non-empty")
    paths, counts, _, bad = _dtw_kernels.dtw_paths_blocks(arr, starts, widths)
    _raise_if_bad(bad)
    return [paths[p, : counts[p]].copy() for p in range(len(starts))]


def middle_matches(path: np.ndarray, length: int) -> np.ndarray:
    """(length,) int64: for each frame i of the first sequence, the middle of the frames of the
    second that ``path`` (K, 2), from (0, 0) to (length - 1, ·), matches with it; they are
    consecutive, so this is (first + last) // 2 of them."""
    i, j = path[:, 0], path[:, 1]
    first = np.searchsorted(i, np.arange(length), side="left")
    last = np.searchsorted(i, np.arange(length), side="right") - 1
    return (j[first] + j[last]) // 2


def dtw_paths_to_many(query: np.ndarray, references: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """The exact DTW path and total of ``query`` (Tq, D) against each of ``references`` [(Tr, D)]
    on the squared Euclidean cost: one distance product and one batched call
    (:func:`dtw_path_blocks`) when the Tq · Σ Tr cells fit in :data:`MANY_IN_MEMORY_CELLS`, else a
    block of rows at a time per reference (:func:`lrprop.core.dtw_long.dtw_path_long`, the same
    paths and totals).

    Returns:
        (paths: R arrays (K_r, 2) int64, totals: (R,) float64 accumulated costs).
    """
    q = np.asarray(query, dtype=np.float64)
    refs = [np.asarray(r, dtype=np.float64) for r in references]
    widths = np.array([len(r) for r in refs], dtype=np.int64)
    if len(q) * widths.sum() <= MANY_IN_MEMORY_CELLS:
        cost = sqeuclidean_rows(q, np.concatenate(refs))(0, len(q))  # (Tq, Σ Tr)
        paths, counts, totals, bad = _dtw_kernels.dtw_paths_blocks(cost, np.r_[0, np.cumsum(widths)[:-1]], widths)
        _raise_if_bad(bad)
        return [paths[r, : counts[r]].copy() for r in range(len(refs))], totals
    done = [dtw_path_long(sqeuclidean_rows(q, r), len(q), len(r)) for r in refs]
    return [path for path, _ in done], np.array([total for _, total in done])


def dtw_distance(cost, x_lengths=None, y_lengths=None) -> np.ndarray:
    """Accumulated cost of the exact DTW path of each pair: (B,) float64 (or a float for 2-D)."""
    _, totals, single = _exact_dtw(cost, x_lengths, y_lengths)
    return float(totals[0]) if single else totals


def dtw_subsequence_path(cost) -> tuple[np.ndarray, float, int, int]:
    """Exact subsequence DTW: the columns of ``cost`` (a query of Ty frames) matched with the run
    of rows (frames s..e of a sequence of Tx) that they fit best.

    R_i0 = cost_i0 (the match may start on any row), R_ij = cost_ij + min(R_{i-1,j-1},
    R_{i-1,j}, R_{i,j-1}) for j >= 1; the match ends on the row e = argmin_i R_i,Ty-1 (the first
    of equal ones), and the path is backtracked from (e, Ty - 1) as :func:`dtw_path`'s (↘, then
    ↓, then → on ties) until it reaches the first column, on row s. On a cost >= 0 (squared
    distances) its total is the least anchored DTW total of the query against any run of rows,
    min over s <= e of ``dtw_distance(cost[s : e + 1])``: an anchored path that starts with ↓
    moves in the first column costs no less than the same path started on its last one. (On
    negative costs the two differ: the path never holds the query's first frame over rows.)

    A pair of more than :data:`LONG_PAIR_CELLS` cells goes to
    :func:`lrprop.core.dtw_long.dtw_subsequence_path_long` (the same result, without the
    (Tx + 1, Ty + 1) accumulated cost).

    Args:
        cost: (Tx, Ty) tensor or array, Ty <= Tx.

    Returns:
        (path, total, s, e): path (K, 2) int64 of (i, j) rows from (s, 0) to (e, Ty - 1); total
        the accumulated cost along it; s and e the first and last row matched.

    Raises:
        FloatingPointError: a cell of the cost is NaN or infinite.
        ValueError: the cost is not 2-D, or Ty > Tx.
    """
    arr = _kernel_array(cost)
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"cost must have shape (Tx, Ty), both >= 1, got {tuple(arr.shape)}")
    tx, ty = arr.shape
    if ty > tx:
        raise ValueError(f"the query ({ty} columns) is longer than the sequence it is to be found in ({tx} rows)")
    if tx * ty > LONG_PAIR_CELLS:
        return dtw_subsequence_path_long(lambda r0, r1: arr[r0:r1], tx, ty)
    path, k, total, start, end, bad = _dtw_kernels.dtw_subsequence_path(arr)
    if bad:
        raise FloatingPointError("non-finite cost")
    return path[:k][::-1].copy(), float(total), int(start), int(end)


def dtw_alignment(cost: torch.Tensor, x_lengths=None, y_lengths=None) -> torch.Tensor:
    """The 0/1 alignment matrix W of each pair's exact DTW path.

    W_ij = 1 when (i, j) lies on the path; zero outside the valid block. No gradient flows
    through W: it is a constant of the cost.

    Args:
        cost: (B, Tx, Ty) tensor.
        x_lengths, y_lengths: (B,) valid lengths, default the full sizes.

    Returns:
        (B, Tx, Ty) bool tensor on the device of ``cost``.
    """
    paths, _, single = _exact_dtw(cost, x_lengths, y_lengths)
    B, Tx, Ty = (1, *cost.shape) if single else cost.shape
    W = np.zeros((B, Tx, Ty), dtype=bool)
    for b, path in enumerate(paths):
        W[b, path[:, 0], path[:, 1]] = True
    out = torch.from_numpy(W).to(cost.device if isinstance(cost, torch.Tensor) else "cpu")
    return out[0] if single else out


def _exact_dtw(cost, x_lengths, y_lengths) -> tuple[list[np.ndarray], np.ndarray, bool]:
    """Each pair's exact DTW path (K_b, 2) int64 and total cost (B,), and whether it was 2-D.

    A CUDA tensor runs the Triton kernel on its GPU; everything else the numba kernel.
    """
    if isinstance(cost, torch.Tensor) and cost.is_cuda and _dtw_triton.available():
        single = cost.dim() == 2
        arr, x_len, y_len = _gpu_checked(cost.unsqueeze(0) if single else cost, x_lengths, y_lengths)
        paths, counts, totals = (t.cpu().numpy() for t in _dtw_triton.dtw_paths(arr, x_len, y_len))
        # The kernel writes each path from its end back to (0, 0).
        return [paths[b, : counts[b]][::-1].astype(np.int64) for b in range(len(counts))], totals, single
    arr, single = _as_batch(cost)
    B, Tx, Ty = arr.shape
    nx = _lengths(x_lengths, B, Tx, "x_lengths")
    ny = _lengths(y_lengths, B, Ty, "y_lengths")
    if B == 1 and nx[0] * ny[0] > LONG_PAIR_CELLS:
        # One long pair: the same path and total without the accumulated cost's (Tx+1, Ty+1)
        # float64 matrix (lrprop.core.dtw_long), which would double the memory the cost takes
        path, total = dtw_path_long(lambda r0, r1: arr[0, r0:r1, : ny[0]], int(nx[0]), int(ny[0]))
        return [path], np.array([total]), single
    paths, counts, totals, bad = _dtw_kernels.dtw_paths(arr, nx, ny)
    _raise_if_bad(bad)
    return [paths[b, : counts[b]].copy() for b in range(len(arr))], totals, single


def _raise_if_bad(bad: np.ndarray) -> None:
    if bad.any():
        raise FloatingPointError(f"non-finite cost in the valid cells of pair(s) {np.flatnonzero(bad).tolist()}")


def _gpu_checked(cost: torch.Tensor, x_lengths, y_lengths) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, Tx, Ty) float64 cost and int32 lengths on the cost's GPU, lengths and finiteness checked."""
    if cost.dim() != 3:
        raise ValueError(f"cost must have shape (Tx, Ty) or (B, Tx, Ty), got {tuple(cost.shape)}")
    arr = cost.detach().to(torch.float64)
    B, Tx, Ty = arr.shape
    x_len = torch.from_numpy(_lengths(x_lengths, B, Tx, "x_lengths")).to(device=cost.device, dtype=torch.int32)
    y_len = torch.from_numpy(_lengths(y_lengths, B, Ty, "y_lengths")).to(device=cost.device, dtype=torch.int32)
    valid = (torch.arange(Tx, device=cost.device)[None, :, None] < x_len[:, None, None]) & (
        torch.arange(Ty, device=cost.device)[None, None, :] < y_len[:, None, None]
    )
    bad = (~torch.isfinite(arr) & valid).flatten(1).any(1)
    if bad.any():
        raise FloatingPointError(f"non-finite cost in the valid cells of pair(s) {torch.nonzero(bad).flatten().tolist()}")
    return arr, x_len, y_len


class _SoftDTW(torch.autograd.Function):
    """Soft-DTW value with the analytic backward (the expected-alignment matrix)."""

    @staticmethod
    def forward(ctx, cost, nx, ny, gamma):
        # Skip the gradient when nothing will ask for it (evaluation, no_grad).
        want_grad = bool(ctx.needs_input_grad[0])
        if cost.is_cuda and _dtw_triton.available():
            values, E = _soft_dtw_gpu(cost, nx, ny, gamma, want_grad)
        else:
            arr = np.ascontiguousarray(cost.detach().to("cpu", torch.float64).numpy())
            # The gradient comes out of the same pass as the value (it reuses the forward's
            # softmin weights).
            values, E, bad = _dtw_kernels.soft_dtw(arr, nx, ny, gamma, want_grad)
            _raise_if_bad(bad)
            values, E = torch.from_numpy(values), torch.from_numpy(E) if want_grad else None
        ctx.save_for_backward(E.to(device=cost.device, dtype=cost.dtype) if want_grad else None)
        return values.to(device=cost.device, dtype=cost.dtype)

    @staticmethod
    def backward(ctx, grad_values):
        (E,) = ctx.saved_tensors
        return grad_values[:, None, None] * E, None, None, None


def _soft_dtw_gpu(cost: torch.Tensor, nx: np.ndarray, ny: np.ndarray, gamma: float, want_grad: bool):
    """The Triton kernels on the cost's GPU: float64 values (B,) and E (B, Tx, Ty) or None."""
    arr, x_len, y_len = _gpu_checked(cost, nx, ny)
    return _dtw_triton.soft_dtw(arr, x_len, y_len, gamma, want_grad)


def soft_dtw(
    cost: torch.Tensor,
    gamma: float = 0.1,
    x_lengths=None,
    y_lengths=None,
    normalize: bool = False,
) -> torch.Tensor:
    """Soft-DTW of each pair (Cuturi & Blondel 2017), differentiable with respect to ``cost``.

    R_ij = cost_ij + softmin_γ(R_{i-1,j-1}, R_{i-1,j}, R_{i,j-1}),
    softmin_γ(a) = -γ log Σ_k exp(-a_k / γ); the value is R at the last valid cell.
    As γ → 0 it tends to the exact DTW cost, from below: R_γ ≥ DTW - γ log(3) · (Tx + Ty).

    The programme runs in float64 whatever the input dtype, so gradients are exact at small γ.

    Args:
        cost: (B, Tx, Ty) tensor (or (Tx, Ty)).
        gamma: smoothing γ > 0.
        x_lengths, y_lengths: (B,) valid lengths, default the full sizes.
        normalize: divide each value by x_lengths + y_lengths.

    Returns:
        (B,) values (a scalar tensor for a 2-D cost), dtype and device of ``cost``.
    """
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    single = cost.dim() == 2
    if single:
        cost = cost.unsqueeze(0)
    if cost.dim() != 3:
        raise ValueError(f"cost must have shape (B, Tx, Ty), got {tuple(cost.shape)}")
    B, Tx, Ty = cost.shape
    nx = _lengths(x_lengths, B, Tx, "x_lengths")
    ny = _lengths(y_lengths, B, Ty, "y_lengths")
    values = _SoftDTW.apply(cost, nx, ny, float(gamma))
    if normalize:
        values = values / torch.as_tensor(nx + ny, dtype=values.dtype, device=values.device)
    return values[0] if single else values


def soft_dtw_divergence(
    x: torch.Tensor,
    y: torch.Tensor,
    gamma: float = 0.1,
    x_lengths=None,
    y_lengths=None,
    normalize: bool = False,
) -> torch.Tensor:
    """Soft-DTW divergence SDTW(x, y) - ½ (SDTW(x, x) + SDTW(y, y)) on squared Euclidean costs.

    Unlike soft-DTW itself it is 0 for x = y and ≥ 0 (Blondel et al. 2021).

    Args:
        x: (B, Tx, D), y: (B, Ty, D).
        gamma, x_lengths, y_lengths, normalize: as for :func:`soft_dtw`.

    Returns:
        (B,) values.
    """
    B, Tx, _ = x.shape
    Ty = y.shape[1]
    nx = _lengths(x_lengths, B, Tx, "x_lengths")
    ny = _lengths(y_lengths, B, Ty, "y_lengths")
    xy = soft_dtw(pairwise_sqeuclidean(x, y), gamma, nx, ny, normalize)
    xx = soft_dtw(pairwise_sqeuclidean(x, x), gamma, nx, nx, normalize)
    yy = soft_dtw(pairwise_sqeuclidean(y, y), gamma, ny, ny, normalize)
    return xy - 0.5 * (xx + yy)
