"""Which failures a retry can fix: one classification for Prefect's task retries and Ray Train's
worker restarts (issue 14).

    kind_of(exc)   # "transient", "permanent" or "unknown"

- **transient**: the store did not answer (a connection, a timeout, throttling;
  :func:`lrprop.store.is_transient`). Prefect retries these, and so does Ray.
- **permanent**: the same input gives the same error again: a bad config, a data error, a
  missing or refused file, a NaN loss. Nothing retries these; the run stops at once with one line.
- **unknown**: anything else, e.g. a Train worker that died (killed, out of memory) or a CUDA
  error. Ray restarts the worker from its newest checkpoint (``ray.max_failures``), which is
  what those retries are for; Prefect does not retry them.

Decided on exception types only, never on message text; Ray's wrappers around a worker's error
are looked through.
"""

from __future__ import annotations

from typing import Literal

from lrprop import store

__all__ = ["PERMANENT_TYPES", "PermanentError", "kind_of", "unwrapped"]


class PermanentError(RuntimeError):
    """A failure that no retry can fix; the message names what failed and where."""


# Errors that deterministic code raises again on the same input. FileNotFoundError and
# PermissionError are OSErrors, but a retry does not make a file appear or a permission granted;
# other OSErrors (a full disk, a reset socket) stay "unknown".
PERMANENT_TYPES: tuple[type[BaseException], ...] = (
    PermanentError,
    ValueError,  # lrprop's ConfigError, IngestError, ChecksumError, StoreError; pyarrow's ArrowInvalid
    TypeError,
    KeyError,
    IndexError,
    ArithmeticError,  # FloatingPointError: a NaN loss or gradient (lrprop.training.train.train_step)
    NotImplementedError,
    ImportError,
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)


def unwrapped(exc: BaseException) -> BaseException:
    """The error a Ray worker raised, out of the wrappers Ray Train puts around it.

    Ray Train hands a worker's error to its controller inside ``UserExceptionWithTraceback``
    (internal to ``ray.train.v2``; its ``_base_exc`` is the worker's exception), raises an error
    of the controller itself (e.g. writing its checkpoint list to the store) as ``ControllerError``
    (whose ``controller_failure`` is it), a task's error inside ``RayTaskError`` (whose ``cause``
    is it), and an actor's failed ``__init__`` (the controller's, when the store does not answer
    as it starts) as ``ActorDiedError`` around that ``RayTaskError``. Anything else is returned
    as it is.
    """
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "_base_exc", None) or getattr(exc, "controller_failure", None)
        if inner is None and type(exc).__name__.startswith("RayTaskError"):
            inner = getattr(exc, "cause", None)
        if inner is None and getattr(exc, "actor_init_failed", False) and exc.args:
            # ActorDiedError of an actor whose __init__ raised keeps that RayTaskError only as
            # its argument (Ray Train's controller, when the store fails as it starts)
            inner = exc.args[0]
        if not isinstance(inner, BaseException):
            return exc
        exc = inner
    return exc


def kind_of(exc: BaseException) -> Literal["transient", "permanent", "unknown"]:
    """Whether a retry may fix ``exc``: "transient" (yes), "permanent" (never), "unknown"."""
    exc = unwrapped(exc)
    if isinstance(exc, PermanentError):  # said by lrprop itself, whatever it was raised while handling
        return "permanent"
    if store.is_transient(exc):  # along the chain of causes: s3fs raises OSError from botocore's errors
        return "transient"
    if isinstance(exc, PERMANENT_TYPES):
        return "permanent"
    return "unknown"
