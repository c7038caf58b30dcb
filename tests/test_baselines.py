"""The reference embeddings (lrprop/core/baselines.py) and their scoring beside a model (lrprop/evaluation/evaluate.py).

Oracles: closed forms (i / L; identical videos align on the diagonal; phases one apart with
w-wide progress separate under any classifier and DTW), the embeddings written out here from
their definitions and scored by the same scorer, and gains recomputed here by subtraction.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrprop.config import EvalConfig
from lrprop.core.baselines import (
    default_progress_weight,
    lower_is_better,
    metrics_gain,
    phase_progress_embeddings,
    time_stretch_embeddings,
)
from lrprop.core.metrics import all_pairs_scores
from lrprop.evaluation.evaluate import REFERENCES, score_embeddings, score_with_references
from lrprop.evaluation.report import flatten_metrics, mean_over_classes

CONFIG = EvalConfig(fractions=(0.5, 1.0), ap_ks=(1, 5), tau_stride=2, ap_stride=1)


def _monotone_labels(rng: np.random.Generator, length: int, num_phases: int) -> np.ndarray:
    """Phases 0..K-1 in order, every phase present, random durations."""
    cuts = np.sort(rng.choice(np.arange(1, length), num_phases - 1, replace=False))
    return np.searchsorted(cuts, np.arange(length), side="right").astype(np.int64)


def _uniform_labels(length: int, num_phases: int) -> np.ndarray:
    """Uniform pacing: frame i of L is in phase ⌊K·i / L⌋."""
    return (np.arange(length) * num_phases // length).astype(np.int64)


def _noise(rng, labels, dim=6):
    return [rng.normal(size=(len(lab), dim)) for lab in labels]


# ----------------------------------------------------------------------------- time stretch


def test_time_stretch_embeds_frame_i_of_l_as_i_over_l():
    embs = time_stretch_embeddings([1, 4, 7])
    assert [e.shape for e in embs] == [(1, 1), (4, 1), (7, 1)]
    np.testing.assert_array_equal(embs[1][:, 0], [0.0, 0.25, 0.5, 0.75])
    for L, e in zip([1, 4, 7], embs):
        np.testing.assert_allclose(e[:, 0], [i / L for i in range(L)], rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="at least one frame"):
        time_stretch_embeddings([3, 0])


def test_baseline_of_identical_length_uniformly_paced_videos_aligns_perfectly():
    # Same length, same labels at the same frames: identical baseline embeddings, so every
    # nearest neighbour is the frame itself (τ = 1) and DTW walks the diagonal (accuracy 1).
    rng = np.random.default_rng(0)
    labels = [_uniform_labels(30, 4) for _ in range(3)]
    scores = score_with_references(_noise(rng, labels[:1]), labels[:1], _noise(rng, labels[1:]), labels[1:], CONFIG)
    assert scores["baseline"]["dtw_accuracy"] == 1.0
    assert scores["baseline"]["kendalls_tau"] == pytest.approx(1.0, abs=1e-12)
    # The same closed form holds for the baseline embeddings scored directly.
    direct = all_pairs_scores(time_stretch_embeddings([30, 30]), labels[1:], tau_stride=1)
    assert direct["dtw_accuracy"] == 1.0 and direct["kendalls_tau"] == pytest.approx(1.0, abs=1e-12)


def test_baseline_counts_unlabelled_frames_in_the_length_and_drops_them_like_the_model():
    rng = np.random.default_rng(1)
    labels = [_monotone_labels(rng, int(rng.integers(20, 35)), 3) for _ in range(6)]
    for lab in labels[::2]:
        lab[:4] = -1  # context frames: in L, not scored
    embs = _noise(rng, labels)
    got = score_with_references(embs[:3], labels[:3], embs[3:], labels[3:], CONFIG)["baseline"]
    # i / L written out here over each whole video, then scored as any embedding is.
    written = [(np.arange(len(lab)) / len(lab))[:, None] for lab in labels]
    expected = score_embeddings(written[:3], labels[:3], written[3:], labels[3:], CONFIG)
    assert flatten_metrics(got) == pytest.approx(flatten_metrics(expected), abs=1e-12)
    # Indexing the kept frames from 0 instead would be a different embedding with other scores.
    compact = [(np.arange((lab >= 0).sum()) / (lab >= 0).sum())[:, None] for lab in labels]
    compact_labels = [lab[lab >= 0] for lab in labels]
    other = score_embeddings(compact[:3], compact_labels[:3], compact[3:], compact_labels[3:], CONFIG)
    assert flatten_metrics(other) != pytest.approx(flatten_metrics(expected), abs=1e-9)


def test_the_references_do_not_depend_on_the_model():
    rng = np.random.default_rng(2)
    labels = [_monotone_labels(rng, int(rng.integers(20, 35)), 3) for _ in range(6)]
    a = score_with_references(_noise(rng, labels[:3]), labels[:3], _noise(rng, labels[3:]), labels[3:], CONFIG)
    b = score_with_references(_noise(rng, labels[:3], 3), labels[:3], _noise(rng, labels[3:], 3), labels[3:], CONFIG)
    assert flatten_metrics(a) != pytest.approx(flatten_metrics(b))
    for ref in ("baseline", "oracle"):
        assert flatten_metrics(a[ref]) == flatten_metrics(b[ref]), ref


# ----------------------------------------------------------------------------- oracle


def test_oracle_is_phase_plus_weighted_progress_through_each_run():
    lab = np.array([0, 0, 0, 0, -1, 1, 1, -1, 1, 2, 0, 0])
    (emb,) = phase_progress_embeddings([lab], progress_weight=0.5)
    assert emb.shape == (12, 1)
    # Runs once the unlabelled frames are left out: 0×4, 1×3 (across the gap), 2×1, 0×2.
    want = [0, 0.125, 0.25, 0.375, np.nan, 1, 1 + 0.5 / 3, np.nan, 1 + 1 / 3, 2, 0, 0.25]
    np.testing.assert_allclose(emb[:, 0], want, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="progress_weight"):
        phase_progress_embeddings([lab], progress_weight=1.0)


def test_default_progress_weight_meets_the_dtw_bound():
    for max_length in (1, 2, 20, 663, 10_000):
        w = default_progress_weight(max_length)
        # a path with a cross-phase cell costs ≥ (1 − w)², the phase-keeping path < (La + Lb)·w²
        assert (1 - w) ** 2 >= 2 * max_length * w**2 * (1 - 1e-12)
        assert w == pytest.approx(1 / (1 + math.sqrt(2 * max_length)))


@pytest.mark.parametrize("classifier", ["svm", "logistic"])
def test_oracle_scores_classification_and_dtw_accuracy_one_on_monotone_phases(classifier):
    rng = np.random.default_rng(3)
    labels = [_monotone_labels(rng, int(rng.integers(12, 60)), 4) for _ in range(10)]
    # The pair where phase lengths disagree most: 1 + 30 frames against 30 + 1.
    labels += [np.r_[np.zeros(1, int), np.ones(30, int)], np.r_[np.zeros(30, int), np.ones(1, int)]]
    two_phase = labels[-2:]
    embs = phase_progress_embeddings(labels)
    config = EvalConfig(fractions=(1.0,), ap_ks=(1,), classifier=classifier)
    scores = score_embeddings(embs[:5], labels[:5], embs[5:10], labels[5:10], config)
    assert scores["phase_classification"] == {1.0: 1.0}
    assert scores["dtw_accuracy"] == 1.0
    pair = phase_progress_embeddings(two_phase)
    assert all_pairs_scores(pair, two_phase, metrics=("dtw_accuracy",))["dtw_accuracy"] == 1.0
    # With the progress weighted as much as the phase, DTW pairs frames across phases there.
    heavy = phase_progress_embeddings(two_phase, progress_weight=0.99)
    assert all_pairs_scores(heavy, two_phase, metrics=("dtw_accuracy",))["dtw_accuracy"] < 1.0


# ----------------------------------------------------------------------------- gain


def test_metrics_gain_subtracts_key_by_key():
    a = {"dtw_accuracy": 0.9, "ap_at_k": {5: 0.8, 10: 0.7}, "note": "x", "only_a": 1.0}
    b = {"dtw_accuracy": 0.6, "ap_at_k": {5: 0.5, 10: 0.75}, "note": "y"}
    gain = metrics_gain(a, b)
    assert set(gain) == {"dtw_accuracy", "ap_at_k"} and set(gain["ap_at_k"]) == {5, 10}
    assert gain["dtw_accuracy"] == pytest.approx(0.3) and gain["ap_at_k"] == pytest.approx({5: 0.3, 10: -0.05})


def test_the_gain_of_an_error_is_how_much_lower_it_is_than_the_reference():
    a = {"dtw_accuracy": 0.9, "pace": {"repaced": 0.04, "trimmed": 0.10}}
    b = {"dtw_accuracy": 0.6, "pace": {"repaced": 0.12, "trimmed": 0.08}}
    gain = metrics_gain(a, b)
    assert gain["dtw_accuracy"] == pytest.approx(0.3)
    assert gain["pace"] == pytest.approx({"repaced": 0.08, "trimmed": -0.02})  # b − a: lower is better
    assert lower_is_better("pace") and lower_is_better("pace/repaced")
    assert not lower_is_better("dtw_accuracy") and not lower_is_better("ap_at_k/5") and not lower_is_better("ap@5")


def test_score_with_references_gives_the_model_baseline_oracle_and_their_gain():
    rng = np.random.default_rng(4)
    labels = [_monotone_labels(rng, int(rng.integers(20, 35)), 3) for _ in range(7)]
    centres = rng.normal(size=(3, 6))
    embs = [centres[lab] + 0.8 * rng.normal(size=(len(lab), 6)) for lab in labels]
    scores = score_with_references(embs[:4], labels[:4], embs[4:], labels[4:], CONFIG)
    model = score_embeddings(embs[:4], labels[:4], embs[4:], labels[4:], CONFIG)
    assert set(scores) == set(model) | set(REFERENCES)
    assert flatten_metrics(scores) == pytest.approx(flatten_metrics(model), abs=1e-12)  # the model's keys unchanged
    for ref in ("baseline", "oracle"):
        assert set(flatten_metrics(scores[ref])) == set(flatten_metrics(model)), ref
    flat, base, gain = flatten_metrics(scores), flatten_metrics(scores["baseline"]), flatten_metrics(scores["gain"])
    for key in flat:
        assert gain[key] == pytest.approx(flat[key] - base[key], abs=1e-12), key
    # The mean over classes: each reference's mean, and the gain of the means.
    other = score_with_references(embs[3:], labels[3:], embs[:3], labels[:3], CONFIG)
    mean = mean_over_classes({"a": scores, "b": other})
    for key in flat:
        for ref in ("baseline", "oracle"):
            want = np.mean([flatten_metrics(scores[ref])[key], flatten_metrics(other[ref])[key]])
            assert mean[ref][key] == pytest.approx(want, abs=1e-12), (ref, key)
        assert mean["gain"][key] == pytest.approx(mean[key] - mean["baseline"][key], abs=1e-12), key
