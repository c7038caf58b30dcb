"""Phase transfer (issue 16): every frame of a video labelled by aligning it to labelled
references and voting; its accuracy on a labelled split."""

from __future__ import annotations

import numpy as np
import pytest

from lrprop.core import dtw
from lrprop.core.baselines import phase_progress_embeddings, time_stretch_embeddings
from lrprop.core.phase_transfer import matched_frames, phase_transfer_accuracy, phase_votes, transfer_phases


def _walk(length: int, seed: int) -> np.ndarray:
    """A smooth random walk in 8 dimensions: no two moments alike."""
    steps = np.random.default_rng(seed).normal(size=(length, 8))
    return np.cumsum(steps, axis=0)


def _phases(lengths: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(lengths)), lengths)


def test_a_warped_copy_of_a_reference_gets_its_phases_back():
    ref = _walk(120, 0)
    labels = _phases([30, 50, 40])
    warp = np.r_[np.repeat(np.arange(60), 2), np.arange(60, 120, 3)]  # slow, then fast: 140 frames
    phases, confidence = transfer_phases(ref[warp], [ref], [labels])
    # Each frame finds the one it shows, to a frame where the copy skips frames (the path must
    # match the skipped ones with a neighbour, which moves the middle of its matches)
    matched = matched_frames(ref[warp], ref)
    assert np.array_equal(matched[:120], warp[:120]) and np.abs(matched - warp).max() <= 1
    beside_a_boundary = labels[np.maximum(warp - 1, 0)] != labels[np.minimum(warp + 1, 119)]
    assert np.array_equal(phases[~beside_a_boundary], labels[warp][~beside_a_boundary]) and np.all(confidence == 1.0)


def test_the_references_vote_and_the_majority_wins_with_its_share_as_confidence():
    ref = _walk(90, 1)
    right, shifted = _phases([30, 30, 30]), _phases([40, 30, 20])
    phases, confidence = transfer_phases(ref, [ref, ref, ref], [right, right, shifted])
    assert np.array_equal(phases, right)
    disagree = right != shifted
    assert np.all(confidence[disagree] == pytest.approx(2 / 3)) and np.all(confidence[~disagree] == 1.0)
    votes = phase_votes(ref, [ref, ref, ref], [right, right, shifted], 3)
    assert votes.sum(axis=1).tolist() == [3] * 90 and votes[35].tolist() == [1, 2, 0]


def test_unlabelled_reference_frames_do_not_vote():
    ref = _walk(40, 2)
    labels = _phases([20, 20])
    labels[:10] = -1
    phases, confidence = transfer_phases(ref, [ref], [labels])
    assert phases[:10].tolist() == [-1] * 10 and np.all(confidence[:10] == 0.0)
    assert np.array_equal(phases[10:], labels[10:])
    with pytest.raises(ValueError, match="a reference of 40 frames has 39 labels"):
        transfer_phases(ref, [ref], [labels[:-1]], 2)


def test_long_pairs_transfer_the_same_phases_as_pairs_held_in_memory(monkeypatch):
    query, refs = _walk(150, 3), [_walk(130, 4), _walk(170, 5)]
    labels = [_phases([40, 50, 40]), _phases([60, 60, 50])]
    in_memory = transfer_phases(query, refs, labels)
    monkeypatch.setattr(dtw, "MANY_IN_MEMORY_CELLS", 100)  # every pair a block of rows at a time
    long = transfer_phases(query, refs, labels)
    assert np.array_equal(in_memory[0], long[0]) and np.array_equal(in_memory[1], long[1])


def test_the_time_stretch_transfers_phases_by_their_share_of_the_video_and_the_oracle_exactly():
    # Closed form: the time stretch (i / L) matches frames by their place in the video. The
    # references give their phases the shares 1/4, 1/2, 1/4 of their length; a video whose
    # phases take 3/4, 1/8, 1/8 gets phase 0 right below 1/4 of its length and phase 2 above
    # 7/8, and every frame between wrong: 3/8 of its frames. The label oracle (phase index plus
    # progress in it) gets them all, to a frame at each boundary.
    refs = [_phases([10 * k, 20 * k, 10 * k]) for k in (2, 3, 4)]
    val = [_phases([60, 10, 10])]
    stretch = time_stretch_embeddings([len(lab) for lab in [*refs, *val]])
    assert phase_transfer_accuracy(stretch[:3], refs, stretch[3:], val) == pytest.approx(3 / 8, abs=2 / 80)
    oracle = phase_progress_embeddings([*refs, *val])
    assert phase_transfer_accuracy(oracle[:3], refs, oracle[3:], val) >= 1 - 4 / 80
    # Proportional phases: the time stretch transfers them too
    same = [_phases([15, 30, 15])]
    stretch = time_stretch_embeddings([len(lab) for lab in [*refs, *same]])
    assert phase_transfer_accuracy(stretch[:3], refs, stretch[3:], same) >= 1 - 4 / 60


def test_a_clip_of_a_reference_gets_the_phases_of_the_part_it_shows_with_subsequence():
    ref = _walk(200, 6)
    labels = _phases([50, 60, 90])
    clip = ref[70:150]  # phase 1 from its 21st frame, then the first 40 frames of phase 2
    phases, confidence = transfer_phases(clip, [ref, ref], [labels, labels], subsequence=True)
    assert np.array_equal(phases, labels[70:150]) and np.all(confidence == 1.0)
    # Anchored, the clip is stretched over the whole reference and gets all three phases
    assert set(transfer_phases(clip, [ref], [labels])[0].tolist()) == {0, 1, 2}
    with pytest.raises(ValueError, match="a query of 80 frames is longer than a reference of 60"):
        transfer_phases(clip, [ref, ref[:60]], [labels, labels[:60]], subsequence=True)
