"""What a store holds, checked (``lrprop store check``) and its leftovers found (``lrprop store gc``).

    reports = audit_store("s3://bucket/lrprop")            # every version, its files hashed
    [r for r in reports if r.state != "ok"]
    removed = remove_partial(reports, min_age_s=3600)      # what killed writers left

The store's versioned collections (:mod:`lrprop.store`) are

    datasets/<dataset>/<version>/                 (lrprop.ingest)
    backbones/<dataset>/<action>/<version>/       (lrprop.registry.backbones)
    embeddings/<dataset>/<action>/<version>/      (lrprop.registry.embeddings)

A version is complete once its ``_manifest.json`` is there, and its manifest lists every file
with its size and sha256. A version folder without a manifest is *partial*: a writer that was
killed part way, or one still writing. Its id says when it was made, so a partial version younger
than ``min_age_s`` is taken for a write in progress and left alone.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from lrprop import store
from lrprop.registry import layout

__all__ = ["KINDS", "VersionReport", "audit_store", "remove_partial", "version_created"]

# The top-level folders of versioned collections: where each lies, and how deep its versions lie below it.
_ROOTS = {
    store.DATASETS: (store.datasets_root, 1),
    layout.BACKBONES: (layout.backbones_root, 2),
    layout.EMBEDDINGS: (layout.embeddings_root, 2),
}
KINDS = {kind: depth for kind, (_, depth) in _ROOTS.items()}
_CHUNK = 8 << 20


@dataclass
class VersionReport:
    """One version folder of a store, as found."""

    kind: str  # "datasets", "backbones" or "embeddings"
    uri: str  # the version's folder
    version: str
    state: Literal["ok", "damaged", "partial", "unknown"]
    problems: list[str] = field(default_factory=list)  # what is wrong, a file URI in each
    bytes: int = 0  # the folder's size


def version_created(version: str) -> datetime:
    """When a version id says it was made (``vYYYYMMDDTHHMMSSffffffZ-…``, UTC)."""
    return datetime.strptime(store.check_version(version)[1:22], "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)


def _sha256(fs, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _version_dirs(fs, root: str, depth: int):
    """The folders ``depth`` levels below ``root``'s collections: (collection folder, name)."""
    level = [root]
    for _ in range(depth):
        level = [p for parent in level for p in fs.ls(parent, detail=False) if fs.isdir(p)]
    for collection in level:
        for entry in sorted(fs.ls(collection, detail=False)):
            if fs.isdir(entry):
                yield collection, posixpath.basename(entry.rstrip("/"))


def _check_version(fs, uri_of, kind: str, folder: str, name: str, checksums: bool) -> VersionReport:
    files = {p: info for p, info in fs.find(folder, detail=True).items() if info.get("type") != "directory"}
    size = sum(int(info.get("size") or 0) for info in files.values())
    report = VersionReport(kind, uri_of(folder), name, "ok", bytes=size)
    try:
        store.check_version(name)
    except ValueError:
        report.state, report.problems = "unknown", ["not a version id: lrprop did not write this folder"]
        return report
    manifest_path = posixpath.join(folder, store.MANIFEST)
    if manifest_path not in files:
        report.state, report.problems = "partial", ["no manifest: its writer stopped before the end, or is still writing"]
        return report
    try:
        with fs.open(manifest_path, "rb") as handle:
            listed = json.load(handle)["files"]
    except (ValueError, KeyError, TypeError) as exc:
        report.state, report.problems = "damaged", [f"{uri_of(manifest_path)}: not a readable manifest ({exc})"]
        return report
    for entry in listed:
        path = posixpath.join(folder, entry["path"])
        info = files.get(path)
        if info is None:
            report.problems.append(f"{uri_of(path)}: missing")
        elif int(info.get("size") or 0) != entry["size"]:
            report.problems.append(f"{uri_of(path)}: {info.get('size')} bytes, the manifest says {entry['size']}")
        elif checksums and _sha256(fs, path) != entry["sha256"]:
            report.problems.append(f"{uri_of(path)}: sha256 differs from the manifest")
    if report.problems:
        report.state = "damaged"
    return report


def audit_store(store_uri: str, *, checksums: bool = True, **storage_options) -> list[VersionReport]:
    """Every version folder of the store's collections (:data:`KINDS`), checked.

    A complete version is "ok" when every file its manifest lists is there with its size (and,
    with ``checksums``, its sha256), else "damaged", naming each file; a folder without a
    manifest is "partial"; one whose name is not a version id is "unknown" (never removed).
    Files a manifest does not list are not reported: a reader never opens them.
    """
    reports = []
    for kind, (root_of, depth) in _ROOTS.items():
        fs, root = store.filesystem(root_of(store_uri), **storage_options)
        if not fs.isdir(root):
            continue
        uri_of = (lambda path: path) if store.is_local(fs) else fs.unstrip_protocol  # as lrprop names files
        for collection, name in _version_dirs(fs, root, depth):
            folder = posixpath.join(collection, name)
            reports.append(_check_version(fs, uri_of, kind, folder, name, checksums))
    return reports


def remove_partial(
    reports: list[VersionReport], *, min_age_s: float, now: datetime | None = None, dry_run: bool = False, **storage_options
) -> list[VersionReport]:
    """Remove the partial versions among ``reports`` made more than ``min_age_s`` ago (by their
    id); younger ones may still be being written. Returns those removed (or, with ``dry_run``,
    those that would be)."""
    now = now or datetime.now(UTC)
    old = [r for r in reports if r.state == "partial" and (now - version_created(r.version)).total_seconds() > min_age_s]
    if not dry_run:
        for report in old:
            store.remove(report.uri, **storage_options)
    return old
