"""Copies of a video at another pace and the error of an alignment against them (lrprop/core/pace.py).

Oracles: the maps' invariants (monotone, in range, from the first frame to the last, the pause a
held frame, a trim a run at pace 1), the time stretch's error written here as a loop and as its
integral, errors of paths built here (the true path, a shifted one, one averaging two frames).
"""

from __future__ import annotations

import numpy as np
import pytest

from lrprop.core.pace import (
    CUT_RANGE,
    GAMMA_RANGES,
    PACE_KINDS,
    PAUSE_RANGE,
    STRETCH,
    matched_frames,
    pace_maps,
    path_error,
    paused_map,
    piecewise_map,
    power_map,
    stretch_error,
)

LENGTHS = (3, 4, 7, 30, 117, 200)


def _longest_run(true: np.ndarray) -> tuple[int, int]:
    """(length, value) of the longest run of one value."""
    starts = np.flatnonzero(np.r_[True, true[1:] != true[:-1]])
    runs = np.diff(np.r_[starts, len(true)])
    k = int(np.argmax(runs))
    return int(runs[k]), int(true[starts[k]])


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("seed", [0, 7])
def test_every_copy_is_monotone_within_the_video_and_the_re_paced_ones_run_from_first_to_last(n, seed):
    for video_index in range(4):
        maps = pace_maps(n, seed=seed, video_index=video_index)
        assert tuple(maps) == PACE_KINDS
        for kind, copies in maps.items():
            assert copies, kind
            for true in copies:
                assert true.dtype == np.int64 and true.ndim == 1 and len(true) >= 2
                assert np.all(np.diff(true) >= 0), (kind, true)
                assert true.min() >= 0 and true.max() <= n - 1, (kind, true)
        for true in maps["repaced"]:
            assert len(true) == max(2, round(STRETCH * n))  # longer than the video
            assert true[0] == 0 and true[-1] == n - 1  # the whole video
        for true in maps["trimmed"]:
            assert np.all(np.diff(true) == 1)  # the video's own pace
            assert len(true) < n and (true[0] == 0) != (true[-1] == n - 1)  # its start or its end cut off


def test_a_trimmed_copy_cuts_off_a_drawn_share_of_the_start_or_the_end():
    n = 200
    for video_index in range(10):
        start_cut, end_cut = pace_maps(n, seed=3, video_index=video_index)["trimmed"]
        assert start_cut[-1] == n - 1 and end_cut[0] == 0
        for cut in (start_cut[0], n - 1 - end_cut[-1]):
            assert CUT_RANGE[0] * n - 1 <= cut <= CUT_RANGE[1] * n + 1, cut


def test_the_copies_are_the_same_for_a_seed_and_video_and_differ_for_another():
    n = 60

    def flat(maps):
        return [true for kind in PACE_KINDS for true in maps[kind]]

    first = flat(pace_maps(n, seed=1, video_index=2))
    again = flat(pace_maps(n, seed=1, video_index=2))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    for other in (pace_maps(n, seed=2, video_index=2), pace_maps(n, seed=1, video_index=3)):
        assert not all(np.array_equal(a, b) for a, b in zip(first, flat(other), strict=True))


def test_the_power_warps_follow_their_formula_with_gamma_in_its_ranges():
    n, m, gamma = 50, 70, 0.6
    want = [round((n - 1) * (j / (m - 1)) ** gamma) for j in range(m)]  # Python's floats, one by one
    assert power_map(n, m, gamma).tolist() == want
    # The drawn γ: the first copy fast then slow (above the diagonal), the second slow then fast.
    n = 200
    fast, slow, _ = pace_maps(n, seed=0, video_index=0)["repaced"]
    m = len(fast)
    j = np.arange(1, m - 1)
    for true, (lo, hi) in zip((fast, slow), GAMMA_RANGES, strict=True):
        # γ from the middle frame: true[mid] = (n − 1)·(1/2)^γ, ± the rounding
        mid = (m - 1) // 2
        gamma = np.log(true[mid] / (n - 1)) / np.log(mid / (m - 1))
        assert lo - 0.02 <= gamma <= hi + 0.02, gamma
    assert np.all(fast[j] >= j * (n - 1) / (m - 1) - 0.5) and np.all(slow[j] <= j * (n - 1) / (m - 1) + 0.5)


def test_a_piecewise_map_holds_a_frame_where_two_knots_name_it():
    # Frames 0..10 at pace 1, frame 10 held over 10 steps, then 10 more frames over 10 steps.
    true = piecewise_map(21, [0, 10, 20, 30], [0, 10, 10, 20])
    assert true.tolist() == list(range(11)) + [10] * 10 + list(range(11, 21))
    with pytest.raises(ValueError, match="increase"):
        piecewise_map(21, [0, 10, 10, 30], [0, 10, 10, 20])
    with pytest.raises(ValueError, match="from"):
        piecewise_map(21, [0, 10, 20, 30], [0, 10, 10, 19])


@pytest.mark.parametrize("video_index", range(6))
def test_the_paused_copy_holds_a_frame_of_the_middle_longer_than_its_pace_would(video_index):
    n = 200
    true = pace_maps(n, seed=5, video_index=video_index)["repaced"][2]
    m = len(true)
    run, held = _longest_run(true)
    assert run >= round(PAUSE_RANGE[0] * m)  # at least the shortest pause drawn
    assert 0.2 * (n - 1) - 1 <= held <= 0.8 * (n - 1) + 1  # at a cut, drawn in the middle 60 %
    # Without the pause, no piece is slow enough to hold a frame that long: speeds >= 0.5 of a
    # pace of at most m / n steps a frame.
    rest = np.r_[true[: np.flatnonzero(true == held)[0]], true[np.flatnonzero(true == held)[-1] + 1 :]]
    assert _longest_run(rest)[0] < round(PAUSE_RANGE[0] * m)
    # A pause draws from the generator it is given: the same draws, the same map.
    rng = np.random.default_rng(0)
    assert np.array_equal(paused_map(n, m, rng), paused_map(n, m, np.random.default_rng(0)))


def test_the_true_path_has_no_error_and_a_path_k_frames_off_has_k_over_n():
    n, k = 90, 4
    true = power_map(n - k, 120, 1.6)  # leaves room to shift by k
    path = np.column_stack([true, np.arange(len(true))])
    assert path_error(path, true, n) == 0.0
    shifted = path + [k, 0]
    assert path_error(shifted, true, n) == pytest.approx(k / n, abs=1e-15)
    assert path_error(path, true + k, n) == pytest.approx(k / n, abs=1e-15)  # or the truth moved by k


def test_a_frame_of_b_matched_with_several_frames_of_a_counts_their_mean():
    path = np.array([[0, 0], [1, 0], [2, 1], [3, 2], [4, 2], [5, 2]])
    assert matched_frames(path, 3).tolist() == [0.5, 2.0, 4.0]
    # |0.5 − 0| + |2 − 2| + |4 − 5| over 3 frames, over n = 6
    assert path_error(path, np.array([0, 2, 5]), 6) == pytest.approx((0.5 + 0 + 1) / 3 / 6, abs=1e-15)
    with pytest.raises(ValueError, match="no frame of A"):
        matched_frames(np.array([[0, 0], [1, 2]]), 3)  # frame 1 of B matched with nothing
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        matched_frames(path, 2)


def test_the_time_stretch_has_no_error_on_a_copy_at_the_same_length_and_pace():
    for n in (2, 5, 64):
        assert stretch_error(np.arange(n), n) == 0.0


@pytest.mark.parametrize("gamma", [0.6, 2.0])
def test_the_time_stretch_error_on_a_power_warp_is_its_loop_and_its_integral(gamma):
    n, m = 1001, 1401
    true = power_map(n, m, gamma)
    # A direct loop in float64.
    total = 0.0
    for j in range(m):
        total += abs(j * (n - 1) / (m - 1) - round((n - 1) * (j / (m - 1)) ** gamma))
    assert stretch_error(true, n) == pytest.approx(total / m / n, rel=1e-12)
    # The integral: (n − 1)/n ∫₀¹ |x − x^γ| dx = (n − 1)/n · |1/2 − 1/(γ + 1)|, within the rounding
    # (half a frame, 0.5 / n) and the sum's step (1 / m).
    integral = (n - 1) / n * abs(0.5 - 1 / (gamma + 1))
    assert stretch_error(true, n) == pytest.approx(integral, abs=0.5 / n + 1 / m)


def test_copies_need_a_video_of_three_frames():
    with pytest.raises(ValueError, match="at least 3 frames"):
        pace_maps(2, seed=0, video_index=0)
    with pytest.raises(ValueError, match="gamma"):
        power_map(10, 14, 0.0)


def test_execution_map_finds_the_frame_at_the_same_moment():
    """A at moments 0, 0.5, 1, …; B at the halfway moments: B's frame j is A's frame j + 0.5;
    before A's first moment and after its last the map holds A's ends."""
    from lrprop.core.pace import execution_map

    a = np.arange(6) * 0.5  # frame i at moment i / 2
    b = np.array([-1.0, 0.25, 0.75, 2.0, 2.5, 9.0])
    np.testing.assert_allclose(execution_map(a, b), [0.0, 0.5, 1.5, 4.0, 5.0, 5.0])
    # the time stretch of two executions that differ only in length is exact
    assert stretch_error(execution_map(np.linspace(0, 3, 40), np.linspace(0, 3, 55)), 40) == pytest.approx(0, abs=1e-12)
    with pytest.raises(ValueError, match="increasing"):
        execution_map(np.array([0.0, 0.0, 1.0]), b)
