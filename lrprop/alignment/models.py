"""The model a user names for the alignment tools: a published version or a model folder (issue 16).

    load_model("synthetic/reach", store_uri=S)              # the latest published version
    load_model("synthetic/reach@production", store_uri=S)   # the version an alias names
    load_model("synthetic/reach@v2026…", store_uri=S)       # that version
    load_model("runs/x/model") / load_model("s3://b/m")     # an exported model folder (model.safetensors,
                                                            # config.json, meta.json), local or a URI

Published weights are checked against their manifest's sha256 before they are loaded, and are
read as safetensors: nothing is unpickled.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from lrprop import store
from lrprop.names import check_name

__all__ = ["load_model", "parse_model_spec"]

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
    from lrprop.pipeline.aliases import resolve_alias
    from lrprop.pipeline.embeddings import download_published_model, embeddings_collection
    from lrprop.training.checkpoint import CONFIG_FILE, META_FILE, MODEL_FILE

    parsed = None if ("://" in spec or Path(spec).exists()) else parse_model_spec(spec)
    with tempfile.TemporaryDirectory(prefix="lrprop-model-") as tmp:
        if parsed is None:
            if "://" not in spec and not Path(spec).exists():
                raise ValueError(f"--model {spec!r}: not a model folder nor DATASET/ACTION[@VERSION_OR_ALIAS]")
            for name in (MODEL_FILE, CONFIG_FILE, META_FILE):
                uri = store.join(spec, name)
                try:
                    (Path(tmp) / name).write_bytes(store.read_bytes(uri))
                except FileNotFoundError:
                    if name != META_FILE:  # an exported model without meta still loads
                        raise FileNotFoundError(f"{spec}: no {name}: not an exported model folder") from None
            model, config, meta = load_trained_model(tmp, device)
            return model, config, meta
        dataset, action, ref = parsed
        version = ref
        if ref is not None and not _is_version(ref):
            version = resolve_alias(store_uri, dataset, action, check_name(ref, "alias"))
        if version is None:
            version = store.read_manifest(embeddings_collection(store_uri, dataset, action))["version"]
        download_published_model(store_uri, dataset, action, version, tmp)
        model, config, meta = load_trained_model(tmp, device)
        meta = {**meta, "published": store.join(embeddings_collection(store_uri, dataset, action), version)}
        return model, config, meta
