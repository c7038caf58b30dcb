"""The five metrics of METHOD.md §5 (lrprop/core/metrics.py) against closed forms and definition-level oracles.

Every oracle is written here from the protocol (docs/protocol-notes.md): plain loops over videos
and frames with scipy's ``cdist``/``kendalltau``, tslearn's DTW, and scikit-learn estimators
fitted in the test. None of them calls lrprop, and no expected value is the code's own output.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from oracles import dtw_accuracy_oracle, kendalls_tau_oracle
from scipy.spatial.distance import cdist
from scipy.stats import kendalltau
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import r2_score
from sklearn.svm import SVC

from lrprop.core._metric_kernels import argmin_blocks, offer_to_column_lists, smallest_k_rows
from lrprop.core.metrics import (
    all_pairs_scores,
    ap_at_k,
    drop_unlabelled,
    dtw_accuracy,
    kendall_tau_b,
    kendalls_tau,
    phase_classification,
    phase_progression,
)

# ----------------------------------------------------------------------------- data helpers


def _phase_labels(rng: np.random.Generator, length: int, num_phases: int) -> np.ndarray:
    """Ordered phases 0..K-1, every phase present, random durations."""
    cuts = np.sort(rng.choice(np.arange(1, length), num_phases - 1, replace=False))
    return np.searchsorted(cuts, np.arange(length), side="right").astype(np.int64)


def _phase_videos(seed: int, n: int, num_phases: int = 4, dim: int = 6, length=(15, 30), noise: float = 0.6):
    """n videos: labels in ordered phases; embeddings = a per-phase centre + progress + noise, so
    every metric lands strictly between its extremes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_phases, dim))
    direction = rng.normal(size=dim)
    embs, labels = [], []
    for _ in range(n):
        L = int(rng.integers(*length))
        lab = _phase_labels(rng, L, num_phases)
        t = np.linspace(0, 1, L)[:, None]
        embs.append(centres[lab] + t * direction + noise * rng.normal(size=(L, dim)))
        labels.append(lab)
    return embs, labels


# ----------------------------------------------------------------------------- drop_unlabelled


def test_drop_unlabelled_drops_negative_frames_and_empty_videos():
    embs = [np.arange(10.0).reshape(5, 2), np.ones((3, 2)), np.arange(8.0).reshape(4, 2)]
    labels = [np.array([-1, 0, 1, -1, 2]), np.array([-1, -1, -1]), np.array([0, 0, -5, 1])]
    out_e, out_l = drop_unlabelled(embs, labels)
    assert len(out_e) == len(out_l) == 2  # the all-unlabelled video is gone
    np.testing.assert_array_equal(out_l[0], [0, 1, 2])
    np.testing.assert_array_equal(out_e[0], embs[0][[1, 2, 4]])
    np.testing.assert_array_equal(out_l[1], [0, 0, 1])
    np.testing.assert_array_equal(out_e[1], embs[2][[0, 1, 3]])


# ----------------------------------------------------------------------------- Kendall's tau


@pytest.mark.parametrize("seed", range(5))
def test_kendall_tau_b_equals_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    x = rng.integers(0, 4, n)  # many ties in x
    y = rng.integers(0, 6, n) + 0.5 * (x > 1)  # ties in y, correlated with x
    assert kendall_tau_b(x, y) == pytest.approx(kendalltau(x, y, variant="b").statistic, abs=1e-12)
    z = rng.normal(size=n)  # no ties
    assert kendall_tau_b(x, z) == pytest.approx(kendalltau(x, z, variant="b").statistic, abs=1e-12)
    assert kendall_tau_b(np.arange(n), np.arange(n)) == pytest.approx(1.0)
    assert kendall_tau_b(np.arange(n), -np.arange(n)) == pytest.approx(-1.0)


def test_kendall_tau_b_is_nan_for_a_constant_sequence():
    assert math.isnan(kendall_tau_b(np.arange(7), np.full(7, 3)))
    assert math.isnan(kendall_tau_b(np.full(7, 3), np.arange(7)))
    assert math.isnan(kendall_tau_b(np.array([4]), np.array([2])))


def _curve(t: np.ndarray) -> np.ndarray:
    """A smooth curve in 3-D that never comes back near itself: nearest neighbours follow time."""
    t = np.asarray(t, dtype=np.float64)
    return np.stack([t, np.sin(2.0 * t), 0.3 * np.cos(3.0 * t)], axis=1)


def test_kendalls_tau_is_one_against_a_time_warped_copy_of_the_same_length():
    # Same number of frames, varying speed; every frame moves by less than half a step, so the
    # nearest neighbour of frame i is frame i in both directions: tau-b = 1 exactly.
    n = 40
    t = np.linspace(0, 3, n)
    step = t[1] - t[0]
    warped = t + 0.3 * step * np.sin(np.linspace(0, 2 * np.pi, n))
    assert kendalls_tau([_curve(t), _curve(warped)], stride=1) == pytest.approx(1.0, abs=1e-12)
    assert kendalls_tau([_curve(t), _curve(warped), _curve(t + 0.2 * step)], stride=2) == pytest.approx(1.0, abs=1e-12)


def test_kendalls_tau_against_a_copy_stretched_to_twice_the_frame_rate_has_its_closed_form():
    # A at n frames; B the same motion at 2n - 1 frames (shifted by a tenth of B's step so no
    # distance ties). A -> B: distinct, increasing neighbours, tau-b = 1. B -> A: neighbours
    # [0, 1, 1, 2, 2, ..., n-1, n-1]: (n - 1) tied pairs, tau-b = sqrt((n0 - (n - 1)) / n0),
    # n0 = m(m - 1)/2 with m = 2n - 1 (x = 0..m-1 has no ties).
    n = 30
    t_a = np.linspace(0, 3, n)
    t_b = np.linspace(0, 3, 2 * n - 1)
    t_b = t_b + 0.1 * (t_b[1] - t_b[0])
    m = 2 * n - 1
    n0 = m * (m - 1) / 2
    expected = (1.0 + math.sqrt((n0 - (n - 1)) / n0)) / 2
    assert kendalls_tau([_curve(t_a), _curve(t_b)], stride=1) == pytest.approx(expected, abs=1e-12)
    assert expected < 1.0


@pytest.mark.parametrize("stride", [1, 3])
def test_kendalls_tau_is_minus_one_against_the_reversed_video(stride):
    v = _curve(np.linspace(0, 3, 37))
    assert kendalls_tau([v, v[::-1]], stride=stride) == pytest.approx(-1.0, abs=1e-12)


@pytest.mark.parametrize("stride", [1, 2, 5])
def test_kendalls_tau_equals_a_direct_scipy_loop_over_ordered_pairs(stride):
    embs, _ = _phase_videos(7, 6, noise=0.8)
    # One video shorter than the stride: as a query it has one frame (tau NaN, dropped), as a
    # gallery one candidate (constant neighbours, NaN, dropped).
    embs.append(np.random.default_rng(1).normal(size=(max(1, stride - 1), embs[0].shape[1])))
    expected = kendalls_tau_oracle(embs, stride)
    assert -1.0 < expected < 1.0
    assert kendalls_tau(embs, stride=stride) == pytest.approx(expected, abs=1e-12)


def test_kendalls_tau_is_not_symmetric_in_a_pair_and_counts_both_orders():
    # With three videos the ordered-pair mean differs from the unordered-pair mean of one
    # direction; the oracle over all ordered pairs is what must match.
    embs, _ = _phase_videos(11, 3, noise=1.0)
    one_direction = []
    for i in range(3):
        for j in range(i + 1, 3):
            nn = np.argmin(cdist(embs[i], embs[j], "sqeuclidean"), axis=1)
            one_direction.append(kendalltau(np.arange(len(nn)), nn).statistic)
    got = kendalls_tau(embs, stride=1)
    assert got == pytest.approx(kendalls_tau_oracle(embs, 1), abs=1e-12)
    assert got != pytest.approx(float(np.mean(one_direction)), abs=1e-6)


# ----------------------------------------------------------------------------- AP@K


def _ap_oracle(embs, labels, ks, stride):
    """CARL's retrieval: per video, strided queries against the strided frames of all other
    videos; per query the fraction of the K nearest (all of them when fewer) with its label."""
    out = {}
    for K in ks:
        per_video = []
        for i in range(len(embs)):
            q, ql = embs[i][::stride], labels[i][::stride]
            gallery = np.concatenate([embs[j][::stride] for j in range(len(embs)) if j != i])
            gl = np.concatenate([labels[j][::stride] for j in range(len(embs)) if j != i])
            precisions = []
            for t in range(len(q)):
                d = cdist(q[t : t + 1], gallery, "sqeuclidean")[0]
                top = np.argsort(d, kind="stable")[:K]
                precisions.append(np.mean(gl[top] == ql[t]))
            per_video.append(np.mean(precisions))
        out[K] = float(np.mean(per_video))
    return out


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_ap_at_k_equals_a_direct_loop_from_the_definition(stride):
    embs, labels = _phase_videos(3, 5, noise=0.9)
    ks = (1, 5, 10, 15)
    expected = _ap_oracle(embs, labels, ks, stride)
    got = ap_at_k(embs, labels, ks=ks, stride=stride)
    assert set(got) == set(ks)
    for K in ks:
        assert 0.0 < expected[K] < 1.0
        assert got[K] == pytest.approx(expected[K], abs=1e-12), K


def test_ap_at_k_with_k_larger_than_the_gallery():
    rng = np.random.default_rng(5)
    lengths = [4, 5, 6]
    embs = [rng.normal(size=(L, 3)) for L in lengths]
    labels = [rng.integers(0, 3, L) for L in lengths]
    ks = (2, 30)
    got = ap_at_k(embs, labels, ks=ks, stride=1)
    expected = _ap_oracle(embs, labels, ks, 1)
    assert got[2] == pytest.approx(expected[2], abs=1e-12)
    # K >= gallery size: the K nearest are the whole gallery, whatever the distances, so each
    # query scores the fraction of the other videos' frames carrying its label.
    closed = []
    for i in range(3):
        others = np.concatenate([labels[j] for j in range(3) if j != i])
        closed.append(np.mean([np.mean(others == lab) for lab in labels[i]]))
    assert got[30] == pytest.approx(float(np.mean(closed)), abs=1e-12)
    assert got[30] == pytest.approx(expected[30], abs=1e-12)


def test_ap_at_k_is_one_when_phases_are_clusters_and_excludes_the_query_video():
    # Each frame's embedding is its phase's one-hot vector: every neighbour at distance 0
    # shares the label, so AP@K = 1 as long as K <= the frames of that phase in other videos.
    labels = [np.repeat(np.arange(3), 6) for _ in range(3)]
    embs = [np.eye(3)[lab] for lab in labels]
    assert ap_at_k(embs, labels, ks=(1, 5, 12), stride=1) == {1: 1.0, 5: 1.0, 12: 1.0}
    # If the query's own video were in the gallery, a unique video would find itself; it must not.
    labels2 = [np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])]
    embs2 = [np.array([[0.0], [0.1], [5.0], [5.1]]), np.array([[0.05], [0.15], [5.05], [5.15]])]
    assert ap_at_k(embs2, labels2, ks=(1,), stride=1)[1] == 0.0


# ----------------------------------------------------------------------------- DTW accuracy


def test_dtw_accuracy_is_one_for_identical_label_sequences_with_phase_embeddings():
    rng = np.random.default_rng(0)
    lab = _phase_labels(rng, 25, 4)
    embs = [np.eye(4)[lab] for _ in range(3)]
    assert dtw_accuracy(embs, [lab, lab, lab]) == 1.0
    # The same phases in the same order at other durations: still a zero-cost, all-agreeing path.
    others = [_phase_labels(rng, L, 4) for L in (18, 33, 40)]
    assert dtw_accuracy([np.eye(4)[x] for x in others], others) == 1.0


def test_dtw_accuracy_equals_tslearn_paths_over_unordered_pairs():
    embs, labels = _phase_videos(21, 5, noise=1.2)
    expected = dtw_accuracy_oracle(embs, labels)
    assert 0.0 < expected < 1.0
    assert dtw_accuracy(embs, labels) == pytest.approx(expected, abs=1e-12)


def test_dtw_accuracy_does_not_depend_on_chunking():
    embs, labels = _phase_videos(22, 5, noise=1.2, length=(10, 40))  # 10 pairs, padded batches
    whole = dtw_accuracy(embs, labels)
    assert dtw_accuracy(embs, labels, chunk_pairs=3) == pytest.approx(whole, abs=1e-12)
    assert dtw_accuracy(embs, labels, chunk_pairs=1) == pytest.approx(whole, abs=1e-12)
    assert whole == pytest.approx(dtw_accuracy_oracle(embs, labels), abs=1e-12)


@pytest.mark.parametrize("tau_stride, ap_stride", [(2, 1), (3, 2), (1, 3)])
def test_all_pairs_scores_from_one_product_equal_the_oracles(tau_stride, ap_stride):
    # One distance product per video serves the three metrics; each reads its frames at its
    # own stride, and the product holds only the frames some metric reads.
    embs, labels = _phase_videos(23, 6, noise=1.0, length=(12, 30))
    ks = (1, 3, 5)
    got = all_pairs_scores(embs, labels, tau_stride=tau_stride, ap_ks=ks, ap_stride=ap_stride)
    assert got["kendalls_tau"] == pytest.approx(kendalls_tau_oracle(embs, tau_stride), abs=1e-12)
    assert got["ap_at_k"] == pytest.approx(_ap_oracle(embs, labels, ks, ap_stride), abs=1e-12)
    assert got["dtw_accuracy"] == pytest.approx(dtw_accuracy_oracle(embs, labels), abs=1e-12)
    only_tau = all_pairs_scores(embs, None, tau_stride=tau_stride, metrics=("kendalls_tau",))
    assert only_tau == {"kendalls_tau": pytest.approx(got["kendalls_tau"], abs=1e-12)}
    with pytest.raises(ValueError, match="unknown metrics"):
        all_pairs_scores(embs, labels, metrics=("tau",))


@pytest.mark.parametrize("stride", [1, 2])
def test_all_pairs_scores_break_exact_ties_as_the_oracles_do(stride):
    # Small-integer embeddings: distances are exact in float64 and tie often, both for the
    # nearest neighbour (τ, found row-wise or column-wise depending on the pair's order) and at
    # AP's K boundary (merged from the earlier and the later videos' lists).
    rng = np.random.default_rng(31)
    embs = [rng.integers(0, 3, size=(int(rng.integers(9, 20)), 3)).astype(np.float64) for _ in range(6)]
    labels = [rng.integers(0, 3, size=len(e)) for e in embs]
    ks = (1, 2, 4, 7, 500)
    got = all_pairs_scores(embs, labels, tau_stride=stride, ap_ks=ks, ap_stride=stride, metrics=("kendalls_tau", "ap_at_k"))
    assert got["kendalls_tau"] == pytest.approx(kendalls_tau_oracle(embs, stride), abs=1e-12)
    assert got["ap_at_k"] == pytest.approx(_ap_oracle(embs, labels, ks, stride), abs=1e-12)


def test_all_pairs_scores_name_a_video_with_non_finite_embeddings():
    embs, labels = _phase_videos(24, 4)
    embs[2][5, 1] = np.nan
    with pytest.raises(ValueError, match="video 2 "):
        all_pairs_scores(embs, labels)
    with pytest.raises(ValueError, match="at least one"):
        all_pairs_scores([], [])


@pytest.mark.parametrize("step", [1, 2, 3])
def test_argmin_blocks_equal_numpy_argmins_both_ways(step):
    rng = np.random.default_rng(step)
    d = rng.integers(0, 4, size=(11, 37)).astype(np.float64)  # ties everywhere
    starts = np.array([0, 5, 6, 20, 37])
    rows, cols = argmin_blocks(d, starts, step)
    expected_cols = []
    for p in range(len(starts) - 1):
        block = d[::step, starts[p] : starts[p + 1] : step]
        np.testing.assert_array_equal(rows[p], block.argmin(1))
        expected_cols.append(block.argmin(0))
    np.testing.assert_array_equal(cols, np.concatenate(expected_cols))


def test_column_lists_fed_in_row_chunks_equal_one_sort_of_each_column():
    rng = np.random.default_rng(4)
    d = rng.integers(0, 5, size=(30, 13)).astype(np.float64)
    k = 6
    best_v, best_i = np.full((16, k), np.inf), np.full((16, k), -1, dtype=np.int64)
    for first in range(0, 30, 7):  # rows offered in index order, a chunk at a time
        offer_to_column_lists(np.ascontiguousarray(d[first : first + 7]), first, best_v, best_i, 3)
    assert np.isinf(best_v[:3]).all() and (best_i[:3] == -1).all()  # columns outside the blocks
    for c in range(13):
        order = np.lexsort((np.arange(30), d[:, c]))[:k]
        np.testing.assert_array_equal(best_i[3 + c], order)
        np.testing.assert_array_equal(best_v[3 + c], d[order, c])


def test_smallest_k_rows_orders_by_value_then_index_and_skips_a_block():
    rng = np.random.default_rng(3)
    d = rng.integers(0, 6, size=(7, 40)).astype(np.float64)  # many ties
    got = smallest_k_rows(d, 9, 10, 17)
    cols = np.r_[0:10, 17:40]
    for r in range(len(d)):
        order = np.lexsort((cols, d[r, cols]))  # by value, ties by column index
        np.testing.assert_array_equal(got[r], cols[order[:9]])


# ----------------------------------------------------------------------------- phase classification


def _first_videos(embs, labels, f):
    count = max(1, int(f * len(embs)))
    return np.concatenate(embs[:count]), np.concatenate(labels[:count])


def test_phase_classification_svm_equals_sklearn_svc_on_the_first_videos():
    # Same phase centres for train and val: draw both from one generator call.
    all_e, all_l = _phase_videos(33, 12, noise=1.0)
    train_e, train_l, val_e, val_l = all_e[:8], all_l[:8], all_e[8:], all_l[8:]
    x_val, y_val = np.concatenate(val_e), np.concatenate(val_l)
    fractions = (0.05, 0.1, 0.25, 0.5, 1.0)  # 0.05 * 8 = 0.4 -> max(1, 0) = 1 video
    got = phase_classification(train_e, train_l, val_e, val_l, fractions=fractions, classifier="svm")
    assert set(got) == set(fractions)
    scores = []
    for f in fractions:
        x, y = _first_videos(train_e, train_l, f)
        svc = SVC(kernel="rbf", C=1.0, decision_function_shape="ovo").fit(x, y)
        expected = float(np.mean(svc.predict(x_val) == y_val))
        scores.append(expected)
        assert got[f] == pytest.approx(expected, abs=1e-12), f
    assert len(set(scores)) > 1  # the fractions really use different training sets
    assert 0.25 < scores[-1] < 1.0


def test_phase_classification_logistic_equals_sklearn_logistic_regression():
    all_e, all_l = _phase_videos(41, 10, noise=1.0)
    train_e, train_l, val_e, val_l = all_e[:6], all_l[:6], all_e[6:], all_l[6:]
    x_val, y_val = np.concatenate(val_e), np.concatenate(val_l)
    fractions = (0.34, 1.0)
    got = phase_classification(train_e, train_l, val_e, val_l, fractions=fractions, classifier="logistic")
    for f in fractions:
        x, y = _first_videos(train_e, train_l, f)
        model = LogisticRegression(C=1.0, max_iter=100000).fit(x, y)
        assert got[f] == pytest.approx(float(np.mean(model.predict(x_val) == y_val)), abs=1e-12), f


def test_phase_classification_logistic_matches_carl_on_badly_scaled_features():
    # CARL fits LogisticRegression(max_iter=100000) (docs/protocol-notes.md §1). On features
    # of very different scales lbfgs needs more than a thousand iterations; a lower cap stops
    # early and predicts differently.
    rng = np.random.default_rng(0)
    scale = 1e4

    def video(n):
        x = rng.normal(size=(n, 8))
        y = (x[:, 0] + x[:, 1] + x[:, 2] > 0).astype(np.int64) + (x[:, 3] > 0.3)
        x[:, 0] *= scale
        x[:, 1] /= scale / 100
        return x, y

    train = [video(100) for _ in range(3)]
    val = [video(500) for _ in range(4)]
    x, y = np.concatenate([v[0] for v in train]), np.concatenate([v[1] for v in train])
    x_val, y_val = np.concatenate([v[0] for v in val]), np.concatenate([v[1] for v in val])
    reference = LogisticRegression(C=1.0, max_iter=100000).fit(x, y)
    assert reference.n_iter_.max() > 1000  # the case this test is about
    expected = float(np.mean(reference.predict(x_val) == y_val))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = phase_classification(
            [v[0] for v in train],
            [v[1] for v in train],
            [v[0] for v in val],
            [v[1] for v in val],
            fractions=(1.0,),
            classifier="logistic",
        )
    assert got[1.0] == pytest.approx(expected, abs=1e-12)


def test_phase_classification_with_one_class_in_the_training_subset():
    # The first training video holds phase 2 only: the only possible prediction is 2.
    all_e, all_l = _phase_videos(51, 6)
    train_e, train_l, val_e, val_l = all_e[:3], all_l[:3], all_e[3:], all_l[3:]
    train_l = [np.full_like(train_l[0], 2), *train_l[1:]]
    got = phase_classification(train_e, train_l, val_e, val_l, fractions=(0.1, 1.0))
    expected = float(np.mean(np.concatenate(val_l) == 2))
    assert 0.0 < expected < 1.0
    assert got[0.1] == pytest.approx(expected, abs=1e-12)
    x, y = _first_videos(train_e, train_l, 1.0)
    svc = SVC(kernel="rbf", C=1.0, decision_function_shape="ovo").fit(x, y)
    assert got[1.0] == pytest.approx(float(np.mean(svc.predict(np.concatenate(val_e)) == np.concatenate(val_l))))


def test_phase_classification_rejects_an_unknown_classifier():
    embs, labels = _phase_videos(61, 3)
    with pytest.raises(ValueError, match="knn"):
        phase_classification(embs[:2], labels[:2], embs[2:], labels[2:], classifier="knn")


# ----------------------------------------------------------------------------- phase progression


def _progress_oracle_targets(lab: np.ndarray, num_phases: int) -> np.ndarray:
    L = len(lab)
    cols = []
    for c in range(num_phases - 1):
        transition = max(i for i in range(L) if lab[i] == c)  # LAST frame labelled c
        cols.append([(t - transition) / L for t in range(L)])
    return np.array(cols, dtype=np.float64).T  # (L, K - 1)


def _progression_oracle(train_e, train_l, val_e, val_l, num_phases):
    x_tr = np.concatenate(train_e)
    y_tr = np.concatenate([_progress_oracle_targets(lab, num_phases) for lab in train_l])
    x_va = np.concatenate(val_e)
    y_va = np.concatenate([_progress_oracle_targets(lab, num_phases) for lab in val_l])
    r2 = []
    for c in range(num_phases - 1):
        model = LinearRegression().fit(x_tr, y_tr[:, c])
        r2.append(r2_score(y_va[:, c], model.predict(x_va)))
    return float(np.mean(r2))


def test_phase_progression_equals_per_event_linear_regressions():
    all_e, all_l = _phase_videos(71, 10, num_phases=5, noise=0.8)
    # Non-contiguous labels in one video: the transition is the LAST frame of phase c, not
    # the first frame of phase c + 1.
    lab = all_l[0].copy()
    first_one = int(np.argmax(lab == 1))
    lab[first_one + 1] = 0
    all_l[0] = lab
    train_e, train_l, val_e, val_l = all_e[:6], all_l[:6], all_e[6:], all_l[6:]
    expected = _progression_oracle(train_e, train_l, val_e, val_l, 5)
    assert 0.0 < expected < 1.0
    assert phase_progression(train_e, train_l, val_e, val_l) == pytest.approx(expected, abs=1e-10)
    assert phase_progression(train_e, train_l, val_e, val_l, num_phases=5) == pytest.approx(expected, abs=1e-10)


def test_phase_progression_is_one_when_the_embeddings_are_the_targets():
    rng = np.random.default_rng(81)
    labels = [_phase_labels(rng, int(rng.integers(15, 40)), 4) for _ in range(7)]
    embs = [_progress_oracle_targets(lab, 4) for lab in labels]  # (L, 3): progress itself
    got = phase_progression(embs[:4], labels[:4], embs[4:], labels[4:])
    assert got == pytest.approx(1.0, abs=1e-9)
    # Independent features carry no progress: R² well below 1.
    noise = [rng.normal(size=(len(lab), 3)) for lab in labels]
    assert phase_progression(noise[:4], labels[:4], noise[4:], labels[4:]) < 0.5
