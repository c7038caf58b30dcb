"""Triton kernels behind :mod:`lrprop.core.dtw` on a GPU: soft-DTW forward and backward, DTW paths.

One program per pair walks the anti-diagonals of its table: the cells of a diagonal do not
depend on each other, so the program's threads compute a block of them at once, looping over
blocks when a diagonal is longer than ``BLOCK`` (no length limit), with a barrier between
diagonals. The programme is in float64, as on the CPU; per-pair lengths as everywhere.

The backward pass is Cuturi & Blondel's Algorithm 2 on the stored table R (three exp per
cell are cheap on a GPU, and R needs no more memory than the gradient itself).

Correctness is tested on the CPU with Triton's interpreter (``build_kernels(interpret=True)``);
timings need a GPU (benchmarks/bench_dtw.py).
"""

from __future__ import annotations

import functools

import torch

__all__ = ["available", "build_kernels", "dtw_paths", "soft_dtw"]

BLOCK = 256  # cells of a diagonal computed at once by one program


def available() -> bool:
    """Whether Triton can run here (it needs a CUDA device unless interpreting)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def build_kernels(interpret: bool = False):
    """The (soft-DTW forward, soft-DTW backward, DTW paths) kernels: compiled for the GPU, or run by Triton's interpreter on
    the CPU (as ``TRITON_INTERPRET=1`` would, for these kernels only)."""
    import triton

    if interpret:
        from triton.runtime.interpreter import InterpretedFunction

        return _define(InterpretedFunction)
    return _define(triton.jit)


def _define(jit):
    import triton.language as tl

    @jit
    def forward(cost_ptr, R_ptr, nx_ptr, ny_ptr, gamma, Tx, Ty, BLOCK: tl.constexpr):
        """R[b, i + 1, j + 1] = cost[b, i, j] + softmin_γ(R of (i-1, j-1), (i-1, j), (i, j-1))."""
        b = tl.program_id(0)
        n = tl.load(nx_ptr + b)
        m = tl.load(ny_ptr + b)
        cost = cost_ptr + b.to(tl.int64) * Tx * Ty
        R = R_ptr + b.to(tl.int64) * (Tx + 2) * (Ty + 2)
        W = Ty + 2
        inv_gamma = 1.0 / gamma
        for d in range(0, n + m - 1):
            lo = tl.maximum(d - m + 1, 0)
            hi = tl.minimum(n - 1, d)
            for start in range(lo, hi + 1, BLOCK):
                i = start + tl.arange(0, BLOCK)
                valid = i <= hi
                j = d - i
                a = tl.load(R + i * W + j, mask=valid, other=float("inf"))  # (i-1, j-1)
                up = tl.load(R + i * W + j + 1, mask=valid, other=float("inf"))  # (i-1, j)
                left = tl.load(R + (i + 1) * W + j, mask=valid, other=float("inf"))  # (i, j-1)
                low = tl.minimum(tl.minimum(a, up), left)
                total = tl.exp((low - a) * inv_gamma) + tl.exp((low - up) * inv_gamma) + tl.exp((low - left) * inv_gamma)
                c = tl.load(cost + i * Ty + j, mask=valid, other=0.0)
                tl.store(R + (i + 1) * W + j + 1, c + low - gamma * tl.log(total), mask=valid)
            tl.debug_barrier()  # this diagonal is read by the next two

    @jit
    def backward(cost_ptr, R_ptr, E_ptr, nx_ptr, ny_ptr, gamma, Tx, Ty, BLOCK: tl.constexpr):
        """E[b, i + 1, j + 1] = Σ_successors E_s · exp((R_s - R_ij - cost_s) / γ), last cell 1.

        R's row n + 1 and column m + 1 hold -inf, except R[n + 1, m + 1] = R[n, m], and
        E[n + 1, m + 1] = 1 (set by the caller), so the last valid cell gets E = 1.
        """
        b = tl.program_id(0)
        n = tl.load(nx_ptr + b)
        m = tl.load(ny_ptr + b)
        cost = cost_ptr + b.to(tl.int64) * Tx * Ty
        R = R_ptr + b.to(tl.int64) * (Tx + 2) * (Ty + 2)
        E = E_ptr + b.to(tl.int64) * (Tx + 2) * (Ty + 2)
        W = Ty + 2
        inv_gamma = 1.0 / gamma
        for t in range(0, n + m - 1):
            d = n + m - 2 - t  # diagonals from the last cell back
            lo = tl.maximum(d - m + 1, 0)
            hi = tl.minimum(n - 1, d)
            for start in range(lo, hi + 1, BLOCK):
                i = start + tl.arange(0, BLOCK)
                valid = i <= hi
                j = d - i
                r = tl.load(R + (i + 1) * W + j + 1, mask=valid, other=0.0)
                down_ok = valid & (i + 1 < n)
                right_ok = valid & (j + 1 < m)
                diag_ok = down_ok & (j + 1 < m)
                # Successors: ↓ (i+1, j), → (i, j+1), ↘ (i+1, j+1); beyond the block, cost 0.
                c_down = tl.load(cost + (i + 1) * Ty + j, mask=down_ok, other=0.0)
                c_right = tl.load(cost + i * Ty + j + 1, mask=right_ok, other=0.0)
                c_diag = tl.load(cost + (i + 1) * Ty + j + 1, mask=diag_ok, other=0.0)
                r_down = tl.load(R + (i + 2) * W + j + 1, mask=valid, other=float("-inf"))
                r_right = tl.load(R + (i + 1) * W + j + 2, mask=valid, other=float("-inf"))
                r_diag = tl.load(R + (i + 2) * W + j + 2, mask=valid, other=float("-inf"))
                e_down = tl.load(E + (i + 2) * W + j + 1, mask=valid, other=0.0)
                e_right = tl.load(E + (i + 1) * W + j + 2, mask=valid, other=0.0)
                e_diag = tl.load(E + (i + 2) * W + j + 2, mask=valid, other=0.0)
                e = (
                    e_down * tl.exp((r_down - r - c_down) * inv_gamma)
                    + e_right * tl.exp((r_right - r - c_right) * inv_gamma)
                    + e_diag * tl.exp((r_diag - r - c_diag) * inv_gamma)
                )
                tl.store(E + (i + 1) * W + j + 1, e, mask=valid)
            tl.debug_barrier()  # this diagonal is read by the previous two

    @jit
    def paths(cost_ptr, acc_ptr, path_ptr, count_ptr, nx_ptr, ny_ptr, Tx, Ty, BLOCK: tl.constexpr):
        """Exact DTW: acc[b, i + 1, j + 1] = cost[b, i, j] + min of its three predecessors, then
        the backtrack from the last cell (ties: ↘, then ↓, then →), written end first."""
        b = tl.program_id(0)
        n = tl.load(nx_ptr + b)
        m = tl.load(ny_ptr + b)
        cost = cost_ptr + b.to(tl.int64) * Tx * Ty
        acc = acc_ptr + b.to(tl.int64) * (Tx + 1) * (Ty + 1)
        path = path_ptr + b.to(tl.int64) * (Tx + Ty - 1) * 2
        W = Ty + 1
        for d in range(0, n + m - 1):
            lo = tl.maximum(d - m + 1, 0)
            hi = tl.minimum(n - 1, d)
            for start in range(lo, hi + 1, BLOCK):
                i = start + tl.arange(0, BLOCK)
                valid = i <= hi
                j = d - i
                a = tl.load(acc + i * W + j, mask=valid, other=float("inf"))
                up = tl.load(acc + i * W + j + 1, mask=valid, other=float("inf"))
                left = tl.load(acc + (i + 1) * W + j, mask=valid, other=float("inf"))
                c = tl.load(cost + i * Ty + j, mask=valid, other=0.0)
                tl.store(acc + (i + 1) * W + j + 1, c + tl.minimum(tl.minimum(a, up), left), mask=valid)
            tl.debug_barrier()
        # The backtrack is one walk: a scalar loop (1-based (i, j) into acc).
        i = n
        j = m
        k = n * 0  # an int32 from the start: it is carried through the loop
        while (i > 1) | (j > 1):
            tl.store(path + 2 * k, i - 1)
            tl.store(path + 2 * k + 1, j - 1)
            k += 1
            diag = tl.load(acc + (i - 1) * W + j - 1)
            up = tl.load(acc + (i - 1) * W + j)
            left = tl.load(acc + i * W + j - 1)
            # On the first row or column one move is left (and NaN compares false: → or ↓).
            go_diag = (i > 1) & (j > 1) & (diag <= up) & (diag <= left)
            go_up = (i > 1) & (go_diag == 0) & ((j == 1) | (up <= left))
            i = tl.where(go_diag | go_up, i - 1, i)
            j = tl.where(go_up, j, j - 1)
        tl.store(path + 2 * k, 0)
        tl.store(path + 2 * k + 1, 0)
        tl.store(count_ptr + b, k + 1)

    return forward, backward, paths


@functools.cache
def _compiled():
    return build_kernels(interpret=False)


def soft_dtw(
    cost: torch.Tensor, nx: torch.Tensor, ny: torch.Tensor, gamma: float, want_grad: bool, kernels=None, block: int = BLOCK
):
    """Soft-DTW of each pair and, when ``want_grad``, its gradient E = ∂value / ∂cost.

    Args:
        cost: (B, Tx, Ty) float64, on the kernels' device (CUDA, or the CPU when interpreting).
        nx, ny: (B,) int32 valid lengths on the same device.
        gamma: smoothing γ > 0.
        want_grad: also run the backward pass.
        kernels: from :func:`build_kernels` (default: compiled for the GPU).
        block: cells of a diagonal per step of a program (a power of two).

    Returns:
        values (B,) float64, and E (B, Tx, Ty) float64 (zero outside each pair's block) or None.
    """
    forward, backward, _ = kernels or _compiled()
    B, Tx, Ty = cost.shape
    cost = cost.contiguous()
    R = torch.full((B, Tx + 2, Ty + 2), float("inf"), dtype=torch.float64, device=cost.device)
    R[:, 0, 0] = 0.0
    forward[(B,)](cost, R, nx, ny, gamma, Tx, Ty, BLOCK=block)
    pairs = torch.arange(B, device=cost.device)
    nx64, ny64 = nx.long(), ny.long()
    values = R[pairs, nx64, ny64].clone()
    if not want_grad:
        return values, None
    rows = torch.arange(Tx + 2, device=cost.device)
    cols = torch.arange(Ty + 2, device=cost.device)
    beyond = (rows[None, :, None] == nx64[:, None, None] + 1) | (cols[None, None, :] == ny64[:, None, None] + 1)
    R.masked_fill_(beyond, float("-inf"))
    R[pairs, nx64 + 1, ny64 + 1] = values
    E = torch.zeros_like(R)
    E[pairs, nx64 + 1, ny64 + 1] = 1.0
    backward[(B,)](cost, R, E, nx, ny, gamma, Tx, Ty, BLOCK=block)
    E[pairs, nx64 + 1, ny64 + 1] = 0.0  # the seed lies inside the returned block when a pair is short
    return values, E[:, 1 : Tx + 1, 1 : Ty + 1].contiguous()


def dtw_paths(cost: torch.Tensor, nx: torch.Tensor, ny: torch.Tensor, kernels=None, block: int = BLOCK):
    """Exact DTW path of each pair.

    Args:
        cost: (B, Tx, Ty) float64 on the kernels' device; nx, ny: (B,) int32 valid lengths.

    Returns:
        paths: (B, Tx + Ty - 1, 2) int32, rows 0..K_b-1 the path of pair b from its last cell
            back to (0, 0) (end first); counts: (B,) int32 path lengths K_b; totals: (B,)
            float64 accumulated costs.
    """
    _, _, kernel = kernels or _compiled()
    B, Tx, Ty = cost.shape
    cost = cost.contiguous()
    acc = torch.full((B, Tx + 1, Ty + 1), float("inf"), dtype=torch.float64, device=cost.device)
    acc[:, 0, 0] = 0.0
    paths = torch.full((B, Tx + Ty - 1, 2), -1, dtype=torch.int32, device=cost.device)
    counts = torch.zeros(B, dtype=torch.int32, device=cost.device)
    kernel[(B,)](cost, acc, paths, counts, nx, ny, Tx, Ty, BLOCK=block)
    totals = acc[torch.arange(B, device=cost.device), nx.long(), ny.long()]
    return paths, counts, totals
