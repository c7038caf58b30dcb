"""What a run published, class by class: ``<store>/runs/<run>/published.json`` (issue 15).

    {"reach": {"dataset": "synthetic", "version": "v2026…", "uri": "<store>/embeddings/synthetic/reach/v2026…",
               "checkpoint": "<store>/runs/<run>/ray/reach/checkpoint_000019"}, …}

Written as each class is published, it is the run's durable address for its models
(``lrprop evaluate --run``, the report) and what makes publishing idempotent per (run, class): a
retried evaluate-and-publish task, or the run started again, finds the version it already
published from the same checkpoint (its URI and its weights' digest) and publishes nothing new.
A publish whose record did not reach the store (an outage between the two writes) is found
through the class's latest version, whose model names its run and checkpoint (``model.meta``).
"""

from __future__ import annotations

from lrprop import store
from lrprop.names import check_name
from lrprop.registry.layout import PUBLISHED_FILE, embeddings_collection
from lrprop.registry.layout import run_published_record as published_record  # its name before the layout had it

__all__ = ["PUBLISHED_FILE", "already_published", "published_record", "read_published", "record_published"]


def read_published(store_uri: str, run_name: str) -> dict[str, dict]:
    """{action: {"dataset", "version", "uri", "checkpoint"}} of what the run published; {} before its first.

    Raises:
        ValueError: naming the file, when it is not such a mapping.
    """
    uri = published_record(store_uri, run_name)
    try:
        published = store.read_json(uri)
    except FileNotFoundError:  # not exists(): s3fs says False to an outage
        return {}
    keys = {"dataset", "version", "uri"}
    if not isinstance(published, dict) or not all(isinstance(r, dict) and keys <= set(r) for r in published.values()):
        raise ValueError(f"{uri}: not a record of published versions ({{action: {{{', '.join(sorted(keys))}, …}}}})")
    for action, record in published.items():
        check_name(action, f"action name in {uri}")
        store.check_version(record["version"])
    return published


def record_published(store_uri: str, run_name: str, published: dict[str, dict]) -> None:
    """Replace the run's record with ``published`` (one write: a reader sees the old or the new)."""
    store.write_json(published_record(store_uri, run_name), published)


# What must match for a version to be the one this export would publish: the run, the checkpoint's
# URI and the digest of its weights (a retrain under the same run name can write other weights at
# the same URI: the class's Ray folder removed, a changed config).
SAME_MODEL = ("run", "checkpoint", "weights_sha256")


def already_published(store_uri: str, dataset: str, action: str, meta: dict, recorded: dict | None) -> dict | None:
    """The manifest of a complete version of ``action`` that holds the model ``meta`` describes
    (an exported checkpoint's meta: :func:`lrprop.pipeline.distributed.export_checkpoint`): the
    one ``recorded`` names, else the class's latest; None when neither does."""
    collection = embeddings_collection(store_uri, dataset, action)
    candidates = [recorded["version"]] if recorded else []
    candidates.append(None)  # the latest complete version
    wanted = {k: meta.get(k) for k in SAME_MODEL}
    if None in wanted.values():
        return None  # nothing to tell this model by
    for version in candidates:
        try:
            manifest = store.read_manifest(collection, version)
        except FileNotFoundError:  # gone (store gc), or no version yet
            continue
        published = manifest.get("model", {}).get("meta", {})
        if all(published.get(k) == v for k, v in wanted.items()):
            return manifest
    return None
