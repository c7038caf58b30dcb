"""The one module that knows about URIs: files and immutable versions through fsspec.

A plain path is a local file; ``s3://…``, ``memory://…`` and the other fsspec protocols work the
same. Credentials and endpoints come from the environment (``AWS_*``, ``AWS_ENDPOINT_URL``) or
the storage library's own config files (``~/.aws``, fsspec's ``FSSPEC_S3_*`` and config folder),
which every process of a run (Ray workers included) reads the same way; this module never logs
or writes them. The readers a user calls from Python (``ParquetVideos``, ``pull_embeddings``,
``read_backbone``, the ``list_*`` functions) also take fsspec ``storage_options`` for settings
such as an endpoint, never for credentials (:func:`check_storage_options`).

Versions. A *collection* is a folder holding immutable versions, one folder each:

    <collection>/<version>/...            the version's files, written first
    <collection>/<version>/_manifest.json written last: the version exists once it is there

Readers list only versions whose manifest exists, so a writer that crashes part way leaves
nothing that looks complete. A manifest lists its version's files with their size and sha256
(:func:`write_entry`), and a reader checks a file against them before using it
(:func:`read_verified`). Version ids are ``vYYYYMMDDTHHMMSSffffffZ-<8 hex>``: they sort by
creation time, and the random suffix keeps two writers that start in the same microsecond apart
without any coordination.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import fsspec
import pyarrow.fs as pafs
from fsspec.core import url_to_fs

__all__ = [
    "DATASETS",
    "MANIFEST",
    "ChecksumError",
    "StoreError",
    "absolute",
    "check_storage_options",
    "check_store",
    "check_version",
    "datasets_collection",
    "datasets_root",
    "exists",
    "filesystem",
    "is_local",
    "is_transient",
    "join",
    "latest_version",
    "list_versions",
    "make_parent",
    "new_version_id",
    "ray_storage",
    "read_bytes",
    "read_json",
    "read_manifest",
    "read_verified",
    "remove",
    "write_bytes",
    "write_entry",
    "write_json",
    "write_manifest",
]

DATASETS = "datasets"  # the store's folder of data sets (datasets_root)
MANIFEST = "_manifest.json"  # the leading _ keeps pyarrow dataset discovery from reading it
_VERSION = re.compile(r"^v\d{8}T\d{12}Z-[0-9a-f]{8}$")


class ChecksumError(ValueError):
    """A published file does not match its manifest (damaged, truncated or replaced)."""


# Option names that carry a secret (s3fs's and botocore's, gcsfs's, adlfs's, fsspec's http):
# credentials stay in the environment and the storage library's config files.
_SECRET_OPTION = re.compile(r"(secret|token|password|passwd|credential|key$|access_key|connection_string)", re.IGNORECASE)
# Option names that hold other options (s3fs's client_kwargs, config_kwargs, s3_additional_kwargs)
_NESTED_OPTION = re.compile(r"_kwargs$")


def check_storage_options(options: Mapping[str, Any], where: str = "storage_options") -> None:
    """Refuse fsspec options that carry credentials, before they reach a filesystem or a log.

    Raises:
        ValueError: naming the option (never its value).
    """
    for name, value in options.items():
        if _SECRET_OPTION.search(name):
            raise ValueError(
                f"{where}[{name!r}]: credentials are read from the environment (AWS_ACCESS_KEY_ID, …) "
                "or the storage library's config files (~/.aws/credentials), never passed as options"
            )
        if _NESTED_OPTION.search(name) and isinstance(value, Mapping):
            check_storage_options(value, f"{where}[{name!r}]")


def filesystem(uri: str, **storage_options) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of ``uri`` and the path within it; ``storage_options`` are checked
    for credentials first (:func:`check_storage_options`)."""
    check_storage_options(storage_options)
    return url_to_fs(uri, **storage_options)


def absolute(uri: str) -> str:
    """A local path made absolute (other processes, e.g. Ray workers, run in other working
    directories); any other URI unchanged."""
    import os

    if "://" in uri and not uri.startswith("file://"):
        return uri
    return os.path.abspath(uri.removeprefix("file://"))


def join(uri: str, *parts: str) -> str:
    """``uri`` with path components appended by '/', whatever the protocol."""
    return posixpath.join(uri.rstrip("/"), *parts) if parts else uri


def exists(uri: str, **storage_options) -> bool:
    fs, path = filesystem(uri, **storage_options)
    return fs.exists(path)


def read_bytes(uri: str, **storage_options) -> bytes:
    """The whole content of the file at ``uri``; a missing file is an error naming it."""
    check_storage_options(storage_options)
    try:
        with fsspec.open(uri, "rb", **storage_options) as handle:
            return handle.read()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no file at {uri!r}") from exc


class StoreError(ValueError):
    """A store that cannot be used as given: a bucket that does not exist, a local folder that
    cannot be made or written. Permanent: a retry gives the same answer."""


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether ``fs`` is the local file system (whose paths lrprop shows without a protocol)."""
    return "file" in fs.protocol or "local" in fs.protocol


# S3 error codes that say "try again": throttling, timeouts and the server's own failures.
_RETRYABLE_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeoutException", "InternalError",
     "ServiceUnavailable", "503", "500"}
)  # fmt: skip


def is_transient(exc: BaseException) -> bool:
    """Whether a storage error may pass on a retry: a connection or a timeout that failed, or the
    store asking to slow down; decided on exception types (Python's, fsspec's, botocore's), along
    the chain of causes (s3fs raises OSError from the botocore error), never on message text.
    Everything else (a missing file, bad input, a refused permission) is permanent."""
    try:
        from botocore import exceptions as boto
    except ImportError:  # no S3 support installed: none of its errors can occur
        boto = None
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ConnectionError, TimeoutError)):  # fsspec's FSTimeoutError is a TimeoutError
            return True
        if boto is not None:
            if isinstance(exc, (boto.ConnectionError, boto.HTTPClientError)):  # EndpointConnectionError, ReadTimeout…
                return True
            if isinstance(exc, boto.ClientError):
                return exc.response.get("Error", {}).get("Code") in _RETRYABLE_CODES
        exc = exc.__cause__ or exc.__context__
    return False


def check_store(uri: str, **storage_options) -> None:
    """Fail before any work when the store at ``uri`` cannot take a run's output.

    A local store's folder is made on first use and must be writable (a probe file is written
    and removed). On an object store the bucket must exist: lrprop never creates one (a typo
    would otherwise become a new bucket holding the whole run); buckets are made by their owners.

    Raises:
        StoreError: naming the store and what is wrong.
    """
    fs, path = filesystem(uri, **storage_options)
    if is_local(fs):
        probe = posixpath.join(path, f".lrprop-probe-{uuid.uuid4().hex}")
        try:
            fs.makedirs(path, exist_ok=True)
            fs.pipe_file(probe, b"")
            fs.rm_file(probe)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise StoreError(f"store {uri!r}: cannot write there ({reason}); give a folder you can write") from None
        return
    if "memory" in fs.protocol:  # one process's own store: nothing to check
        return
    bucket = path.split("/", 1)[0]
    if not _bucket_exists(fs, bucket):
        raise StoreError(
            f"store {uri!r}: bucket {bucket!r} does not exist (or these credentials cannot see it); "
            "lrprop never creates buckets: create it with your storage's own tools"
        )


def _bucket_exists(fs, bucket: str) -> bool:
    """Whether ``bucket`` exists and these credentials may see it; a store that does not answer
    raises its own (transient) error. s3fs's ``exists`` answers False to any error, so that an
    outage would read as a missing bucket: an error no retry could fix."""
    if not hasattr(fs, "call_s3"):  # not s3fs
        return fs.exists(bucket)
    try:
        fs.call_s3("head_bucket", Bucket=bucket)
    except (FileNotFoundError, PermissionError):  # s3fs's translations of 404 and 403
        return False
    return True


def make_parent(fs, path: str) -> None:
    """Make the folder ``path`` (within ``fs``) goes in, on a local store. An object store has no
    folders to make, and s3fs's ``makedirs`` creates the bucket whenever the store fails to
    answer that it exists."""
    if is_local(fs):
        fs.makedirs(posixpath.dirname(path) or ".", exist_ok=True)


def write_bytes(uri: str, data: bytes, **storage_options) -> None:
    """Write ``data`` to ``uri`` so that a reader sees the old file or the whole new one.

    Locally through a temporary sibling and a rename; on an object store a single PUT is
    already all-or-nothing.
    """
    fs, path = filesystem(uri, **storage_options)
    make_parent(fs, path)
    if is_local(fs):
        parent = posixpath.dirname(path)
        tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(path)}")
        fs.pipe_file(tmp, data)
        fs.mv(tmp, path)
    else:
        fs.pipe_file(path, data)


def read_json(uri: str, **storage_options) -> Any:
    data = read_bytes(uri, **storage_options)
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{uri}: not valid JSON ({exc})") from exc


def write_json(uri: str, value: Any, **storage_options) -> None:
    write_bytes(uri, json.dumps(value, indent=2, sort_keys=True).encode(), **storage_options)


def remove(uri: str, **storage_options) -> None:
    """Delete the file or folder at ``uri`` (recursively); nothing there is not an error."""
    fs, path = filesystem(uri, **storage_options)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def datasets_root(store_uri: str) -> str:
    """``<store>/datasets``: every data set's versions. The one path of a store's layout known
    here rather than in :mod:`lrprop.registry.layout`: the ingest that writes it lies below the
    registry."""
    return join(store_uri, DATASETS)


def datasets_collection(store_uri: str, dataset: str) -> str:
    """Where the versions of data set ``dataset`` live under a store: ``<store>/datasets/<dataset>``."""
    from lrprop.names import check_name

    return join(datasets_root(store_uri), check_name(dataset, "dataset name"))


class _NoFolders(pafs.FSSpecHandler):
    """An fsspec object store for pyarrow (and so Ray) that makes no folders. Ray makes one
    before it writes into it; an object store has none to make, and s3fs's ``makedirs`` creates
    the bucket whenever a probe of it fails (an outage, a throttled request), which in another
    region is an error and never a bucket anyone wanted."""

    def create_dir(self, path, recursive):
        pass


def ray_storage(uri: str, **storage_options) -> tuple[str, Any]:
    """``(storage_path, storage_filesystem)`` for Ray's ``RunConfig`` pointing at ``uri``.

    A local path goes as an absolute path with no filesystem. Any other protocol goes through
    fsspec wrapped for pyarrow, with the path inside the filesystem (``bucket/prefix``), so Ray
    writes checkpoints with the same credentials and endpoint as the rest of the store, and
    makes no folders there (:func:`make_parent`).
    """
    fs, path = filesystem(uri, **storage_options)
    if is_local(fs):
        return path, None
    return path, pafs.PyFileSystem(_NoFolders(fs))


def new_version_id(now: datetime | None = None) -> str:
    """A fresh version id: creation time to the microsecond (UTC) and 32 random bits."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"v{now:%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(4)}"


def check_version(version: str) -> str:
    """``version`` if it is a well-formed version id, else a ValueError naming it."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise ValueError(f"invalid version {version!r}: expected an id like v20261124T230000000000Z-1a2b3c4d")
    return version


def list_versions(collection: str, **storage_options) -> list[str]:
    """The complete versions of ``collection`` (their manifest exists), oldest first."""
    fs, path = filesystem(collection, **storage_options)
    if not fs.exists(path):
        return []
    versions = []
    for entry in fs.ls(path, detail=False):
        name = posixpath.basename(entry.rstrip("/"))
        if _VERSION.fullmatch(name) and fs.exists(posixpath.join(path, name, MANIFEST)):
            versions.append(name)
    return sorted(versions)


def list_collections(root: str, **storage_options) -> list[dict]:
    """One entry per (dataset, action) of ``<root>/<dataset>/<action>/`` with published versions
    (a registry's root: the embeddings', the backbones'): {"dataset", "action", "latest_version",
    "n_versions"}."""
    fs, root = filesystem(root, **storage_options)
    if not fs.isdir(root):
        return []
    out = []
    for dataset_dir in sorted(fs.ls(root, detail=False)):
        if not fs.isdir(dataset_dir):
            continue
        for action_dir in sorted(fs.ls(dataset_dir, detail=False)):
            dataset, action = posixpath.basename(dataset_dir.rstrip("/")), posixpath.basename(action_dir.rstrip("/"))
            versions = list_versions(fs.unstrip_protocol(action_dir), **storage_options)
            if versions:
                out.append({"dataset": dataset, "action": action, "latest_version": versions[-1], "n_versions": len(versions)})
    return out


def latest_version(collection: str, **storage_options) -> str | None:
    versions = list_versions(collection, **storage_options)
    return versions[-1] if versions else None


def registry_manifest(fmt: int, version: str, dataset: str, action: str, dataset_manifest: dict) -> dict:
    """The fields a registry version's manifest (backbones, embeddings) opens with: its format,
    version, time and tool, and the class and data-set version it was made from."""
    from lrprop import __version__

    return {
        "format": fmt,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(),
        "tool_version": __version__,
        "dataset": dataset,
        "action": action,
        "dataset_version": dataset_manifest.get("version"),
        "dataset_content_hash": dataset_manifest.get("content_hash"),
    }


def read_manifest(collection: str, version: str | None = None, **storage_options) -> dict:
    """The manifest of ``version`` (default: the latest complete one) of ``collection``."""
    if version is None:
        version = latest_version(collection, **storage_options)
        if version is None:
            raise FileNotFoundError(f"no complete version under {collection!r}")
    check_version(version)
    uri = join(collection, version, MANIFEST)
    try:
        return read_json(uri, **storage_options)
    except FileNotFoundError:
        raise FileNotFoundError(f"version {version} of {collection!r} does not exist or is incomplete") from None


def write_manifest(collection: str, version: str, manifest: dict, **storage_options) -> None:
    """Publish ``version``: write its manifest, the last file of a version."""
    write_json(join(collection, check_version(version), MANIFEST), manifest, **storage_options)


def write_entry(root: str, path: str, data: bytes, **storage_options) -> dict:
    """Write ``data`` to ``root/path``; returns its manifest entry ``{"path", "size", "sha256"}``."""
    write_bytes(join(root, path), data, **storage_options)
    return {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def read_verified(root: str, entry: dict, **storage_options) -> bytes:
    """The bytes of the file a manifest entry names under ``root``, once they match its size
    and sha256; else a ChecksumError naming the file's URI."""
    uri = join(root, entry["path"])
    data = read_bytes(uri, **storage_options)
    if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ChecksumError(f"{uri}: size or sha256 differs from the manifest")
    return data
