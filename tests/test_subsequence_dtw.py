"""Subsequence DTW (a query found in a run of a longer sequence) against a brute force over every
run with the anchored DTW, against tslearn's ``dtw_subsequence_path``, and its block-by-block
version against the in-memory one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from tslearn.metrics import dtw_subsequence_path as tslearn_subsequence_path

from lrprop.core import dtw
from lrprop.core.dtw import dtw_distance, dtw_subsequence_path
from lrprop.core.dtw_long import dtw_subsequence_path_long, long_path_memory_bytes, sqeuclidean_rows


def _is_a_path(path: np.ndarray, start: int, end: int, ty: int) -> bool:
    """From (start, 0) to (end, ty - 1) by ↓, → and ↘ moves."""
    steps = np.diff(path, axis=0)
    moves = {tuple(s) for s in steps.tolist()}
    return path[0].tolist() == [start, 0] and path[-1].tolist() == [end, ty - 1] and moves <= {(1, 0), (0, 1), (1, 1)}


@pytest.mark.parametrize("seed", range(40))
def test_the_total_is_the_least_anchored_total_over_every_run_of_rows(seed):
    # The brute force: the anchored DTW (itself tested against tslearn) of the query against
    # every run of rows s..e. Every other seed rounds the cost, for ties between runs and moves.
    rng = np.random.default_rng(seed)
    tx = int(rng.integers(1, 14))
    ty = int(rng.integers(1, tx + 1))
    cost = rng.random((tx, ty))
    if seed % 2:
        cost = np.round(cost * 3)
    path, total, start, end = dtw_subsequence_path(cost)
    runs = {(s, e): dtw_distance(cost[s : e + 1]) for s in range(tx) for e in range(s, tx)}
    assert total == pytest.approx(min(runs.values()), rel=1e-12, abs=1e-12)
    assert runs[(start, end)] == pytest.approx(total, rel=1e-12, abs=1e-12)  # the run it names is a best one
    assert _is_a_path(path, start, end, ty)
    assert cost[path[:, 0], path[:, 1]].sum() == pytest.approx(total, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_the_path_and_total_equal_tslearn(seed):
    # tslearn's subsequence DTW takes the query's rows as its first axis: its (query, sequence)
    # pairs are our (row, column) pairs swapped, and its distance the square root of our total.
    # Continuous random frames: no ties, whose order the two break differently (↓ and →).
    rng = np.random.default_rng(seed)
    long_seq, query = rng.normal(size=(40, 3)), rng.normal(size=(11, 3))
    path, total, start, end = dtw_subsequence_path(cdist(long_seq, query, "sqeuclidean"))
    ts_path, ts_dist = tslearn_subsequence_path(query, long_seq)
    assert path[:, ::-1].tolist() == [list(p) for p in ts_path]
    assert total == pytest.approx(float(ts_dist) ** 2, rel=1e-12)
    assert (start, end) == (ts_path[0][1], ts_path[-1][1])


@pytest.mark.parametrize(
    ("tx", "ty", "block_rows"),
    [(1, 1, 4), (9, 1, 4), (9, 9, 2), (50, 37, 8), (50, 37, 1), (300, 120, 256), (257, 256, 256), (64, 64, 64)],
)
@pytest.mark.parametrize("ties", [False, True])
def test_the_block_version_gives_the_in_memory_path_total_start_and_end(tx, ty, block_rows, ties):
    rng = np.random.default_rng(tx * 1000 + ty)
    cost = rng.random((tx, ty))
    if ties:
        cost = np.round(cost * 3)
    path, total, start, end = dtw_subsequence_path_long(lambda r0, r1: cost[r0:r1], tx, ty, block_rows=block_rows)
    expected = dtw_subsequence_path(cost)
    assert np.array_equal(path, expected[0])
    assert (total, start, end) == expected[1:]


def _walk(length: int, rng) -> np.ndarray:
    """A smooth random walk in 16 dimensions: no two moments alike, as a video's frames."""
    steps = rng.normal(size=(length, 16))
    kernel = np.hanning(15) / np.hanning(15).sum()
    return np.stack([np.convolve(np.cumsum(steps[:, d]), kernel, mode="same") for d in range(16)], axis=1)


def test_a_clip_cut_from_a_longer_walk_is_found_where_it_was_cut():
    rng = np.random.default_rng(7)
    a = _walk(3000, rng)
    clip = a[1234:1634] + 0.01 * rng.normal(size=(400, 16))
    rows = sqeuclidean_rows(a, clip)
    for path, _, start, end in (dtw_subsequence_path(rows(0, len(a))), dtw_subsequence_path_long(rows, len(a), len(clip))):
        assert (start, end) == (1234, 1633)
        assert np.array_equal(path, np.stack([np.arange(1234, 1634), np.arange(400)], axis=1))
    # The clip played at half speed (each frame twice): found within a frame of where it was cut
    slow = np.repeat(a[500:700], 2, axis=0)
    path, _, start, end = dtw_subsequence_path_long(sqeuclidean_rows(a, slow), len(a), len(slow))
    assert abs(start - 500) <= 1 and abs(end - 699) <= 1
    assert np.abs(path[:, 0] - (500 + path[:, 1] // 2)).max() <= 1


def test_a_query_longer_than_the_sequence_is_refused_naming_both_lengths():
    cost = np.ones((5, 8))
    with pytest.raises(ValueError, match=r"\(8 columns\) is longer than .* \(5 rows\)"):
        dtw_subsequence_path(cost)
    with pytest.raises(ValueError, match=r"\(8 columns\) is longer than .* \(5 rows\)"):
        dtw_subsequence_path_long(lambda r0, r1: cost[r0:r1], 5, 8)


def test_non_finite_costs_raise():
    cost = np.ones((9, 4))
    cost[6, 2] = np.inf
    with pytest.raises(FloatingPointError):
        dtw_subsequence_path(cost)
    with pytest.raises(FloatingPointError, match="rows 6..7"):
        dtw_subsequence_path_long(lambda r0, r1: cost[r0:r1], 9, 4, block_rows=2)
    cost[6, 2] = np.nan
    cost[0, 0] = np.nan  # in the first column, which the open begin reads apart from the rest
    with pytest.raises(FloatingPointError):
        dtw_subsequence_path(cost)


def test_float32_and_tensor_costs_give_the_float64_result():
    rng = np.random.default_rng(3)
    cost = np.round(rng.random((60, 25)) * 4).astype(np.float32)  # ties, float32
    expected = dtw_subsequence_path(cost.astype(np.float64))
    for given in (cost, torch.from_numpy(cost)):
        path, *rest = dtw_subsequence_path(given)
        assert np.array_equal(path, expected[0]) and tuple(rest) == expected[1:]
    path, *rest = dtw_subsequence_path_long(lambda r0, r1: cost[r0:r1], 60, 25, block_rows=7)  # float32 blocks
    assert np.array_equal(path, expected[0]) and tuple(rest) == expected[1:]


def test_a_long_pair_takes_the_block_route_with_the_same_result(monkeypatch):
    rng = np.random.default_rng(5)
    cost = np.round(rng.random((90, 30)) * 4)
    expected = dtw_subsequence_path(cost)
    calls = []
    real = dtw.dtw_subsequence_path_long
    monkeypatch.setattr(dtw, "dtw_subsequence_path_long", lambda *a, **k: calls.append(a[1:]) or real(*a, **k))
    monkeypatch.setattr(dtw, "LONG_PAIR_CELLS", 1000)
    path, *rest = dtw_subsequence_path(cost)
    assert calls == [(90, 30)] and np.array_equal(path, expected[0]) and tuple(rest) == expected[1:]


def test_memory_of_the_block_version_is_the_anchored_one_and_a_column():
    assert long_path_memory_bytes(20_000, 2_000, subsequence=True) == long_path_memory_bytes(20_000, 2_000) + 8 * 20_000
