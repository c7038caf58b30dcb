"""Frames per second of the whole training step against the backbone's forward + backward alone.

    .venv/bin/python benchmarks/bench_train_step.py --config configs/pennaction.yaml   # on a GPU
    .venv/bin/python benchmarks/bench_train_step.py --config configs/smoke.yaml --steps 10  # CPU check

The step is what :func:`lrprop.train.train` does per batch: views from the DataLoader
(``data.num_workers`` workers decoding and augmenting), the copy to the device, the encoder
under bf16 autocast on CUDA, the loss (DTW paths and soft-DTW), backward, clipping and Adam.
The peer, measured in the same run, is the backbone alone (ResNet-50 in the paper's configs)
doing forward + backward on as many frames of the same size: the issue's goal is a step at
>= 70 % of its frames/s. The videos are generated in memory (no Parquet, no pretrained
weights: random ones), so decoding is cheaper than real JPEG; model and shapes are the
config's. ``pretrained`` is ignored here.
"""

from __future__ import annotations

import argparse
import time

import torch

from lrprop.config import load_config
from lrprop.data.source import InMemoryVideos
from lrprop.data.synthetic import synthetic_videos
from lrprop.data.views import EpochBatchSampler
from lrprop.train import batch_frames, build_loss, build_model, make_loader, resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--videos", type=int, default=32, help="generated videos the loader draws from")
    args = parser.parse_args()
    config = load_config(args.config, [*args.set, "model.pretrained=null"])
    device = resolve_device(config.train.device)
    use_bf16 = device.type == "cuda" and config.optim.bf16

    source = InMemoryVideos(synthetic_videos(0, args.videos, size=config.synthetic.frame_size))
    sampler = EpochBatchSampler(len(source), config.data.videos_per_step, seed=0)
    loader = make_loader(config, source, sampler, pin_memory=device.type == "cuda")
    model = build_model(config).to(device).train()
    if device.type == "cuda" and config.train.channels_last:
        model.use_channels_last()
    loss_fn = build_loss(config.loss)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-4)

    def batches():
        epoch = 0
        while True:
            sampler.set_position(epoch)
            yield from loader
            epoch += 1

    def step(batch) -> int:
        frames = batch_frames(batch, config, device)  # (B, V, T, 3, S, S)
        mask, timestamps = batch["mask"].to(device), batch["timestamps"].to(device)
        B, V, T = mask.shape
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            z, h = model(frames.flatten(0, 1), mask.flatten(0, 1))
        total = loss_fn(z.float().view(B, V, T, -1), h.float().view(B, V, T, -1), mask, timestamps)["total"]
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
        optimizer.step()
        return B * V * T

    stream = batches()
    for _ in range(args.warmup):
        step(next(stream))
    _sync(device)
    started, frames = time.perf_counter(), 0
    for _ in range(args.steps):
        frames += step(next(stream))
    _sync(device)
    step_fps = frames / (time.perf_counter() - started)

    # The peer: the backbone alone, forward + backward, on a batch of the same frames.
    per_step = frames // args.steps
    size = config.data.image_size
    images = torch.randn(per_step, 3, size, size, device=device)

    def backbone_step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = model.backbone(images)
        optimizer.zero_grad(set_to_none=True)
        out.float().mean().backward()

    for _ in range(args.warmup):
        backbone_step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        backbone_step()
    _sync(device)
    backbone_fps = per_step * args.steps / (time.perf_counter() - started)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; config {args.config}; {per_step} frames a step ({config.model.backbone}, {size}x{size})")
    print("| what | frames/s | of the backbone alone |")
    print("|---|---:|---:|")
    print(f"| training step (loader, encoder, loss, backward, Adam) | {step_fps:.1f} | {step_fps / backbone_fps:.0%} |")
    print(f"| backbone forward + backward alone | {backbone_fps:.1f} | 100% |")


if __name__ == "__main__":
    main()
