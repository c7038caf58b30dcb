"""The evaluation's all-pairs metrics on one class against a loop over the public peers.

    .venv/bin/python benchmarks/bench_eval.py [--videos 100] [--frames 200]

One class of ``--videos`` validation videos of ``--frames`` frames (128-D random walks, 4
phases), every metric of lrprop.core.metrics that looks at all pairs of videos, against the loop a
user would write with the peers (benchmark-only dependencies: pip install -e '.[bench]'):

- DTW accuracy: tslearn ``dtw_path`` on each unordered pair of videos;
- Kendall's τ (stride 2): SciPy ``cdist`` + ``argmin`` + ``kendalltau`` on each ordered pair;
- AP@K (stride 1): SciPy ``cdist`` from each video to all other frames, ``argpartition``.

Both sides compute the same scores (checked). The last row is the three as the evaluation
runs them, ``all_pairs_scores``: one distance product per video serves all three. Prints one
markdown table; the latest figures
live in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from lrprop.core import metrics

KS = metrics.AP_KS


def videos(n: int, frames: int, dim: int = 128) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    embs = [(np.cumsum(rng.standard_normal((frames, dim)), 0) / 10).astype(np.float32) for _ in range(n)]
    labels = [np.minimum(np.arange(frames) * 4 // frames, 3) for _ in range(n)]
    return embs, labels


def peer_dtw_accuracy(embs, labels) -> float:
    from tslearn.metrics import dtw_path

    scores = []
    for a in range(len(embs)):
        for b in range(a + 1, len(embs)):
            path = np.asarray(dtw_path(embs[a].astype(np.float64), embs[b].astype(np.float64))[0])
            scores.append(np.mean(labels[a][path[:, 0]] == labels[b][path[:, 1]]))
    return float(np.mean(scores))


def peer_kendalls_tau(embs, stride: int = 2) -> float:
    from scipy.spatial.distance import cdist
    from scipy.stats import kendalltau

    subs = [e[::stride].astype(np.float64) for e in embs]
    taus = []
    for i, query in enumerate(subs):
        for j, other in enumerate(subs):
            if i != j:
                nearest = cdist(query, other, "sqeuclidean").argmin(1)
                taus.append(kendalltau(np.arange(len(query)), nearest, variant="b").statistic)
    taus = np.asarray(taus)
    return float(taus[~np.isnan(taus)].mean())


def peer_ap_at_k(embs, labels) -> dict[int, float]:
    from scipy.spatial.distance import cdist

    scores = {k: [] for k in KS}
    for v in range(len(embs)):
        others = [u for u in range(len(embs)) if u != v]
        gallery = np.concatenate([embs[u] for u in others]).astype(np.float64)
        gallery_labels = np.concatenate([labels[u] for u in others])
        d = cdist(embs[v].astype(np.float64), gallery, "sqeuclidean")
        kmax = max(KS)
        nearest = np.argpartition(d, kmax - 1, axis=1)[:, :kmax]
        nearest = np.take_along_axis(nearest, np.argsort(np.take_along_axis(d, nearest, 1), axis=1, kind="stable"), 1)
        hits = gallery_labels[nearest] == labels[v][:, None]
        for k in KS:
            scores[k].append(hits[:, :k].mean())
    return {k: float(np.mean(s)) for k, s in scores.items()}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args()
    embs, labels = videos(args.videos, args.frames)
    # Warm-up: numba compiles (or loads its cache) on first use, on both sides.
    metrics.all_pairs_scores(embs[:3], labels[:3])
    peer_dtw_accuracy(embs[:2], labels[:2])

    rows = []
    for name, ours, peer in (
        ("DTW accuracy", lambda: metrics.dtw_accuracy(embs, labels), lambda: peer_dtw_accuracy(embs, labels)),
        ("Kendall's τ", lambda: metrics.kendalls_tau(embs), lambda: peer_kendalls_tau(embs)),
        ("AP@K", lambda: metrics.ap_at_k(embs, labels), lambda: peer_ap_at_k(embs, labels)),
    ):
        ours_value, ours_s = timed(ours)
        peer_value, peer_s = timed(peer)
        ours_flat = np.array(list(ours_value.values()) if isinstance(ours_value, dict) else [ours_value])
        peer_flat = np.array(list(peer_value.values()) if isinstance(peer_value, dict) else [peer_value])
        agree = np.allclose(ours_flat, peer_flat, rtol=0, atol=1e-6)
        rows.append((name, ours_s, peer_s, agree))

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{args.videos} videos x {args.frames} frames, 128-D; seconds")
    print()
    print("| metric | ours (s) | loop over the peers (s) | peer / ours | same scores |")
    print("|---|---:|---:|---:|---|")
    for name, ours_s, peer_s, agree in rows:
        print(f"| {name} | {ours_s:.2f} | {peer_s:.2f} | {peer_s / ours_s:.1f} | {'yes' if agree else 'NO'} |")
    # As the evaluation runs them: one distance product per video for all three.
    together, together_s = timed(lambda: metrics.all_pairs_scores(embs, labels))
    assert together["dtw_accuracy"] == metrics.dtw_accuracy(embs, labels)
    peer_total = sum(r[2] for r in rows)
    print(f"| all three (all_pairs_scores) | {together_s:.2f} | {peer_total:.2f} | {peer_total / together_s:.1f} | |")


if __name__ == "__main__":
    main()
