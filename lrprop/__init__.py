"""lrprop: frame-level video embeddings for temporal alignment with LRProp.

The layers, bottom first; a module imports only modules of its own layer or of a layer below
(tests/test_layers.py checks it, and that no module imports another back, even inside a function):

    lrprop, lrprop._moved      the package itself (every module imports it), the old paths
    lrprop.core                the maths: tensors and arrays in and out, nothing else of lrprop
    names, interrupts, work_progress, store, failures, config
                               beside the layers: validated names, signals, progress counts,
                               URIs and immutable versions, error kinds, the typed configs
    lrprop.data                videos as sources
    lrprop.ingest              data sets into the store
    lrprop.registry            what the store holds and where: its layout, the backbones,
                               embeddings and aliases, each run's record, fingerprints, the audit
    lrprop.training            one machine, from a config
    lrprop.evaluation          scoring a model beside the references
    lrprop.pipeline, lrprop.alignment
                               Ray Train and Tune and the Prefect flows; what users do with
                               aligned videos (neither imports the other)
    lrprop.cli                 the ``lrprop`` command
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
