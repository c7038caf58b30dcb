"""Evaluation of a trained model: embed every frame of every video, then score the embeddings.

    model, config = load_trained_model(model_dir)
    result = evaluate_class(model, config, train_source, val_source)
    result.metrics   # {"phase_classification": {f: acc}, "phase_progression": r2, ...,
                     #  "baseline": {...}, "oracle": {...}, "gain": {...}}

Embedding follows METHOD.md §5: no augmentation (resize + centre crop), stride 1, the whole
video in one pass with positions linspace(0, T - 1, L), or in chunks of ``eval.max_chunk``
consecutive frames with the same positions when the video is longer. Frames with a label < 0
are dropped after embedding, before scoring.

Every evaluation also scores two references on the same videos, frames and settings
(:mod:`lrprop.core.baselines`): the label-free time-stretch baseline (frame i of L is i / L) and a
label oracle (phase index plus progress within the phase); ``gain`` is the model's metrics
minus the baseline's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from lrprop.config import Config, EvalConfig, config_from_dict, upgrade_stored
from lrprop.core import metrics
from lrprop.core.baselines import metrics_gain, phase_progress_embeddings, time_stretch_embeddings
from lrprop.core.model import FrameEncoder
from lrprop.core.phase_transfer import phase_transfer_accuracy
from lrprop.data.augment import eval_transform
from lrprop.data.source import VideoSource
from lrprop.training.checkpoint import CONFIG_FILE, META_FILE, MODEL_FILE
from lrprop.training.train import build_model, resolve_device
from lrprop.work_progress import WorkProgress

__all__ = [
    "REFERENCES",
    "ClassEvaluation",
    "embed_chunks",
    "embed_source",
    "embed_video",
    "evaluate_class",
    "load_trained_model",
    "score_embeddings",
    "score_with_references",
]

# The keys of a class's metrics that hold the references' metrics and the gain over the baseline.
REFERENCES = ("baseline", "oracle", "gain")


def load_trained_model(model_dir: str | Path, device: str = "cpu") -> tuple[FrameEncoder, Config, dict]:
    """The model exported to ``model_dir`` (safetensors + config.json + meta.json), in eval mode."""
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    try:
        config = config_from_dict(upgrade_stored(json.loads((model_dir / CONFIG_FILE).read_text())))
    except FileNotFoundError:
        raise FileNotFoundError(f"no trained model at {model_dir} ({CONFIG_FILE} missing)") from None
    meta_path = model_dir / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    # The trained weights replace the pretrained ones: do not read those again.
    config = replace(config, model=replace(config.model, pretrained=None))
    model = build_model(config)
    model.load_state_dict(load_file(model_dir / MODEL_FILE))
    return model.to(device).eval(), config, meta


@torch.no_grad()
def embed_video(model: FrameEncoder, frames: np.ndarray, *, image_size: int, max_chunk: int = 1000) -> np.ndarray:
    """Embeddings (L, E) float32 of every frame of one video (frames (L, H, W, 3) uint8)."""
    chunks = (frames[start : start + max_chunk] for start in range(0, len(frames), max_chunk))
    return embed_chunks(model, chunks, len(frames), image_size=image_size)


@torch.no_grad()
def embed_chunks(model: FrameEncoder, chunks: Iterable[np.ndarray], length: int, *, image_size: int) -> np.ndarray:
    """Embeddings (L, E) float32 of a video of ``length`` frames given as consecutive chunks
    ((n, H, W, 3) uint8 each), one forward pass a chunk, with the chunk's positions of
    linspace(0, T - 1, L): a long video streamed from its file, chunks of ``eval.max_chunk``.

    Raises:
        ValueError: the chunks hold another number of frames than ``length``.
    """
    device = next(model.parameters()).device
    transform = eval_transform(image_size)
    positions = model.default_positions(length, 1, device)  # (1, L): linspace(0, T - 1, L)
    out, start = [], 0
    for frames in chunks:
        if start + len(frames) > length:
            raise ValueError(f"more than the {length} frames announced")
        chunk = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
        x = transform(chunk).to(device)[None]  # (1, n, 3, S, S)
        mask = torch.ones(1, x.shape[1], dtype=torch.bool, device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            z, _ = model(x, mask, positions[:, start : start + len(frames)])
        out.append(z[0].float().cpu().numpy())
        start += len(frames)
    if start != length:
        raise ValueError(f"{start} frames where {length} were announced")
    return np.concatenate(out)


def embed_source(
    model: FrameEncoder,
    source: VideoSource,
    *,
    image_size: int,
    max_chunk: int = 1000,
    on_video: Callable[[], None] | None = None,
) -> tuple[list, list]:
    """Embeddings and labels of every video of ``source`` (labels -1 where a video has none);
    ``on_video`` is called after each video (a progress count)."""
    embs, labels = [], []
    for i in range(len(source)):
        frames = source.read_frames(i, np.arange(source.num_frames(i)))
        embs.append(embed_video(model, frames, image_size=image_size, max_chunk=max_chunk))
        lab = source.labels(i)
        labels.append(np.full(len(frames), -1) if lab is None else np.asarray(lab))
        if on_video is not None:
            on_video()
    return embs, labels


def score_embeddings(train_embs, train_labels, val_embs, val_labels, config: EvalConfig) -> dict:
    """The five metrics of the paper and phase-transfer accuracy on embeddings (frames with
    labels < 0 are dropped first)."""
    tr_e, tr_l = metrics.drop_unlabelled(train_embs, train_labels)
    va_e, va_l = metrics.drop_unlabelled(val_embs, val_labels)
    if len(va_e) < 2 or not tr_e:
        raise ValueError(f"evaluation needs labelled videos: {len(tr_e)} training, {len(va_e)} validation (2+ needed)")
    return {
        "phase_classification": metrics.phase_classification(
            tr_e, tr_l, va_e, va_l, fractions=config.fractions, classifier=config.classifier
        ),
        "phase_progression": metrics.phase_progression(tr_e, tr_l, va_e, va_l),
        # τ, AP@K and DTW accuracy share one distance product per validation video
        **metrics.all_pairs_scores(va_e, va_l, tau_stride=config.tau_stride, ap_ks=config.ap_ks, ap_stride=config.ap_stride),
        # each validation video's phases by the vote of the training videos aligned to it
        "phase_transfer": phase_transfer_accuracy(tr_e, tr_l, va_e, va_l),
    }


def score_with_references(train_embs, train_labels, val_embs, val_labels, config: EvalConfig) -> dict:
    """The model's metrics (:func:`score_embeddings`), with the time-stretch baseline's and the label oracle's.

    Both references are embedded for the very videos given, at their whole lengths (the
    unlabelled frames count in L, as the model sees them), then scored by
    :func:`score_embeddings` like the model's embeddings: the same frames dropped, the same
    classifier fitted on the training videos, the same strides.

    Returns:
        {the metrics of the model, "baseline": {the same}, "oracle": {the same},
        "gain": model − baseline, key by key (same shape)}.
    """
    scores = score_embeddings(train_embs, train_labels, val_embs, val_labels, config)
    n_train = len(train_embs)
    stretch = time_stretch_embeddings([len(e) for e in [*train_embs, *val_embs]])
    baseline = score_embeddings(stretch[:n_train], train_labels, stretch[n_train:], val_labels, config)
    oracle_embs = phase_progress_embeddings([*train_labels, *val_labels])  # one weight for both splits
    oracle = score_embeddings(oracle_embs[:n_train], train_labels, oracle_embs[n_train:], val_labels, config)
    return {**scores, "baseline": baseline, "oracle": oracle, "gain": metrics_gain(scores, baseline)}


@dataclass
class ClassEvaluation:
    """One action class: its metrics (with the references under ``REFERENCES``, when scored),
    and what the report draws from."""

    metrics: dict
    val_embs: list[np.ndarray] = field(default_factory=list)
    val_labels: list[np.ndarray] = field(default_factory=list)
    val_ids: list[str] = field(default_factory=list)
    train_embs: list[np.ndarray] = field(default_factory=list)
    train_labels: list[np.ndarray] = field(default_factory=list)
    train_ids: list[str] = field(default_factory=list)

    def splits(self) -> dict:
        """{split: (video ids, embeddings, labels)}, as :func:`lrprop.pipeline.embeddings.publish_embeddings` takes them."""
        return {
            "train": (self.train_ids, self.train_embs, self.train_labels),
            "val": (self.val_ids, self.val_embs, self.val_labels),
        }


def evaluate_class(
    model: FrameEncoder,
    config: Config,
    train_source: VideoSource,
    val_source: VideoSource,
    device: str = "auto",
    *,
    references: bool = True,
    on_video: Callable[[], None] | None = None,
) -> ClassEvaluation:
    """Embed the training and validation videos of one class and score them.

    Args:
        references: also score the time-stretch baseline and the label oracle on the same
            videos (:func:`score_with_references`). They do not depend on the model: a
            validation hook called every few epochs can leave them out.
        on_video: called after each video is embedded (a progress count).
    """
    model = model.to(resolve_device(device)).eval()
    kwargs = {"image_size": config.data.image_size, "max_chunk": config.eval.max_chunk, "on_video": on_video}
    tr_e, tr_l = embed_source(model, train_source, **kwargs)
    va_e, va_l = embed_source(model, val_source, **kwargs)
    score = score_with_references if references else score_embeddings
    scores = score(tr_e, tr_l, va_e, va_l, config.eval)
    val_ids = [val_source.video_id(i) for i in range(len(val_source))]
    train_ids = [train_source.video_id(i) for i in range(len(train_source))]
    return ClassEvaluation(scores, va_e, va_l, val_ids, tr_e, tr_l, train_ids)


def evaluate_models(
    model_dirs: dict[str, Path],
    store_uri: str,
    out_dir: str | Path,
    *,
    device: str = "auto",
    on_class: Callable[[str, ClassEvaluation, dict, Path], str | None] | None = None,
    progress_logger=None,
    bars: bool = False,
) -> dict:
    """Evaluate one exported model per action class and write ``metrics.json`` + ``report.html``.

    Each model's ``meta.json`` names its data set, version and action; the training split
    fits the classifiers and regressions, ``eval.val_split`` is scored.

    Args:
        model_dirs: {action: exported model directory}.
        store_uri: the store holding the data sets.
        out_dir: where the two files go (local directory).
        on_class: called with (action, evaluation, the model's meta, its directory) after each
            class, e.g. to publish the embeddings it computed; what it returns, if anything, is
            the model's durable address (a published version), named for it instead of its
            directory.
        progress_logger: where each class's count of embedded videos goes, every 30 s and at
            its end (e.g. Prefect's run logger); None: nowhere.
        bars: also draw a tqdm bar per class on stderr.

    Returns:
        {"dataset", "dataset_version", "per_class": {action: metrics}, "mean": {...},
        "models": {action: address}} as written;
        each class's metrics and the mean carry "baseline", "oracle" and "gain" beside the
        model's numbers (:func:`score_with_references`, :func:`lrprop.evaluation.report.mean_over_classes`).
    """
    from lrprop.data.parquet import ParquetVideos
    from lrprop.evaluation.report import mean_over_classes, render_report

    per_class, samples, models, dataset, versions = {}, {}, {}, None, set()
    for action, model_dir in sorted(model_dirs.items()):
        model, config, meta = load_trained_model(model_dir)
        dataset = meta.get("dataset", dataset)
        version = meta.get("dataset_version")
        versions.add(version)
        opts = {
            "dataset": meta["dataset"],
            "version": version,
            "action": meta.get("action", action),
        }
        train_source = ParquetVideos(store_uri, split="train", **opts)
        val_source = ParquetVideos(store_uri, split=config.eval.val_split, **opts)
        with WorkProgress(
            len(train_source) + len(val_source),
            what=f"evaluate {action}",
            unit="videos embedded",
            logger=progress_logger,
            bar=bars,
        ) as shown:
            result = evaluate_class(model, config, train_source, val_source, device=device, on_video=shown.advance)
        per_class[action] = result.metrics
        address = on_class(action, result, meta, Path(model_dir)) if on_class is not None else None
        models[action] = address or str(model_dir)
        frames = [val_source.read_frames(i, np.arange(val_source.num_frames(i))) for i in range(min(2, len(val_source)))]
        shown = min(6, len(result.val_embs))
        samples[action] = {
            "embs": result.val_embs[:shown],
            "labels": result.val_labels[:shown],
            "ids": result.val_ids[:shown],
            "frames": frames,
        }
    summary = {
        "dataset": dataset,
        "dataset_version": sorted(v for v in versions if v),
        "per_class": per_class,
        "mean": mean_over_classes(per_class),
        "models": models,
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2, default=float))
    page = render_report(
        f"LRProp evaluation: {dataset}",
        per_class,
        dataset=dataset or "",
        samples=samples,
        details={
            "data set version": ", ".join(summary["dataset_version"]),
            "models": ", ".join(models[a] for a in sorted(models)),
        },
    )
    (out_dir / "report.html").write_text(page)
    return summary
