"""Time-contrastive pretraining of the backbone on one class's own frames, before LRProp.

Why: from random weights LRProp's objective is minimised by the positional encoding alone. Both
views of a video start near its first frame and span it, so a frame's time stamp is about its
slot divided by the view's valid length, which the transformer reads from the padding mask;
L_same, L_prop and soft-DTW are then all satisfied by a frame counter, and the backbone is never
made to look at the frames (issue 11; docs/results.md). The paper starts from BYOL-pretrained
ResNet-50 features, which see the content from the first step; a user of their own videos has
no such weights for their domain.

What: the backbone (with a throw-away projection head, no transformer, no positions) learns to
tell the frames of one video apart. Each step draws ``videos_per_step`` videos and
``frames_per_video`` anchor frames of each; each anchor's positive is a frame at most
``max_offset`` frames away; every frame is augmented on its own
(:func:`lrprop.data.frame_augment.augment_frames`); the loss is L_same's KL to a Gaussian prior
over time stamps, with candidates from the same video only
(:func:`lrprop.core.losses.time_contrastive_loss`). Frames of one video share background, colours and
framing, so only what changes within it, the action, separates them.

Instance discrimination over all frames (SimCLR) was measured here to learn which video a frame
comes from rather than its phase (a linear probe at 25 % on 5 phases), which is why this is not
lightly's SimCLR or BYOL: their negatives (or targets) span videos.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrprop.config import PretrainConfig
from lrprop.core.losses import cycle_back_loss, time_contrastive_loss
from lrprop.core.model import pooled_features, pooled_width
from lrprop.data.frame_augment import augment_frames
from lrprop.data.source import VideoSource

__all__ = ["PretrainResult", "pretrain_backbone", "draw_frame_pairs"]

log = logging.getLogger(__name__)


@dataclass
class PretrainResult:
    """The loss of every step, and the frames per second the pretraining ran at."""

    losses: list[float]
    frames_per_s: float


def draw_frame_pairs(length: int, count: int, max_offset: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` anchor frames of a video of ``length`` frames (distinct when the video has that
    many, sorted) and a positive for each, at most ``max_offset`` frames from it (in the video).

    Returns:
        anchors (count,) int64, positives (count,) int64.
    """
    anchors = np.sort(rng.choice(length, size=count, replace=count > length))
    positives = np.clip(anchors + rng.integers(-max_offset, max_offset + 1, size=count), 0, length - 1)
    return anchors.astype(np.int64), positives.astype(np.int64)


def pretrain_backbone(
    backbone: nn.Module,
    source: VideoSource,
    settings: PretrainConfig,
    *,
    image_size: int,
    seed: int,
    device: torch.device,
    log_every: int = 100,
    on_step: Callable[[int, float], None] | None = None,
    pooling: str = "max",
) -> PretrainResult:
    """Train ``backbone`` in place for ``settings.steps`` steps on the frames of ``source``.

    Deterministic for a seed on the CPU: frames come from a NumPy generator and augmentation from
    a torch generator, both seeded by ``seed``; the projection head is built under a forked
    global RNG, so the training that follows draws the same random numbers as without this.

    Args:
        backbone: maps (N, 3, S, S) to (N, F, h, w) and has ``out_channels``; on ``device``.
        source: the class's training videos (labels are not read).
        image_size: the side S of the augmented frames (``data.image_size``).
        on_step: called with (steps done, the step's loss) after each step (a progress display).
        pooling: how the backbone's map is pooled (``model.pooling``; :func:`lrprop.core.model.pooled_features`).

    Returns:
        the per-step losses and the throughput.
    """
    rng = np.random.default_rng([seed, 0x7C0])
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Sequential(
            nn.Linear(pooled_width(backbone, pooling), 512),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Linear(512, settings.projection_dim),
        ).to(device)
    params = [p for p in backbone.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=settings.lr, weight_decay=1e-5)
    V = min(settings.videos_per_step, len(source))
    M = settings.frames_per_video
    use_bf16 = device.type == "cuda"
    backbone.train()
    head.train()
    losses: list[float] = []
    started = time.perf_counter()
    for step in range(settings.steps):
        videos = rng.choice(len(source), size=V, replace=False)
        images, t_anchor, t_positive, progress = [], [], [], []
        for v in videos:
            length = source.num_frames(int(v))
            anchors, positives = draw_frame_pairs(length, M, settings.max_offset, rng)
            progress.append(anchors / max(length - 1, 1))
            frames = torch.from_numpy(source.read_frames(int(v), np.concatenate([anchors, positives]))).permute(0, 3, 1, 2)
            images.append(augment_frames(frames.to(device), image_size, generator))  # (2M, 3, S, S)
            t_anchor.append(anchors)
            t_positive.append(positives)
        batch = torch.stack(images)  # (V, 2M, 3, S, S)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            feats = pooled_features(backbone, batch.flatten(0, 1), pooling)  # as FrameEncoder pools them
        h = F.normalize(head(feats.float()), dim=-1).view(V, 2 * M, -1)
        ta = torch.from_numpy(np.stack(t_anchor)).to(device)
        tp = torch.from_numpy(np.stack(t_positive)).to(device)
        loss = time_contrastive_loss(h[:, :M], h[:, M:], ta, tp, tau=settings.tau, sigma2=settings.sigma2)
        if settings.cycle_weight > 0:
            p = torch.from_numpy(np.stack(progress)).to(device)
            loss = loss + settings.cycle_weight * cycle_back_loss(h[:, :M], p, tau=settings.tau)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretraining loss is {loss.item()} at step {step} (videos {videos.tolist()})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step + 1, losses[-1])
        if log_every and (step + 1) % log_every == 0:
            rate = (step + 1) * V * 2 * M / (time.perf_counter() - started)
            log.info("pretrain step %d/%d loss %.4f (%.0f frames/s)", step + 1, settings.steps, losses[-1], rate)
    elapsed = time.perf_counter() - started
    return PretrainResult(losses=losses, frames_per_s=settings.steps * V * 2 * M / max(elapsed, 1e-9))
