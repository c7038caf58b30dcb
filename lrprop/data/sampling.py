"""Temporal sampling of a training view (METHOD.md §1, after SCL).

A view of a video of L frames: draw a ratio r ~ U(r_min, r_max), block = ceil(r · L); draw
min(L, T) distinct indices uniformly from [0, block), sort them and pad to T with L. Indices
≥ L are padding: masked, and clamped to L - 1 for reading. Because the indices are sorted, the
valid frames are always a prefix of the view. The drawn indices are the view's time stamps t,
on which the same-video prior is built.
"""

from __future__ import annotations

import math

import torch

__all__ = ["random_warp", "sample_view"]

_MAX_REDRAWS = 100


def sample_view(
    length: int,
    frames_per_view: int,
    generator: torch.Generator,
    ratio_range: tuple[float, float] = (1.0, 1.5),
    min_valid: int = 2,
    window: tuple[float, float] = (1.0, 1.0),
    warp: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample one view of T = ``frames_per_view`` frames from a video of ``length`` frames.

    With ``window`` (lo, hi) below (1, 1), the view covers a random stretch of the video first:
    w = ceil(U(lo, hi) · L) frames from a uniform start, sampled as above as if they were the
    whole video; the time stamps stay frame indices of the video. Two views of a video then
    cover different stretches, so a frame's slot in its view no longer tells its time and
    only what the frames show can match them [choice; (1, 1), the whole video, is SCL's].

    With ``warp`` > 0 the drawn frames are re-timed by a random monotone map of the video (or
    of its window) onto itself (:func:`random_warp`, ``warp`` its strength): the view plays the
    action at changing speed, with near-pauses, and a frame's slot in the view no longer says
    when it happens, while its time stamp, on which the priors are built, stays the true one.
    Two views of a video are then a pair whose correspondence is known but not diagonal
    [choice; 0, no warp, is SCL's]. A slow stretch reads a frame more than once.

    A draw with fewer than ``min(min_valid, length, frames_per_view)`` valid frames is redrawn (it can happen when
    T is far below L and the block overhangs the video); after 100 tries r = 1 is used, which
    makes every index valid.

    Returns:
        read_indices (T,) int64 in [0, L-1], mask (T,) bool, timestamps (T,) int64.
    """
    if length < 1:
        raise ValueError(f"cannot sample a view of an empty video (length {length})")
    if tuple(window) != (1.0, 1.0):
        share = window[0] + (window[1] - window[0]) * torch.rand((), generator=generator).item()
        stretch = min(length, max(1, math.ceil(share * length)))
        start = int(torch.randint(0, length - stretch + 1, (), generator=generator))
        read, mask, timestamps = sample_view(stretch, frames_per_view, generator, ratio_range, min_valid, warp=warp)
        timestamps = torch.where(mask, timestamps + start, torch.full_like(timestamps, length))
        return read + start, mask, timestamps
    need = min(min_valid, length, frames_per_view)
    lo, hi = ratio_range
    for attempt in range(_MAX_REDRAWS + 1):
        r = 1.0 if attempt == _MAX_REDRAWS else lo + (hi - lo) * torch.rand((), generator=generator).item()
        block = max(length, math.ceil(r * length))
        count = min(length, frames_per_view)
        drawn = torch.randperm(block, generator=generator)[:count].sort().values
        if int((drawn < length).sum()) >= need:
            break
    if warp > 0 and length > 1:
        valid = drawn < length
        warped = random_warp(drawn[valid].double() / (length - 1), warp, generator)
        drawn = drawn.clone()
        drawn[valid] = (warped * (length - 1)).round().long()
    timestamps = torch.full((frames_per_view,), length, dtype=torch.int64)
    timestamps[:count] = drawn
    mask = timestamps < length
    return timestamps.clamp(max=length - 1), mask, timestamps


def random_warp(u: torch.Tensor, strength: float, generator: torch.Generator, segments: int = 4) -> torch.Tensor:
    """A random monotone map of [0, 1] onto itself, applied to ``u``: (n,) float -> (n,) float.

    The output time is cut into ``segments`` equal parts; part k advances the input by
    exp(strength · N(0, 1)), normalised so the advances sum to 1, and the map is linear within a
    part. So the map is increasing, fixes 0 and 1, and at strength s a part plays about e^±s
    times faster or slower than the median part (at s = 1, about one part in seven is a
    near-pause, under a third of the median pace). It maps the view's time to the video's:
    frame u of the view shows the video's moment w(u).
    """
    advances = torch.exp(strength * torch.randn(segments, generator=generator, dtype=torch.float64))
    knots = torch.cat([advances.new_zeros(1), advances.cumsum(0) / advances.sum()])  # (segments + 1,) input times
    x = u.clamp(0, 1) * segments
    k = x.floor().clamp(max=segments - 1).long()
    return knots[k] + (x - k) * (knots[k + 1] - knots[k])
