"""Augmentation of a batch of frames with parameters drawn **per frame**, in a few batched ops.

The training views of LRProp share one parameter set per view (:mod:`lrprop.data.augment`);
the backbone's time-contrastive pretraining (:mod:`lrprop.training.pretrain`) instead augments every
frame on its own, so that two frames can only be matched by what they show. torchvision's v2
transforms draw one parameter set per call, and a call per frame costs about a millisecond on a
CPU; here the whole batch is cropped, flipped and resized in one ``grid_sample`` and jittered
with broadcast arithmetic. The parameters follow METHOD.md §1 (random resized crop, flip,
colour jitter of brightness, contrast and saturation, grayscale, Gaussian blur); hue jitter is
left out.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lrprop.data.augment import (
    BLUR_P,
    BLUR_SIGMA,
    CROP_RATIO,
    CROP_SCALE,
    FLIP_P,
    GRAYSCALE_P,
    IMAGENET_MEAN,
    IMAGENET_STD,
    JITTER,
    JITTER_P,
    blur_kernel_size,
)

__all__ = ["augment_frames"]

_LUMA = (0.299, 0.587, 0.114)


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def _crop_flip_resize(x: torch.Tensor, size: int, scale, ratio, flip_p: float, g: torch.Generator) -> torch.Tensor:
    """A random crop of each image (area share ``scale``, aspect ``ratio``), flipped with
    probability ``flip_p``, resized to (size, size): one affine grid per image."""
    N = x.shape[0]
    area = _uniform(N, *scale, g)
    log_r = _uniform(N, math.log(ratio[0]), math.log(ratio[1]), g)
    aspect = log_r.exp()
    w = (area * aspect).sqrt().clamp(max=1.0)  # crop width and height as shares of the image
    h = (area / aspect).sqrt().clamp(max=1.0)
    cx = (torch.rand(N, generator=g) * 2 - 1) * (1 - w)  # crop centre in [-1, 1] grid units
    cy = (torch.rand(N, generator=g) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(N, generator=g) < flip_p, -1.0, 1.0)
    theta = torch.zeros(N, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta.to(x.device), [N, 3, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    luma = torch.tensor(_LUMA, device=x.device).view(1, 3, 1, 1)
    return (x * luma).sum(1, keepdim=True)


def _colour(x: torch.Tensor, jitter_p: float, strength, grayscale_p: float, g: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation factors in [1 - s, 1 + s] (applied with probability
    ``jitter_p``), then grayscale with probability ``grayscale_p``; x in [0, 1]."""
    N = x.shape[0]
    on = (torch.rand(N, generator=g) < jitter_p).float()
    b, c, s = strength[:3]
    factors = [1 + on * _uniform(N, -k, k, g) for k in (b, c, s)]
    fb, fc, fs = (f.view(N, 1, 1, 1).to(x.device) for f in factors)
    x = (x * fb).clamp(0, 1)
    mean = _gray(x).mean(dim=(-2, -1), keepdim=True)
    x = ((x - mean) * fc + mean).clamp(0, 1)
    gray = _gray(x)
    x = ((x - gray) * fs + gray).clamp(0, 1)
    to_gray = (torch.rand(N, generator=g) < grayscale_p).view(N, 1, 1, 1).to(x.device)
    return torch.where(to_gray, _gray(x).expand_as(x), x)


def _blur(x: torch.Tensor, blur_p: float, sigma_range, g: torch.Generator) -> torch.Tensor:
    """A Gaussian blur of σ ~ U(sigma_range) on a share ``blur_p`` of the images: one grouped
    separable convolution with a kernel per image (σ = 0 keeps an image as it is)."""
    N, C, H, W = x.shape
    k = blur_kernel_size(H)
    sigma = _uniform(N, *sigma_range, g) * (torch.rand(N, generator=g) < blur_p).float()
    offsets = torch.arange(k, dtype=torch.float32) - k // 2
    kernel = torch.exp(-offsets[None, :] ** 2 / (2 * sigma[:, None].clamp(min=1e-6) ** 2))
    kernel = torch.where(sigma[:, None] > 0, kernel, (offsets == 0).float()[None, :])
    kernel = (kernel / kernel.sum(-1, keepdim=True)).repeat_interleave(C, 0).to(x.device, x.dtype)  # (N·C, k)
    flat = F.pad(x.reshape(1, N * C, H, W), (k // 2, k // 2, k // 2, k // 2), mode="reflect")
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=N * C)
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=N * C)
    return flat.view(N, C, H, W)


def augment_frames(
    frames: torch.Tensor,
    image_size: int,
    generator: torch.Generator,
    *,
    crop_scale: tuple[float, float] = CROP_SCALE,
    crop_ratio: tuple[float, float] = CROP_RATIO,
    flip_p: float = FLIP_P,
    jitter_p: float = JITTER_P,
    jitter: tuple[float, float, float, float] = JITTER,
    grayscale_p: float = GRAYSCALE_P,
    blur_p: float = BLUR_P,
    blur_sigma: tuple[float, float] = BLUR_SIGMA,
) -> torch.Tensor:
    """Augment each frame with its own random parameters, then normalise (ImageNet statistics).

    Args:
        frames: (N, 3, H, W) uint8 images, on any device.
        image_size: the output side S.
        generator: a CPU generator for every parameter, so a batch is reproducible.
        jitter: (brightness, contrast, saturation, hue) strengths; hue is not applied.

    Returns:
        (N, 3, S, S) float32, normalised.
    """
    x = frames.float() / 255.0
    x = _crop_flip_resize(x, image_size, crop_scale, crop_ratio, flip_p, generator)
    x = _colour(x, jitter_p, jitter, grayscale_p, generator)
    x = _blur(x, blur_p, blur_sigma, generator)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
