"""The timer the benchmark scripts share (run them as scripts: this folder is then on sys.path)."""

from __future__ import annotations

import statistics
import time


def timeit(fn, repeats: int, warmup: int = 3) -> float:
    """Median wall time of fn() in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)
