"""The data set a pipeline run trains on, as ``config.dataset`` names it: ingest it if asked.

:func:`ingest_source` is the one place that picks a data set kind's reader; the pipeline
(:func:`dataset_version`) and ``lrprop ingest`` both call it.
"""

from __future__ import annotations

from lrprop import store
from lrprop.config import Config

__all__ = ["INGEST_KINDS", "dataset_version", "ingest_source"]

# The readers by data set kind; "synthetic" is the generic layout that ``lrprop synth`` writes.
INGEST_KINDS = ("pennaction", "pouring", "generic", "synthetic")


def ingest_source(
    config: Config,
    store_uri: str,
    *,
    kind: str,
    source: str,
    dataset: str,
    labels_dir: str | None = None,
    frame_size: int | None = None,
    max_label: int | None = None,
    strict: bool | None = None,
    progress: bool = False,
    progress_logger=None,
):
    """Ingest ``source`` with the reader of ``kind`` into a version of ``dataset``.

    ``config.ingest`` gives every setting an argument leaves as None; ``max_label`` defaults to
    the kind's number of phases where it has a fixed one (Pouring). ``progress`` draws a bar;
    ``progress_logger`` (e.g. Prefect's run logger) gets a line of the count every 30 s.

    Returns:
        the :class:`lrprop.ingest.writer.IngestResult` (no new version if the content is unchanged).
    """
    from lrprop.ingest.generic import read_generic
    from lrprop.ingest.pennaction import read_pennaction
    from lrprop.ingest.pouring import POURING_PHASES, read_pouring
    from lrprop.ingest.writer import DEFAULT_FRAME_SIZE, ingest

    readers = {
        "pennaction": lambda: read_pennaction(source, labels_dir),
        "pouring": lambda: read_pouring(source),
        "generic": lambda: read_generic(source),
        "synthetic": lambda: read_generic(source),
    }
    if kind not in readers:
        raise ValueError(f"unknown data set kind {kind!r}; one of {', '.join(INGEST_KINDS)}")
    if max_label is None and kind == "pouring":
        max_label = POURING_PHASES
    ing = config.ingest
    return ingest(
        readers[kind](),
        store_uri=store_uri,
        dataset=dataset,
        source=source,
        frame_size=frame_size or ing.frame_size or DEFAULT_FRAME_SIZE,
        quality=ing.jpeg_quality,
        max_label=max_label,
        strict=ing.strict if strict is None else strict,
        threads=ing.threads,
        progress=progress,
        progress_logger=progress_logger,
    )


def dataset_version(config: Config, store_uri: str, *, progress: bool = False, progress_logger=None) -> str:
    """The data-set version to train on.

    - a ``version``: that version (it must exist and be complete);
    - else ``kind: synthetic`` with no ``source``: generate (once) and ingest the synthetic set
      under ``dataset.name``;
    - else a ``source``: ingest it with the reader of ``kind`` (no new version if unchanged);
    - else the latest version already in the store.
    """
    d = config.dataset
    collection = store.datasets_collection(store_uri, d.name)
    if d.version is not None:
        store.read_manifest(collection, d.version)  # exists and is complete, or a clear error
        return d.version
    if d.kind == "synthetic" and d.source is None:
        from lrprop.ingest.synthetic import ensure_synthetic_dataset

        return ensure_synthetic_dataset(config, store_uri, progress=progress, progress_logger=progress_logger)
    if d.source is not None:
        return ingest_source(
            config,
            store_uri,
            kind=d.kind,
            source=d.source,
            dataset=d.name,
            labels_dir=d.labels_dir,
            progress=progress,
            progress_logger=progress_logger,
        ).version
    latest = store.latest_version(collection)
    if latest is None:
        raise FileNotFoundError(f"no version of data set {d.name!r} under {store_uri}; ingest it or set dataset.source")
    return latest
