"""The data set a pipeline run trains on, as ``config.dataset`` names it: ingest it if asked."""

from __future__ import annotations

from lrprop import store
from lrprop.config import Config

__all__ = ["dataset_version"]


def dataset_version(config: Config, store_uri: str, *, progress: bool = False) -> str:
    """The data-set version to train on.

    - a ``version``: that version (it must exist and be complete);
    - else ``kind: synthetic`` with no ``source``: generate (once) and ingest the synthetic set
      under ``dataset.name``;
    - else a ``source``: ingest it with the reader of ``kind`` (no new version if unchanged);
    - else the latest version already in the store.
    """
    from lrprop.ingest.writer import ingest

    d = config.dataset
    collection = store.datasets_collection(store_uri, d.name)
    if d.version is not None:
        store.read_manifest(collection, d.version)  # exists and is complete, or a clear error
        return d.version
    if d.kind == "synthetic" and d.source is None:
        from lrprop.ingest.synthetic import ensure_synthetic_dataset

        return ensure_synthetic_dataset(config, store_uri, progress=progress)
    if d.source is not None:
        from lrprop.ingest.generic import read_generic
        from lrprop.ingest.pennaction import read_pennaction
        from lrprop.ingest.pouring import POURING_PHASES, read_pouring

        readers = {
            "pennaction": lambda: read_pennaction(d.source, d.labels),
            "pouring": lambda: read_pouring(d.source),
            "generic": lambda: read_generic(d.source),
            "synthetic": lambda: read_generic(d.source),
        }
        result = ingest(
            readers[d.kind](),
            store_uri=store_uri,
            dataset=d.name,
            source=d.source,
            frame_size=config.ingest.frame_size,
            quality=config.ingest.jpeg_quality,
            max_label=POURING_PHASES if d.kind == "pouring" else None,
            strict=config.ingest.strict,
            workers=config.ingest.workers,
            progress=progress,
        )
        return result.version
    latest = store.latest_version(collection)
    if latest is None:
        raise FileNotFoundError(f"no version of data set {d.name!r} under {store_uri}; ingest it or set dataset.source")
    return latest
