"""lrprop: frame-level video embeddings for temporal alignment with LRProp."""

import os

__version__ = "0.1.0"

# After each parallel kernel, libgomp's threads (numba's threading layer, torch's CPU ops) spin
# for GOMP_SPINCOUNT iterations before sleeping: 300 000 by default, about 6 ms on this VM's
# cores, taken from the BLAS product that the evaluation runs between kernels (it ran 1.5×
# slower). 10 000 spins still bridge the gap between back-to-back kernels of a training step
# (no slower at B=2, T=80). libgomp reads it when it loads, so it is set before torch or numba
# is imported through lrprop; a value the user set wins. docs/benchmarks.md has the figures.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
