"""The model a user names for the alignment tools: a published version or a model folder (issue 16).

    load_model("synthetic/reach", store_uri=S)              # the latest published version
    load_model("synthetic/reach@production", store_uri=S)   # the version an alias names
    load_model("synthetic/reach@v2026…", store_uri=S)       # that version
    load_model("runs/x/model") / load_model("s3://b/m")     # an exported model folder (model.safetensors,
                                                            # config.json, meta.json), local or a URI

Published weights are checked against their manifest's sha256 before they are loaded, and are
read as safetensors: nothing is unpickled. :func:`load_published_model` loads a version named by
its parts, for Python callers.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from lrprop import store
from lrprop.names import check_name

__all__ = ["load_model", "load_published_model", "parse_model_spec"]

_SPEC = re.compile(r"(?P<dataset>[^/@:]+)/(?P<action>[^/@:]+)(@(?P<ref>[^/@:]+))?")


def _is_version(ref: str) -> bool:
    try:
        store.check_version(ref)
    except ValueError:
        return False
    return True


def parse_model_spec(spec: str) -> tuple[str, str, str | None] | None:
    """``DATASET/ACTION[@VERSION_OR_ALIAS]`` as (dataset, action, ref), None when ``spec`` is not one."""
    found = _SPEC.fullmatch(spec)
    if found is None:
        return None
    return check_name(found["dataset"], "dataset name"), check_name(found["action"], "action name"), found["ref"]


def load_model(spec: str, *, store_uri: str = "lrprop-store", device: str = "cpu"):
    """The model ``spec`` names (see the module), in eval mode, with its config and meta.

    A spec that is an existing local path or has a scheme (``s3://``) is a model folder; else
    ``DATASET/ACTION[@REF]`` in ``store_uri``, REF a version (``v…``) or an alias.

    Returns:
        (model, config, meta); meta names the published version in ``meta["published"]`` when
        the model came from one.

    Raises:
        FileNotFoundError: no such version, alias or folder.
        ValueError: a spec that is neither.
    """
    from lrprop.evaluation.evaluate import load_trained_model
    from lrprop.registry.aliases import resolve_alias
    from lrprop.registry.layout import embeddings_collection
    from lrprop.training.checkpoint import CONFIG_FILE, META_FILE, MODEL_FILE

    parsed = None if ("://" in spec or Path(spec).exists()) else parse_model_spec(spec)
    if parsed is None:
        if "://" not in spec and not Path(spec).exists():
            raise ValueError(f"--model {spec!r}: not a model folder nor DATASET/ACTION[@VERSION_OR_ALIAS]")
        with tempfile.TemporaryDirectory(prefix="lrprop-model-") as tmp:
            for name in (MODEL_FILE, CONFIG_FILE, META_FILE):
                uri = store.join(spec, name)
                try:
                    (Path(tmp) / name).write_bytes(store.read_bytes(uri))
                except FileNotFoundError:
                    if name != META_FILE:  # an exported model without meta still loads
                        raise FileNotFoundError(f"{spec}: no {name}: not an exported model folder") from None
            return load_trained_model(tmp, device)
    dataset, action, ref = parsed
    version = ref
    if ref is not None and not _is_version(ref):
        version = resolve_alias(store_uri, dataset, action, check_name(ref, "alias"))
    if version is None:
        version = store.read_manifest(embeddings_collection(store_uri, dataset, action))["version"]
    model, config, meta = _published(store_uri, dataset, action, version, device)
    meta = {**meta, "published": store.join(embeddings_collection(store_uri, dataset, action), version)}
    return model, config, meta


def load_published_model(
    store_uri: str, dataset: str, action: str, version: str | None = None, *, storage_options: dict | None = None
):
    """The model published with a version of embeddings (default: the latest; checksums
    verified), in eval mode."""
    return _published(store_uri, dataset, action, version, "cpu", storage_options)[0]


def _published(store_uri: str, dataset: str, action: str, version: str | None, device: str, storage_options=None):
    """(model, config, meta) of a published version, its files checked against the manifest."""
    from lrprop.evaluation.evaluate import load_trained_model
    from lrprop.registry.embeddings import download_published_model

    with tempfile.TemporaryDirectory(prefix="lrprop-model-") as tmp:
        download_published_model(store_uri, dataset, action, version, tmp, storage_options=storage_options)
        return load_trained_model(tmp, device)
