"""A second synthetic generator, for checking, never for choosing defaults: stick figures with
the nuisances of real footage.

The first generator (:mod:`lrprop.data.generator`) draws a large body with one arm on a still
camera. Defaults were tuned on it, so a gain measured there may owe something to it. This one
differs in what makes real footage hard:
- the action is a thin stick figure (head, torso, two arms and two legs with elbows and knees)
  that fills a third of the frame or less; a class is a sequence of key poses of its joints,
  phase k the motion from key pose k to k + 1, at random speeds (Dirichlet shares, easing);
- the camera pans slowly and shakes; the light brightens or dims through the video;
- an object drifts across the frame (a clock of its own, which within-video training could read);
- another figure, in other colours, moves its limbs at random beside the actor;
- colours, size, framing and blur change from video to video.

Everything is drawn from ``numpy.random.Generator``s seeded by (seed, class, video), as in the
first generator, so a set is reproducible and a class's key poses do not depend on how many
videos are drawn.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from lrprop.data.generator import ActionSpec, phase_trajectory
from lrprop.data.source import Video

__all__ = ["NUISANCES", "STICK_ACTIONS", "stick_action_spec", "render_stick_video", "stick_moments", "stick_videos", "JOINTS"]

# What real footage has and the home generator lacks; each can be left out of a video (an ablation)
NUISANCES = ("camera", "light", "object", "other")

STICK_ACTIONS = ("jump", "squat", "throw", "kick", "stretch", "clap", "bow", "climb")
# The joint angles of a pose, in radians: torso lean from vertical, then each limb's upper and
# lower segment relative to the segment it hangs from; the last is the hips' height change.
JOINTS = ("lean", "l_shoulder", "l_elbow", "r_shoulder", "r_elbow", "l_hip", "l_knee", "r_hip", "r_knee", "crouch")
_REST = np.array([0.0, 2.6, 0.3, -2.6, -0.3, 2.9, -0.1, -2.9, 0.1, 0.0])


def stick_action_spec(class_index: int, seed: int = 0) -> ActionSpec:
    """The key poses (K + 1, len(JOINTS)) of stick-figure class ``class_index``: 3–6 phases,
    each moving 3–5 joints by 0.5–1.5 rad (the crouch by up to a quarter of the leg)."""
    rng = np.random.default_rng([seed, class_index, 0x571C])
    num_phases = int(rng.integers(3, 7))
    poses = [_REST + rng.normal(0, 0.15, len(JOINTS))]
    for _ in range(num_phases):
        nxt = poses[-1].copy()
        moved = rng.choice(len(JOINTS) - 1, size=int(rng.integers(3, 6)), replace=False)
        nxt[moved] += rng.choice([-1, 1], size=len(moved)) * rng.uniform(0.5, 1.5, size=len(moved))
        nxt[0] = np.clip(nxt[0], -0.6, 0.6)
        nxt[-1] = rng.uniform(-0.05, 0.25)
        poses.append(nxt)
    name = STICK_ACTIONS[class_index] if class_index < len(STICK_ACTIONS) else f"stick{class_index}"
    return ActionSpec(name=name, key_poses=np.stack(poses))


def _segments(poses: np.ndarray, cx: np.ndarray, cy: np.ndarray, size: float) -> list[tuple[np.ndarray, ...]]:
    """The figure's 9 line segments per frame: [(x0, y0, x1, y1) each (L,)], image units, y down.

    Args:
        poses: (L, len(JOINTS)) joint angles; cx, cy: (L,) the hips' centre; size: the figure's height.
    """
    torso, upper, lower = 0.35 * size, 0.2 * size, 0.2 * size
    lean = poses[:, 0]
    hip_y = cy + poses[:, 9] * 0.4 * size
    neck_x, neck_y = cx + torso * np.sin(lean), hip_y - torso * np.cos(lean)

    def limb(x, y, base, a1, a2):
        ex, ey = x + upper * np.sin(base + a1), y - upper * np.cos(base + a1)
        return (x, y, ex, ey), (ex, ey, ex + lower * np.sin(base + a1 + a2), ey - lower * np.cos(base + a1 + a2))

    segs = [(cx, hip_y, neck_x, neck_y)]
    for a, b in ((1, 2), (3, 4)):
        segs += limb(neck_x, neck_y, lean, poses[:, a], poses[:, b])
    for a, b in ((5, 6), (7, 8)):
        segs += limb(cx, hip_y, lean, poses[:, a], poses[:, b])
    return segs


def _draw(canvas: np.ndarray, X, Y, segs, head, colour, width: float) -> None:
    """Paint the segments and the head (centre x, y, radius) into canvas (L, S, S, 3) in place."""
    hit = np.zeros(canvas.shape[:3], dtype=bool)
    for x0, y0, x1, y1 in segs:
        x0, y0, x1, y1 = (v[:, None, None] for v in (x0, y0, x1, y1))
        vx, vy, px, py = x1 - x0, y1 - y0, X - x0, Y - y0
        u = np.clip((px * vx + py * vy) / (vx * vx + vy * vy + 1e-9), 0.0, 1.0)
        hit |= (px - u * vx) ** 2 + (py - u * vy) ** 2 < width**2
    hx, hy, r = head
    hit |= (X - hx[:, None, None]) ** 2 + (Y - hy[:, None, None]) ** 2 < r**2
    canvas[hit] = colour


def _blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    """A separable Gaussian blur of (L, S, S, 3) float frames, σ in pixels (0: none)."""
    if sigma < 0.3:
        return frames
    radius = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    for axis in (1, 2):
        padded = np.pad(frames, [(radius, radius) if a == axis else (0, 0) for a in range(4)], mode="edge")
        frames = sum(w * np.take(padded, np.arange(i, i + frames.shape[axis]), axis=axis) for i, w in enumerate(k))
    return frames


def render_stick_video(
    spec: ActionSpec, length: int, size: int, rng: np.random.Generator, without: Collection[str] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one video of stick-figure class ``spec``.

    ``without`` names nuisances to leave out (:data:`NUISANCES`): "camera" (no pan, no shake),
    "light" (a constant gain), "object" (no drifting object), "other" (no second figure). The
    random draws stay the same, so a video without one differs from the full one only by it:
    what an ablation of the nuisances needs.

    Returns:
        frames (L, size, size, 3) uint8 and labels (L,) int64.
    """
    poses, labels, _ = phase_trajectory(spec, length, rng)
    L = len(poses)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    X, Y = xx[None], yy[None]

    g = rng.uniform(-np.pi, np.pi)
    ramp = (np.cos(g) * xx + np.sin(g) * yy + 1.5) / 3.0
    bg_a, bg_b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    texture = rng.normal(0, rng.uniform(0, 20), (size, size, 1))  # a still pattern on the background
    background = bg_a + ramp[..., None] * (bg_b - bg_a) + texture
    actor, other, thing = rng.uniform(0, 255, (3, 3))
    height = rng.uniform(0.3, 0.45)
    width = rng.uniform(0.012, 0.022)

    # The camera: a slow pan through the video and a shake of about a pixel per frame.
    t = np.linspace(0, 1, L)
    pan = rng.uniform(-0.1, 0.1, 2)[None] * t[:, None] + rng.normal(0, 0.8 / size, (L, 2))
    if "camera" in without:
        pan = np.zeros_like(pan)
    start = rng.uniform(0.35, 0.65, 2)
    cx, cy = start[0] + pan[:, 0], start[1] + 0.1 + pan[:, 1]

    frames = np.broadcast_to(background, (L, size, size, 3)).copy()
    # An object drifting across the frame at its own pace.
    d0, d1 = rng.uniform(0.05, 0.95, 2), rng.uniform(0.05, 0.95, 2)
    dx, dy = d0[0] + (d1[0] - d0[0]) * t, d0[1] + (d1[1] - d0[1]) * t
    r = rng.uniform(0.04, 0.08)
    if "object" not in without:
        frames[(X - dx[:, None, None]) ** 2 + (Y - dy[:, None, None]) ** 2 < r**2] = thing
    # Another figure beside the actor, moving its limbs at random.
    wander = _REST + np.cumsum(rng.normal(0, 0.08, (L, len(JOINTS))), axis=0)
    wander[:, 9] = 0.0
    side = 1 if start[0] < 0.5 else -1
    ox, oy = cx + side * rng.uniform(0.25, 0.4), cy + rng.uniform(-0.05, 0.05)
    o_height = height * rng.uniform(0.7, 1.0)
    if "other" not in without:
        _draw(frames, X, Y, _segments(wander, ox, oy, o_height), _head(wander, ox, oy, o_height), other, width)
    _draw(frames, X, Y, _segments(poses, cx, cy, height), _head(poses, cx, cy, height), actor, width)

    gain = np.linspace(rng.uniform(0.6, 1.3), rng.uniform(0.6, 1.3), L)  # the light through the video
    if "light" in without:
        gain = np.full(L, gain.mean())
    frames = _blur(frames, rng.uniform(0, 1.2)) * gain[:, None, None, None]
    frames += rng.normal(0, rng.uniform(0, 8), frames.shape)
    return np.clip(frames, 0, 255).astype(np.uint8), labels


def _head(poses: np.ndarray, cx: np.ndarray, cy: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray, float]:
    """The head's centre (L,), (L,) and radius, above the neck along the torso."""
    lean, hip_y = poses[:, 0], cy + poses[:, 9] * 0.4 * size
    reach = 0.35 * size + 0.07 * size
    return cx + reach * np.sin(lean), hip_y - reach * np.cos(lean), 0.06 * size


def stick_moments(class_index: int, video_index: int, *, seed: int = 0, length_range: tuple[int, int] = (30, 90)) -> np.ndarray:
    """The moments (L,) of video ``video_index`` of class ``class_index``
    (:func:`lrprop.data.generator.phase_trajectory`), as :func:`stick_videos` draws it."""
    rng = np.random.default_rng([seed, class_index, video_index, 0x571C])
    length = int(rng.integers(length_range[0], length_range[1] + 1))
    return phase_trajectory(stick_action_spec(class_index, seed), length, rng)[2]


def stick_videos(
    class_index: int,
    num_videos: int,
    *,
    seed: int = 0,
    size: int = 64,
    length_range: tuple[int, int] = (30, 90),
    first_video: int = 0,
    without: Collection[str] = (),
) -> list[Video]:
    """``num_videos`` videos of stick-figure class ``class_index``; video k seeded by (seed, class, k).
    ``without``: nuisances left out (:func:`render_stick_video`)."""
    unknown = set(without) - set(NUISANCES)
    if unknown:
        raise ValueError(f"unknown nuisances {sorted(unknown)}; the stick figures have {list(NUISANCES)}")
    spec = stick_action_spec(class_index, seed)
    videos = []
    for k in range(first_video, first_video + num_videos):
        rng = np.random.default_rng([seed, class_index, k, 0x571C])
        length = int(rng.integers(length_range[0], length_range[1] + 1))
        frames, labels = render_stick_video(spec, length, size, rng, without)
        videos.append(Video(video_id=f"{spec.name}_{k:04d}", frames=frames, labels=labels))
    return videos
