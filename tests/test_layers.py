"""The package's layers: each module imports only its own layer and those below it, no module
imports another back (a function-local import included), the maths imports nothing of the
pipeline, and the modules' old import paths still work, with a warning naming the new one."""

from __future__ import annotations

import ast
import graphlib
import json
import pkgutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import lrprop
import lrprop.core
from lrprop._moved import MOVED

PACKAGE = Path(lrprop.__file__).parent

# The layers, bottom first, as lrprop/__init__.py's docstring draws them: a module may import a
# module of its own layer or of a lower one. Layers on one row are peers that must not import
# each other. A module that no row names fails the test, so a new one gets placed on purpose.
LAYERS: list[dict[str, tuple[str, ...]]] = [
    {"package": ("lrprop", "lrprop._moved")},
    {"core": ("lrprop.core",)},
    {
        "beside": (
            "lrprop.names",
            "lrprop.interrupts",
            "lrprop.work_progress",
            "lrprop.store",
            "lrprop.failures",
            "lrprop.config",
        )
    },
    {"data": ("lrprop.data",)},
    {"ingest": ("lrprop.ingest",)},
    {"registry": ("lrprop.registry",)},
    {"training": ("lrprop.training",)},
    {"evaluation": ("lrprop.evaluation",)},
    {"pipeline": ("lrprop.pipeline",), "alignment": ("lrprop.alignment",)},
    {"cli": ("lrprop.cli",)},
]

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


def _modules() -> dict[str, tuple[Path, bool]]:
    """{module name: (file, whether it is a package's __init__)} of every module under lrprop/."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


MODULES = _modules()


def _imported(name: str) -> str:
    """The lrprop module that ``import name`` loads: ``name`` itself, or, for a name inside a
    module (``from lrprop.store import join``), the module that holds it."""
    while name not in MODULES and "." in name:
        name = name.rpartition(".")[0]
    return name


def _imports(module: str) -> set[str]:
    """The lrprop modules ``module`` imports, wherever in it (a function, a class, an ``if``),
    relative imports resolved; an old path (:data:`lrprop._moved.MOVED`) as itself."""
    path, is_package = MODULES[module]
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from lrprop.registry import layout` imports the submodule; `from lrprop.store import join` the module
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for name in names:
            if name == "lrprop" or name.startswith("lrprop."):
                found.add(name if name in MOVED else _imported(name))
    found.discard(module)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def _rank(module: str) -> tuple[int, str]:
    """(row, layer) of ``module`` in :data:`LAYERS`, by its longest matching prefix."""
    best = None
    for row, peers in enumerate(LAYERS):
        for layer, prefixes in peers.items():
            for prefix in prefixes:
                if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), row, layer)
    assert best is not None, f"{module} is in no layer of tests/test_layers.py's LAYERS: place it"
    return best[1], best[2]


def test_the_import_graph_sees_function_local_and_relative_imports():
    # The pipeline's flows import most of what they use inside their tasks
    assert "lrprop.training.memory" in GRAPH["lrprop.pipeline.flows"]
    assert "lrprop.registry.layout" in GRAPH["lrprop.registry.store_audit"]  # `from lrprop.registry import layout`
    assert "lrprop._moved" in GRAPH["lrprop"]


def test_no_module_imports_an_old_path():
    old = {module: sorted(GRAPH[module] & set(MOVED)) for module in GRAPH}
    assert {m: o for m, o in old.items() if o} == {}, "import these modules from their new paths"


def test_every_import_of_an_lrprop_module_names_a_module_that_exists():
    missing = {module: sorted(d for d in deps if d not in MODULES and d not in MOVED) for module, deps in GRAPH.items()}
    assert {m: d for m, d in missing.items() if d} == {}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_its_own_layer_and_those_below(module):
    row, layer = _rank(module)
    upward = []
    for imported in sorted(GRAPH[module]):
        other_row, other_layer = _rank(imported)
        if other_layer != layer and other_row >= row:
            upward.append(f"{imported} ({other_layer})")
    assert upward == [], f"{module} ({layer}) imports from a layer not below its own: {upward}"


def test_no_import_cycle_among_lrprop_modules():
    # A package's __init__ may import its own submodules: importing one runs the __init__ first anyway
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in GRAPH.items()}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as cycle:
        pytest.fail(f"import cycle: {' -> '.join(reversed(cycle.args[1]))}")


def test_the_layers_are_those_the_package_docstring_names():
    doc = lrprop.__doc__
    for peers in LAYERS[1:]:
        for prefixes in peers.values():
            for prefix in prefixes:
                assert prefix.removeprefix("lrprop.") in doc, f"lrprop/__init__.py's docstring does not place {prefix}"
