"""The DTW kernels against the public peers, at the sizes of a training step.

    .venv/bin/python benchmarks/bench_dtw.py [--repeats 20]

Peers (benchmark-only dependencies: pip install -e '.[bench]'), measured in the same run:

- soft-DTW forward + backward, from embeddings (B, T, 128) to their gradient, γ = 0.1
  (the best of 3 interleaved rounds of 20-repeat medians):
  pysdtw (numba, the fastest public CPU soft-DTW) and tslearn's SoftDTWLossPyTorch; both
  round their DP results to float32. The error columns are the largest gradient error
  relative to the largest gradient entry, on float64 inputs (so only each programme's own
  precision shows), against a float64 oracle: tslearn's NumPy ``SoftDTW`` on the cost
  matrix, chained to the embeddings in closed form, ∂/∂x_i = Σ_j E_ij · 2 (x_i - y_j).
- exact DTW paths per pair, from the embeddings: tslearn ``dtw_path`` and dtaidistance
  ``dtw_ndim.warping_path`` (C), one pair at a time; ours is one batched call over B pairs.

On a machine with a CUDA device, a third table times the GPU path (our Triton kernels against
pysdtw's CUDA kernel, which stops at 1024 frames). Prints the markdown tables; the latest
figures live in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np
import torch
from timing import timeit

from lrprop.core import dtw

GAMMA = 0.1
DIM = 128
SIZES = [(2, 80), (2, 240), (16, 80), (16, 240)]
ROUNDS = 3


def embeddings(B: int, T: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Two batches of L2-normalised random walks, like a trained encoder's output."""
    gen = torch.Generator().manual_seed(B * 1000 + T)
    x = torch.randn(B, T, DIM, generator=gen).cumsum(1)
    y = torch.randn(B, T, DIM, generator=gen).cumsum(1)
    x, y = (torch.nn.functional.normalize(t, dim=-1).to(dtype) for t in (x, y))
    return x, y


def soft_dtw_candidates():
    """name -> loss(x, y) giving (B,) values, each differentiable in x."""
    import pysdtw
    from tslearn.metrics import SoftDTWLossPyTorch

    peer = pysdtw.SoftDTW(gamma=GAMMA, use_cuda=False)
    tslearn_loss = SoftDTWLossPyTorch(gamma=GAMMA)
    return {
        "ours": lambda x, y: dtw.soft_dtw(dtw.pairwise_sqeuclidean(x, y), GAMMA),
        "pysdtw": lambda x, y: peer(x, y),
        "tslearn": lambda x, y: tslearn_loss(x, y),
    }


def grad_of(loss, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    xr = x.clone().requires_grad_()
    loss(xr, y).sum().backward()
    return xr.grad


def float64_gradient(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∂ Σ_b soft-DTW(x_b, y_b) / ∂x from tslearn's float64 NumPy soft-DTW and the chain rule."""
    from scipy.spatial.distance import cdist
    from tslearn.metrics import SoftDTW

    grads = []
    for xb, yb in zip(x.numpy(), y.numpy(), strict=True):
        sdtw = SoftDTW(cdist(xb, yb, "sqeuclidean"), gamma=GAMMA)
        sdtw.compute()
        E = sdtw.grad()  # (T, T) expected alignment
        grads.append(2.0 * (E.sum(1)[:, None] * xb - E @ yb))
    return torch.from_numpy(np.stack(grads))


def soft_dtw_row(B: int, T: int, candidates: dict, repeats: int) -> dict:
    x, y = embeddings(B, T)
    # Rounds interleave the candidates and the best round's median counts: this VM's speed
    # drifts by 10-20 % within a minute, which would otherwise favour whoever ran in a fast spell.
    rounds = [{name: timeit(lambda f=f: grad_of(f, x, y), repeats) for name, f in candidates.items()} for _ in range(ROUNDS)]
    times = {name: min(r[name] for r in rounds) for name in candidates}
    x64, y64 = embeddings(B, T, torch.float64)
    reference = float64_gradient(x64, y64)
    scale = reference.abs().max().item()
    errors = {name: (grad_of(f, x64, y64) - reference).abs().max().item() / scale for name, f in candidates.items()}
    return {"B": B, "T": T, **{f"{k}_ms": v for k, v in times.items()}, **{f"{k}_err": v for k, v in errors.items()}}


def path_row(B: int, T: int, repeats: int) -> dict:
    from dtaidistance import dtw_ndim
    from tslearn.metrics import dtw_path as tslearn_path

    x, y = embeddings(B, T)
    xn, yn = x.double().numpy(), y.double().numpy()
    few = max(3, repeats // 4)  # the peers are slow; their medians settle sooner
    ours = timeit(lambda: dtw.dtw_path(dtw.pairwise_sqeuclidean(x, y)), repeats) / B
    ts = timeit(lambda: [tslearn_path(xn[b], yn[b]) for b in range(B)], few) / B
    dd = timeit(lambda: [dtw_ndim.warping_path(xn[b], yn[b], use_c=True) for b in range(B)], few) / B
    return {"B": B, "T": T, "ours_ms": ours, "tslearn_ms": ts, "dtaidistance_ms": dd}


GPU_SIZES = [(2, 80), (2, 240), (16, 240), (64, 512), (16, 2048)]


def gpu_row(B: int, T: int, repeats: int) -> dict:
    """Soft-DTW forward + backward on the GPU: our Triton kernels against pysdtw's CUDA kernel."""
    import pysdtw

    def synced(fn):
        def run():
            fn()
            torch.cuda.synchronize()

        return run

    x, y = (t.cuda() for t in embeddings(B, T))
    ours = timeit(synced(lambda: grad_of(lambda a, b: dtw.soft_dtw(dtw.pairwise_sqeuclidean(a, b), GAMMA), x, y)), repeats)
    peer_ms = float("nan")
    if T <= 1024:  # pysdtw's kernel has one thread per row, at most 1024
        peer = pysdtw.SoftDTW(gamma=GAMMA, use_cuda=True)
        peer_ms = timeit(synced(lambda: grad_of(peer, x, y)), repeats)
    return {"B": B, "T": T, "ours_ms": ours, "pysdtw_ms": peer_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    import numba

    machine = platform.processor() or platform.machine()
    print(
        f"machine: {machine}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
        f"{numba.get_num_threads()} numba threads; torch {torch.__version__}, numba {numba.__version__}"
    )
    candidates = soft_dtw_candidates()
    print()
    print(f"Soft-DTW forward + backward from embeddings (D={DIM}, γ={GAMMA}), ms; error: max |Δgrad| / max |grad|")
    print()
    print("| B | T | ours | pysdtw | ours / pysdtw | tslearn | ours / tslearn | error ours | error pysdtw | error tslearn |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in (soft_dtw_row(B, T, candidates, args.repeats) for B, T in SIZES):
        print(
            f"| {r['B']} | {r['T']} | {r['ours_ms']:.2f} | {r['pysdtw_ms']:.2f} | {r['ours_ms'] / r['pysdtw_ms']:.2f} "
            f"| {r['tslearn_ms']:.2f} | {r['ours_ms'] / r['tslearn_ms']:.3f} | {r['ours_err']:.1e} | {r['pysdtw_err']:.1e} "
            f"| {r['tslearn_err']:.1e} |"
        )
    print()
    print(f"Exact DTW path from embeddings (D={DIM}), ms per pair")
    print()
    print("| B | T | ours | tslearn | tslearn / ours | dtaidistance | dtaidistance / ours |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in (path_row(B, T, args.repeats) for B, T in SIZES):
        print(
            f"| {r['B']} | {r['T']} | {r['ours_ms']:.3f} | {r['tslearn_ms']:.3f} | {r['tslearn_ms'] / r['ours_ms']:.1f} "
            f"| {r['dtaidistance_ms']:.3f} | {r['dtaidistance_ms'] / r['ours_ms']:.1f} |"
        )

    if not torch.cuda.is_available():
        print("\nGPU rows: no CUDA device here.")
        return
    print()
    print(f"Soft-DTW forward + backward on {torch.cuda.get_device_name()} (D={DIM}, γ={GAMMA}), ms")
    print()
    print("| B | T | ours (Triton) | pysdtw (CUDA) | ours / pysdtw |")
    print("|---:|---:|---:|---:|---:|")
    for r in (gpu_row(B, T, args.repeats) for B, T in GPU_SIZES):
        print(f"| {r['B']} | {r['T']} | {r['ours_ms']:.3f} | {r['pysdtw_ms']:.3f} | {r['ours_ms'] / r['pysdtw_ms']:.2f} |")


if __name__ == "__main__":
    main()
