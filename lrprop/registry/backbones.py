"""Versioned pretrained backbones in a store: what ``model.pretrained`` names after a pretraining stage.

Layout (one immutable version per publish, see :mod:`lrprop.store`):

    <store>/backbones/<dataset>/<action>/<version>/
        backbone.safetensors   the backbone's state dict (lrprop.core.model.backbone_weights_bytes)
        _manifest.json         written last: the version exists once it is there

The manifest holds the data set and its version, the settings that decide the weights
(:func:`pretraining_settings`: the ``pretrain`` section, the model settings that shape the
backbone, ``data.image_size``, ``train.seed``), the device it ran on, the steps, final loss,
frames/s and wall seconds of the pretraining, the file's size and sha256, the lrprop version
and the creation time; never credentials or storage options.

A version's weights URI (:func:`weights_uri`) is what ``model.pretrained`` takes. The classes
pretrained together (:func:`lrprop.pipeline.distributed.pretrain_classes`, each class by
:func:`lrprop.pipeline.distributed.pretrain_and_publish`) share one version id, so
``<store>/backbones/<dataset>/{action}/<version>/backbone.safetensors`` names them all
(``Config.for_class`` puts the class's name in). Whatever reads ``model.pretrained`` goes
through :func:`read_weights`, which checks a file of this registry against its manifest
before the bytes are used: a damaged file or a version without its manifest is an error naming
the URI, never weights trained from silently.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence

from lrprop import store
from lrprop.config import Config, config_from_dict, config_to_dict
from lrprop.registry.layout import backbones_collection, backbones_root, backbones_template

__all__ = [
    "WEIGHTS_FILE",
    "backbones_collection",
    "list_backbones",
    "pretraining_settings",
    "published_as",
    "publish_backbone",
    "read_backbone",
    "read_weights",
    "weights_template",
    "weights_uri",
    "with_pretrained_backbones",
]

WEIGHTS_FILE = "backbone.safetensors"
MANIFEST_FORMAT = "lrprop-backbone/1"


def weights_uri(store_uri: str, dataset: str, action: str, version: str) -> str:
    """The weights file of a version: the value ``model.pretrained`` takes."""
    return store.join(backbones_collection(store_uri, dataset, action), store.check_version(version), WEIGHTS_FILE)


def weights_template(store_uri: str, dataset: str, version: str) -> str:
    """The weights of ``version`` of every class, ``{action}`` standing for the class: one
    ``model.pretrained`` value for the classes pretrained together (they share a version id)."""
    return store.join(backbones_template(store_uri, dataset), store.check_version(version), WEIGHTS_FILE)


def pretraining_settings(config: Config) -> dict:
    """The settings of a class's config that decide its pretrained weights (with the data and
    the code): what :func:`lrprop.training.train.pretrained_backbone` reads. The transformer's settings
    are not among them: the backbone is built, and its random weights drawn, before it."""
    m = config.model
    return {
        "pretrain": config_to_dict(config.pretrain),
        # train_from: which ResNet stages the pretraining trains (the small CNN trains whole)
        "model": {"backbone": m.backbone, "cnn_width": m.cnn_width, "train_from": m.train_from, "pooling": m.pooling},
        "data": {"image_size": config.data.image_size},
        "train": {"seed": config.train.seed},
    }


def publish_backbone(
    store_uri: str,
    *,
    dataset: str,
    action: str,
    weights: bytes,
    config: Config,
    dataset_manifest: Mapping,
    losses: Sequence[float],
    frames_per_s: float,
    wall_s: float,
    device: str,
    version: str | None = None,
) -> dict:
    """Write a new immutable version of a class's pretrained backbone: the weights, then the manifest.

    Args:
        weights: the safetensors bytes of the backbone (``lrprop.core.model.backbone_weights_bytes``).
        config: the class's config (``Config.for_class``) the backbone was pretrained under.
        dataset_manifest: the manifest of the data-set version it was pretrained on.
        losses, frames_per_s, wall_s, device: what the pretraining did (``PretrainResult``, its
            wall time, the device type).
        version: the id to publish under (default a new one): classes pretrained together share
            one, so one ``{action}`` template names them all.

    Returns:
        the manifest written.

    Raises:
        FileExistsError: ``version`` of this class is already published (versions are immutable).
    """
    collection = backbones_collection(store_uri, dataset, action)
    version = store.check_version(version) if version is not None else store.new_version_id()
    root = store.join(collection, version)
    if store.exists(store.join(root, store.MANIFEST)):
        raise FileExistsError(f"{root} is already published")
    files = [store.write_entry(root, WEIGHTS_FILE, weights)]
    manifest = {
        **store.registry_manifest(MANIFEST_FORMAT, version, dataset, action, dataset_manifest),
        "settings": pretraining_settings(config),
        "device": device,
        "steps": len(losses),
        "final_loss": float(losses[-1]) if len(losses) else None,
        "frames_per_s": float(frames_per_s),
        "wall_s": float(wall_s),
        "files": files,
    }
    store.write_manifest(collection, version, manifest)
    return manifest


def read_backbone(
    store_uri: str, dataset: str, action: str, version: str | None = None, *, storage_options: dict | None = None
) -> tuple[bytes, dict]:
    """A version's weights (default: the latest complete one), checksum-verified, and its manifest."""
    opts = storage_options or {}
    collection = backbones_collection(store_uri, dataset, action)
    manifest = store.read_manifest(collection, version, **opts)
    return _verified_weights(store.join(collection, manifest["version"]), manifest, **opts), manifest


def _verified_weights(root: str, manifest: Mapping, **storage_options) -> bytes:
    entry = next((f for f in manifest.get("files", []) if f["path"] == WEIGHTS_FILE), None)
    if entry is None:
        raise FileNotFoundError(f"{root}: its manifest lists no {WEIGHTS_FILE}")
    return store.read_verified(root, entry, **storage_options)


def _version_of(uri: str) -> tuple[str, str] | None:
    """(collection, version) when ``uri`` is the weights file of a registry version, else None."""
    folder, name = posixpath.split(uri.rstrip("/"))
    version = posixpath.basename(folder)
    if name != WEIGHTS_FILE:
        return None
    try:
        store.check_version(version)
    except ValueError:
        return None
    return posixpath.dirname(folder), version


def read_weights(uri: str) -> bytes:
    """The bytes of the backbone weights at ``uri`` (``model.pretrained``).

    The weights file of a version of this registry (``…/<version>/backbone.safetensors``) is
    read only from a complete version and once it matches its manifest's sha256; any other file
    (the user's own weights) as it is.

    Raises:
        FileNotFoundError: no file there, or a registry version without its manifest (incomplete).
        lrprop.store.ChecksumError: the file differs from its manifest; the message names the URI.
    """
    found = _version_of(uri)
    if found is None:
        return store.read_bytes(uri)
    collection, version = found
    try:
        manifest = store.read_manifest(collection, version)
    except FileNotFoundError:
        raise FileNotFoundError(f"{uri}: version {version} is not published (no manifest): incomplete or missing") from None
    return _verified_weights(store.join(collection, version), manifest)


# Settings that decide the weights, added after versions were published, with the value they
# had then: a version published before still matches a config that keeps that value.
_ADDED_SETTINGS = {"pretrain": {"cycle_weight": 0.0}, "model": {"pooling": "max"}}


def _with_added_settings(settings: Mapping) -> dict:
    """A stored version's ``settings`` with :data:`_ADDED_SETTINGS` filled in where absent."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in settings.items()}
    for section, added in _ADDED_SETTINGS.items():
        out[section] = {**added, **out.get(section, {})}
    return out


def published_as(uri: str, config: Config, dataset_version: str) -> dict | None:
    """The manifest of the registry version whose weights are at ``uri`` when it is complete and
    was pretrained under ``config``'s settings on ``dataset_version``, else None: what a resumed
    run reuses instead of pretraining again."""
    found = _version_of(uri)
    if found is None:
        return None
    try:
        manifest = store.read_manifest(*found)
    except FileNotFoundError:
        return None
    settings = _with_added_settings(manifest.get("settings") or {})
    same = manifest.get("dataset_version") == dataset_version and settings == pretraining_settings(config)
    return manifest if same else None


def with_pretrained_backbones(config: Config, uris: Mapping[str, str]) -> Config:
    """``config`` whose classes start from the backbones ``uris`` ({action: weights URI}).

    Each class gets ``model.pretrained`` (through ``classes``) and, when its config freezes the
    pretrained backbone (``pretrain.freeze_backbone``), ``model.train_from: none``; otherwise its
    ``train_from`` stays and LRProp fine-tunes the backbone from the weights. Either way it
    trains draw for draw as the class pretraining in its own run (:func:`lrprop.training.train.train`).
    """
    overrides = config_to_dict(config)
    for action, uri in uris.items():
        model = {"pretrained": uri}
        if config.for_class(action).pretrain.freeze_backbone:
            model["train_from"] = "none"
        per_class = overrides["actions"].setdefault(action, {})
        per_class["model"] = {**per_class.get("model", {}), **model}
    return config_from_dict(overrides)


def list_backbones(store_uri: str, *, storage_options: dict | None = None) -> list[dict]:
    """One entry per (dataset, action) with published versions: latest_version, n_versions."""
    return store.list_collections(backbones_root(store_uri), **(storage_options or {}))
