"""Tests of lrprop/data/: temporal sampling, augmentation, view datasets, sources, synthetic videos.

Oracles: the invariants of the sampling rule of METHOD.md §1 (and sampling.py's docstring), an
expectation derived analytically for the sampled ratio, frames whose pixel value encodes their
index, identical frames that must stay identical under one set of augmentation parameters, and
permutations checked as sets.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lrprop.data.augment import IMAGENET_MEAN, IMAGENET_STD, eval_transform, train_transform
from lrprop.data.generator import action_spec, synthetic_videos
from lrprop.data.sampling import random_warp, sample_view
from lrprop.data.source import InMemoryVideos, Video, VideoSource
from lrprop.data.views import EpochBatchSampler, ViewDataset, collate_deferred_views, transform_views

# ----------------------------------------------------------------------------- sample_view


def _check_view(L: int, T: int, read, mask, stamps, ratio_max: float = 1.5) -> None:
    assert read.shape == mask.shape == stamps.shape == (T,)
    assert read.dtype == torch.int64 and stamps.dtype == torch.int64 and mask.dtype == torch.bool
    count = min(L, T)  # the number of drawn indices
    drawn = stamps[:count]
    # Drawn indices: distinct, sorted, within the block [0, ceil(r L)) with r <= r_max.
    assert (drawn[1:] > drawn[:-1]).all()
    assert drawn.min() >= 0 and drawn.max() < math.ceil(ratio_max * L)
    # Padding to T with L.
    assert (stamps[count:] == L).all()
    # Indices >= L are masked; valid frames form a prefix.
    assert torch.equal(mask, stamps < L)
    n_valid = int(mask.sum())
    assert mask[:n_valid].all() and not mask[n_valid:].any()
    assert n_valid >= min(2, L, T)  # a view of T = 1 frame can hold only one
    valid = stamps[mask]
    assert (valid[1:] > valid[:-1]).all() and (valid < L).all()
    # Read indices: clamped to L - 1, equal to the time stamps on valid frames.
    assert read.min() >= 0 and read.max() <= L - 1
    assert torch.equal(read[mask], stamps[mask])
    assert (read[~mask] == L - 1).all()


def test_sample_view_invariants_random_lengths():
    rng = np.random.default_rng(0)
    cases = [(1, 1), (1, 5), (2, 2), (2, 9), (5, 5), (20, 20), (7, 30), (1000, 5), (3000, 2), (100, 20)]
    cases += [(int(rng.integers(1, 300)), int(rng.integers(1, 100))) for _ in range(300)]
    g = torch.Generator().manual_seed(0)
    for L, T in cases:
        for _ in range(3):
            _check_view(L, T, *sample_view(L, T, g))


def test_sample_view_covers_l_less_equal_and_greater_than_t():
    g = torch.Generator().manual_seed(1)
    # L < T: every drawn index is one of the block, the tail is padding.
    read, mask, stamps = sample_view(5, 12, g)
    assert int(mask.sum()) <= 5 and (stamps[5:] == 5).all()
    # ratio fixed at 1: every frame of a short video is drawn, in order.
    read, mask, stamps = sample_view(5, 12, g, ratio_range=(1.0, 1.0))
    assert torch.equal(stamps[:5], torch.arange(5)) and mask[:5].all() and not mask[5:].any()
    # L == T with r = 1: the identity.
    read, mask, stamps = sample_view(9, 9, g, ratio_range=(1.0, 1.0))
    assert torch.equal(stamps, torch.arange(9)) and mask.all()
    # L >> T with r = 1: all valid.
    read, mask, stamps = sample_view(500, 8, g, ratio_range=(1.0, 1.0))
    assert mask.all()


def test_sample_view_in_a_window_stays_in_a_stretch_of_the_share_drawn():
    g = torch.Generator().manual_seed(3)
    starts, spans = [], []
    for L, T in [(100, 20), (37, 8), (5, 12), (1, 3), (240, 20)] * 40:
        read, mask, stamps = sample_view(L, T, g, window=(0.5, 0.8))
        valid = stamps[mask]
        assert (valid[1:] > valid[:-1]).all() and valid.min() >= 0 and valid.max() < L
        assert torch.equal(read[mask], valid) and read.max() <= L - 1 and (stamps[~mask] == L).all()
        # Every valid frame lies in one stretch of at most ceil(0.8 L) frames.
        assert int(valid.max() - valid.min()) < math.ceil(0.8 * L)
        assert int(mask.sum()) >= min(2, math.ceil(0.5 * L), T)
        if L == 100:
            starts.append(int(valid.min()))
            spans.append(int(valid.max() - valid.min()))
    assert min(starts) < 10 and max(starts) > 30  # the stretch starts anywhere it fits
    assert 40 <= np.mean(spans) <= 80
    # The whole video, the default, draws what it drew before the option existed.
    a = sample_view(137, 24, torch.Generator().manual_seed(0))
    b = sample_view(137, 24, torch.Generator().manual_seed(0), window=(1.0, 1.0))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_random_warp_is_a_monotone_map_of_the_unit_interval_onto_itself():
    u = torch.linspace(0, 1, 401, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    for strength in (0.3, 1.0, 2.0):
        for _ in range(50):
            w = random_warp(u, strength, g)
            assert w[0] == 0 and abs(float(w[-1]) - 1) < 1e-12
            assert (w[1:] >= w[:-1]).all()
    # Strength 0: the identity.
    assert torch.allclose(random_warp(u, 0.0, g), u)


def test_random_warp_speeds_follow_the_lognormal_they_are_drawn_from():
    """Part k's speed is its input advance over the part's length; the log of the ratio of two
    parts' speeds is N(0, 2 s^2) for advances exp(s N(0, 1)), whatever the normalisation."""
    g = torch.Generator().manual_seed(6)
    strength, segments = 0.8, 4
    u = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)  # the part boundaries
    ratios = []
    for _ in range(4000):
        w = random_warp(u, strength, g, segments=segments)
        speeds = w.diff()
        ratios.append(float(torch.log(speeds[0] / speeds[1])))
    assert abs(np.mean(ratios)) < 0.05
    assert abs(np.std(ratios) - strength * math.sqrt(2)) < 0.05


def test_sample_view_with_a_warp_re_times_the_frames_and_keeps_the_mask():
    for L, T in [(100, 20), (37, 8), (5, 12), (240, 20), (60, 60)]:
        for seed in range(20):
            plain = sample_view(L, T, torch.Generator().manual_seed(seed))
            read, mask, stamps = sample_view(L, T, torch.Generator().manual_seed(seed), warp=1.0)
            # The same frames are drawn and padded; only the valid ones move, in order and in the video.
            assert torch.equal(mask, plain[1])
            valid = stamps[mask]
            assert (valid[1:] >= valid[:-1]).all() and valid.min() >= 0 and valid.max() <= L - 1
            assert torch.equal(read[mask], valid)
    # The warp moves the frames a slot shows: by a tenth of the video or more in most views.
    moved = []
    for seed in range(50):
        plain = sample_view(200, 20, torch.Generator().manual_seed(seed), ratio_range=(1.0, 1.0))[2]
        warped = sample_view(200, 20, torch.Generator().manual_seed(seed), ratio_range=(1.0, 1.0), warp=1.0)[2]
        moved.append(float((warped - plain).abs().max()))
    assert np.median(moved) > 20
    # Warp 0 is the default and draws what it drew before the option existed.
    a = sample_view(137, 24, torch.Generator().manual_seed(0))
    b = sample_view(137, 24, torch.Generator().manual_seed(0), warp=0.0)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_sample_view_warp_in_a_window_stays_in_the_window():
    g = torch.Generator().manual_seed(4)
    for _ in range(200):
        read, mask, stamps = sample_view(100, 20, g, window=(0.3, 0.3), warp=1.5)
        valid = stamps[mask]
        assert valid.max() - valid.min() <= 30 and (valid[1:] >= valid[:-1]).all()


def test_sample_view_min_valid_redraw_when_block_overhangs():
    """T = 2 of L = 3 with r up to 1.5: block 4 or 5 can yield < 2 valid; redraws must fix it."""
    g = torch.Generator().manual_seed(2)
    for _ in range(500):
        _, mask, _ = sample_view(3, 2, g)
        assert int(mask.sum()) == 2


def test_sample_view_same_seed_same_view():
    for seed in range(5):
        a = sample_view(137, 24, torch.Generator().manual_seed(seed))
        b = sample_view(137, 24, torch.Generator().manual_seed(seed))
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    a = sample_view(137, 24, torch.Generator().manual_seed(0))
    b = sample_view(137, 24, torch.Generator().manual_seed(1))
    assert not torch.equal(a[2], b[2])


def test_sample_view_empty_video_raises():
    with pytest.raises(ValueError):
        sample_view(0, 5, torch.Generator().manual_seed(0))


def test_sample_view_masked_fraction_matches_uniform_ratio():
    """Mean masked fraction at L = 100, T = 20 against its expectation under r ~ U(1, 1.5).

    Derivation: given r, block b = ceil(100 r) and the 20 indices are a uniform subset of
    [0, b), so the expected masked fraction is (b - 100) / b exactly; a redraw (< 2 valid)
    needs 19 of 20 indices among the <= 50 overhanging ones, probability < 1e-8, ignored.
    E = E_r[(b - 100) / b] is computed below by averaging over a fine grid of r (≈ 1 - 2 ln 1.5
    ≈ 0.19 without the ceil). Tolerance: the per-draw fraction has variance at most
    0.25 / 20 (hypergeometric, within a draw) + (1/3)² / 4 (spread of 1 - 1/r over [1, 1.5], a
    range of 1/3) ≈ 0.040, so with N = 4000 draws the mean has sd ≤ sqrt(0.040 / 4000) ≈ 0.0032;
    the bound is 5 sd = 0.016. For comparison U(1, 1.2) gives ≈ 0.09 and U(1, 2) ≈ 0.31.
    """
    L, T, N = 100, 20, 4000
    r = np.linspace(1.0, 1.5, 200001)[:-1] + 1.25e-6  # midpoints of a fine grid
    blocks = np.ceil(r * L)
    expected = float(np.mean((blocks - L) / blocks))
    assert 0.18 < expected < 0.20  # sanity of the oracle itself: 1 - 2 ln 1.5 = 0.189
    g = torch.Generator().manual_seed(3)
    masked = np.array([float((~sample_view(L, T, g)[1]).float().mean()) for _ in range(N)])
    sd_bound = math.sqrt((0.25 / T + (1 / 3) ** 2 / 4) / N)
    assert abs(masked.mean() - expected) < 5 * sd_bound
    # The largest drawn index approaches the top of the largest block, ceil(1.5 L) - 1 = 149,
    # and never exceeds it.
    top = max(int(sample_view(L, T, g)[2].max()) for _ in range(500))
    assert 140 <= top <= 149


# ----------------------------------------------------------------------------- augmentation


def _random_frame(seed: int, h: int = 40, w: int = 48) -> torch.Tensor:
    return torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _apply(transform, x: torch.Tensor, seed: int) -> torch.Tensor:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transform(x)


def test_train_transform_same_parameters_for_every_frame():
    T, S = 6, 32
    tf = train_transform(S)
    view = _random_frame(0).expand(T, -1, -1, -1).clone()  # T identical frames
    outputs = []
    for seed in range(8):
        out = _apply(tf, view, seed)
        assert out.shape == (T, 3, S, S) and out.dtype == torch.float32
        for t in range(1, T):
            assert torch.allclose(out[t], out[0], atol=1e-6), (seed, t)
        outputs.append(out[0])
    # Different seeds draw different parameters (crop box, flip, jitter ... ).
    assert not torch.allclose(outputs[0], outputs[1], atol=1e-3)
    assert len({tuple(o.flatten()[:50].tolist()) for o in outputs}) == len(outputs)


def test_train_transform_frames_of_a_view_match_single_frame_transforms():
    """With one seed, frame k of a 2-frame view equals frame k transformed alone: the
    parameters are drawn once per call, not per frame (and do not depend on the content)."""
    tf = train_transform(24)
    a, b = _random_frame(1), _random_frame(2)
    for seed in range(5):
        both = _apply(tf, torch.cat([a, b]), seed)
        assert torch.allclose(both[0], _apply(tf, a, seed)[0], atol=1e-6)
        assert torch.allclose(both[1], _apply(tf, b, seed)[0], atol=1e-6)


def test_eval_transform_is_deterministic_and_normalises():
    tf = eval_transform(32)
    x = torch.cat([_random_frame(3, 40, 60), _random_frame(4, 40, 60)])
    a, b = _apply(tf, x, 0), _apply(tf, x, 1)
    assert a.shape == (2, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b)
    # A constant image stays constant: (c / 255 - mean) / std per channel.
    values = (10, 128, 250)
    const = torch.tensor(values, dtype=torch.uint8)[None, :, None, None].expand(1, 3, 50, 70).clone()
    out = tf(const)
    for ch, c in enumerate(values):
        expected = (c / 255 - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch]
        assert torch.allclose(out[0, ch], torch.full((32, 32), expected), atol=1e-4)


def test_train_transform_output_is_normalised_range():
    """Values come from [0, 1] images normalised with the ImageNet statistics."""
    out = _apply(train_transform(16), _random_frame(5).expand(3, -1, -1, -1).clone(), 0)
    lo = min((0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
    hi = max((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
    assert out.min() >= lo - 1e-4 and out.max() <= hi + 1e-4


# ----------------------------------------------------------------------------- sources


def _index_video(video_id: str, length: int, size: int = 4) -> Video:
    """Frame k has every pixel equal to k % 256."""
    frames = np.broadcast_to((np.arange(length) % 256).astype(np.uint8)[:, None, None, None], (length, size, size, 3))
    return Video(video_id, np.ascontiguousarray(frames), np.zeros(length, dtype=np.int64))


def test_in_memory_videos_reads_frames_in_order_asked():
    src = InMemoryVideos([_index_video("a", 10), _index_video("b", 300)])
    assert isinstance(src, VideoSource)
    assert len(src) == 2 and src.video_id(1) == "b" and src.num_frames(1) == 300
    out = src.read_frames(1, np.array([299, 3, 3, 260]))
    assert out.shape == (4, 4, 4, 3) and out.dtype == np.uint8
    assert list(out[:, 0, 0, 0]) == [299 % 256, 3, 3, 260 % 256]
    assert src.labels(0).shape == (10,)


def test_in_memory_videos_duplicate_ids_raise_naming_the_id():
    with pytest.raises(ValueError, match="clip_07"):
        InMemoryVideos([_index_video("clip_07", 3), _index_video("other", 3), _index_video("clip_07", 4)])


@pytest.mark.parametrize(
    "frames, labels",
    [
        (np.zeros((4, 5, 5, 3), dtype=np.float32), None),  # wrong dtype
        (np.zeros((4, 5, 5), dtype=np.uint8), None),  # no channel axis
        (np.zeros((4, 5, 5, 4), dtype=np.uint8), None),  # RGBA
        (np.zeros((0, 5, 5, 3), dtype=np.uint8), None),  # empty
        (np.zeros((4, 5, 5, 3), dtype=np.uint8), np.zeros(3, dtype=np.int64)),  # label count
    ],
)
def test_video_validation_names_the_video(frames, labels):
    with pytest.raises(ValueError, match="vid_xyz"):
        Video("vid_xyz", frames, labels)


# ----------------------------------------------------------------------------- ViewDataset


LENGTHS = (30, 7, 300, 12)


def _source() -> InMemoryVideos:
    return InMemoryVideos([_index_video(f"v{i}", L) for i, L in enumerate(LENGTHS)])


def test_view_dataset_item_shapes_and_frames_at_timestamps():
    V, T = 3, 10
    ds = ViewDataset(_source(), T, num_views=V, transform=None, seed=5)
    assert len(ds) == len(LENGTHS)
    for epoch in range(3):
        for index, L in enumerate(LENGTHS):
            item = ds[(epoch, index)]
            assert item["frames"].shape == (V, T, 3, 4, 4) and item["frames"].dtype == torch.float32
            assert item["mask"].shape == (V, T) and item["mask"].dtype == torch.bool
            assert item["timestamps"].shape == (V, T) and item["timestamps"].dtype == torch.int64
            assert int(item["index"]) == index
            stamps, mask = item["timestamps"], item["mask"]
            assert torch.equal(mask, stamps < L)
            for v in range(V):
                _check_view(L, T, stamps[v].clamp(max=L - 1), mask[v], stamps[v])
            # The pixel value of a valid frame is its index mod 256; padded frames are zeros.
            expected = torch.where(mask, stamps % 256, 0).float() / 255.0  # (V, T)
            assert torch.allclose(item["frames"], expected[:, :, None, None, None].expand_as(item["frames"]), atol=1e-6)


def test_view_dataset_same_key_same_item_across_objects_with_augmentation():
    kwargs = dict(num_views=2, transform=train_transform(16), seed=11)
    a, b = ViewDataset(_source(), 8, **kwargs), ViewDataset(_source(), 8, **kwargs)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    x = a[(4, 2)]
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone
    torch.manual_seed(999)  # a different global state changes nothing
    y = b[(4, 2)]
    for k in ("frames", "mask", "timestamps", "index"):
        assert torch.equal(x[k], y[k]), k
    assert x["frames"].shape == (2, 8, 3, 16, 16)
    # Another epoch, another sample.
    z = a[(5, 2)]
    assert not torch.equal(x["timestamps"], z["timestamps"]) or not torch.equal(x["frames"], z["frames"])
    # The two views of one item differ (independent temporal and spatial draws).
    assert not torch.equal(x["frames"][0], x["frames"][1])


def test_views_augmented_on_the_device_equal_views_augmented_in_the_loader():
    # data.augment_on: device: the workers only decode, and the training loop transforms each
    # view under the seed the worker would have used, so on the CPU the two are identical.
    source = InMemoryVideos(synthetic_videos(0, 4, size=24, length_range=(10, 20)))  # some shorter than T: padding
    T, keys = 16, [(1, i) for i in range(4)]
    in_loader = ViewDataset(source, T, num_views=2, transform=train_transform(16), seed=3)
    deferred = ViewDataset(source, T, num_views=2, seed=3, defer_transform=True)
    batch = collate_deferred_views([deferred[key] for key in keys])
    assert not batch["mask"].all()  # some views are padded
    assert all(clip.dtype == torch.uint8 and clip.shape[1:] == (3, 24, 24) for views in batch["frames"] for clip in views)
    expected = [in_loader[key] for key in keys]
    torch.manual_seed(7)
    state = torch.get_rng_state()
    got = transform_views(batch, train_transform(16), T, "cpu")
    assert torch.equal(torch.get_rng_state(), state)  # dropout's stream is left alone
    assert got.shape == (4, 2, T, 3, 16, 16)
    assert torch.equal(got, torch.stack([item["frames"] for item in expected]))
    for key in ("mask", "timestamps", "index"):
        assert torch.equal(batch[key], torch.stack([item[key] for item in expected])), key
    # The seeds carry the randomness: swapping two views' seeds changes their frames.
    batch["view_seeds"] = batch["view_seeds"].flip(1)
    assert not torch.equal(transform_views(batch, train_transform(16), T, "cpu"), got)


def test_view_dataset_different_epoch_or_seed_changes_timestamps():
    ds = ViewDataset(_source(), 10, transform=None, seed=0)
    other_seed = ViewDataset(_source(), 10, transform=None, seed=1)
    base = ds[(0, 2)]["timestamps"]
    assert torch.equal(base, ds[(0, 2)]["timestamps"])
    assert any(not torch.equal(base, ds[(e, 2)]["timestamps"]) for e in range(1, 4))
    assert not torch.equal(base, other_seed[(0, 2)]["timestamps"])


# ----------------------------------------------------------------------------- EpochBatchSampler


def test_epoch_batch_sampler_full_epochs_are_permutations():
    n, bs = 12, 3
    sampler = EpochBatchSampler(n, bs, seed=7)
    orders = []
    for epoch in range(4):
        sampler.set_position(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == n // bs
        flat = []
        for batch in batches:
            assert len(batch) == bs
            assert all(e == epoch for e, _ in batch)
            idx = [i for _, i in batch]
            assert len(set(idx)) == bs
            flat += idx
        assert sorted(flat) == list(range(n))
        orders.append(flat)
    assert len({tuple(o) for o in orders}) > 1  # a fresh permutation each epoch


def test_epoch_batch_sampler_partial_batch_dropped():
    n, bs = 11, 3
    sampler = EpochBatchSampler(n, bs, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3
    flat = [i for batch in batches for _, i in batch]
    assert all(len(b) == bs for b in batches)
    assert len(set(flat)) == 9 and set(flat) <= set(range(n))


def test_epoch_batch_sampler_reproducible_and_resumable():
    a, b = EpochBatchSampler(10, 2, seed=3), EpochBatchSampler(10, 2, seed=3)
    a.set_position(6)
    b.set_position(6)
    full = list(a)
    assert full == list(b)
    assert full == list(a)  # iterating again gives the same epoch
    for k in range(len(full) + 1):
        b.set_position(6, k)
        assert len(b) == len(full) - k
        assert list(b) == full[k:]
    b.set_position(7)
    assert list(b) != full
    c = EpochBatchSampler(10, 2, seed=4)
    c.set_position(6)
    assert list(c) != full


def test_epoch_batch_sampler_too_few_videos_raises():
    with pytest.raises(ValueError):
        EpochBatchSampler(2, 3)
    EpochBatchSampler(3, 3)  # exactly one batch is fine


# ----------------------------------------------------------------------------- synthetic videos


def test_synthetic_videos_reproducible_and_seed_dependent():
    a = synthetic_videos(1, 3, seed=4, size=16, length_range=(20, 40))
    b = synthetic_videos(1, 3, seed=4, size=16, length_range=(20, 40))
    c = synthetic_videos(1, 3, seed=5, size=16, length_range=(20, 40))
    for x, y in zip(a, b):
        assert x.video_id == y.video_id
        assert np.array_equal(x.frames, y.frames) and np.array_equal(x.labels, y.labels)
    assert any(x.frames.shape != z.frames.shape or not np.array_equal(x.frames, z.frames) for x, z in zip(a, c))
    assert len({v.video_id for v in a}) == 3


def test_synthetic_videos_first_video_selects_the_same_videos():
    """Video k depends on (seed, class, k) only: a later range reproduces the tail."""
    whole = synthetic_videos(0, 5, size=16, length_range=(20, 30))
    tail = synthetic_videos(0, 2, size=16, length_range=(20, 30), first_video=3)
    for x, y in zip(whole[3:], tail):
        assert x.video_id == y.video_id and np.array_equal(x.frames, y.frames)


@pytest.mark.parametrize("class_index", [0, 2, 5])
def test_synthetic_videos_labels_lengths_frames(class_index):
    size, length_range = 24, (30, 200)
    K = action_spec(class_index).num_phases
    assert 3 <= K <= 6
    videos = synthetic_videos(class_index, 4, size=size, length_range=length_range)
    for v in videos:
        L = len(v.frames)
        assert length_range[0] <= L <= length_range[1]
        assert v.frames.shape == (L, size, size, 3) and v.frames.dtype == np.uint8
        assert v.labels.shape == (L,)
        steps = np.diff(v.labels)
        assert ((steps == 0) | (steps == 1)).all()  # non-decreasing, one phase at a time
        assert v.labels[0] == 0 and v.labels[-1] == K - 1
        assert set(v.labels.tolist()) == set(range(K))
        assert v.frames.std() > 0  # something is drawn


def test_synthetic_videos_short_lengths_keep_every_phase():
    """Down to 2 K frames every phase can get the >= 2 frames _phase_lengths promises; lengths
    stay in range and every phase is present."""
    for class_index in range(8):
        K = action_spec(class_index).num_phases
        for v in synthetic_videos(class_index, 30, size=8, length_range=(2 * K, 3 * K)):
            assert 2 * K <= len(v.frames) <= 3 * K, v.video_id
            assert set(v.labels.tolist()) == set(range(K)), (v.video_id, v.labels)
            assert np.bincount(v.labels).min() >= 2, (v.video_id, v.labels)


def test_synthetic_phase_timing_varies_across_videos():
    """Phase 1 starts at a different fraction of the video in different videos of one class, so a
    frame-index (or fraction-of-video) shortcut cannot label phases."""
    for class_index in (0, 3):
        videos = synthetic_videos(class_index, 6, size=16, length_range=(60, 120))
        starts = [int(np.argmax(v.labels >= 1)) / len(v.labels) for v in videos]
        spread = max(starts) - min(starts)
        assert spread > 0.1, starts


def test_batch_sampler_deals_each_epoch_to_the_ranks_without_overlap():
    single = [v for batch in EpochBatchSampler(13, 2, seed=4) for v in batch]
    dealt = []
    for rank in range(3):
        sampler = EpochBatchSampler(13, 2, seed=4, rank=rank, world_size=3)
        batches = list(sampler)
        assert len(batches) == sampler.batches_per_epoch == 2  # 6 batches of 2, 3 workers
        dealt += [v for batch in batches for v in batch]
    # Together the ranks see the first 6 batches of the single-worker epoch, each video once.
    assert sorted(dealt) == sorted(single[:12])
    with pytest.raises(ValueError, match="rank"):
        EpochBatchSampler(13, 2, rank=3, world_size=3)
