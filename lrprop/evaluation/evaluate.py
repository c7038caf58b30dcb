"""Evaluation of a trained model: embed every frame of every video, then score the embeddings.

    model, config = load_trained_model(model_dir)
    result = evaluate_class(model, config, train_source, val_source)
    result.metrics   # {"phase_classification": {f: acc}, "phase_progression": r2, ...,
                     #  "pace": {"repaced": err, "trimmed": err},
                     #  "baseline": {...}, "oracle": {...}, "gain": {...}}

Embedding follows METHOD.md §5: no augmentation (resize + centre crop), stride 1, the whole
video in one pass with positions linspace(0, T - 1, L), or in chunks of ``eval.max_chunk``
consecutive frames with the same positions when the video is longer. Frames with a label < 0
are dropped after embedding, before scoring.

Every evaluation also scores two references on the same videos, frames and settings
(:mod:`lrprop.core.baselines`): the label-free time-stretch baseline (frame i of L is i / L) and a
label oracle (phase index plus progress within the phase); ``gain`` is the model's metrics
minus the baseline's.

And it measures whether the embeddings follow what a video shows rather than where a frame sits
in it or how fast it plays (:func:`score_pace`, :mod:`lrprop.core.pace`): copies of the first
``eval.pace_videos`` validation videos, re-paced and trimmed, are embedded and aligned with the
video; ``pace`` holds how far the matched frames are from the true ones, an error, lower is
better, with the time stretch's error on the same copies under ``baseline`` and no oracle.
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
from lrprop.core.dtw import dtw_paths_to_many
from lrprop.core.dtw_long import dtw_subsequence_path_long, sqeuclidean_rows
from lrprop.core.model import FrameEncoder
from lrprop.core.pace import MIN_FRAMES, PACE_KINDS, pace_maps, path_error, stretch_error
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
    "pace_video_indices",
    "score_embeddings",
    "score_pace",
    "score_with_references",
    "with_pace",
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
    ((n, H, W, 3) uint8 each): a long video streamed from its file, chunks of ``eval.max_chunk``.

    A model whose frames see the whole video (sinusoidal positions) embeds each chunk in one
    forward pass, with the chunk's positions of linspace(0, T - 1, L). A "local" model, whose
    frames see ``model.context_frames`` on either side, embeds each chunk with that many frames
    of its neighbours around it and keeps the chunk's own outputs: exactly what one pass over
    the whole video gives, one pass a chunk, holding at most a chunk and two margins.

    Raises:
        ValueError: the chunks hold another number of frames than ``length``.
    """
    device = next(model.parameters()).device
    transform = eval_transform(image_size)

    def forward(x: torch.Tensor, first: int) -> np.ndarray:
        """Embed consecutive transformed frames x (n, 3, S, S), the first at index ``first``."""
        n = x.shape[0]
        mask = torch.ones(1, n, dtype=torch.bool, device=device)
        positions = model.default_positions(length, 1, device)[:, first : first + n]  # sinusoidal only
        times = torch.arange(first, first + n, device=device, dtype=torch.float32)[None]  # (1, n)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            z, _ = model(x[None], mask, positions, times=times)
        return z[0].float().cpu().numpy()

    margin = model.context_frames
    out, received = [], 0
    held, held_from = None, 0  # transformed frames not yet embedded, with a margin before them; index of the first
    done = 0  # frames embedded
    for frames in chunks:
        if received + len(frames) > length:
            raise ValueError(f"more than the {length} frames announced")
        x = transform(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)).to(device)
        received += len(frames)
        if margin is None:
            out.append(forward(x, received - len(frames)))
            continue
        held = x if held is None else torch.cat([held, x])
        # Embed, in one pass, every frame whose margin after it has arrived: [done, received - margin).
        ready = received - margin
        if ready > done:
            z = forward(held, held_from)
            out.append(z[done - held_from : ready - held_from])
            done = ready
            keep = max(held_from, done - margin)
            held, held_from = held[keep - held_from :], keep
    if received != length:
        raise ValueError(f"{received} frames where {length} were announced")
    if margin is not None and done < length:
        z = forward(held, held_from)
        out.append(z[done - held_from :])
    return np.concatenate(out) if out else np.zeros((0, model.embed.out_features), np.float32)


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


def pace_video_indices(source: VideoSource, videos: int) -> list[int]:
    """The indices of the videos of ``source`` whose copies :func:`score_pace` scores: the first
    ``videos`` (data-set order) of at least ``lrprop.core.pace.MIN_FRAMES`` frames."""
    if videos <= 0:
        return []
    return [i for i in range(len(source)) if source.num_frames(i) >= MIN_FRAMES][:videos]


def score_pace(
    model: FrameEncoder,
    source: VideoSource,
    embs: list[np.ndarray],
    *,
    image_size: int,
    max_chunk: int = 1000,
    videos: int = 8,
    seed: int = 0,
    on_video: Callable[[], None] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """How far the model's alignments of a video with copies of it at another pace are from the
    true frames, beside the time stretch's on the same copies (:mod:`lrprop.core.pace`).

    For each video A of :func:`pace_video_indices` (n frames, every frame, labelled or not) the
    copies of :func:`lrprop.core.pace.pace_maps` (seeded by ``seed`` and A's index) are embedded
    like any video (:func:`embed_video`: with sinusoidal positions their own linspace(0, T - 1, m),
    a "local" model none) and aligned
    with A by exact DTW on the squared Euclidean cost, the paths of ``lrprop align``: a re-paced
    copy, the whole of A, anchored at both ends (:func:`lrprop.core.dtw.dtw_paths_to_many`); a
    trimmed copy, a clip of A, by subsequence DTW, free to start and end on any frame of A
    (:func:`lrprop.core.dtw_long.dtw_subsequence_path_long`). Each copy's error is
    :func:`lrprop.core.pace.path_error`, the time stretch's :func:`lrprop.core.pace.stretch_error`
    (which does not know where the clip lies): fractions of n, lower is better.

    Args:
        embs: the embeddings of every video of ``source`` (:func:`embed_source`), A's own.
        videos: how many videos to copy (``eval.pace_videos``).
        seed: the draws of the copies (``eval.pace_seed``).
        on_video: called after each video's copies are scored (a progress count).

    Returns:
        (the model's, the time stretch's) {"repaced": mean error, "trimmed": mean error}, each
        the mean over the copies of that kind of every video.
    """
    model_errors: dict[str, list[float]] = {kind: [] for kind in PACE_KINDS}
    stretch_errors: dict[str, list[float]] = {kind: [] for kind in PACE_KINDS}
    for index in pace_video_indices(source, videos):
        n = source.num_frames(index)
        frames = source.read_frames(index, np.arange(n))
        maps = pace_maps(n, seed=seed, video_index=index)
        copies = {
            kind: [embed_video(model, frames[true], image_size=image_size, max_chunk=max_chunk) for true in trues]
            for kind, trues in maps.items()
        }
        # Paths: rows A's frames, columns the copy's
        paths = {
            "repaced": dtw_paths_to_many(embs[index], copies["repaced"])[0],
            "trimmed": [dtw_subsequence_path_long(sqeuclidean_rows(embs[index], b), n, len(b))[0] for b in copies["trimmed"]],
        }
        for kind in PACE_KINDS:
            for true, path in zip(maps[kind], paths[kind], strict=True):
                model_errors[kind].append(path_error(path, true, n))
                stretch_errors[kind].append(stretch_error(true, n))
        if on_video is not None:
            on_video()
    if not model_errors[PACE_KINDS[0]]:
        raise ValueError(f"no video of at least {MIN_FRAMES} frames to copy for the pace metric")
    return (
        {kind: float(np.mean(v)) for kind, v in model_errors.items()},
        {kind: float(np.mean(v)) for kind, v in stretch_errors.items()},
    )


def with_pace(scores: dict, model_pace: dict, stretch_pace: dict) -> dict:
    """``scores`` (:func:`score_embeddings` or :func:`score_with_references`) with ``pace``
    among the model's metrics and, where it carries the references, the time stretch's pace
    under ``baseline`` and the gain over it (stretch − model: lower is better) under ``gain``;
    the oracle has none (it has no frames to copy)."""
    out = {key: value for key, value in scores.items() if key not in REFERENCES}
    out["pace"] = dict(model_pace)
    if "baseline" in scores:
        out["baseline"] = {**scores["baseline"], "pace": dict(stretch_pace)}
        out["oracle"] = scores["oracle"]
        out["gain"] = {**scores["gain"], **metrics_gain({"pace": model_pace}, {"pace": stretch_pace})}
    return out


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
        """{split: (video ids, embeddings, labels)}, as :func:`lrprop.registry.embeddings.publish_embeddings` takes them."""
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
    pace: bool = True,
    on_video: Callable[[], None] | None = None,
) -> ClassEvaluation:
    """Embed the training and validation videos of one class and score them.

    Args:
        references: also score the time-stretch baseline and the label oracle on the same
            videos (:func:`score_with_references`). They do not depend on the model: a
            validation hook called every few epochs can leave them out.
        pace: also measure the pace errors on copies of the first ``eval.pace_videos``
            validation videos (:func:`score_pace`; none when it is 0). They embed about 5.7
            times those videos' frames again: a validation hook can leave them out.
        on_video: called after each video is embedded, and after each video's pace copies
            (a progress count: :func:`pace_video_indices` says how many).
    """
    model = model.to(resolve_device(device)).eval()
    kwargs = {"image_size": config.data.image_size, "max_chunk": config.eval.max_chunk, "on_video": on_video}
    tr_e, tr_l = embed_source(model, train_source, **kwargs)
    va_e, va_l = embed_source(model, val_source, **kwargs)
    score = score_with_references if references else score_embeddings
    scores = score(tr_e, tr_l, va_e, va_l, config.eval)
    if pace and config.eval.pace_videos > 0:
        errors = score_pace(model, val_source, va_e, videos=config.eval.pace_videos, seed=config.eval.pace_seed, **kwargs)
        scores = with_pace(scores, *errors)
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
            len(train_source) + len(val_source) + len(pace_video_indices(val_source, config.eval.pace_videos)),
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
