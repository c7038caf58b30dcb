"""Where each thing lives in a store: every path under a store's root is built here, by name.

    <store>/datasets/<dataset>/<version>/                      (lrprop.store.datasets_collection)
    <store>/backbones/<dataset>/<action>/<version>/            (lrprop.registry.backbones)
    <store>/embeddings/<dataset>/<action>/<version>/           (lrprop.registry.embeddings)
    <store>/aliases/embeddings/<dataset>/<action>/<alias>.json (lrprop.registry.aliases)
    <store>/runs/<run>/ray/<action>/                           Ray Train's checkpoints of each class
    <store>/runs/<run>/backbones.json                          what the run's pretraining published
    <store>/runs/<run>/evaluation/                             the run's metrics.json and report.html
    <store>/runs/<run>/published.json                          (lrprop.registry.run_published)
    <store>/tune/<run>/<action>/                               a search's trials, best.yaml, best.json

Data sets sit in :mod:`lrprop.store`, beside the versions they are made of, because the ingest
that writes them lies below this package. Every name that becomes a path component (data set,
action, alias, run) is checked with :func:`lrprop.names.check_name` before it is joined, so no
user-given name can climb out of its folder.
"""

from __future__ import annotations

from lrprop import store
from lrprop.config import ACTION_PLACEHOLDER
from lrprop.names import check_name

__all__ = [
    "BACKBONES",
    "EMBEDDINGS",
    "PUBLISHED_FILE",
    "alias_file",
    "alias_folder",
    "backbones_collection",
    "backbones_root",
    "backbones_template",
    "embeddings_collection",
    "embeddings_root",
    "run_backbones_record",
    "run_dir",
    "run_evaluation_dir",
    "run_published_record",
    "run_ray_class_dir",
    "run_ray_dir",
    "tune_class_dir",
    "tune_dir",
]

# The top-level folders of the registries whose versions are per class (<dataset>/<action>/<version>)
BACKBONES = "backbones"
EMBEDDINGS = "embeddings"
PUBLISHED_FILE = "published.json"


def backbones_root(store_uri: str) -> str:
    """``<store>/backbones``: every data set's and class's pretrained backbones."""
    return store.join(store_uri, BACKBONES)


def embeddings_root(store_uri: str) -> str:
    """``<store>/embeddings``: every data set's and class's published embeddings."""
    return store.join(store_uri, EMBEDDINGS)


def _class_collection(root: str, dataset: str, action: str) -> str:
    return store.join(root, check_name(dataset, "dataset name"), check_name(action, "action name"))


def backbones_collection(store_uri: str, dataset: str, action: str) -> str:
    """``<store>/backbones/<dataset>/<action>``, both names validated as path components."""
    return _class_collection(backbones_root(store_uri), dataset, action)


def backbones_template(store_uri: str, dataset: str) -> str:
    """``<store>/backbones/<dataset>/{action}``: every class's backbones at once, ``{action}``
    standing for the class (``Config.for_class`` puts its name in)."""
    return store.join(backbones_root(store_uri), check_name(dataset, "dataset name"), ACTION_PLACEHOLDER)


def embeddings_collection(store_uri: str, dataset: str, action: str) -> str:
    """``<store>/embeddings/<dataset>/<action>``, both names validated as path components."""
    return _class_collection(embeddings_root(store_uri), dataset, action)


def alias_folder(store_uri: str, dataset: str, action: str) -> str:
    """``<store>/aliases/embeddings/<dataset>/<action>``: a class's alias files, the names validated."""
    return _class_collection(store.join(store_uri, "aliases", EMBEDDINGS), dataset, action)


def alias_file(store_uri: str, dataset: str, action: str, alias: str) -> str:
    """``<store>/aliases/embeddings/<dataset>/<action>/<alias>.json``, every name validated."""
    return store.join(alias_folder(store_uri, dataset, action), f"{check_name(alias, 'alias')}.json")


def run_dir(store_uri: str, run_name: str) -> str:
    """``<store>/runs/<run_name>``: everything a run writes outside the registries."""
    return store.join(store_uri, "runs", check_name(run_name, "run name"))


def run_ray_dir(store_uri: str, run_name: str) -> str:
    """``<store>/runs/<run_name>/ray``: Ray Train's storage, one folder per class below it."""
    return store.join(run_dir(store_uri, run_name), "ray")


def run_ray_class_dir(store_uri: str, run_name: str, action: str) -> str:
    """``<store>/runs/<run_name>/ray/<action>``: the Ray Train run of one class, its checkpoints."""
    return store.join(run_ray_dir(store_uri, run_name), check_name(action, "action name"))


def run_backbones_record(store_uri: str, run_name: str) -> str:
    """``<store>/runs/<run_name>/backbones.json``: {action: weights URI} the run's pretraining published."""
    return store.join(run_dir(store_uri, run_name), "backbones.json")


def run_evaluation_dir(store_uri: str, run_name: str) -> str:
    """``<store>/runs/<run_name>/evaluation``: the run's metrics and report."""
    return store.join(run_dir(store_uri, run_name), "evaluation")


def run_published_record(store_uri: str, run_name: str) -> str:
    """``<store>/runs/<run_name>/published.json``: what the run published, per class."""
    return store.join(run_dir(store_uri, run_name), PUBLISHED_FILE)


def tune_dir(store_uri: str, run_name: str) -> str:
    """``<store>/tune/<run_name>``: Ray Tune's storage for a search, one folder per class below it."""
    return store.join(store_uri, "tune", check_name(run_name, "run name"))


def tune_class_dir(store_uri: str, run_name: str, action: str) -> str:
    """``<store>/tune/<run_name>/<action>``: a class's trials and the best of them."""
    return store.join(tune_dir(store_uri, run_name), check_name(action, "action name"))
