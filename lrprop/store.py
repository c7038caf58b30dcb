"""The one module that knows about URIs: reading and writing bytes through fsspec.

A plain path is a local file; ``s3://…``, ``memory://…`` and the other fsspec protocols work the
same. Credentials come from the environment or the storage library's own config files, never
from here.
"""

from __future__ import annotations

import fsspec

__all__ = ["read_bytes"]


def read_bytes(uri: str, **storage_options) -> bytes:
    """The whole content of the file at ``uri``; a missing file is an error naming it."""
    try:
        with fsspec.open(uri, "rb", **storage_options) as handle:
            return handle.read()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no file at {uri!r}") from exc
