"""Versioned embeddings in a store: publish a trained class, list what is there, pull a version.

Layout (one immutable version per publish, see :mod:`lrprop.store`):

    <store>/embeddings/<dataset>/<action>/<version>/
        embeddings.parquet     video_id, frame_idx, split, label, embedding (fixed-size list of float32)
        model/model.safetensors, model/config.json, model/meta.json   the model that made them
        _manifest.json         written last

The manifest holds the version, created_at, the data set's version and content hash, the
model's config and files, the metrics (the model's, with the time-stretch baseline's, the
label oracle's and the gain over the baseline under "baseline", "oracle" and "gain", as
:func:`lrprop.evaluation.evaluate.score_with_references` gives them), and each file's size, sha256 and
row count. Pulling
verifies every checksum before returning anything, so a reader never uses a damaged or
half-copied version. Version ids sort by time and never collide between concurrent publishers.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lrprop import store
from lrprop.registry.aliases import list_aliases, resolve_alias
from lrprop.registry.layout import embeddings_collection, embeddings_root
from lrprop.store import ChecksumError

__all__ = [
    "EMBEDDINGS_FILE",
    "ChecksumError",
    "SplitEmbeddings",
    "embedding_schema",
    "download_published_model",
    "embeddings_collection",
    "list_embeddings",
    "publish_embeddings",
    "pull_embeddings",
    "to_numpy",
]

EMBEDDINGS_FILE = "embeddings.parquet"
MODEL_FILES = ("model.safetensors", "config.json", "meta.json")
MANIFEST_FORMAT = "lrprop-embeddings/1"


# (video ids, per-video embeddings (L, D), per-video labels (L,) with -1 = unlabelled)
SplitEmbeddings = tuple[Sequence[str], Sequence[np.ndarray], Sequence[np.ndarray]]


def embedding_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("video_id", pa.string()),
            ("frame_idx", pa.int32()),
            ("split", pa.string()),
            ("label", pa.int64()),
            ("embedding", pa.list_(pa.float32(), dim)),
        ]
    )


def _table(splits: Mapping[str, SplitEmbeddings]) -> pa.Table:
    dims = {e.shape[1] for _, embs, _ in splits.values() for e in embs}
    if len(dims) != 1:
        raise ValueError(f"embeddings must share one width, got {sorted(dims)}")
    dim = dims.pop()
    columns: dict[str, list] = {"video_id": [], "frame_idx": [], "split": [], "label": [], "embedding": []}
    for split in sorted(splits):
        ids, embs, labels = splits[split]
        for vid, emb, lab in sorted(zip(ids, embs, labels), key=lambda t: t[0]):
            n = len(emb)
            columns["video_id"] += [vid] * n
            columns["frame_idx"].append(np.arange(n, dtype=np.int32))
            columns["split"] += [split] * n
            lab = np.asarray(lab)
            columns["label"] += [int(v) if v >= 0 else None for v in lab]
            columns["embedding"].append(np.asarray(emb, dtype=np.float32))
    flat = np.concatenate(columns["embedding"]) if columns["embedding"] else np.zeros((0, dim), np.float32)
    return pa.table(
        {
            "video_id": pa.array(columns["video_id"], pa.string()),
            "frame_idx": pa.array(np.concatenate(columns["frame_idx"]) if columns["frame_idx"] else [], pa.int32()),
            "split": pa.array(columns["split"], pa.string()),
            "label": pa.array(columns["label"], pa.int64()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), dim),
        },
        schema=embedding_schema(dim),
    )


def publish_embeddings(
    store_uri: str,
    *,
    dataset: str,
    action: str,
    splits: Mapping[str, SplitEmbeddings],
    model_dir: str | Path,
    dataset_manifest: Mapping,
    metrics: Mapping | None = None,
) -> dict:
    """Write a new immutable version of a class's embeddings and the model that made them.

    Args:
        store_uri: the store root.
        dataset, action: where the version goes.
        splits: {split: (video ids, embeddings per video (L, D), labels per video)}.
        model_dir: an exported model (``lrprop.training.checkpoint.export_model``) on local disk.
        dataset_manifest: the manifest of the data-set version the embeddings came from.
        metrics: evaluation metrics to record: a class's metrics with its references
            (``ClassEvaluation.metrics``), so a reader of the version sees the model's numbers
            beside the time-stretch baseline's.

    Returns:
        the manifest written.
    """
    collection = embeddings_collection(store_uri, dataset, action)
    version = store.new_version_id()
    root = store.join(collection, version)
    table = _table(splits)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    files = [{**store.write_entry(root, EMBEDDINGS_FILE, buf.getvalue()), "rows": table.num_rows}]
    model_dir = Path(model_dir)
    for name in MODEL_FILES:
        data = (model_dir / name).read_bytes()
        files.append(store.write_entry(root, f"model/{name}", data))
    manifest = {
        **store.registry_manifest(MANIFEST_FORMAT, version, dataset, action, dataset_manifest),
        "model": {
            "config": json.loads((model_dir / "config.json").read_text()),
            "meta": json.loads((model_dir / "meta.json").read_text()),
        },
        "metrics": json.loads(json.dumps(metrics or {}, default=float)),
        "rows": table.num_rows,
        "embedding_dim": table.schema.field("embedding").type.list_size,
        "splits": {s: len(ids) for s, (ids, _, _) in splits.items()},
        "files": files,
    }
    store.write_manifest(collection, version, manifest)
    return manifest


def pull_embeddings(
    store_uri: str,
    dataset: str,
    action: str,
    version: str | None = None,
    *,
    alias: str | None = None,
    storage_options: dict | None = None,
) -> tuple[pa.Table, dict]:
    """A version's embeddings, checksum-verified, and its manifest.

    The version is ``version``, else the one ``alias`` names (``"production"``:
    :mod:`lrprop.registry.aliases`), else the latest complete one.
    """
    opts = storage_options or {}
    collection = embeddings_collection(store_uri, dataset, action)
    if alias is not None:
        if version is not None:
            raise ValueError(f"give a version or an alias, not both ({version!r}, {alias!r})")
        version = resolve_alias(store_uri, dataset, action, alias, **opts)
    manifest = store.read_manifest(collection, version, **opts)
    root = store.join(collection, manifest["version"])
    entry = next(f for f in manifest["files"] if f["path"] == EMBEDDINGS_FILE)
    table = pq.read_table(io.BytesIO(store.read_verified(root, entry, **opts)))
    if table.num_rows != manifest["rows"]:
        raise ChecksumError(f"{root}: {table.num_rows} rows, the manifest says {manifest['rows']}")
    return table, manifest


def to_numpy(table: pa.Table) -> dict[str, np.ndarray]:
    """Columns as numpy: embedding (N, D) float32, video_id, split (object), frame_idx, label (-1 = none)."""
    dim = table.schema.field("embedding").type.list_size
    return {
        "embedding": table.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, dim),
        "video_id": np.asarray(table.column("video_id").to_pylist(), dtype=object),
        "split": np.asarray(table.column("split").to_pylist(), dtype=object),
        "frame_idx": table.column("frame_idx").to_numpy(),
        "label": table.column("label").fill_null(-1).to_numpy(),
    }


def list_embeddings(store_uri: str, *, storage_options: dict | None = None) -> list[dict]:
    """One entry per (dataset, action) with published versions: latest_version, n_versions and
    aliases ({alias: version}, :mod:`lrprop.registry.aliases`)."""
    opts = storage_options or {}
    entries = store.list_collections(embeddings_root(store_uri), **opts)
    return [{**e, "aliases": list_aliases(store_uri, e["dataset"], e["action"], **opts)} for e in entries]


def download_published_model(
    store_uri: str, dataset: str, action: str, version: str | None, dest: str | Path, *, storage_options: dict | None = None
) -> Path:
    """Write the model published with a version of embeddings (default: the latest) to the local
    folder ``dest``, each file checked against the manifest's checksum first; returns ``dest``."""
    opts = storage_options or {}
    collection = embeddings_collection(store_uri, dataset, action)
    manifest = store.read_manifest(collection, version, **opts)
    root = store.join(collection, manifest["version"])
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for entry in manifest["files"]:
        if entry["path"].startswith("model/"):
            name = entry["path"][len("model/") :]
            if name not in MODEL_FILES:  # a manifest's names become local paths: only the model's own
                raise ValueError(f"{root}: the manifest lists {entry['path']!r}, not a file of a model ({MODEL_FILES})")
            (dest / name).write_bytes(store.read_verified(root, entry, **opts))
    return dest
