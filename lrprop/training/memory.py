"""How much memory one training step needs, estimated before it runs, and a refusal of what
cannot fit (issue 14: ``data.frames_per_view: 5000`` grew a worker by ~18 GB in 30 s, then the
machine ran out).

    estimate = step_memory(config)              # a few real steps' forward passes, on the CPU
    check_step_fits(config, torch.device("cpu"))  # ConfigError naming the keys, or nothing

What a step holds at its peak, at the start of its backward pass:

    activations   every tensor autograd saves for the backward pass, counted as it is saved
                  (``torch.autograd.graph.saved_tensors_hooks``) on real forward passes: the
                  backbone's per frame, at the config's image size, times the frames of a step;
                  the rest (transformer, heads, losses) from whole steps at the config's batch,
                  a 32-pixel image and two short view lengths T₁ < T₂, extrapolated to
                  ``data.frames_per_view`` as a·T + b·T², exact for per-frame layers (linear
                  in T) plus attention and the losses' T×T matrices (quadratic in T)
    parameters    weights, and for trained ones their gradient and Adam's two moments
    batch         the views as float32 images

Measured on the CPU in float32. On a GPU, bf16 autocast roughly halves the activations, but
CUDA's caching allocator, cuDNN's workspaces and autocast's weight copies are not counted. A
real CPU step peaked at 0.96–1.36× the estimate (the backward pass's own buffers on top), so a
step estimated above the free memory is refused, and one within 1.5× of it warned of. Off with
``train.check_memory: false``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass

import torch

from lrprop.config import Config, ConfigError
from lrprop.training.step import build_loss, build_model, pretrains, prop_path_on_features, train_step_forward

__all__ = ["StepMemory", "check_step_fits", "free_bytes", "step_memory"]

log = logging.getLogger(__name__)

# The two short view lengths of the whole steps measured, at the smallest image both backbones
# take (ResNet-50 pools 32 pixels to one): a ResNet-50 step at 224 pixels measures in seconds.
_SHORT_VIEWS = (8, 16)
_SMALL_IMAGE = 32
_GIB = 1 << 30
# How far a real step's peak ran over the estimate (module docstring): closer than this warns
_PEAK_OVER_ESTIMATE = 1.5


@dataclass(frozen=True)
class StepMemory:
    """Bytes one training step of one worker holds at its peak (estimated)."""

    activations: int
    parameters: int
    batch: int

    @property
    def total(self) -> int:
        return self.activations + self.parameters + self.batch


class _SavedBytes:
    """Counts the bytes of the tensors autograd saves for the backward pass, while entered;
    a parameter (held anyway) or a storage saved twice counts once, or not at all."""

    def __init__(self, model: torch.nn.Module) -> None:
        self._held = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self._seen: dict[int, int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self._held:
            self._seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    @property
    def total(self) -> int:
        return sum(self._seen.values())

    def __enter__(self) -> _SavedBytes:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


def _per_frame(model, image_size: int) -> float:
    """Bytes saved per frame by the backbone and its pooling (what grows with the image)."""
    from lrprop.core.model import pooled_features

    images = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    with _SavedBytes(model) as saved, torch.set_grad_enabled(not model.backbone_frozen):
        pooled_features(model.backbone, images, model.pooling)
    return saved.total / 2


def _whole_step(model, loss_fn, config: Config, frames_per_view: int, image_size: int) -> int:
    """Bytes saved by one step's forward (model and loss) at ``frames_per_view`` and ``image_size``."""
    B, V = config.data.videos_per_step, config.data.num_views
    frames = torch.randn(B, V, frames_per_view, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(B, V, frames_per_view, dtype=torch.bool)
    timestamps = torch.arange(frames_per_view, dtype=torch.float32).expand(B, V, -1).contiguous()
    with _SavedBytes(model) as saved:
        train_step_forward(model, loss_fn, frames, mask, timestamps, path_on_features=prop_path_on_features(config.loss))
    return saved.total


def step_memory(config: Config) -> StepMemory:
    """The estimate of one training step's peak memory under ``config`` (module docstring).

    Builds the model with random weights (``model.pretrained`` is not read) and runs a few
    small forward passes on the CPU.
    """
    # The caller's CPU random stream untouched (torch.manual_seed also reseeds CUDA's, which
    # train() seeds right after)
    with torch.random.fork_rng(devices=[]):
        return _step_memory(config)


def _step_memory(config: Config) -> StepMemory:
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(config, model=dataclasses.replace(config.model, pretrained=None)))
    if pretrains(config) and config.pretrain.freeze_backbone:
        model.freeze_backbone()  # as train() does after pretraining: no backbone gradients
    model.train()
    loss_fn = build_loss(config.loss)
    d = config.data
    frames_per_step = d.videos_per_step * d.num_views  # per unit of T
    # What grows with the image, per frame, at full size; the rest (the transformer, the heads,
    # the losses) from whole steps at the smallest image, less its per-frame part there.
    per_frame = _per_frame(model, d.image_size)
    small_frame = _per_frame(model, _SMALL_IMAGE)
    (t1, t2), T = _SHORT_VIEWS, d.frames_per_view
    r1, r2 = (_whole_step(model, loss_fn, config, t, _SMALL_IMAGE) - small_frame * frames_per_step * t for t in (t1, t2))
    # rest(T) = a·T + b·T² through both measurements
    b = max(0.0, (r2 / t2 - r1 / t1) / (t2 - t1))
    a = max(0.0, r1 / t1 - b * t1)
    trained = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    return StepMemory(
        activations=int(per_frame * frames_per_step * T + a * T + b * T * T),
        parameters=4 * trained + frozen,  # a trained weight, its gradient, Adam's two moments
        batch=frames_per_step * T * 3 * d.image_size**2 * 4,
    )


def _cgroup_free() -> int | None:
    """What the cgroup (v2) this process runs in may still take, or None without a limit. Its
    inactive page cache (the videos ingestion read) counts as free: the kernel reclaims it."""
    root = "/sys/fs/cgroup"
    try:
        with open(f"{root}/memory.max") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open(f"{root}/memory.current") as f:
            used = int(f.read())
        with open(f"{root}/memory.stat") as f:
            stat = dict(line.split() for line in f if line.strip())
        return int(limit) - used + int(stat.get("inactive_file", 0))
    except (OSError, ValueError):
        return None


def free_bytes(device: torch.device) -> int | None:
    """Memory free for this worker on ``device``: a GPU's free memory, or on the CPU the
    kernel's MemAvailable (bounded by the container's cgroup limit); None where unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except OSError:
        pass
    cgroup = _cgroup_free()
    candidates = [x for x in (free, cgroup) if x is not None]
    return min(candidates) if candidates else None


def check_step_fits(config: Config, device: torch.device, free: int | None = None) -> StepMemory | None:
    """Raise a ConfigError naming the keys that size a training step when its estimate
    (:func:`step_memory`) exceeds the memory free on ``device`` (``free``, default
    :func:`free_bytes`); the estimate otherwise, or None when the check is off
    (``train.check_memory``) or the free memory is unknown."""
    if not config.train.check_memory:
        return None
    free = free_bytes(device) if free is None else free
    if free is None:
        return None
    need = step_memory(config)
    d = config.data
    if need.total <= free:
        if need.total * _PEAK_OVER_ESTIMATE > free:
            log.warning(
                "one training step needs about %.1f GiB and %s has %.1f GiB free: its peak may run over that "
                "(data.frames_per_view=%d, data.videos_per_step=%d)",
                need.total / _GIB,
                device.type,
                free / _GIB,
                d.frames_per_view,
                d.videos_per_step,
            )
        return need
    raise ConfigError(
        f"data.frames_per_view={d.frames_per_view}, data.videos_per_step={d.videos_per_step}, "
        f"data.num_views={d.num_views}, data.image_size={d.image_size}, model.backbone={config.model.backbone!r}: "
        f"one training step needs about {need.total / _GIB:.1f} GiB (activations {need.activations / _GIB:.1f}, "
        f"parameters and optimiser {need.parameters / _GIB:.1f}, batch {need.batch / _GIB:.1f}) and "
        f"{device.type} has {free / _GIB:.1f} GiB free in process {os.getpid()}; lower one of them, "
        "or set train.check_memory: false if the estimate is wrong"
    )
