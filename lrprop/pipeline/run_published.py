"""What a run published, class by class: ``<store>/runs/<run>/published.json`` (issue 15).

    {"reach": {"dataset": "synthetic", "version": "v2026…", "uri": "<store>/embeddings/synthetic/reach/v2026…",
               "checkpoint": "<store>/runs/<run>/ray/reach/checkpoint_000019"}, …}

Written as each class is published, it is the run's durable address for its models
(``lrprop evaluate --run``, the report) and what makes publishing idempotent per (run, class): a
retried evaluate-and-publish task, or the run started again, finds the version it already
published from the same checkpoint and publishes nothing new. A publish whose record did not
reach the store (an outage between the two writes) is found through the class's latest
version, whose model names its run and checkpoint (``model.meta``).
"""

from __future__ import annotations

from lrprop import store
from lrprop.names import check_name
from lrprop.pipeline.embeddings import embeddings_collection

__all__ = ["PUBLISHED_FILE", "already_published", "published_record", "read_published", "record_published"]

PUBLISHED_FILE = "published.json"


def published_record(store_uri: str, run_name: str) -> str:
    """``<store>/runs/<run_name>/published.json``."""
    return store.join(store_uri, "runs", check_name(run_name, "run name"), PUBLISHED_FILE)


def read_published(store_uri: str, run_name: str) -> dict[str, dict]:
    """{action: {"dataset", "version", "uri", "checkpoint"}} of what the run published; {} before its first."""
    try:
        return store.read_json(published_record(store_uri, run_name))
    except FileNotFoundError:  # not exists(): s3fs says False to an outage
        return {}


def record_published(store_uri: str, run_name: str, published: dict[str, dict]) -> None:
    """Replace the run's record with ``published`` (one write: a reader sees the old or the new)."""
    store.write_json(published_record(store_uri, run_name), published)


def already_published(
    store_uri: str, dataset: str, action: str, run_name: str, checkpoint: str, recorded: dict | None
) -> dict | None:
    """The manifest of a complete version of ``action`` that this run published from
    ``checkpoint``: the one ``recorded`` names, else the class's latest; None when neither is."""
    collection = embeddings_collection(store_uri, dataset, action)
    candidates = [recorded["version"]] if recorded else []
    candidates.append(None)  # the latest complete version
    for version in candidates:
        try:
            manifest = store.read_manifest(collection, version)
        except FileNotFoundError:  # gone (store gc), or no version yet
            continue
        meta = manifest.get("model", {}).get("meta", {})
        if meta.get("run") == run_name and meta.get("checkpoint") == checkpoint:
            return manifest
    return None
