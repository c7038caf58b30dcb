"""Frames per second of the whole training step against the backbone's forward + backward alone.

    .venv/bin/python benchmarks/bench_train_step.py --config configs/pennaction.yaml   # on a GPU
    .venv/bin/python benchmarks/bench_train_step.py --config configs/smoke.yaml --steps 10  # CPU check

The step is what :func:`lrprop.training.train.train` does per batch: views from the DataLoader
(``data.loader_workers`` worker processes decoding and augmenting), the copy to the device, the encoder
under bf16 autocast on CUDA, the loss (DTW paths and soft-DTW), backward, clipping and Adam.
The peer, measured in the same run, is the backbone alone (ResNet-50 in the paper's configs)
doing forward + backward on as many frames of the same size: the issue's goal is a step at
>= 70 % of its frames/s. Two more rows time the default route's stages on the same frames: the
backbone's time-contrastive pretraining step (:mod:`lrprop.training.pretrain`, augmentation per frame
included; frames/s over its anchors and positives), then the training step with the backbone
frozen (``pretrain.freeze_backbone``), which skips the backbone's backward pass. The videos are
generated (random weights, no pretrained backbone: ``pretrained`` is ignored), at
``--frame-size``; model and shapes are the config's. By default
they are decoded arrays in memory; with ``--jpeg`` they are ingested first into a temporary
Parquet data set and read back as JPEG frames, as a real run reads them, so that decoding
costs what it costs (compare ``--set data.decode_on=device --set data.augment_on=device``).

    .venv/bin/python benchmarks/bench_train_step.py --config configs/pennaction.yaml --jpeg --frame-size 480
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace

import torch

from lrprop.config import SyntheticConfig, load_config
from lrprop.data.generator import synthetic_videos
from lrprop.data.parquet import ParquetVideos
from lrprop.data.source import InMemoryVideos
from lrprop.data.views import EpochBatchSampler
from lrprop.ingest.generic import read_generic
from lrprop.ingest.synthetic import write_synthetic
from lrprop.ingest.writer import ingest
from lrprop.training.pretrain import pretrain_backbone
from lrprop.training.train import batch_frames, build_loss, build_model, make_loader, resolve_device, train_step, view_transform


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def jpeg_videos(count: int, frame_size: int, root: str) -> ParquetVideos:
    """``count`` generated videos ingested into a Parquet data set under ``root``, read back."""
    synthetic = SyntheticConfig(num_actions=1, train_videos=count, val_videos=0, frame_size=frame_size)
    write_synthetic(f"{root}/raw", synthetic, threads=os.cpu_count() or 1)
    ingest(
        read_generic(f"{root}/raw"),
        store_uri=f"{root}/store",
        dataset="bench",
        source="benchmarks/bench_train_step.py",
        frame_size=frame_size,
        progress=False,
    )
    return ParquetVideos(f"{root}/store", "bench", split="train")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--videos", type=int, default=32, help="generated videos the loader draws from")
    parser.add_argument("--frame-size", type=int, default=None, help="side of the generated frames (default: the config's)")
    parser.add_argument("--jpeg", action="store_true", help="read JPEG frames from an ingested Parquet data set")
    args = parser.parse_args()
    config = load_config(args.config, [*args.set, "model.pretrained=null"])
    device = resolve_device(config.train.device)
    use_bf16 = device.type == "cuda" and config.optim.bf16

    frame_size = args.frame_size or config.synthetic.frame_size
    scratch = tempfile.TemporaryDirectory(prefix="bench_train_step_")
    if args.jpeg:
        source = jpeg_videos(args.videos, frame_size, scratch.name)
    else:
        source = InMemoryVideos(synthetic_videos(0, args.videos, size=frame_size))
    sampler = EpochBatchSampler(len(source), config.data.videos_per_step, seed=0)
    loader = make_loader(config, source, sampler, pin_memory=device.type == "cuda")
    transform = view_transform(config)
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
        frames = batch_frames(batch, config, device, transform)  # (B, V, T, 3, S, S)
        mask, timestamps = batch["mask"].to(device), batch["timestamps"].to(device)
        train_step(
            model, loss_fn, optimizer, params, frames, mask, timestamps, grad_clip=config.optim.grad_clip, use_bf16=use_bf16
        )
        return mask.numel()

    stream = batches()

    def frames_per_s(run_step) -> float:
        for _ in range(args.warmup):
            run_step()
        _sync(device)
        started, frames = time.perf_counter(), 0
        for _ in range(args.steps):
            frames += run_step()
        _sync(device)
        return frames / (time.perf_counter() - started)

    step_fps = frames_per_s(lambda: step(next(stream)))

    # The peer: the backbone alone, forward + backward, on a batch of the same frames.
    per_step = int(next(stream)["mask"].numel())  # B videos x V views x T frames
    size = config.data.image_size
    images = torch.randn(per_step, 3, size, size, device=device)

    def backbone_step() -> int:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = model.backbone(images)
        optimizer.zero_grad(set_to_none=True)
        out.float().mean().backward()
        return per_step

    backbone_fps = frames_per_s(backbone_step)

    # The default route's two stages: the backbone's time-contrastive pretraining on the frames
    # (lrprop.training.pretrain, augmentation per frame included), then LRProp with it frozen.
    def pretrain(steps: int, seed: int) -> float:
        settings = replace(config.pretrain, steps=steps)
        done = pretrain_backbone(model.backbone, source, settings, image_size=size, seed=seed, device=device, log_every=0)
        return done.frames_per_s

    pretrain(args.warmup, seed=0)
    pretrain_fps = pretrain(args.steps, seed=1)
    model.freeze_backbone()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    frozen_fps = frames_per_s(lambda: step(next(stream)))
    pretrain_frames = config.pretrain.videos_per_step * 2 * config.pretrain.frames_per_video

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    frames_from = f"JPEG {frame_size}x{frame_size} from Parquet" if args.jpeg else f"arrays {frame_size}x{frame_size} in memory"
    d = config.data
    print(f"device: {name}; config {args.config}; {per_step} frames a step ({config.model.backbone}, {size}x{size})")
    print(f"frames: {frames_from}; {d.loader_workers} loader workers; augment on {d.augment_on}, decode on {d.decode_on}")
    print("| what | frames/s | of the backbone alone |")
    print("|---|---:|---:|")
    print(f"| training step (loader, encoder, loss, backward, Adam) | {step_fps:.1f} | {step_fps / backbone_fps:.0%} |")
    print(f"| backbone forward + backward alone | {backbone_fps:.1f} | 100% |")
    what = f"pretraining step ({pretrain_frames} frames: per-frame augmentation, backbone, head, Adam)"
    print(f"| {what} | {pretrain_fps:.1f} | {pretrain_fps / backbone_fps:.0%} |")
    what = "training step, backbone frozen (the default after pretraining)"
    print(f"| {what} | {frozen_fps:.1f} | {frozen_fps / backbone_fps:.0%} |")


if __name__ == "__main__":
    main()
