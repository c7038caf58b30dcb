"""Which failures a retry can fix (lrprop/failures.py): one classification, by exception type,
for Prefect's retries and Ray Train's worker restarts (issue 14).

Oracle: the exception types themselves, built as the libraries raise them (botocore's, Ray's
wrappers of a worker's error, pyarrow's), and the chains of causes s3fs makes.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from test_store import _raised_from  # the chain of causes s3fs raises

from lrprop.config import ConfigError
from lrprop.failures import PermanentError, kind_of, unwrapped


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), "transient"),
        (_raised_from(OSError(5, "Input/output error"), ClientError({"Error": {"Code": "SlowDown"}}, "PutObject")), "transient"),
        (TimeoutError(), "transient"),
        (ConfigError("model.num_heads: must divide"), "permanent"),
        (ValueError("video 'v1': 3 labels for 4 frames"), "permanent"),
        (FloatingPointError("loss is nan at step 7"), "permanent"),
        (FileNotFoundError("no file at 's3://b/x'"), "permanent"),
        (PermissionError("denied"), "permanent"),
        (PermanentError("reach: rank 0: ValueError: …"), "permanent"),
        # A NaN found while the store was failing is still the store's: a retry may see neither.
        (_raised_from(ValueError("bad"), ConnectionResetError()), "transient"),
        # What a restart can fix, or what lrprop cannot tell: a dead worker, a CUDA error, a full disk.
        (RuntimeError("CUDA error: an illegal memory access was encountered"), "unknown"),
        (OSError(28, "No space left on device"), "unknown"),
    ],
)
def test_each_error_is_classified_by_its_type(exc, kind):
    assert kind_of(exc) == kind


def test_rays_wrappers_of_a_workers_error_are_looked_through():
    from ray.exceptions import ActorDiedError, RayTaskError
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback

    error = ValueError("frame 2 of video 'v1' is not a readable JPEG")
    in_train = UserExceptionWithTraceback(error, traceback_str="Traceback …")
    in_task = RayTaskError("run", "Traceback …", error)
    assert unwrapped(in_train) is error and unwrapped(in_task) is error
    assert kind_of(in_train) == kind_of(in_task) == kind_of(in_task.as_instanceof_cause()) == "permanent"
    # The Train controller's own failure to write to the store (ray.train.ControllerError).
    from ray.train import ControllerError

    from_controller = ControllerError(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
    assert kind_of(from_controller) == "transient"
    # The controller that could not start, the store not answering (as Ray raises it from fit()).
    outage = EndpointConnectionError(endpoint_url="http://127.0.0.1:9/bucket")
    not_started = ActorDiedError.from_task_error(RayTaskError("__init__", "Traceback …", outage))
    assert unwrapped(not_started) is outage and kind_of(not_started) == "transient"
    # A worker process that died is not an error of its input: Ray restarts it.
    assert kind_of(UserExceptionWithTraceback(ActorDiedError(), traceback_str="")) == "unknown"


def test_the_train_callback_ends_the_run_on_a_permanent_error_only():
    from ray.train import ControllerError
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback

    from lrprop.pipeline.worker_failures import StopOnPermanentError

    callback = StopOnPermanentError("reach")
    callback.after_exception(None, {0: UserExceptionWithTraceback(RuntimeError("NCCL timeout"), "")})  # retried
    callback.after_exception(None, {0: UserExceptionWithTraceback(ConnectionResetError(), "")})  # retried
    with pytest.raises(ControllerError) as caught:
        callback.after_exception(
            None,
            {
                1: UserExceptionWithTraceback(RuntimeError("collective aborted"), ""),
                0: UserExceptionWithTraceback(FloatingPointError("loss is nan"), ""),
            },
        )
    failure = caught.value.controller_failure
    assert isinstance(failure, PermanentError)
    assert str(failure) == "reach: rank 0: FloatingPointError: loss is nan (a retry cannot fix this; not retried)"
