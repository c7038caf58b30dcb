"""Spatial augmentation of a view (METHOD.md §1): one set of random parameters per view.

torchvision's v2 transforms draw their parameters once per call and apply them to every image of
a (T, 3, H, W) batch, which is exactly "the same parameters for every frame of a view".
Randomness comes from torch's global generator: the view dataset seeds it per sample.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "blur_kernel_size", "train_transform", "eval_transform"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# METHOD.md §1's parameters, shared with the per-frame augmentation of lrprop.data.frame_augment.
CROP_SCALE = (0.8, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
FLIP_P = 0.5
JITTER_P = 0.8
JITTER = (0.8, 0.8, 0.8, 0.2)  # brightness, contrast, saturation, hue
GRAYSCALE_P = 0.2
BLUR_P = 0.5
BLUR_SIGMA = (0.1, 2.0)


def blur_kernel_size(image_size: int) -> int:
    """An odd kernel of about a tenth of the image (23 at 224, as in SimCLR/SCL)."""
    k = max(3, int(0.1 * image_size))
    return k if k % 2 else k + 1


def train_transform(
    image_size: int,
    *,
    crop_scale: tuple[float, float] = CROP_SCALE,
    crop_ratio: tuple[float, float] = CROP_RATIO,
    flip_p: float = FLIP_P,
    jitter_p: float = JITTER_P,
    jitter: tuple[float, float, float, float] = JITTER,
    grayscale_p: float = GRAYSCALE_P,
    blur_p: float = BLUR_P,
) -> v2.Compose:
    """(T, 3, H, W) uint8 -> (T, 3, image_size, image_size) float32, normalised."""
    b, c, s, h = jitter
    return v2.Compose(
        [
            v2.RandomResizedCrop(image_size, scale=crop_scale, ratio=crop_ratio, antialias=True),
            v2.RandomHorizontalFlip(flip_p),
            v2.RandomApply([v2.ColorJitter(b, c, s, h)], p=jitter_p),
            v2.RandomGrayscale(grayscale_p),
            v2.RandomApply([v2.GaussianBlur(blur_kernel_size(image_size), sigma=BLUR_SIGMA)], p=blur_p),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def eval_transform(image_size: int) -> v2.Compose:
    """(T, 3, H, W) uint8 -> (T, 3, image_size, image_size) float32: resize, centre crop, normalise."""
    return v2.Compose(
        [
            v2.Resize(image_size, antialias=True),
            v2.CenterCrop(image_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
