"""Training batches: for each video, V temporally sampled and augmented views (METHOD.md §1).

Randomness is a pure function of (seed, epoch, video index): a sample comes out the same in any
loader worker and after a resume, so a resumed run sees exactly the data it would have seen.
The batch sampler yields (epoch, index) keys to carry the epoch into the workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from lrprop.core.baselines import phase_progress_embeddings
from lrprop.data.sampling import sample_view
from lrprop.data.source import VideoSource

__all__ = [
    "ViewDataset",
    "EpochBatchSampler",
    "apply_view_transform",
    "collate_deferred_views",
    "label_oracle",
    "mix_seed",
    "transform_views",
]


def mix_seed(*parts: int) -> int:
    """A well-spread 63-bit seed from integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> np.uint64(1))


class ViewDataset(Dataset):
    """Item (epoch, i): V views of video i.

    Args:
        source: the videos.
        frames_per_view: T frames per view.
        num_views: V views per video.
        transform: (T, 3, H, W) uint8 -> (T, 3, S, S) float, applied once per view with one set
            of random parameters; None gives frames scaled to [0, 1].
        seed: base seed.
        ratio_range: the temporal sampling ratio range.
        window: the share of the video a view covers, drawn from this range (``sample_view``).
        warp: the strength of each view's random re-timing (``sample_view``); 0, none.
        defer_transform: leave ``transform`` to the training loop (:func:`transform_views`, on
            the GPU): the item then carries the decoded uint8 frames and the seed of each view.
        defer_decode: with ``defer_transform``, leave the decoding too: the item carries each
            view's JPEG bytes (``source.read_encoded``), decoded by :func:`transform_views`.
        with_oracle: add oracle (V, T, 2) float32, each sampled frame's :func:`label_oracle`
            point (``loss.prop_path: labels``, a diagnostic).

    An item is a dict: frames (V, T, 3, S, S) float32 (zeros on padded frames), mask (V, T)
    bool, timestamps (V, T) int64, index () int64. With ``defer_transform``, frames is a list
    of V uint8 tensors (n_v, 3, H, W), each view's valid frames only, and view_seeds (V,)
    int64 is added; batch such items with :func:`collate_deferred_views`. With ``defer_decode``
    each view's tensor holds its frames' JPEG bytes one after the other, and frame_offsets, a
    list of V int64 tensors (n_v + 1,), says where each frame starts.
    """

    def __init__(
        self,
        source: VideoSource,
        frames_per_view: int,
        *,
        num_views: int = 2,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        seed: int = 0,
        ratio_range: tuple[float, float] = (1.0, 1.5),
        window: tuple[float, float] = (1.0, 1.0),
        warp: float = 0.0,
        defer_transform: bool = False,
        defer_decode: bool = False,
        with_oracle: bool = False,
    ) -> None:
        if defer_decode and not defer_transform:
            raise ValueError("defer_decode needs defer_transform: frames are augmented where they are decoded")
        if defer_decode and not hasattr(source, "read_encoded"):
            raise ValueError(f"defer_decode needs a source of encoded frames; {type(source).__name__} has no read_encoded")
        self.source, self.frames_per_view, self.num_views = source, frames_per_view, num_views
        self.transform, self.seed, self.ratio_range, self.window = transform, seed, ratio_range, window
        self.warp = warp
        self.defer_transform, self.defer_decode = defer_transform, defer_decode
        self.oracle = label_oracle(source) if with_oracle else None

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch, index))
        length = self.source.num_frames(index)
        frames, masks, stamps, seeds, offsets = [], [], [], [], []
        for _ in range(self.num_views):
            read, mask, timestamps = sample_view(
                length, self.frames_per_view, generator, self.ratio_range, window=self.window, warp=self.warp
            )
            n_valid = int(mask.sum())  # valid frames are a prefix; padding is never looked at
            view_seed = int(torch.randint(0, 2**62, (), generator=generator))
            if self.defer_decode:
                # One tensor of bytes per view: a tensor per frame would cost a shared-memory
                # handle each on the way out of a worker process.
                jpegs = self.source.read_encoded(index, read[:n_valid].numpy())
                frames.append(torch.frombuffer(bytearray(b"".join(jpegs)), dtype=torch.uint8))
                offsets.append(torch.from_numpy(np.cumsum([0] + [len(j) for j in jpegs])))
            else:
                clip = torch.from_numpy(np.ascontiguousarray(self.source.read_frames(index, read[:n_valid].numpy())))
                clip = clip.permute(0, 3, 1, 2)  # (n, H, W, 3) -> (n, 3, H, W)
                if self.defer_transform:
                    frames.append(clip.contiguous())
                else:
                    frames.append(_pad(apply_view_transform(clip, self.transform, view_seed), self.frames_per_view))
            masks.append(mask)
            stamps.append(timestamps)
            seeds.append(view_seed)
        item = {
            "frames": frames if self.defer_transform else torch.stack(frames),
            "mask": torch.stack(masks),
            "timestamps": torch.stack(stamps),
            "index": torch.tensor(index),
        }
        if self.oracle is not None:
            stamps_ = torch.stack(stamps).clamp(max=length - 1)  # padding reads the last frame
            item["oracle"] = torch.from_numpy(self.oracle[index][stamps_.numpy()])  # (V, T, 2)
        if self.defer_transform:
            item["view_seeds"] = torch.tensor(seeds, dtype=torch.int64)
        if self.defer_decode:
            item["frame_offsets"] = offsets
        return item


def label_oracle(source: VideoSource) -> list[np.ndarray]:
    """Each video's frames as the label oracle sees them, (L, 2) float32 a video: the phase
    index plus progress within the phase, o (:func:`lrprop.core.baselines.phase_progress_embeddings`,
    one weight for all the videos, so a phase's progress means the same in each), as the point
    (cos θ, sin θ) at θ = π o / (K + 1), K the most phases a video has.

    Why a point on a half circle and not o itself: L_prop's cost L2-normalises what it compares,
    which would turn one number into its sign. On the half circle the normalised squared
    distance 2 − 2 cos Δθ grows with |Δo|, so DTW keeps each phase with itself as on o.

    Raises:
        ValueError: a video without labels, or with unlabelled frames (named).
    """
    labels = []
    for i in range(len(source)):
        lab = source.labels(i)
        if lab is None or (np.asarray(lab) < 0).any():
            raise ValueError(f"loss.prop_path: labels needs every frame labelled; video {source.video_id(i)} is not")
        labels.append(np.asarray(lab))
    phases = max(int(lab.max()) + 1 for lab in labels)
    out = []
    for o in phase_progress_embeddings(labels):
        theta = np.pi * o[:, 0] / (phases + 1)
        out.append(np.stack([np.cos(theta), np.sin(theta)], axis=1).astype(np.float32))
    return out


def apply_view_transform(clip: torch.Tensor, transform: Callable | None, seed: int) -> torch.Tensor:
    """One view's transform, (n, 3, H, W) uint8 -> (n, 3, S, S) float, its random parameters from ``seed``.

    torchvision draws its parameters from torch's global CPU generator, whatever the device of
    ``clip``: it is seeded here and restored after, so a view's augmentation is the same in any
    loader worker, on the GPU, and after a resume, and dropout's stream is left alone.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transform(clip) if transform is not None else clip.float() / 255.0


def _pad(clip: torch.Tensor, length: int) -> torch.Tensor:
    """(n, ...) -> (length, ...), zeros after the n valid frames."""
    return torch.cat([clip, clip.new_zeros(length - len(clip), *clip.shape[1:])])


def collate_deferred_views(items: list[dict]) -> dict:
    """Batch items of a ``defer_transform`` dataset: frames stay a list (B) of lists (V) of
    uint8 tensors, whose sizes may differ between videos; the rest is stacked."""
    keys = ("mask", "timestamps", "index", "view_seeds", "oracle")
    batch = {key: torch.stack([item[key] for item in items]) for key in keys if key in items[0]}
    for key in ("frames", "frame_offsets"):
        if key in items[0]:
            batch[key] = [item[key] for item in items]
    return batch


def _decode_views(batch: dict, device: torch.device | str) -> list[list[torch.Tensor]]:
    """The JPEG frames of a ``defer_decode`` batch, decoded in one call on ``device``.

    Returns:
        per video, per view, (n_v, 3, H, W) uint8 on ``device``.
    """
    try:
        from torchcodec.decoders import decode_jpeg
    except ImportError as exc:
        raise ImportError("data.decode_on: device needs TorchCodec's JPEG decoder: pip install 'lrprop[gpu]'") from exc

    frames = [
        data[start:stop]
        for views, offsets in zip(batch["frames"], batch["frame_offsets"], strict=True)
        for data, bounds in zip(views, offsets, strict=True)
        for start, stop in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)
    ]
    try:  # one batched call: nvJPEG decodes the whole batch at once
        images = decode_jpeg(frames, mode="RGB", device=device) if frames else []
    except RuntimeError as exc:
        raise ValueError(f"could not decode the JPEG frames of the videos at indices {batch['index'].tolist()}: {exc}") from exc
    out, k = [], 0
    for offsets in batch["frame_offsets"]:
        views = []
        for bounds in offsets:
            n = len(bounds) - 1
            views.append(torch.stack(images[k : k + n]))
            k += n
        out.append(views)
    return out


def transform_views(batch: dict, transform: Callable | None, frames_per_view: int, device: torch.device | str) -> torch.Tensor:
    """Augment a batch of :func:`collate_deferred_views` on ``device`` (decoding it first there
    when it holds JPEG bytes).

    Each view's uint8 frames at their stored size (or their JPEG bytes, about a tenth of that)
    cross to the device, and are transformed there with the view's seed: the same
    parameters as :class:`ViewDataset` would have used in a worker, so on the CPU the result is
    identical (TorchCodec's CPU decoder and Pillow give the same pixels).

    Returns:
        (B, V, frames_per_view, 3, S, S) float, zeros on padded frames.
    """
    clips = _decode_views(batch, device) if "frame_offsets" in batch else batch["frames"]
    views = [
        _pad(apply_view_transform(clip.to(device, non_blocking=True), transform, seed), frames_per_view)
        for per_video, seeds in zip(clips, batch["view_seeds"].tolist(), strict=True)
        for clip, seed in zip(per_video, seeds, strict=True)
    ]
    return torch.stack(views).unflatten(0, (len(batch["frames"]), -1))


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``batch_size`` distinct videos, a fresh permutation each epoch.

    The permutation of epoch e depends on (seed, e) only; ``set_position`` starts an epoch part
    way through, which is how a resumed run skips the batches it already trained on. The last
    incomplete batch is dropped (a step needs ``batch_size`` different videos).

    With ``world_size`` > 1 (data-parallel workers), worker ``rank`` takes batches rank,
    rank + world_size, … of the epoch's batches, and every worker gets the same number.
    """

    def __init__(self, num_videos: int, batch_size: int, seed: int = 0, *, rank: int = 0, world_size: int = 1) -> None:
        if num_videos < batch_size * world_size:
            raise ValueError(
                f"need at least {batch_size * world_size} videos for a step on {world_size} worker(s), have {num_videos}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, {world_size})")
        self.num_videos, self.batch_size, self.seed = num_videos, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        """Steps per epoch for this worker."""
        return (self.num_videos // self.batch_size) // self.world_size

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        generator = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, 0x5A))
        order = torch.randperm(self.num_videos, generator=generator).tolist()
        for b in range(self.start_batch, self.batches_per_epoch):
            first = (b * self.world_size + self.rank) * self.batch_size
            yield [(self.epoch, i) for i in order[first : first + self.batch_size]]
