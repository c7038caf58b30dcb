"""One training function for a local run, a Ray Train worker and a Ray Tune trial.

:func:`train` fits one LRProp model on one ``VideoSource`` (one action class): Adam, a cosine
schedule to 0 over all epochs, gradient clipping, bf16 autocast on CUDA. It writes checkpoints to
a local directory and resumes from the newest one there (or from ``resume_from``). After every
epoch it calls ``report(metrics, checkpoint_path)``: a local run logs, a Ray worker
forwards to ``ray.train.report``; nothing here imports Ray.

A resumed run continues exactly on the CPU (bit for bit; on a GPU up to the nondeterminism of
its kernels): the data of each step is a function of (seed, epoch, video), the epoch's order of
videos a function of (seed, epoch), and the model's own randomness (dropout) comes from torch's
generator, saved in the checkpoint. A checkpoint resumes only under the config and data set it
was made with, up to run mechanics (:data:`RESUMABLE_CHANGES`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch.utils.data import DataLoader

from lrprop.config import Config, ConfigError, config_to_dict, upgrade_stored
from lrprop.core.losses import LRPropLoss
from lrprop.core.model import FrameEncoder
from lrprop.data.augment import eval_transform, train_transform
from lrprop.data.source import VideoSource
from lrprop.data.views import EpochBatchSampler, ViewDataset, collate_deferred_views, transform_views
from lrprop.training.checkpoint import list_checkpoints, load_checkpoint, prune_checkpoints, save_checkpoint
from lrprop.training.memory import check_step_fits
from lrprop.training.pretrain import PretrainResult, pretrain_backbone

# One step's parts, kept importable from here where every caller has found them
from lrprop.training.step import (
    build_loss,
    build_model,
    pretrains,
    prop_path_on_features,
    prop_path_on_labels,
    train_step_forward,
)

__all__ = [
    "train",
    "train_step",
    "train_step_forward",
    "prop_path_on_features",
    "prop_path_on_labels",
    "TrainResult",
    "pretrained_backbone",
    "pretrains",
    "batch_frames",
    "build_model",
    "build_loss",
    "resolve_device",
    "make_loader",
    "check_resumable",
    "view_transform",
]

log = logging.getLogger(__name__)

ReportFn = Callable[[dict, "Path | None"], None]


@dataclass
class TrainResult:
    """What :func:`train` returns: the model, one metrics dict per epoch, the last checkpoint."""

    model: FrameEncoder
    history: list[dict] = field(default_factory=list)
    checkpoint: Path | None = None
    step: int = 0


def resolve_device(name: str) -> torch.device:
    """ "auto" -> CUDA when available, else CPU; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def view_transform(config: Config) -> Callable[[torch.Tensor], torch.Tensor]:
    """The transform of a training view: (T, 3, H, W) uint8 -> (T, 3, S, S) float, normalised."""
    d = config.data
    return train_transform(d.image_size) if d.augment else eval_transform(d.image_size)


def make_loader(config: Config, source: VideoSource, sampler: EpochBatchSampler, pin_memory: bool) -> DataLoader:
    """The DataLoader of training views: its ``data.loader_workers`` worker processes read the frames, decode
    them (unless ``data.decode_on: device``) and augment them (unless ``data.augment_on:
    device``); :func:`batch_frames` takes its batches to the device and does the rest there."""
    d = config.data
    on_device = d.augment_on == "device"
    if d.decode_on == "device" and not hasattr(source, "read_encoded"):
        kind = type(source).__name__
        raise ConfigError(f"data.decode_on: device needs a source of JPEG frames (an ingested data set), not {kind}")
    dataset = ViewDataset(
        source,
        d.frames_per_view,
        num_views=d.num_views,
        transform=None if on_device else view_transform(config),
        seed=config.train.seed,
        ratio_range=d.sample_ratio,
        window=d.view_window,
        warp=d.view_warp,
        defer_transform=on_device,
        defer_decode=d.decode_on == "device",
        with_oracle=prop_path_on_labels(config.loss),
    )
    workers = d.loader_workers
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_deferred_views if on_device else None,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        pin_memory=pin_memory,
        # Its own generator: each new iterator draws a base seed, which must not advance the
        # global generator that dropout uses (a resumed run would then drift from a straight one).
        generator=torch.Generator().manual_seed(config.train.seed),
    )


def batch_frames(batch: dict, config: Config, device: torch.device, transform: Callable | None = None) -> torch.Tensor:
    """A loader batch's views on ``device``, (B, V, T, 3, S, S) float: copied as they are, or
    augmented there from their uint8 frames (``data.augment_on: device``), decoded there first
    from their JPEG bytes (``data.decode_on: device``).

    Args:
        transform: ``view_transform(config)``, built once by a caller that runs many steps
            (built here when not given).
    """
    if config.data.augment_on == "device":
        return transform_views(batch, transform or view_transform(config), config.data.frames_per_view, device)
    return batch["frames"].to(device, non_blocking=True)


# Keys that may change between a run and its resume: run mechanics (where it runs, how it is
# evaluated and ingested), not the model, the objective or the data it trains on.
RESUMABLE_CHANGES = (
    "optim.max_steps",
    "train.",
    "data.loader_workers",
    "data.augment_on",
    "data.decode_on",
    "ray.",
    "eval.",
    "ingest.",
)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resumable(saved: dict, current: dict, saved_videos: int | None, current_videos: int, where: str) -> None:
    """Refuse to resume a checkpoint under a config or data set it was not made with.

    Raises:
        ConfigError: naming the keys that differ (only RESUMABLE_CHANGES may).
    """
    a, b = _flatten(saved), _flatten(current)
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k) and not k.startswith(RESUMABLE_CHANGES))
    if changed:
        detail = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in changed[:8])
        raise ConfigError(f"cannot resume {where} under a different config ({detail}); start a new run instead")
    if saved_videos is not None and saved_videos != current_videos:
        raise ConfigError(f"cannot resume {where}: it trained on {saved_videos} videos, the source now has {current_videos}")


def _pretrain(
    config: Config, backbone: torch.nn.Module, source: VideoSource, device: torch.device, on_step=None
) -> PretrainResult:
    done = pretrain_backbone(
        backbone,
        source,
        config.pretrain,
        image_size=config.data.image_size,
        seed=config.train.seed,
        device=device,
        log_every=config.train.log_every and 10 * config.train.log_every,
        on_step=on_step,
        pooling=config.model.pooling,
    )
    log.info("pretrained the backbone: %d steps, final loss %.4f", len(done.losses), done.losses[-1])
    return done


def pretrained_backbone(config: Config, source: VideoSource, on_step=None) -> tuple[torch.nn.Module, PretrainResult]:
    """The backbone that :func:`train` starts LRProp from when it pretrains: built under the
    run's seed and pretrained on ``source`` as ``config.pretrain`` says.

    Saved (safetensors) and given back as ``model.pretrained`` with ``model.train_from: none``,
    it trains draw for draw as a run that pretrains and freezes its backbone itself, so several
    runs on one class (an ablation, a search) can share one pretraining. ``on_step(steps done,
    loss)`` is called after each step (a progress display).
    """
    torch.manual_seed(config.train.seed)
    device = resolve_device(config.train.device)
    model = build_model(config).to(device)  # the same random draws as train's
    return model.backbone, _pretrain(config, model.backbone, source, device, on_step)


def _apply_thread_budget() -> None:
    """Let the numba DTW kernels use the threads torch was given, not every core of the node
    (a Ray worker or Tune trial gets a CPU share and sets torch's threads from it). This caps
    the threads a kernel uses; the pool itself is sized by NUMBA_NUM_THREADS, which the Ray
    worker sets before numba loads (lrprop.pipeline.distributed)."""
    import numba

    numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, torch.get_num_threads())))


def train_step(
    net: torch.nn.Module,
    loss_fn: LRPropLoss,
    optimizer: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    frames: torch.Tensor,
    mask: torch.Tensor,
    timestamps: torch.Tensor,
    *,
    grad_clip: float,
    use_bf16: bool = False,
    path_on_features: bool = False,
    path_features: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """One optimisation step of LRProp on one batch of views (the scheduler is the caller's).

    Forward under bf16 autocast when ``use_bf16``, the loss in float32, backward, the gradient
    norm of ``params`` clipped at ``grad_clip``, ``optimizer.step()``.

    Args:
        net: the encoder (or its DistributedDataParallel wrapper), in train mode.
        frames: (B, V, T, 3, S, S) float views on the model's device (:func:`batch_frames`).
        mask: (B, V, T) bool, True on valid frames.
        timestamps: (B, V, T) original frame indices.
        path_on_features: find L_prop's DTW path on the backbone's features (``loss.prop_path``).
        path_features: (B, V, T, F) to find L_prop's DTW path on instead (``loss.prop_path: labels``).

    Returns:
        the loss terms of :class:`lrprop.core.losses.LRPropLoss` ("total" and each term).

    Raises:
        FloatingPointError: non-finite embeddings, loss or gradient norm, before the
            optimizer has changed anything (the message says which).
    """
    terms = train_step_forward(
        net,
        loss_fn,
        frames,
        mask,
        timestamps,
        use_bf16=use_bf16,
        path_on_features=path_on_features,
        path_features=path_features,
    )
    total = terms["total"]
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    try:
        torch.nn.utils.clip_grad_norm_(params, grad_clip, error_if_nonfinite=True)
    except RuntimeError:
        raise FloatingPointError("non-finite gradient norm") from None
    optimizer.step()
    return terms


@dataclass
class _Progress:
    """Where a run stands: what a checkpoint saves and a resume restores."""

    step: int = 0
    epoch: int = 0
    position: int = 0  # batches of ``epoch`` done
    history: list[dict] = field(default_factory=list)  # the metrics of every whole epoch
    sums: dict[str, float] = field(default_factory=dict)  # loss sums of the epoch in progress
    batches: int = 0  # batches in ``sums``
    checkpoint: Path | None = None  # the last written, or the one resumed from

    def start_epoch(self, epoch: int) -> None:
        """Begin ``epoch``; an epoch a resume lands in keeps its position and loss sums."""
        if epoch != self.epoch:
            self.epoch, self.position, self.sums, self.batches = epoch, 0, {}, 0

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        self.step += 1
        self.position += 1
        self.batches += 1
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value.detach())

    def extra(self, num_videos: int) -> dict:
        return {"history": self.history, "epoch_sums": self.sums, "epoch_batches": self.batches, "num_videos": num_videos}


def _restore(
    candidates: list[Path], explicit: bool, parts: dict, config_dict: dict, num_videos: int, steps_per_epoch: int
) -> _Progress:
    """The progress of the first of ``candidates`` that loads into ``parts`` (model, optimizer,
    scheduler), or a fresh start. An unreadable candidate is skipped with a warning unless it was
    named ``explicit``-ly (``resume_from``), which then raises."""
    for candidate in candidates:
        try:
            state = load_checkpoint(candidate, **parts)
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
            if explicit:
                raise
            log.warning("skipping unreadable checkpoint %s: %s", candidate, exc)
            continue
        extra = state["extra"]
        check_resumable(upgrade_stored(state["config"]), config_dict, extra.get("num_videos"), num_videos, str(candidate))
        progress = _Progress(
            step=state["step"],
            epoch=state["epoch"],
            position=state["batch_in_epoch"],
            history=extra.get("history", []),
            sums=extra.get("epoch_sums", {}),
            batches=extra.get("epoch_batches", 0),
            checkpoint=candidate,
        )
        if progress.position >= steps_per_epoch:  # saved at an epoch's end: start the next
            progress.epoch, progress.position, progress.sums, progress.batches = progress.epoch + 1, 0, {}, 0
        log.info("resumed from %s at step %d (epoch %d, batch %d)", candidate, progress.step, progress.epoch, progress.position)
        return progress
    return _Progress()


def _close_epoch(
    progress: _Progress,
    lr: float,
    whole: bool,
    validate: Callable[[FrameEncoder], dict] | None,
    model: FrameEncoder,
    net: torch.nn.Module,
) -> dict:
    """The epoch's metrics: its mean loss terms, and ``validate``'s numbers (prefixed ``val_``)
    when given, computed in eval mode without gradients; a whole epoch's enter the history."""
    metrics = {"epoch": progress.epoch, "step": progress.step, "lr": lr}
    metrics.update({f"loss_{k}": v / max(1, progress.batches) for k, v in progress.sums.items()})
    if validate is not None:
        model.eval()
        with torch.no_grad():
            metrics.update({f"val_{k}": float(v) for k, v in validate(model).items()})
        net.train()
    if whole:  # only whole epochs enter the history
        progress.history.append(metrics)
    return metrics


def _warn_if_views_outgrow_videos(config: Config, source: VideoSource) -> None:
    """Say so when T exceeds the longest video: every view is then padded (METHOD.md §1 draws
    min(L, T) frames and masks the rest), which trains, but on T - L wasted positions a view."""
    longest = max((source.num_frames(i) for i in range(len(source))), default=0)
    T = config.data.frames_per_view
    if 0 < longest < T:
        log.warning(
            "data.frames_per_view (T = %d) is longer than every training video (the longest has %d frames): "
            "each view is padded with %d or more masked positions; a T of at most %d wastes none",
            T,
            longest,
            T - longest,
            longest,
        )


def train(
    config: Config,
    source: VideoSource,
    *,
    checkpoint_dir: str | Path,
    resume_from: str | Path | None = None,
    report: ReportFn | None = None,
    world_rank: int = 0,
    world_size: int = 1,
    wrap_model: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
    validate: Callable[[FrameEncoder], dict] | None = None,
    validate_every: int = 1,
) -> TrainResult:
    """Train one model on ``source`` (one action class) as ``config`` says.

    Args:
        config: the whole configuration.
        source: the training videos; each step takes ``config.data.videos_per_step`` of them.
        checkpoint_dir: local directory for checkpoints (created if missing).
        resume_from: a checkpoint directory to start from; default the newest checkpoint in
            ``checkpoint_dir`` that loads (an unreadable newer one is skipped with a warning).
        report: called after each epoch (and when ``optim.max_steps`` stops a run part way)
            with the epoch's mean loss terms and the checkpoint written then (None on ranks
            other than 0, which write none).
        world_rank, world_size: this worker's place among data-parallel workers; each takes
            every world_size-th batch of an epoch.
        wrap_model: applied to the model after it is built and restored (e.g. Ray Train's
            ``prepare_model`` for DistributedDataParallel).
        validate: called with the model (in eval mode, no grad) every ``validate_every``
            whole epochs and after the last; its numbers join that epoch's metrics, prefixed
            ``val_`` (what Ray Tune's early stopping watches).

    Returns:
        the trained model (unwrapped, in eval mode), the metrics of every whole epoch so far
        (a resumed run's history includes the epochs before the resume), the last checkpoint.

    Raises:
        FloatingPointError: the embeddings, the loss or the gradients became NaN or infinite;
            the last checkpoint is untouched, so the cause can be looked at from there.
        ConfigError: a checkpoint to resume from was made under another config or data set;
            or one step's estimated memory exceeds what the device has free
            (:func:`lrprop.training.memory.check_step_fits`), before anything is built.
    """
    _apply_thread_budget()
    _warn_if_views_outgrow_videos(config, source)
    device = resolve_device(config.train.device)
    check_step_fits(config, device)  # before a step too large for the device takes the machine down
    torch.manual_seed(config.train.seed)
    model = build_model(config).to(device)
    if device.type == "cuda" and config.train.channels_last:
        model.use_channels_last()
    loss_fn = build_loss(config.loss)
    pretraining = pretrains(config)
    freeze = pretraining and config.pretrain.freeze_backbone
    # A backbone frozen after its pretraining is left out of the optimizer from the start, so a
    # resumed run's optimizer state has the same parameters as the run that wrote it.
    params = [p for n, p in model.named_parameters() if p.requires_grad and not (freeze and n.startswith("backbone."))]
    optimizer = torch.optim.Adam(params, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    sampler = EpochBatchSampler(
        len(source), config.data.videos_per_step, seed=config.train.seed, rank=world_rank, world_size=world_size
    )
    steps_per_epoch = sampler.batches_per_epoch
    total_steps = config.optim.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps), eta_min=0.0)
    config_dict = config_to_dict(config)

    candidates = [Path(resume_from)] if resume_from is not None else list_checkpoints(checkpoint_dir)
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    progress = _restore(candidates, resume_from is not None, parts, config_dict, len(source), steps_per_epoch)
    if progress.checkpoint is None and pretraining:
        # A resumed run's checkpoint holds the pretrained (and since trained) backbone already.
        _pretrain(config, model.backbone, source, device)
    if freeze:
        model.freeze_backbone()

    def checkpoint() -> Path | None:
        if world_rank != 0:
            return None
        progress.checkpoint = save_checkpoint(
            checkpoint_dir,
            **parts,
            step=progress.step,
            epoch=progress.epoch,
            batch_in_epoch=progress.position,
            config=config_dict,
            extra=progress.extra(len(source)),
            cuda_rng=device.type == "cuda",
        )
        prune_checkpoints(checkpoint_dir, config.train.keep_checkpoints)
        return progress.checkpoint

    step_args = {
        "grad_clip": config.optim.grad_clip,
        "use_bf16": device.type == "cuda" and config.optim.bf16,
        "path_on_features": prop_path_on_features(config.loss),
    }
    loader = make_loader(config, source, sampler, pin_memory=device.type == "cuda")
    transform = view_transform(config)  # for batch_frames, when the views are augmented on the device
    max_steps = config.optim.max_steps if config.optim.max_steps is not None else total_steps
    first_step = progress.step
    net = wrap_model(model) if wrap_model is not None else model
    net.train()
    started = time.perf_counter()
    for epoch in range(progress.epoch, config.optim.epochs):
        if progress.step >= max_steps:
            break
        progress.start_epoch(epoch)
        sampler.set_position(epoch, progress.position)
        for batch in loader:
            frames = batch_frames(batch, config, device, transform)  # (B, V, T, 3, S, S)
            try:
                oracle = batch["oracle"].to(device) if "oracle" in batch else None  # loss.prop_path: labels
                terms = train_step(
                    net,
                    loss_fn,
                    optimizer,
                    params,
                    frames,
                    batch["mask"].to(device),
                    batch["timestamps"].to(device),
                    path_features=oracle,
                    **step_args,
                )
            except FloatingPointError as exc:
                raise FloatingPointError(
                    f"{exc} at step {progress.step} (epoch {epoch}, videos {batch['index'].tolist()}); "
                    f"the last checkpoint is {progress.checkpoint}"
                ) from None
            scheduler.step()
            progress.add(terms)
            if config.train.log_every and progress.step % config.train.log_every == 0:
                rate = (progress.step - first_step) / max(1e-9, time.perf_counter() - started)
                values = " ".join(f"{k} {v.item():.4f}" for k, v in terms.items())
                lr = scheduler.get_last_lr()[0]
                log.info("step %d epoch %d %s lr %.3g (%.2f steps/s)", progress.step, epoch, values, lr, rate)
            if progress.step >= max_steps:
                break
            # Mid-epoch checkpoints only; the end of an epoch (or run) is saved below with its
            # metrics in the history.
            every = config.train.checkpoint_every
            if every and progress.step % every == 0 and progress.position < steps_per_epoch:
                checkpoint()
        whole = progress.position >= steps_per_epoch
        last = epoch + 1 == config.optim.epochs or progress.step >= max_steps
        validating = validate is not None and whole and ((epoch + 1) % max(1, validate_every) == 0 or last)
        metrics = _close_epoch(progress, scheduler.get_last_lr()[0], whole, validate if validating else None, model, net)
        saved = checkpoint() if last or (epoch + 1) % config.train.checkpoint_epochs == 0 else None
        if report is not None:
            report(metrics, saved)  # the checkpoint of this epoch's end, if one was written
    model.eval()
    return TrainResult(model=model, history=progress.history, checkpoint=progress.checkpoint, step=progress.step)
