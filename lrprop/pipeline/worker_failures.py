"""Ray Train does not restart workers for an error no retry can fix (:mod:`lrprop.failures`).

Ray Train restarts a worker group after any worker error, up to ``FailureConfig.max_failures``
times, and its failure policy cannot be told which errors to let through. This callback runs
in the Train controller after each poll that found worker errors, before the controller decides
on a restart: when an error is permanent (a bad config, a data error, a NaN loss) it ends the
run there, as a controller error, which Ray Train does not retry. A worker that died or a store
that did not answer is still restarted from the newest checkpoint.

Imported only where a trainer is made: it subclasses a Ray class.
"""

from __future__ import annotations

from ray.train import ControllerError, UserCallback  # Ray

from lrprop.failures import PermanentError, kind_of, unwrapped


class StopOnPermanentError(UserCallback):  # Ray: called in the Train controller
    """Ends the Train run ``what`` (a class or trial) at the first permanent worker error."""

    def __init__(self, what: str) -> None:
        self.what = what

    def after_exception(self, run_context, worker_exceptions: dict) -> None:
        """Raises ``ControllerError(PermanentError)`` (not retried) naming each rank's error."""
        permanent = {rank: unwrapped(exc) for rank, exc in worker_exceptions.items() if kind_of(exc) == "permanent"}
        if permanent:
            detail = "; ".join(f"rank {rank}: {type(exc).__name__}: {exc}" for rank, exc in sorted(permanent.items()))
            raise ControllerError(PermanentError(f"{self.what}: {detail} (a retry cannot fix this; not retried)"))
