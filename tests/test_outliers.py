"""Unusual executions (issue 16): each video's alignment cost to the others of its class."""

from __future__ import annotations

import numpy as np
import pytest

from lrprop.core import dtw
from lrprop.core.baselines import phase_progress_embeddings
from lrprop.core.dtw import dtw_path
from lrprop.core.outliers import alignment_costs, outlier_scores


def _class(n: int, seed: int, shuffled: int | None = None) -> list[np.ndarray]:
    """n executions of a 4-phase action (random shares of each video), embedded as phase index
    plus progress with noise; video ``shuffled`` performs its phases in another order."""
    rng = np.random.default_rng(seed)
    labels = []
    for v in range(n):
        shares = rng.dirichlet(np.full(4, 8.0))
        lab = np.repeat(np.arange(4), np.maximum(3, np.round(shares * rng.integers(60, 90))).astype(int))
        if v == shuffled:
            order = np.array([2, 0, 3, 1])
            lab = np.concatenate([lab[lab == k] for k in order])  # the same phases, in another order
        labels.append(lab)
    embs = phase_progress_embeddings(labels)
    return [np.hstack([e, 0.05 * rng.normal(size=(len(e), 3))]) for e in embs]


def test_the_costs_are_each_pairs_mean_cost_along_its_exact_path():
    videos = _class(5, 0)
    costs = alignment_costs(videos)
    for v in range(5):
        for w in range(5):
            if v == w:
                assert costs[v, w] == 0.0
                continue
            # The oracle: the in-memory dtw_path of the pair's own cost matrix
            cost = ((videos[v][:, None] - videos[w][None]) ** 2).sum(-1)
            path = dtw_path(cost)
            assert costs[v, w] == pytest.approx(cost[path[:, 0], path[:, 1]].mean(), rel=1e-9)
    assert np.array_equal(costs, costs.T)


def test_a_video_performed_in_another_order_ranks_first(monkeypatch):
    videos = _class(12, 1, shuffled=7)
    scores, z, _ = outlier_scores(videos)
    assert int(np.argmax(z)) == 7 and z[7] > 3 and np.sort(z)[-2] < 3
    assert scores[7] == pytest.approx(np.median(np.delete(alignment_costs(videos)[7], 7)))
    # Long pairs, a block of rows at a time: the same scores
    monkeypatch.setattr(dtw, "MANY_IN_MEMORY_CELLS", 10)
    assert np.allclose(outlier_scores(videos)[0], scores, rtol=1e-12)


def test_outlier_scores_need_three_videos_and_a_class_that_does_not_spread_scores_zero():
    with pytest.raises(ValueError, match="at least 3 videos"):
        outlier_scores(_class(2, 2))
    same = [np.arange(20.0)[:, None]] * 4
    assert np.array_equal(outlier_scores(same)[1], np.zeros(4))


def test_the_outliers_page_and_table_list_every_video_the_most_unusual_first(tmp_path):
    from lrprop.alignment.outliers import RankedVideos, write_outliers

    rows = [
        {"rank": 1, "video": "odd<1>", "frames": 30, "score": 0.9, "z": 5.0},
        {"rank": 2, "video": "b", "frames": 20, "score": 0.2, "z": 0.5},
        {"rank": 3, "video": "c", "frames": 25, "score": 0.1, "z": -0.5},
    ]
    strips = {r["video"]: np.zeros((8, 24, 3), np.uint8) for r in rows}
    ranked = RankedVideos("synthetic", "v1", "reach", "val", rows, np.zeros((3, 3)), strips)
    csv_path, page_path, picture = write_outliers(tmp_path, ranked, top=1)
    assert csv_path.read_text().splitlines() == ["rank,video,frames,score,z", "1,odd<1>,30,0.9,5.000", "2,b,20,0.2,0.500",
                                                 "3,c,25,0.1,-0.500"]  # fmt: skip
    page = page_path.read_text()
    assert "odd&lt;1&gt;" in page and "(unusual: z &gt; 3)" not in page and "(unusual: z > 3)" in page
    assert page.count("<img ") == 2 and ">c<" in page and ">b<" not in page  # the top one and the most typical
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outliers.csv", "outliers.html", "outliers.png"]
    from PIL import Image

    with Image.open(picture) as shown:
        assert shown.format == "PNG"
