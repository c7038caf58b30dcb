"""Exact DTW paths for alignment (issue 16): on a precomputed cost at training sizes, on long
pairs of embeddings (2 000 and 20 000 frames a side), against the public peers, and a clip found
in a long video (subsequence DTW) beside the anchored path of the same pair.

    .venv/bin/python benchmarks/bench_align.py [--repeats 20] [--long-peers] [--tables precomputed long clip]

Peers (benchmark-only dependencies: pip install -e '.[bench]'), measured in the same run:

- on a precomputed (T, T) cost, B pairs: tslearn ``dtw_path_from_metric(cost, metric="precomputed")``
  one pair at a time; ours ``lrprop.core.dtw.dtw_path`` on the (B, T, T) batch, per pair, on the
  float64 cost and on its float32 rounding (what float32 embeddings give), and on that float32
  cost widened to float64 by the caller (what ``dtw_path`` itself did with float32 before it
  read float32 as it is).
- long pairs of embeddings (T, 128): ours ``lrprop.core.dtw_long.dtw_path_long`` on
  ``sqeuclidean_rows`` (the exact path in little memory), ours in memory (``dtw_path`` on the whole
  float64 cost), tslearn ``dtw_path`` and dtaidistance ``dtw_ndim.warping_path`` (its C
  library, ``use_c=True``) from the embeddings. Each case runs in a fresh process; its peak memory is the growth of that process's
  peak resident set (Linux's high-water mark, reset just before the call) over the call: numba's
  and C allocations escape tracemalloc. At 20 000
  frames the in-memory programmes need over 6 GB each: they run only with ``--long-peers``.
- a clip of 2 000 frames (a stretch of a 20 000-frame walk, frames 9 000..10 999, with a little
  noise) and that walk: ours ``dtw_subsequence_path_long`` (the clip matched with the part of the
  walk it fits) beside ``dtw_path_long`` (the clip stretched over the whole walk), measured as the
  long pairs are; no peer.

Prints markdown tables; the latest figures live in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
from timing import timeit

DIM = 128
PRECOMPUTED_SIZES = [(2, 80), (2, 240), (16, 80), (16, 240)]
LONG = [2_000, 20_000]
CASES = ("ours (blocks)", "ours (in memory)", "tslearn", "dtaidistance")
CLIP_OF, CLIP_START, CLIP_LEN = 20_000, 9_000, 2_000  # the clip: frames 9 000..10 999 of a 20 000-frame walk
CLIP_CASES = ("clip: anchored", "clip: subsequence")


def walks(T: int, seed: int) -> np.ndarray:
    """An L2-normalised random walk (T, 128), like a trained encoder's output."""
    x = np.random.default_rng(seed).normal(size=(T, DIM)).cumsum(0)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def precomputed_row(B: int, T: int, repeats: int) -> dict:
    from tslearn.metrics import dtw_path_from_metric

    from lrprop.core.dtw import dtw_path

    a = np.stack([walks(T, b) for b in range(B)])
    c = np.stack([walks(T, 100 + b) for b in range(B)])
    cost = np.ascontiguousarray(((a[:, :, None] - c[:, None]) ** 2).sum(-1))  # (B, T, T) float64
    cost32 = cost.astype(np.float32)
    for b in range(B):  # the same paths, or the comparison means nothing
        assert np.array_equal(dtw_path(cost)[b], np.array(dtw_path_from_metric(cost[b], metric="precomputed")[0]))
        want32 = dtw_path_from_metric(cost32[b].astype(np.float64), metric="precomputed")[0]
        assert np.array_equal(dtw_path(cost32)[b], np.array(want32))
    # Interleaved rounds, the best round's median: this VM's speed drifts within a minute, and
    # other work may share its two cores
    cases = {
        "ours_ms": lambda: dtw_path(cost),
        "ours32_ms": lambda: dtw_path(cost32),
        "widened32_ms": lambda: dtw_path(cost32.astype(np.float64)),
    }
    rounds = [{k: timeit(f, repeats) / B for k, f in cases.items()} for _ in range(3)]
    ts = timeit(lambda: [dtw_path_from_metric(cost[b], metric="precomputed") for b in range(B)], repeats) / B
    return {"B": B, "T": T, **{k: min(r[k] for r in rounds) for k in cases}, "tslearn_ms": ts}


def _status(key: str) -> int:
    """A size from /proc/self/status (``VmRSS``, ``VmHWM``), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def clip_of_walk(x: np.ndarray) -> np.ndarray:
    """Frames CLIP_START.. of ``x``, CLIP_LEN of them, with a little noise, L2-normalised again."""
    clip = x[CLIP_START : CLIP_START + CLIP_LEN] + 0.001 * np.random.default_rng(3).normal(size=(CLIP_LEN, DIM))
    return clip / np.linalg.norm(clip, axis=1, keepdims=True)


def _run_case(case: str, T: int) -> dict:
    """One long pair in this process: seconds and peak resident growth (MiB) of the call."""
    x = walks(T, 1)
    y = clip_of_walk(x) if case in CLIP_CASES else walks(T, 2)
    found = {}
    if case in CLIP_CASES:
        from lrprop.core.dtw_long import dtw_path_long, dtw_subsequence_path_long, sqeuclidean_rows

        dtw_path_long(sqeuclidean_rows(x[:300], y[:100]), 300, 100)  # compile outside the timing
        dtw_subsequence_path_long(sqeuclidean_rows(x[:300], y[:100]), 300, 100)
        if case == "clip: anchored":
            fn = lambda: dtw_path_long(sqeuclidean_rows(x, y), T, len(y))[0]  # noqa: E731
        else:

            def fn():
                path, _, start, end = dtw_subsequence_path_long(sqeuclidean_rows(x, y), T, len(y))
                found.update(first=start, last=end)
                return path

    elif case == "ours (blocks)":
        from lrprop.core.dtw_long import dtw_path_long, sqeuclidean_rows

        dtw_path_long(sqeuclidean_rows(x[:300], y[:300]), 300, 300)  # compile outside the timing
        fn = lambda: dtw_path_long(sqeuclidean_rows(x, y), T, T)[0]  # noqa: E731
    elif case == "ours (in memory)":
        # The in-memory kernel itself: dtw_path hands a pair this long to dtw_path_long
        from lrprop.core._dtw_kernels import dtw_paths

        def fn():
            cost = np.maximum((x * x).sum(1)[:, None] + (y * y).sum(1)[None] - 2 * x @ y.T, 0)[None]
            paths, counts, _, _ = dtw_paths(cost, np.array([T]), np.array([T]))
            return paths[0, : counts[0]]

        dtw_paths(np.ones((1, 3, 3)), np.array([3]), np.array([3]))
    elif case == "tslearn":
        from tslearn.metrics import dtw_path

        dtw_path(x[:3], y[:3])
        fn = lambda: np.array(dtw_path(x, y)[0])  # noqa: E731
    else:
        from dtaidistance import dtw_ndim

        dtw_ndim.warping_path(x[:3], y[:3], use_c=True)
        fn = lambda: np.array(dtw_ndim.warping_path(x, y, use_c=True))  # noqa: E731 - its C library
    # The peak resident set of the call: Linux's high-water mark, reset to the current size
    # just before it (/proc/self/clear_refs), so neither the imports nor a compile count. Memory
    # freed before the call goes back to the system first (malloc_trim): the call's allocations
    # would otherwise reuse it unseen (a 20 000 x 2 000 pair's 10 MB did).
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status("VmRSS")
    start = time.perf_counter()
    path = fn()
    seconds = time.perf_counter() - start
    peak = (_status("VmHWM") - before) / 2**20
    digest = hashlib.sha256(np.ascontiguousarray(path, dtype=np.int64).tobytes()).hexdigest()[:16]
    return {
        "seconds": seconds,
        "peak_mib": peak,
        "steps": int(len(path)),
        "end": [int(v) for v in path[-1]],
        "path": digest,
        **found,
    }


def _in_child(case: str, T: int) -> dict:
    """:func:`_run_case` in a fresh process (its own peak memory), or {"failed": its last error line}."""
    done = subprocess.run([sys.executable, __file__, "--case", case, "--T", str(T)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"failed": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def long_rows(long_peers: bool) -> list[dict]:
    rows = []
    for T in LONG:
        for case in CASES:
            if T > 5_000 and case != "ours (blocks)" and not long_peers:
                rows.append({"T": T, "case": case, "skipped": True})
                continue
            rows.append({"T": T, "case": case, **_in_child(case, T)})
    return rows


def clip_rows() -> list[dict]:
    return [{"case": case, **_in_child(case, CLIP_OF)} for case in CLIP_CASES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--long-peers", action="store_true", help="run the in-memory programmes at 20 000 frames too")
    parser.add_argument(
        "--tables",
        nargs="+",
        choices=("precomputed", "long", "clip"),
        default=["precomputed", "long", "clip"],
        help="which tables to measure (default all)",
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)  # a child process: one long case
    parser.add_argument("--T", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(_run_case(args.case, args.T)))
        return
    import numba
    import torch

    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; numba {numba.__version__} "
        f"({numba.config.NUMBA_NUM_THREADS} threads), torch {torch.__version__}"
    )
    if "precomputed" in args.tables:
        print_precomputed(args.repeats)
    if "long" in args.tables:
        print_long(args.long_peers)
    if "clip" in args.tables:
        print_clip()


def print_precomputed(repeats: int) -> None:
    print()
    print("Exact DTW path on a precomputed cost, ms per pair (ours: one batched call of B pairs; tslearn on float64)")
    print()
    print("| B | T | ours float64 | ours float32 | float32 / float64 | float32 widened first | tslearn | tslearn / ours |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for B, T in PRECOMPUTED_SIZES:
        r = precomputed_row(B, T, repeats)
        print(
            f"| {B} | {T} | {r['ours_ms']:.3f} | {r['ours32_ms']:.3f} | {r['ours32_ms'] / r['ours_ms']:.2f} "
            f"| {r['widened32_ms']:.3f} | {r['tslearn_ms']:.3f} | {r['tslearn_ms'] / r['ours_ms']:.1f} |"
        )


def print_long(long_peers: bool) -> None:
    print()
    print(f"Exact DTW path of one long pair from embeddings (T x T, D = {DIM}): seconds, peak memory growth (MiB)")
    print()
    print("| T | programme | seconds | peak MiB | seconds / ours (blocks) | the same path |")
    print("|---:|---|---:|---:|---:|---|")
    rows = long_rows(long_peers)
    ours = {r["T"]: r for r in rows if r["case"] == "ours (blocks)" and "seconds" in r}
    for r in rows:
        if r.get("skipped"):
            print(f"| {r['T']} | {r['case']} | not run (over 6 GB; --long-peers) | | | |")
        elif r.get("failed"):
            print(f"| {r['T']} | {r['case']} | failed: {r['failed']} | | | |")
        else:
            base = ours.get(r["T"])
            ratio = f"{r['seconds'] / base['seconds']:.2f}" if base else "-"
            assert r["end"] == [r["T"] - 1, r["T"] - 1], r
            same = "yes" if base and r["path"] == base["path"] else "no"
            print(f"| {r['T']} | {r['case']} | {r['seconds']:.2f} | {r['peak_mib']:.0f} | {ratio} | {same} |")


def print_clip() -> None:
    print()
    print(
        f"A clip of {CLIP_LEN} frames (frames {CLIP_START}..{CLIP_START + CLIP_LEN - 1} of a {CLIP_OF}-frame walk, "
        f"D = {DIM}) against the walk: seconds, peak memory growth (MiB)"
    )
    print()
    print("| programme | seconds | peak MiB | seconds / anchored | peak / anchored | frames of the walk matched |")
    print("|---|---:|---:|---:|---:|---|")
    rows = clip_rows()
    base = next((r for r in rows if r["case"] == "clip: anchored" and "seconds" in r), None)
    for r in rows:
        if r.get("failed"):
            print(f"| {r['case']} | failed: {r['failed']} | | | | |")
            continue
        ratios = (f"{r['seconds'] / base['seconds']:.2f}", f"{r['peak_mib'] / base['peak_mib']:.2f}") if base else ("-", "-")
        matched = f"{r['first']}-{r['last']}" if "first" in r else f"0-{CLIP_OF - 1} (all)"
        print(f"| {r['case']} | {r['seconds']:.2f} | {r['peak_mib']:.0f} | {ratios[0]} | {ratios[1]} | {matched} |")


if __name__ == "__main__":
    main()
