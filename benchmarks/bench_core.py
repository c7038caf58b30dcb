"""Time the core: the dtw functions at B=2, T=240, D=128, and one training step of the smoke config.

    .venv/bin/python benchmarks/bench_core.py [--repeats 20]

Peers measured in the same run: tslearn (benchmark-only dependency: pip install -e '.[bench]')
for DTW paths and soft-DTW forward + backward; the model's own forward + backward for the
training step (so the ratio is what the losses and DTW add). Prints a markdown table; the latest
figures live in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import torch
from timing import timeit

from lrprop.config import load_config
from lrprop.core import dtw
from lrprop.data.generator import synthetic_videos
from lrprop.data.source import InMemoryVideos
from lrprop.data.views import EpochBatchSampler
from lrprop.training.train import build_loss, build_model, make_loader, train_step

REPO = Path(__file__).resolve().parents[1]


def dtw_rows(repeats: int, B: int = 2, T: int = 240, D: int = 128) -> list[tuple]:
    from tslearn.metrics import SoftDTWLossPyTorch, dtw_path_from_metric

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, D, generator=gen)
    y = torch.randn(B, T, D, generator=gen)
    cost = dtw.pairwise_sqeuclidean(x, y)
    cost_np = cost.double().numpy()
    rows = []

    naive = lambda: ((x[:, :, None, :] - y[:, None, :, :]) ** 2).sum(-1)  # noqa: E731
    rows.append(
        (
            "pairwise_sqeuclidean",
            "(B,T,T,D) expansion",
            timeit(lambda: dtw.pairwise_sqeuclidean(x, y), repeats),
            timeit(naive, repeats),
        )
    )

    ours_path = lambda: dtw.dtw_path(cost_np)  # noqa: E731
    peer_path = lambda: [dtw_path_from_metric(cost_np[b], metric="precomputed") for b in range(B)]  # noqa: E731
    rows.append(("dtw_path", "tslearn dtw_path_from_metric", timeit(ours_path, repeats), timeit(peer_path, repeats)))

    def ours_sdtw():
        xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
        dtw.soft_dtw(dtw.pairwise_sqeuclidean(xr, yr), 0.1).sum().backward()

    peer_loss = SoftDTWLossPyTorch(gamma=0.1)

    def peer_sdtw():
        xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
        peer_loss(xr, yr).sum().backward()

    rows.append(("soft_dtw fwd+bwd", "tslearn SoftDTWLossPyTorch", timeit(ours_sdtw, repeats), timeit(peer_sdtw, repeats)))
    return rows


def train_step_rows(repeats: int) -> list[tuple]:
    config = load_config(REPO / "configs" / "smoke.yaml")
    source = InMemoryVideos(synthetic_videos(0, 4, size=config.synthetic.frame_size))
    sampler = EpochBatchSampler(len(source), config.data.videos_per_step)
    batch = next(iter(make_loader(config, source, sampler, pin_memory=False)))
    model = build_model(config).train()
    loss_fn = build_loss(config.loss)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    frames, mask, timestamps = batch["frames"], batch["mask"], batch["timestamps"]

    def step(with_loss: bool):
        if with_loss:  # the training loop's own step (lrprop.training.train.train_step)
            train_step(model, loss_fn, optimizer, params, frames, mask, timestamps, grad_clip=config.optim.grad_clip)
            return
        z, h = model(frames.flatten(0, 1), mask.flatten(0, 1))
        optimizer.zero_grad()
        (z.sum() + h.sum()).backward()
        optimizer.step()

    return [
        (
            "training step (smoke config)",
            "model fwd+bwd alone",
            timeit(lambda: step(True), repeats),
            timeit(lambda: step(False), repeats),
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, numpy {np.__version__}")
    print("| what | ours (ms) | peer | peer (ms) | peer / ours |")
    print("|---|---:|---|---:|---:|")
    for name, peer, ours, theirs in dtw_rows(args.repeats) + train_step_rows(args.repeats):
        print(f"| {name} | {ours:.2f} | {peer} | {theirs:.2f} | {theirs / ours:.2f} |")


if __name__ == "__main__":
    main()
