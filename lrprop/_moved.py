"""The modules' old import paths, kept working with a DeprecationWarning that names the new one.

The modules moved into layer folders (``lrprop.dtw`` is now ``lrprop.core.dtw``). A
user's ``import lrprop.dtw`` or ``from lrprop.train import train`` finds the same module object
under its new name, so both names share one state (a monkeypatch through either is seen by both).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# The modules moved out of lrprop/ into layer folders, by the folder each is in now: a record of
# their old names, not the layout; a module added to a folder since has no old name. The
# registries first went to lrprop.pipeline (lrprop.embeddings, lrprop.backbones) and now sit in
# lrprop.registry, so their first names lead straight there.
_LAYERS = {
    "core": ("dtw", "_dtw_kernels", "_dtw_triton", "losses", "model", "metrics", "_metric_kernels", "baselines"),
    "training": ("train", "pretrain", "checkpoint"),
    "evaluation": ("evaluate", "report"),
    "pipeline": ("distributed", "tune", "flows"),
    "registry": ("embeddings", "backbones", "store_audit"),
}
MOVED: dict[str, str] = {f"lrprop.{m}": f"lrprop.{layer}.{m}" for layer, mods in _LAYERS.items() for m in mods}
MOVED["lrprop.data.synthetic"] = "lrprop.data.generator"  # the generator, not the ingest of lrprop.ingest.synthetic
# The store's registries, moved out of lrprop.pipeline (Ray and Prefect) into a layer below the trainer
_REGISTRIES = ("aliases", "backbones", "embeddings", "fingerprint", "run_published")
MOVED.update({f"lrprop.pipeline.{m}": f"lrprop.registry.{m}" for m in _REGISTRIES})


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old module name to the module at its new name."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return None  # a placeholder module, replaced in exec_module

    def exec_module(self, module) -> None:
        new = MOVED[module.__name__]
        warnings.warn(f"{module.__name__} has moved to {new}; import it from there", DeprecationWarning, stacklevel=2)
        # The import system returns what sys.modules holds under the name after exec_module:
        # the real module, not a copy, so there is one module state.
        sys.modules[module.__name__] = importlib.import_module(new)


def install() -> None:
    """Put the finder first on ``sys.meta_path``, once. It answers only the old names, and
    first so that a stale copy of an old file (another checkout an editable install still
    maps) cannot answer them with a second, different module."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedModules())
