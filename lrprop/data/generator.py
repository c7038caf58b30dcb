"""Synthetic action videos with known phases, for demos and tests without the real data sets.

An action class is a figure (a body and an arm) that moves through a fixed sequence of key poses;
phase k is the motion from key pose k to key pose k + 1, so the label of a frame is its phase.
What varies per video, so that a frame index alone cannot solve alignment:
- the length (``length_range``) and the share of it each phase takes (Dirichlet), and a random
  easing within each phase (speed changes inside a phase);
- appearance: background colours and gradient, figure colour, scale and offset, noise level;
- a distractor square bouncing around, and camera jitter of a few pixels per frame.

Everything is drawn from ``numpy.random.Generator``s seeded by (seed, class, video), so a set is
reproducible and a class's key poses do not depend on how many videos are drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lrprop.data.source import Video

__all__ = [
    "ActionSpec",
    "action_spec",
    "phase_trajectory",
    "render_video",
    "synthetic_videos",
    "video_moments",
    "SYNTHETIC_ACTIONS",
]

SYNTHETIC_ACTIONS = ("reach", "swing", "hop", "spin", "wave", "lift", "push", "twist")


@dataclass(frozen=True)
class ActionSpec:
    """One synthetic action class.

    Attributes:
        name: class name.
        key_poses: (K + 1, 4) float, rows (x, y, arm angle, arm length) for K phases; x, y in
            [0, 1] image units, the angle in radians, the length in image units.
    """

    name: str
    key_poses: np.ndarray

    @property
    def num_phases(self) -> int:
        return len(self.key_poses) - 1


def action_spec(class_index: int, seed: int = 0) -> ActionSpec:
    """The key poses of class ``class_index``: 3–6 phases, consecutive poses clearly apart."""
    rng = np.random.default_rng([seed, class_index, 0xC1A55])
    num_phases = int(rng.integers(3, 7))
    poses = [np.array([rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(-np.pi, np.pi), rng.uniform(0.2, 0.35)])]
    for _ in range(num_phases):
        step = np.array(
            [
                rng.uniform(-0.25, 0.25),
                rng.uniform(-0.25, 0.25),
                rng.choice([-1, 1]) * rng.uniform(0.8, 1.8),
                rng.uniform(-0.08, 0.08),
            ]
        )
        nxt = poses[-1] + step
        nxt[:2] = np.clip(nxt[:2], 0.25, 0.75)
        nxt[3] = np.clip(nxt[3], 0.15, 0.4)
        poses.append(nxt)
    name = SYNTHETIC_ACTIONS[class_index] if class_index < len(SYNTHETIC_ACTIONS) else f"action{class_index}"
    return ActionSpec(name=name, key_poses=np.stack(poses))


def _phase_lengths(num_phases: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``length`` frames into phases: 2 frames each, the rest by Dirichlet shares."""
    if length < 2 * num_phases:
        raise ValueError(f"a video of {num_phases} phases needs at least {2 * num_phases} frames, got {length}")
    shares = rng.dirichlet(np.full(num_phases, 2.0))
    spare = length - 2 * num_phases
    lengths = 2 + np.floor(shares * spare).astype(int)
    lengths[np.argmax(shares)] += length - lengths.sum()  # the rounding remainder, never negative
    return lengths


def phase_trajectory(spec: ActionSpec, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame poses (L, P), phase labels (L,) and moments (L,), with random phase lengths and
    easings, P being the width of ``spec.key_poses``.

    A frame's moment is k + u: its phase k and how far its pose has gone from key pose k to
    k + 1 (u in (0, 1)). Two videos of a class show the same pose at the same moment, whatever
    their timing: that is the true correspondence between two executions.
    """
    lengths = _phase_lengths(spec.num_phases, length, rng)
    poses, labels, moments = [], [], []
    for k, n in enumerate(lengths):
        u = (np.arange(n) + 0.5) / n
        u = u ** rng.uniform(0.6, 1.6)  # easing: the phase speeds up or slows down
        start, end = spec.key_poses[k], spec.key_poses[k + 1]
        poses.append(start + u[:, None] * (end - start))
        labels.append(np.full(n, k))
        moments.append(k + u)
    return np.concatenate(poses), np.concatenate(labels).astype(np.int64), np.concatenate(moments)


def video_moments(class_index: int, video_index: int, *, seed: int = 0, length_range: tuple[int, int] = (30, 200)) -> np.ndarray:
    """The moments (L,) of video ``video_index`` of class ``class_index`` (:func:`phase_trajectory`),
    as :func:`synthetic_videos` draws it, without drawing its frames."""
    rng = np.random.default_rng([seed, class_index, video_index])
    length = int(rng.integers(length_range[0], length_range[1] + 1))
    return phase_trajectory(action_spec(class_index, seed), length, rng)[2]


def render_video(spec: ActionSpec, length: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw one video of ``spec``.

    Returns:
        frames (L, size, size, 3) uint8 and labels (L,) int64.
    """
    poses, labels, _ = phase_trajectory(spec, length, rng)
    L = len(poses)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size  # (S, S) image units

    # Appearance of this video.
    bg_a, bg_b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    g = rng.uniform(-np.pi, np.pi)
    ramp = (np.cos(g) * xx + np.sin(g) * yy + 1.5) / 3.0  # (S, S) in [0, 1]
    background = bg_a + ramp[..., None] * (bg_b - bg_a)  # (S, S, 3)
    body_colour, arm_colour, dist_colour = rng.uniform(0, 255, (3, 3))
    scale = rng.uniform(0.8, 1.2)
    offset = rng.uniform(-0.08, 0.08, 2)
    noise = rng.uniform(0, 12)

    # Per-frame geometry: camera jitter, the figure, a bouncing distractor.
    jitter = rng.normal(0, 1.0 / size, (L, 2))
    cx = poses[:, 0] + offset[0] + jitter[:, 0]
    cy = poses[:, 1] + offset[1] + jitter[:, 1]
    angle, arm = poses[:, 2], poses[:, 3] * scale
    tip_x, tip_y = cx + arm * np.cos(angle), cy + arm * np.sin(angle)
    d0, dv = rng.uniform(0.1, 0.9, 2), rng.uniform(-0.02, 0.02, 2)
    dpos = np.abs(((d0 + np.arange(L)[:, None] * dv) - 0.1) % 1.6 - 0.8) + 0.1  # bounce in [0.1, 0.9]

    X, Y = xx[None], yy[None]  # (1, S, S)
    body = (X - cx[:, None, None]) ** 2 + (Y - cy[:, None, None]) ** 2 < (0.09 * scale) ** 2
    # Distance of every pixel to the arm segment (centre -> tip).
    vx, vy = (tip_x - cx)[:, None, None], (tip_y - cy)[:, None, None]
    px, py = X - cx[:, None, None], Y - cy[:, None, None]
    u = np.clip((px * vx + py * vy) / (vx * vx + vy * vy + 1e-9), 0.0, 1.0)
    arm_mask = (px - u * vx) ** 2 + (py - u * vy) ** 2 < (0.03 * scale) ** 2
    head = (X - tip_x[:, None, None]) ** 2 + (Y - tip_y[:, None, None]) ** 2 < (0.045 * scale) ** 2
    distractor = (np.abs(X - dpos[:, 0, None, None]) < 0.05) & (np.abs(Y - dpos[:, 1, None, None]) < 0.05)

    frames = np.broadcast_to(background, (L, size, size, 3)).copy()
    frames[distractor] = dist_colour
    frames[body] = body_colour
    frames[arm_mask | head] = arm_colour
    frames += rng.normal(0, noise, frames.shape).astype(np.float32) if noise > 0 else 0
    return np.clip(frames, 0, 255).astype(np.uint8), labels


def synthetic_videos(
    class_index: int,
    num_videos: int,
    *,
    seed: int = 0,
    size: int = 64,
    length_range: tuple[int, int] = (30, 200),
    first_video: int = 0,
) -> list[Video]:
    """``num_videos`` videos of synthetic class ``class_index``.

    Video k (counting from ``first_video``) is drawn from a generator seeded by
    (seed, class_index, k), so disjoint ranges of k give disjoint train/validation sets.
    """
    spec = action_spec(class_index, seed)
    videos = []
    for k in range(first_video, first_video + num_videos):
        rng = np.random.default_rng([seed, class_index, k])
        length = int(rng.integers(length_range[0], length_range[1] + 1))
        frames, labels = render_video(spec, length, size, rng)
        videos.append(Video(video_id=f"{spec.name}_{k:04d}", frames=frames, labels=labels))
    return videos
