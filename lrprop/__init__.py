"""lrprop: frame-level video embeddings for temporal alignment with LRProp.

Layers: ``lrprop.core`` (the maths, which imports none of the others), ``lrprop.data`` and
``lrprop.ingest`` (videos), ``lrprop.training`` and ``lrprop.evaluation`` (one machine, from a
config), ``lrprop.pipeline`` (Ray Train and Tune, the Prefect flows, the store's registries of
backbones and embeddings); ``lrprop.config``, ``lrprop.store`` and ``lrprop.cli`` beside them.
"""

import os

from lrprop import _moved

__version__ = "0.1.0"

# After each parallel kernel, libgomp's threads (numba's threading layer, torch's CPU ops) spin
# for GOMP_SPINCOUNT iterations before sleeping, on cores that the BLAS product the evaluation
# runs between kernels needs; a smaller count still bridges back-to-back kernels of a training
# step. libgomp reads it when it loads, so it is set before torch or numba is imported through
# lrprop; a value the user set wins. docs/benchmarks.md ("Threads") has the figures.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

_moved.install()  # the modules' old paths (lrprop.dtw, lrprop.train, ...) still import, with a warning
