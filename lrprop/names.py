"""Validation of user-given names (runs, actions, versions) before they become paths."""

from __future__ import annotations

import re

__all__ = ["check_name"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(value: str, what: str = "name") -> str:
    """Return ``value`` if it is safe as one path component, else raise naming ``what``.

    Allowed: 1–128 characters of letters, digits, '.', '_' and '-', starting with a letter or
    digit, and not containing '..'; so never a separator, a parent reference or hidden file.
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise ValueError(f"invalid {what} {value!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value
