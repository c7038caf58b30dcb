"""What a class's model is made from, as one digest: its data, its config and lrprop's code (issue 15).

    fingerprint = training_fingerprint(config.for_class("reach"), dataset_manifest)
    unchanged_version(store_uri, "synthetic", "reach", fingerprint)   # a manifest, or None

Each published version's model records the fingerprint it was trained under
(``model.meta.fingerprint``). A run whose fingerprint for a class equals that of the class's
latest published version would only make that model again, so the pipeline skips the class
(``lrprop run --force`` trains it anyway).

The digest covers:
  - the data set's content hash (:mod:`lrprop.ingest.writer`: every stored frame and label),
    not its version id: the same videos ingested again are unchanged;
  - the class's config as training reads it (``Config.for_class``), less the keys that change
    where and how fast it runs but not the model (:data:`NOT_IN_FINGERPRINT`), and whether it
    trains on a GPU;
  - lrprop's code: its version and a digest of every source file of the package, so an edited
    checkout is a new code version even before its version number moves.
A data set without a content hash (ingested before it existed) never matches: lrprop cannot
tell that its videos are unchanged. Coarse on purpose: the content hash is the whole data set's
(new videos of one class retrain every class), any edit of lrprop's source is a new code
version, an ``eval.*`` change retrains (the published metrics would be stale otherwise), and a
``model.pretrained`` given by the user counts by its URI, not by the weights there.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from lrprop import store
from lrprop.config import Config, config_to_dict
from lrprop.registry.layout import embeddings_collection

__all__ = [
    "NOT_IN_FINGERPRINT",
    "code_version",
    "fingerprint_config",
    "source_digest",
    "training_fingerprint",
    "unchanged_version",
]

# Where a class trains, how fast, what it logs and keeps: none of it changes the model it ends with.
# The data set's source and ingest settings are covered by the content hash of what was stored.
NOT_IN_FINGERPRINT = {
    "actions": None,  # merged into the class's config by for_class
    "data": ("loader_workers",),
    "ray": ("address", "cpus_per_worker", "gpus_per_worker", "max_failures", "validate_every", "tune_samples",
            "tune_max_concurrent", "tune_grace_epochs", "tune_verbose", "start_timeout_s"),
    "train": ("device", "checkpoint_every", "checkpoint_epochs", "keep_checkpoints", "log_every", "check_memory"),
    "dataset": ("kind", "source", "labels_dir", "version"),
    "ingest": None,
    "synthetic": None,
    "promotion": None,  # what happens to a model after it is made
}  # fmt: skip


def source_digest(package: Path) -> str:
    """sha256 of every ``.py`` file under ``package``: each one's relative path and bytes, in path order."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@lru_cache(maxsize=1)
def code_version() -> str:
    """``<lrprop version>+src.<12 hex digits>``: the version and the :func:`source_digest` of
    the lrprop package this process runs."""
    from lrprop import __version__

    return f"{__version__}+src.{source_digest(Path(__file__).resolve().parents[1])[:12]}"


def fingerprint_config(config: Config) -> dict:
    """``config`` as a dict, less the keys of :data:`NOT_IN_FINGERPRINT`, plus ``train.on_gpu``:
    whether it trains on a GPU (``ray.gpus_per_worker`` > 0 or a ``cuda`` device), where bf16
    autocast and channels-last make another model than the CPU's. How many GPUs, or which, is
    left out."""
    tree = config_to_dict(config)
    on_gpu = config.ray.gpus_per_worker > 0 or config.train.device.startswith("cuda")
    for section, keys in NOT_IN_FINGERPRINT.items():
        if keys is None:
            tree.pop(section, None)
        else:
            for key in keys:
                tree.get(section, {}).pop(key, None)
    tree["train"]["on_gpu"] = on_gpu
    return tree


def _sha256(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def training_fingerprint(config: Config, dataset_manifest: dict) -> dict:
    """{"sha256", "dataset_content_hash", "config_sha256", "code_version"} of a class's training.

    Args:
        config: the class's config (``Config.for_class``) as the user gave it, before the
            pipeline names a backbone it pretrained (``model.pretrained``): that URI is new each
            run, the pretraining settings that make it are not.
        dataset_manifest: the manifest of the data-set version it trains on.

    ``sha256`` is None when the data set has no content hash: nothing can match it.
    """
    parts = {
        "dataset_content_hash": dataset_manifest.get("content_hash"),
        "config_sha256": _sha256(fingerprint_config(config)),
        "code_version": code_version(),
    }
    return {"sha256": _sha256(parts) if parts["dataset_content_hash"] else None, **parts}


def unchanged_version(store_uri: str, dataset: str, action: str, fingerprint: dict) -> dict | None:
    """The manifest of ``action``'s latest published version when its model was trained under
    ``fingerprint`` (same data, config and code), else None (also with no version yet)."""
    if not fingerprint.get("sha256"):
        return None
    try:
        manifest = store.read_manifest(embeddings_collection(store_uri, dataset, action))
    except FileNotFoundError:  # nothing published yet
        return None
    recorded = manifest.get("model", {}).get("meta", {}).get("fingerprint") or {}
    return manifest if recorded.get("sha256") == fingerprint["sha256"] else None
