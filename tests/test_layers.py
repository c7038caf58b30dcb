"""The package's layers (issue 13): the maths imports nothing of the pipeline, and the modules'
old import paths still work, with a warning naming the new one."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import warnings

import pytest

import lrprop.core
from lrprop._moved import MOVED

CORE_MODULES = sorted(f"lrprop.core.{m.name}" for m in pkgutil.iter_modules(lrprop.core.__path__))
# What a module of the maths layer must not pull in: the config and the store, and the runtime.
FORBIDDEN = ("lrprop.config", "lrprop.store", "ray", "prefect", "fsspec", "s3fs", "pyarrow")


def test_the_maths_layer_is_what_the_issue_names():
    names = {m.rsplit(".", 1)[1] for m in CORE_MODULES}
    assert {"dtw", "_dtw_kernels", "losses", "model", "metrics", "baselines"} <= names


@pytest.mark.parametrize("module", CORE_MODULES)
def test_a_module_of_the_maths_layer_imports_no_config_store_ray_prefect_or_fsspec(module):
    # A fresh interpreter: this test process has imported everything already.
    watched = ("lrprop", *FORBIDDEN)
    probe = f"import json, sys; import {module}; print(json.dumps(sorted(m for m in sys.modules if m.startswith({watched!r}))))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout)
    pulled = [m for m in loaded if m in FORBIDDEN or m.split(".")[0] in FORBIDDEN]
    assert pulled == [], f"{module} imports {pulled}"
    outside = [m for m in loaded if m.startswith("lrprop.") and not m.startswith("lrprop.core") and m != "lrprop._moved"]
    assert outside == [], f"{module} imports other layers: {outside}"


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_path_is_the_moved_module_with_a_deprecation_warning(old):
    probe = (
        "import importlib, json, sys, warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({MOVED[old]!r})\n"
        "print(json.dumps({'same': old is new, 'name': old.__name__,"
        " 'warnings': [str(w.message) for w in caught if w.category is DeprecationWarning]}))\n"
    )
    out = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout)
    assert out["same"] and out["name"] == MOVED[old]  # one module, not a copy
    assert f"{old} has moved to {MOVED[old]}; import it from there" in out["warnings"]


def test_from_an_old_path_import_a_name_gives_the_same_object():
    from lrprop.core.dtw import dtw_path

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sys.modules.pop("lrprop.dtw", None)
        from lrprop.dtw import dtw_path as old_dtw_path  # noqa: PLC0415 - the old path on purpose
    assert old_dtw_path is dtw_path
    assert any("lrprop.dtw has moved to lrprop.core.dtw" in str(w.message) for w in caught)


def test_a_name_that_never_existed_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        __import__("lrprop.no_such_module")
