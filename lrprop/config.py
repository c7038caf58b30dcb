"""Typed configuration: one frozen dataclass per concern, composed in :class:`Config`.

Defaults are METHOD.md's. A YAML file holds only what differs from them and is merged deeply
(``loss: {alpha: 0.01}`` changes α and nothing else). An unknown key or a value of the wrong type
is an error naming its dotted key; pydantic checks the types against the dataclasses'
annotations, strictly (a string is never read as a number), and ``__post_init__`` the ranges.
Command-line overrides use the same keys: ``--set loss.alpha=0.01``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml

__all__ = [
    "ACTION_PLACEHOLDER",
    "DataConfig",
    "ModelConfig",
    "LossConfig",
    "PretrainConfig",
    "PromotionConfig",
    "OptimConfig",
    "TrainConfig",
    "SyntheticConfig",
    "DatasetConfig",
    "IngestConfig",
    "EvalConfig",
    "RayConfig",
    "Config",
    "ConfigError",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "parse_override",
    "with_ray_address",
]


class ConfigError(ValueError):
    """A configuration key or value that cannot be used; the message names the key."""


# The placeholder of model.pretrained that Config.for_class replaces with the class's name; any
# other {...} is refused rather than read as part of a path.
ACTION_PLACEHOLDER = "{action}"
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


@dataclass(frozen=True)
class DataConfig:
    """How training views are made (METHOD.md §1)."""

    frames_per_view: int = 80  # T, frames per view
    num_views: int = 2  # views per video per step
    videos_per_step: int = 2  # different videos of one class per step
    image_size: int = 224
    sample_ratio: tuple[float, float] = (1.0, 1.5)
    # The share of the video each view covers, drawn from this range, at a random start
    # (lrprop.data.sampling.sample_view); (1, 1): the whole video, SCL's views [choice]
    view_window: tuple[float, float] = (1.0, 1.0)
    # Each view re-timed by a random monotone warp of this strength (speed changes, near-pauses;
    # lrprop.data.sampling.random_warp), the priors still on the frames' true time stamps, so a
    # frame's slot in its view stops telling its time; 0: no warp, SCL's views [choice]
    view_warp: float = 0.0
    augment: bool = True
    loader_workers: int = 0  # DataLoader worker processes decoding and augmenting off the training loop
    # Where the augmentation of training views runs: "loader" (the DataLoader's workers, on the
    # CPU) or "device" (the training loop, on the model's device: the workers only decode, and
    # uint8 frames cross to the GPU). The same random parameters either way.
    augment_on: Literal["loader", "device"] = "loader"
    # Where JPEG frames are decoded: "loader" (the workers, Pillow) or "device" (the training
    # loop, TorchCodec's decoder, nvJPEG on a GPU; the `gpu` extra). "device" needs augment_on
    # "device" and a source of JPEG frames (an ingested data set).
    decode_on: Literal["loader", "device"] = "loader"

    def __post_init__(self) -> None:
        _require(self.frames_per_view >= 2, "data.frames_per_view", f"must be >= 2, got {self.frames_per_view}")
        _require(self.num_views >= 1, "data.num_views", f"must be >= 1, got {self.num_views}")
        _require(self.videos_per_step >= 1, "data.videos_per_step", f"must be >= 1, got {self.videos_per_step}")
        _require(self.image_size >= 16, "data.image_size", f"must be >= 16, got {self.image_size}")
        lo, hi = self.sample_ratio
        _require(1.0 <= lo <= hi, "data.sample_ratio", f"must satisfy 1 <= low <= high, got {self.sample_ratio}")
        lo, hi = self.view_window
        _require(0.0 < lo <= hi <= 1.0, "data.view_window", f"must satisfy 0 < low <= high <= 1, got {self.view_window}")
        _require(self.view_warp >= 0, "data.view_warp", f"must be >= 0, got {self.view_warp}")
        _require(self.loader_workers >= 0, "data.loader_workers", f"must be >= 0, got {self.loader_workers}")
        where = self.augment_on
        _require(where in ("loader", "device"), "data.augment_on", f"must be 'loader' or 'device', got {where!r}")
        decode = self.decode_on
        _require(decode in ("loader", "device"), "data.decode_on", f"must be 'loader' or 'device', got {decode!r}")
        _require(decode == "loader" or where == "device", "data.decode_on", "'device' needs data.augment_on: device as well")


@dataclass(frozen=True)
class ModelConfig:
    """The frame encoder (METHOD.md §2)."""

    backbone: Literal["resnet50", "small_cnn"] = "resnet50"
    # Path or URI of backbone weights (safetensors or state dict). "{action}" in it stands for the
    # class's name (Config.for_class), so one value names every class's weights (lrprop.registry.backbones)
    pretrained: str | None = None
    # The first trained ResNet stage; "none" keeps the whole backbone as built or loaded (the
    # small CNN, which has no stages, trains whole for any other value)
    train_from: Literal["conv1", "layer1", "layer2", "layer3", "layer4", "none"] = "layer4"
    cnn_width: int = 32  # small_cnn only
    hidden_dim: int = 512
    model_dim: int = 256
    num_layers: int = 7
    num_heads: int = 8
    ffn_dim: int = 1024
    embedding_dim: int = 128
    projection_dim: int = 128
    dropout: float = 0.1
    # "sinusoidal": each frame's place in its view (SCL); "local": no position, attention within
    # attention_window frames with a direction bias, so a trimmed copy of a video embeds its
    # frames beyond the window's reach of the cut exactly the same, a re-paced one nearly;
    # "none": no positional encoding, the transformer sees content only (lrprop/core/model.py,
    # docs/results.md)
    positions: Literal["sinusoidal", "local", "none"] = "sinusoidal"
    # In training, the share of sequences embedded without positions (content only) [choice]
    drop_positions: float = 0.0
    # positions "local": a frame attends to the frames at most this many frames away in time
    attention_window: int = 8
    # How the backbone's map is pooled over space: "max" (SCL) or "max_where", the maximum and
    # where each channel fires (lrprop.core.model.pooled_features) [choice]
    pooling: Literal["max", "max_where"] = "max"

    def __post_init__(self) -> None:
        for name in (
            "attention_window",
            "cnn_width",
            "hidden_dim",
            "model_dim",
            "num_layers",
            "num_heads",
            "ffn_dim",
            "embedding_dim",
            "projection_dim",
        ):
            value = getattr(self, name)
            _require(value >= 1, f"model.{name}", f"must be >= 1, got {value}")
        _require(
            self.model_dim % self.num_heads == 0,
            "model.num_heads",
            f"must divide model.model_dim ({self.model_dim}) into equal heads, got {self.num_heads}",
        )
        _require(0.0 <= self.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {self.dropout}")
        p = self.drop_positions
        _require(0.0 <= p < 1.0, "model.drop_positions", f"must be in [0, 1), got {p}")
        _require(
            p == 0.0 or self.positions == "sinusoidal",
            "model.drop_positions",
            f"drops sinusoidal positions; model.positions is {self.positions!r}, which has none to drop",
        )
        unknown = sorted(set(_PLACEHOLDER.findall(self.pretrained or "")) - {ACTION_PLACEHOLDER})
        _require(
            not unknown,
            "model.pretrained",
            f"unknown placeholder {', '.join(unknown)} in {self.pretrained!r}; the only one is {ACTION_PLACEHOLDER}",
        )


@dataclass(frozen=True)
class LossConfig:
    """The objective (METHOD.md §3); the arguments of :class:`lrprop.core.losses.LRPropLoss`."""

    alpha: float = 0.001  # soft-DTW weight α
    beta: float = 0.8  # propagation weight β
    tau: float = 0.1
    sigma2: float = 10.0
    gamma: float = 0.1
    terms: tuple[Literal["same", "prop", "sdtw"], ...] = ("same", "prop", "sdtw")
    cost: Literal["sqeuclidean", "l2"] = "sqeuclidean"
    prop_positions: Literal["view", "timestamps"] = "view"
    # Where L_prop's DTW path is found: on the embeddings (METHOD.md §3) or on the backbone's
    # features, before the positions are added [choice]; "labels", a diagnostic, never a default:
    # on the label oracle of the sampled frames (phase plus progress in it), the right path, to
    # tell whether L_prop can help at all when its path is right (needs labelled training videos)
    prop_path: Literal["embeddings", "features", "labels"] = "embeddings"
    sdtw_normalize: bool = False
    sdtw_divergence: bool = False

    def __post_init__(self) -> None:
        for name in ("tau", "sigma2", "gamma"):
            value = getattr(self, name)
            _require(value > 0, f"loss.{name}", f"must be > 0, got {value}")
        _require(self.alpha >= 0 and self.beta >= 0, "loss.alpha/beta", f"must be >= 0, got {self.alpha}, {self.beta}")
        _require(
            len(self.terms) > 0 and len(set(self.terms)) == len(self.terms),
            "loss.terms",
            f"must be distinct, non-empty: {self.terms}",
        )
        _require(
            not (self.sdtw_divergence and self.cost != "sqeuclidean"),
            "loss.sdtw_divergence",
            "is defined on the squared Euclidean cost only (loss.cost: sqeuclidean)",
        )


@dataclass(frozen=True)
class PretrainConfig:
    """Time-contrastive pretraining of the backbone on the class's own frames, before LRProp
    (:mod:`lrprop.training.pretrain`). It runs when ``steps`` > 0 and ``model.pretrained`` is not given:
    from random weights, LRProp's objective is minimised by the positional encoding alone, so
    the backbone first learns what changes within a video (docs/results.md)."""

    steps: int = 800  # 0: none (the backbone starts from model.pretrained or random weights)
    videos_per_step: int = 8  # videos of the class per step (fewer if the class has fewer)
    frames_per_video: int = 16  # anchor frames drawn per video per step
    max_offset: int = 2  # a positive is its anchor's frame moved by up to this many frames
    sigma2: float = 10.0  # the temporal prior's variance, in frames (L_same's)
    tau: float = 0.1  # temperature of the frame similarities
    lr: float = 1e-3
    projection_dim: int = 128
    # Weight of the cross-video cycle-back term (lrprop.core.losses.cycle_back_loss, TCC's
    # idea) beside the within-video time contrast; 0: within-video only [choice]
    cycle_weight: float = 0.0
    # Keep the backbone as pretrained while LRProp trains the rest (FrameEncoder.freeze_backbone):
    # LRProp from here would train its features back towards the clock (docs/results.md)
    freeze_backbone: bool = True

    def __post_init__(self) -> None:
        _require(self.steps >= 0, "pretrain.steps", f"must be >= 0, got {self.steps}")
        for name in ("videos_per_step", "frames_per_video"):
            value = getattr(self, name)
            _require(value >= 1, f"pretrain.{name}", f"must be >= 1, got {value}")
        _require(self.max_offset >= 0, "pretrain.max_offset", f"must be >= 0, got {self.max_offset}")
        _require(self.cycle_weight >= 0, "pretrain.cycle_weight", f"must be >= 0, got {self.cycle_weight}")
        for name in ("sigma2", "tau", "lr"):
            value = getattr(self, name)
            _require(value > 0, f"pretrain.{name}", f"must be > 0, got {value}")


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation (METHOD.md §4)."""

    lr: float = 1e-4
    weight_decay: float = 1e-5
    epochs: int = 300
    max_steps: int | None = None  # stop early (the cosine schedule still spans ``epochs``)
    grad_clip: float = 10.0
    bf16: bool = True  # bf16 autocast on CUDA; ignored on CPU

    def __post_init__(self) -> None:
        _require(self.lr > 0, "optim.lr", f"must be > 0, got {self.lr}")
        _require(self.weight_decay >= 0, "optim.weight_decay", f"must be >= 0, got {self.weight_decay}")
        _require(self.epochs >= 1, "optim.epochs", f"must be >= 1, got {self.epochs}")
        _require(self.max_steps is None or self.max_steps >= 1, "optim.max_steps", f"must be >= 1 or null, got {self.max_steps}")
        _require(self.grad_clip > 0, "optim.grad_clip", f"must be > 0, got {self.grad_clip}")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation (METHOD.md §5)."""

    classifier: Literal["svm", "logistic"] = "svm"  # phase classification: the paper's SVM or SCL's
    fractions: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0)  # of training videos
    tau_stride: int = 2  # Kendall's tau frame stride: 2 PennAction, 5 Pouring
    ap_stride: int = 1  # AP@K query/gallery frame stride
    ap_ks: tuple[int, ...] = (1, 5, 10, 15, 20, 25, 30)
    max_chunk: int = 1000  # longest run of frames embedded in one pass (CARL's); longer go in chunks
    val_split: str = "val"  # the split scored (CARL scores Penn Action and Pouring on "val")
    # The pace metric (lrprop.core.pace): the first this many validation videos are copied
    # re-paced and trimmed, embedded again and aligned with themselves (each costs about 5.7
    # times its frames embedded again); 0: not measured
    pace_videos: int = 8
    pace_seed: int = 0  # the draws of those copies' warps and cuts: the same copies every evaluation

    def __post_init__(self) -> None:
        _require(all(0 < f <= 1 for f in self.fractions) and bool(self.fractions), "eval.fractions", "must lie in (0, 1]")
        _require(self.tau_stride >= 1 and self.ap_stride >= 1, "eval.tau_stride/ap_stride", "must be >= 1")
        _require(bool(self.ap_ks) and min(self.ap_ks) >= 1, "eval.ap_ks", f"must be >= 1, got {self.ap_ks}")
        _require(self.max_chunk >= 1, "eval.max_chunk", f"must be >= 1, got {self.max_chunk}")
        _require(self.pace_videos >= 0, "eval.pace_videos", f"must be >= 0, got {self.pace_videos}")


@dataclass(frozen=True)
class RayConfig:
    """How training jobs run on Ray (``lrprop run``, ``lrprop tune``)."""

    address: str | None = None  # None: a local Ray started for the run; "auto" or ray://host:10001 for a cluster
    num_workers: int = 1  # data-parallel workers per action class
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0  # fractions share a GPU between classes, e.g. 0.5
    max_failures: int = 2  # a lost worker resumes from the latest checkpoint this many times
    validate_every: int = 5  # epochs between validation metrics (Tune's early stopping reads them)
    tune_samples: int = 8  # trials of a search
    tune_max_concurrent: int = 2
    tune_grace_epochs: int = 5  # ASHA stops no trial before this many epochs
    # Ray Tune's own console output: 0 none (lrprop logs each trial's progress and the count of
    # trials ended, also to the flow run's logs), 1 Tune's status table every 30 s and each
    # trial's start and end, 2 each trial's every result too
    tune_verbose: int = 0
    # A class's or a trial's Ray Train workers that cannot start within this many seconds fail
    # the job, naming the resources they waited for and the placement groups holding them,
    # instead of waiting for ever. Classes beyond what the cluster holds at once wait for
    # earlier ones to finish: raise it for such runs. 0: wait for ever (Ray's own default).
    start_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        _require(self.num_workers >= 1, "ray.num_workers", f"must be >= 1, got {self.num_workers}")
        _require(self.cpus_per_worker > 0, "ray.cpus_per_worker", f"must be > 0, got {self.cpus_per_worker}")
        _require(self.gpus_per_worker >= 0, "ray.gpus_per_worker", f"must be >= 0, got {self.gpus_per_worker}")
        _require(self.max_failures >= 0, "ray.max_failures", f"must be >= 0, got {self.max_failures}")
        _require(self.validate_every >= 1, "ray.validate_every", f"must be >= 1, got {self.validate_every}")
        _require(self.tune_samples >= 1 and self.tune_max_concurrent >= 1, "ray.tune_samples", "must be >= 1")
        _require(self.tune_verbose in (0, 1, 2), "ray.tune_verbose", f"must be 0, 1 or 2, got {self.tune_verbose}")
        _require(self.start_timeout_s >= 0, "ray.start_timeout_s", f"must be >= 0, got {self.start_timeout_s}")


@dataclass(frozen=True)
class TrainConfig:
    """Run mechanics, not method."""

    seed: int = 0
    device: str = "auto"  # "auto" = CUDA when available, else CPU
    checkpoint_every: int = 0  # steps between checkpoints; 0 = at the end of each epoch only
    # whole epochs between end-of-epoch checkpoints (the last epoch always writes one): short
    # epochs (the smoke run's are 8 steps) would otherwise spend much of their time writing them
    checkpoint_epochs: int = 1
    keep_checkpoints: int = 2  # the newest checkpoints kept per class (in the store and locally)
    log_every: int = 10  # steps between log lines
    channels_last: bool = True  # channels-last (NHWC) backbone and images on CUDA; ignored on CPU
    # Refuse to start when one step's estimated memory exceeds what the device has free
    # (lrprop.training.memory); false: train anyway
    check_memory: bool = True

    def __post_init__(self) -> None:
        _require(self.checkpoint_epochs >= 1, "train.checkpoint_epochs", f"must be >= 1, got {self.checkpoint_epochs}")
        _require(self.keep_checkpoints >= 1, "train.keep_checkpoints", f"must be >= 1, got {self.keep_checkpoints}")


@dataclass(frozen=True)
class SyntheticConfig:
    """The generated data set used when no real data is given."""

    num_actions: int = 2
    train_videos: int = 16  # per class
    val_videos: int = 8  # per class
    frame_size: int = 64
    length_range: tuple[int, int] = (30, 200)
    seed: int = 0
    # "figure": a body with one arm, on a still camera (lrprop.data.generator), the one defaults
    # are tuned on; "stick_figures": thin stick figures with camera motion, changing light, a
    # drifting object and a second figure (lrprop.data.stick_figures), only for checking them
    generator: Literal["figure", "stick_figures"] = "figure"


@dataclass(frozen=True)
class DatasetConfig:
    """Which data set a pipeline run trains on, and where it comes from."""

    name: str = "synthetic"  # the data set's name in the store
    kind: Literal["synthetic", "pennaction", "pouring", "generic"] = "synthetic"  # how to ingest it
    source: str | None = None  # raw data (path or URI) to ingest first; None: use what the store has
    # pennaction: the folder of phase labels (``labels`` elsewhere means per-frame label arrays)
    labels_dir: str | None = None
    version: str | None = None  # a data-set version to use; None: the latest (after ingesting)

    def __post_init__(self) -> None:
        from lrprop.names import check_name

        try:
            check_name(self.name, "dataset.name")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class IngestConfig:
    """How raw videos become a Parquet data set (``lrprop ingest``)."""

    # Shorter side of stored frames, pixels; None: DEFAULT_FRAME_SIZE (256) for ingested videos,
    # synthetic.frame_size (the size they are generated at) for the synthetic data set
    frame_size: int | None = None
    jpeg_quality: int = 95
    strict: bool = False  # fail at the first bad video instead of skipping and reporting it
    threads: int = 4  # threads decoding and encoding frames


@dataclass(frozen=True)
class PromotionConfig:
    """Which published versions readers get: an alias (``lrprop embeddings pull --alias``) that a
    run moves to the version it publishes only through a gate (:mod:`lrprop.registry.aliases`)."""

    alias: str | None = "production"  # the alias a run moves; None: publish without promoting
    # The metric compared (a key of the class's metrics), higher is better: dtw_accuracy,
    # kendalls_tau, phase_progression, phase_transfer, ap_at_k/<K>, phase_classification/<fraction>;
    # or lower is better, an error: pace/repaced, pace/trimmed (eval.pace_videos > 0)
    metric: str = "dtw_accuracy"
    # The new version may score this much worse than the alias's current one (below it; above
    # it for an error)
    tolerance: float = 0.01
    # It must beat the time-stretch baseline (the metric's gain over it) by more than this; None: not asked
    min_gain: float | None = 0.0

    METRICS = ("dtw_accuracy", "kendalls_tau", "phase_progression", "phase_transfer", "pace/repaced", "pace/trimmed")

    def __post_init__(self) -> None:
        if self.alias is not None:
            from lrprop.names import check_name

            try:
                check_name(self.alias, "alias")
            except ValueError as exc:
                raise ConfigError(f"promotion.alias: {exc}") from None
        nested = re.fullmatch(r"(ap_at_k|phase_classification)/[0-9][0-9.]*", self.metric)
        _require(
            self.metric in self.METRICS or nested is not None,
            "promotion.metric",
            f"must be one of {list(self.METRICS)}, ap_at_k/<K> or phase_classification/<fraction>, got {self.metric!r}",
        )
        _require(self.tolerance >= 0, "promotion.tolerance", f"must be >= 0, got {self.tolerance}")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    promotion: PromotionConfig = field(default_factory=PromotionConfig)
    # Per action class overrides of the sections below, e.g. the paper's Table 5:
    # {"jumping_jacks": {"data": {"frames_per_view": 20}, "loss": {"alpha": 0.01, "beta": 0.4}}}
    actions: dict[str, dict] = field(default_factory=dict, hash=False)  # hashing skips it; == does not

    CLASS_SECTIONS = ("data", "model", "loss", "pretrain", "optim", "eval")

    def for_class(self, action: str) -> Config:
        """This config with ``actions[action]`` merged in (and no per-action table left), and
        ``{action}`` in ``model.pretrained`` replaced by ``action``."""
        merged = _merge(dataclasses.replace(self, actions={}), self.actions.get(action, {}), f"actions.{action}.")
        pretrained = merged.model.pretrained
        if pretrained and ACTION_PLACEHOLDER in pretrained:
            from lrprop.names import check_name

            try:
                name = check_name(action, "action name")  # it becomes part of a path
            except ValueError as exc:
                raise ConfigError(f"model.pretrained: {exc}") from None
            model = dataclasses.replace(merged.model, pretrained=pretrained.replace(ACTION_PLACEHOLDER, name))
            merged = dataclasses.replace(merged, model=model)
        return merged

    def __post_init__(self) -> None:
        for action, overrides in self.actions.items():
            _require(isinstance(overrides, dict), f"actions.{action}", "must be a mapping of section overrides")
            bad = sorted(set(overrides) - set(self.CLASS_SECTIONS))
            _require(not bad, f"actions.{action}", f"may override only {list(self.CLASS_SECTIONS)}, not {bad}")
            self.for_class(action)  # every override must be a valid key and value
        # A term with no pair of views to act on would leave the objective without gradient.
        d, terms = self.data, set(self.loss.terms)
        has_same = d.num_views >= 2 and "same" in terms
        has_cross = d.videos_per_step >= 2 and bool(terms & {"prop", "sdtw"})
        _require(
            has_same or has_cross,
            "loss.terms",
            f"{sorted(terms)} act on no pair of views with data.num_views={d.num_views} and "
            f"data.videos_per_step={d.videos_per_step}: 'same' needs 2 views, 'prop'/'sdtw' need 2 videos",
        )


@functools.cache
def _adapter(tp: Any) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(tp)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against the annotation ``tp`` by pydantic, strictly and as JSON would
    give it (a YAML file's and a --set's values are JSON-like): lists become tuples, ints
    floats; a string is never read as a number nor 1 as true. Raises ConfigError naming ``key``
    (with the item's index or name inside a list or a mapping)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: {value!r} is not a plain value (a number, string, list or mapping)") from None
    try:
        return _adapter(tp).validate_json(text, strict=True)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        where = "".join(f"[{part}]" for part in error["loc"])
        raise ConfigError(f"{key}{where}: {error['msg'].lower()}, got {error['input']!r}") from None


# Config keys that were renamed (issue 13: one name for one thing): the old key fails with a
# message naming the new one instead of "unknown key".
RENAMED_KEYS = {
    "classes": "actions",
    "dataset.labels": "dataset.labels_dir",
    "data.num_frames": "data.frames_per_view",
    "data.num_workers": "data.loader_workers",
    "ingest.workers": "ingest.threads",
    "synthetic.num_classes": "synthetic.num_actions",
}
# An action's own overrides (``actions.<name>.data.…``) are keyed like the sections they override.
_PER_ACTION = re.compile(r"^actions\.[^.]+\.")


def _renamed(key: str) -> str | None:
    """The new name of the dotted ``key`` if it was renamed, else None."""
    relative = _PER_ACTION.sub("", key)
    if relative not in RENAMED_KEYS:
        return None
    return key[: len(key) - len(relative)] + RENAMED_KEYS[relative]


def _rename_in(tree: dict, renames: dict[str, str]) -> None:
    """Move each old dotted key of ``tree`` (nested dicts) to its new one, in place."""
    for old, new in renames.items():
        *old_parents, old_key = old.split(".")
        *new_parents, new_key = new.split(".")
        parent: Any = tree
        for part in old_parents:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and old_key in parent:
            value = parent.pop(old_key)
            target = tree
            for part in new_parents:
                target = target.setdefault(part, {})
            target[new_key] = value


def upgrade_stored(config: dict) -> dict:
    """A config dict that an earlier version stored (a checkpoint's, an exported model's, a
    search's best) with its renamed keys under their new names, per-action overrides included:
    what lrprop wrote is read back, while a user's old key still fails with the new name
    (:data:`RENAMED_KEYS`)."""
    out = json.loads(json.dumps(config))
    _rename_in(out, RENAMED_KEYS)
    sections = {old: new for old, new in RENAMED_KEYS.items() if old.split(".")[0] in Config.CLASS_SECTIONS}
    for overrides in (out.get("actions") or {}).values():
        if isinstance(overrides, dict):
            _rename_in(overrides, sections)
    return out


def _merge(base: Any, overrides: dict, prefix: str) -> Any:
    """A copy of dataclass ``base`` with ``overrides`` merged in, recursively."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {overrides!r}")
    hints = typing.get_type_hints(type(base))
    names = {f.name for f in dataclasses.fields(base)}
    changes = {}
    for name, value in overrides.items():
        key = f"{prefix}{name}"
        new_key = _renamed(key)
        if new_key is not None:
            raise ConfigError(f"config key {key!r} is now {new_key!r}")
        if name not in names:
            raise ConfigError(f"unknown config key {key!r}; known keys here: {sorted(names)}")
        current = getattr(base, name)
        if dataclasses.is_dataclass(current):
            changes[name] = _merge(current, value, f"{key}.")
        else:
            changes[name] = _coerce(value, hints[name], key)
    return dataclasses.replace(base, **changes)


def config_from_dict(overrides: dict | None, base: Config | None = None) -> Config:
    """Defaults (or ``base``) with a nested dict of overrides merged in."""
    return _merge(base or Config(), overrides or {}, "")


def config_to_dict(config: Any) -> dict:
    """A plain nested dict (tuples as lists) that :func:`config_from_dict` reads back."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = config_to_dict(value)
        else:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-4`` as a number as YAML 1.2 and JSON do (YAML 1.1, which
    PyYAML follows, wants a dot and a signed exponent: ``1.0e-4``, and gives a string otherwise)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"), list("-+0123456789.")
)


def parse_override(text: str) -> dict:
    """``"loss.alpha=0.01"`` -> ``{"loss": {"alpha": 0.01}}``; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    dotted, raw = text.split("=", 1)
    value = yaml.load(raw, Loader=_YamlLoader)
    out: dict = {}
    node = out
    parts = dotted.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _deep_update(target: dict, extra: dict) -> dict:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(target.get(k), dict):
            _deep_update(target[k], v)
        else:
            target[k] = v
    return target


def with_ray_address(config: Config, address: str | None) -> Config:
    """``config`` with ``ray.address`` replaced when ``address`` is given (a CLI or deployment flag)."""
    if address is None:
        return config
    return dataclasses.replace(config, ray=dataclasses.replace(config.ray, address=address))


def _read_config_text(path: str | Path) -> str:
    """The text of a config file: a local path, or any store URI (``s3://…/best.yaml``, which
    ``lrprop tune`` writes), read through :mod:`lrprop.store` with its credentials' rules."""
    if "://" not in str(path):
        return Path(path).read_text()
    from lrprop import store  # only for URIs: fsspec and pyarrow are slow to import

    data = store.read_bytes(str(path))
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file ({exc})") from None


def check_for_a_run(config: Config) -> Config:
    """``config``, checked for what a run needs beyond each key's own rule (not asked of the
    configs that models and checkpoints stored: they load whatever a run then allowed).

    Raises:
        ConfigError: ``promotion.metric`` names a metric the evaluation does not compute (e.g.
            ``ap_at_k/3`` with no 3 in ``eval.ap_ks``): the gate would hold back every version,
            after the training.
    """
    _require(
        not (config.promotion.metric.startswith("pace/") and config.eval.pace_videos == 0),
        "promotion.metric",
        f"{config.promotion.metric!r} is not computed: eval.pace_videos is 0",
    )
    family, _, key = config.promotion.metric.partition("/")
    computed = {"ap_at_k": [str(k) for k in config.eval.ap_ks], "phase_classification": [str(f) for f in config.eval.fractions]}
    _require(
        family not in computed or key in computed[family],
        "promotion.metric",
        f"{config.promotion.metric!r} is not computed: {family}/ takes one of {computed.get(family)} "
        f"(eval.{'ap_ks' if family == 'ap_at_k' else 'fractions'})",
    )
    return config


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the YAML file at ``path`` (if any: a local path or a store URI), then
    ``key=value`` overrides; checked for a run (:func:`check_for_a_run`)."""
    merged: dict = {}
    if path is not None:
        try:
            loaded = yaml.load(_read_config_text(path), Loader=_YamlLoader)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        merged = loaded or {}
    for text in overrides:
        _deep_update(merged, parse_override(text))
    try:
        return check_for_a_run(config_from_dict(merged))
    except ConfigError as exc:
        raise ConfigError(f"{_origin(str(exc), path, overrides)}: {exc}") from None


def _origin(message: str, path: str | Path | None, overrides) -> str:
    """Where the key a ConfigError names was given: the last ``--set`` of it, else the file."""
    for text in reversed(overrides):
        dotted = text.split("=", 1)[0].strip()
        if message.startswith((f"{dotted}:", f"{dotted}[")) or f"'{dotted}'" in message:
            return f"--set {text}"
    return str(path) if path is not None else "config"
