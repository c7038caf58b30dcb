"""Tests of the second generator (lrprop/data/stick_figures.py): reproducible, labelled like the
first, and with each of its nuisances visible, so that none can silently vanish."""

from __future__ import annotations

import numpy as np
import pytest

from lrprop.config import load_config
from lrprop.data.stick_figures import JOINTS, NUISANCES, render_stick_video, stick_action_spec, stick_videos
from lrprop.ingest.synthetic import GENERATORS

SIZE = 48


@pytest.fixture(scope="module")
def videos():
    return stick_videos(1, 6, size=SIZE, length_range=(40, 60))


def test_videos_are_reproducible_and_labelled_by_phase_in_order(videos):
    again = stick_videos(1, 6, size=SIZE, length_range=(40, 60))
    spec = stick_action_spec(1)
    assert spec.key_poses.shape == (spec.num_phases + 1, len(JOINTS))
    for v, w in zip(videos, again, strict=True):
        assert np.array_equal(v.frames, w.frames) and np.array_equal(v.labels, w.labels)
        assert v.frames.shape[1:] == (SIZE, SIZE, 3) and v.frames.dtype == np.uint8
        assert 40 <= len(v.frames) <= 60 and len(v.labels) == len(v.frames)
        assert np.array_equal(np.unique(v.labels), np.arange(spec.num_phases))
        assert np.all(np.diff(v.labels) >= 0)
    assert not np.array_equal(videos[0].frames[0], videos[1].frames[0])  # videos differ


def test_the_light_changes_through_a_video(videos):
    ratios = [v.frames[-1].mean() / v.frames[0].mean() for v in videos]
    assert max(abs(r - 1) for r in ratios) > 0.15


def test_the_figures_are_small_and_thin(videos):
    """Under a tenth of a frame differs from its video's median background."""
    for v in videos:
        background = np.median(v.frames.reshape(-1, 3), axis=0)
        differs = np.abs(v.frames.astype(float) - background).max(axis=-1) > 60
        assert differs.mean() < 0.1


def test_something_moves_while_the_actor_holds_still():
    """A video of one long held pose (a class whose key poses are all equal) still changes from
    frame to frame: the drifting object, the other figure, the camera and the light."""
    spec = stick_action_spec(0)
    still = type(spec)(name="still", key_poses=np.repeat(spec.key_poses[:1], 4, axis=0))
    frames, _ = render_stick_video(still, 40, SIZE, np.random.default_rng(5))
    change = np.abs(frames[-1].astype(float) - frames[0].astype(float)).mean()
    assert change > 3.0


def test_the_config_selects_the_generator():
    config = load_config("configs/stick_figures.yaml")
    assert config.synthetic.generator == "stick_figures"
    make, spec = GENERATORS[config.synthetic.generator]
    assert make is stick_videos and spec(0).name == "jump"
    assert load_config("configs/smoke.yaml").synthetic.generator == "figure"


@pytest.mark.parametrize("generator", ["figure", "stick_figures"])
def test_moments_rise_through_the_phases_and_match_the_labels(generator):
    from lrprop.data.generator import synthetic_videos, video_moments
    from lrprop.data.stick_figures import stick_moments

    make, moments_of = (synthetic_videos, video_moments) if generator == "figure" else (stick_videos, stick_moments)
    video = make(0, 1, size=16, length_range=(30, 50), first_video=3)[0]
    moments = moments_of(0, 3, length_range=(30, 50))
    assert len(moments) == len(video.labels)
    assert np.all(np.diff(moments) > 0)
    assert np.array_equal(np.floor(moments).astype(int), video.labels)


def test_each_nuisance_can_be_left_out_and_only_it_changes():
    """Without a nuisance a video keeps its labels and differs from the full one; without all of
    them a held pose is a still picture but for the pixel noise, and the light is constant."""
    full = stick_videos(1, 3, size=SIZE, length_range=(40, 60))
    for nuisance in NUISANCES:
        for v, w in zip(full, stick_videos(1, 3, size=SIZE, length_range=(40, 60), without=[nuisance]), strict=True):
            assert np.array_equal(v.labels, w.labels) and v.frames.shape == w.frames.shape
            assert not np.array_equal(v.frames, w.frames), nuisance
    spec = stick_action_spec(0)
    still = type(spec)(name="still", key_poses=np.repeat(spec.key_poses[:1], 4, axis=0))
    frames, _ = render_stick_video(still, 40, SIZE, np.random.default_rng(5), without=NUISANCES)
    change = np.abs(frames[-1].astype(float) - frames[0].astype(float)).mean()
    assert change < 10.0  # the noise alone (sigma up to 8): the full video's change is far above it (next test)
    full_frames, _ = render_stick_video(still, 40, SIZE, np.random.default_rng(5))
    assert np.abs(full_frames[-1].astype(float) - full_frames[0].astype(float)).mean() > change + 3
    for v in stick_videos(1, 3, size=SIZE, length_range=(40, 60), without=["light"]):
        assert abs(v.frames[-1].mean() / v.frames[0].mean() - 1) < 0.1


def test_an_unknown_nuisance_is_an_error_naming_it():
    with pytest.raises(ValueError, match="'shadow'"):
        stick_videos(0, 1, size=SIZE, without=["shadow"])
