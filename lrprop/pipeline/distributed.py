"""Ray Train jobs: :func:`lrprop.training.train.train` as one TorchTrainer per action class; and the
pretraining stage before them, one Ray actor per class.

    results = train_classes(config, store_uri, dataset="synthetic", version=v, actions=[...],
                            run_name="run-1")
    results["reach"].checkpoint_uri   # the class's last checkpoint in the store
    backbones = pretrain_classes(config, store_uri, dataset="synthetic", version=v, actions=[...])
    backbones["reach"]["uri"]         # its pretrained backbone, published (lrprop.registry.backbones)

Every class is its own TorchTrainer; their ``fit()`` calls are made from a thread each, so Ray
schedules all classes at once on whatever the cluster has (CPU or GPU workers, fractional GPUs
allowed) — no queue of our own. Checkpoints go to ``<store>/runs/<run_name>/ray/`` through Ray's
storage, so a lost worker restarts from the latest one (``FailureConfig``), and rerunning a
run name resumes it. Lines that talk to Ray are marked ``# Ray``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lrprop import store
from lrprop.config import Config, config_from_dict, config_to_dict, upgrade_stored
from lrprop.data.parquet import ClassData, ParquetVideos
from lrprop.failures import PermanentError, kind_of, unwrapped
from lrprop.interrupts import keeping_signal_handlers
from lrprop.registry.backbones import publish_backbone, weights_uri
from lrprop.registry.layout import run_ray_dir

__all__ = [
    "ClassRun",
    "PLACEMENT_GROUP_KEY",
    "WorkerStartTimeout",
    "ensure_ray",
    "export_checkpoint",
    "fit",
    "held_resources",
    "init_local_ray",
    "live_placement_groups",
    "placement_group_members",
    "make_trainer",
    "pretrain_and_publish",
    "pretrain_class",
    "pretrain_classes",
    "remove_placement_groups",
    "train_classes",
    "train_loop_per_worker",
    "validation_metrics",
    "worker_resources",
]

log = logging.getLogger(__name__)

# Ray Train's bound on one attempt to start a worker group (its default: 60 s, retried for ever).
START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
# The metric through which a Tune trial's workers name their placement group (lrprop.pipeline.tune).
PLACEMENT_GROUP_KEY = "train_placement_group"


class WorkerStartTimeout(RuntimeError):
    """A Ray Train job whose worker group did not start within ``ray.start_timeout_s``."""


@dataclass
class ClassRun:
    """What a class's Ray Train job left: its last checkpoint, metrics and timing."""

    action: str
    checkpoint_uri: str
    metrics: dict
    started: float
    finished: float


def ensure_ray(address: str | None) -> None:
    """Connect to ``address`` (a cluster) or start a local Ray, once per process."""
    import ray  # Ray

    # ray.train.report is throttled to one call per health-check interval (2 s by default):
    # with epochs shorter than that, reporting each epoch would dominate a small run.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    if address is None:
        # A local Ray is not preempted: skip the watcher actor each Train job would start (a
        # Python process apiece, about a CPU-second of start-up on a 2-core machine).
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    if not ray.is_initialized():
        # Keep the dashboard (the default with ray[default]): Ray Train cleans up a finished
        # run's placement group through its State API, and without it later jobs starve.
        # ray.init replaces the SIGTERM handler (Prefect's, or lrprop.interrupts'): keep it
        with keeping_signal_handlers():
            if address is None:
                init_local_ray(log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)  # Ray


def init_local_ray(**init_args) -> None:
    """Start a local Ray (``ray.init(address="local", **init_args)``) whose processes know its address.

    Ray Train's ``PlacementGroupCleaner`` (a process per Train run, the only thing that removes
    the placement group of a run whose controller was killed, as Tune kills every trial's) finds
    the State API through ``RAY_ADDRESS``, else by looking for running Ray instances on the
    machine. With a second one there (another user's, a test's), the cleaner's monitor thread
    dies of ``ConnectionError: Found multiple active Ray instances`` and never removes its run's
    group: the group holds its CPU and the next trial waits for ever (issue 12). Ray's processes
    inherit the environment of ``ray.init``, so the GCS port is chosen here and ``RAY_ADDRESS``
    set for them; this process's own environment is left as it was.
    """
    import socket

    import ray  # Ray

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    saved = {key: os.environ.get(key) for key in ("RAY_ADDRESS", "RAY_GCS_SERVER_PORT")}
    os.environ.update(RAY_GCS_SERVER_PORT=str(port), RAY_ADDRESS=f"127.0.0.1:{port}")
    # Ray turns token authentication on for a new local cluster when RAY_AUTH_MODE is unset (a
    # token made in ~/.ray/auth_token if there is none) and says so in a WARNING among a run's
    # first lines. Setting the variable here is too late (Ray read its config at import), so the
    # notice is muted instead: authentication stays on, a user's RAY_AUTH_MODE still decides.
    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = notice.level
    notice.setLevel(logging.ERROR)
    try:
        ray.init(address="local", **init_args)  # Ray: "local" starts one, whatever RAY_ADDRESS says
    finally:
        notice.setLevel(level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def validation_metrics(config: Config, train_source, val_source):
    """A ``validate`` hook for :func:`lrprop.training.train.train`: the evaluation metrics, flattened,
    less the references and the pace errors (they would embed the validation videos' copies
    again every few epochs; the evaluation at the end measures them)."""
    from lrprop.evaluation.evaluate import evaluate_class
    from lrprop.evaluation.report import flatten_metrics

    def validate(model) -> dict:
        scores = evaluate_class(model, config, train_source, val_source, device="auto", references=False, pace=False)
        return flatten_metrics(scores.metrics)

    return validate


def train_loop_per_worker(loop_config: dict) -> None:
    """The Ray Train worker: resume from Ray's checkpoint, train, report each epoch."""
    # Size numba's thread pool to this worker's CPUs before numba loads (it reads the variable
    # once). A pool of every core in each of several workers spins on the same cores: two
    # classes on 2 CPUs trained 5 times slower than one after the other.
    os.environ["NUMBA_NUM_THREADS"] = str(max(1, int(loop_config["config"]["ray"]["cpus_per_worker"])))
    import ray.train  # Ray
    import ray.train.torch  # Ray

    from lrprop.interrupts import remove_left_worker_dirs, worker_dir_prefix
    from lrprop.pipeline.resume import newest_complete_checkpoint
    from lrprop.training.train import train

    config = config_from_dict(loop_config["config"])
    data: ClassData = loop_config["data"]
    source = data.videos("train")
    validate = None
    if loop_config.get("validate"):
        val_source = data.videos(config.eval.val_split)
        validate = validation_metrics(config, source, val_source)
    context = ray.train.get_context()  # Ray
    rank, world = context.get_world_rank(), context.get_world_size()
    # In a Tune trial, name this worker group's placement group in every report, so that the
    # search can remove it when the trial ends (see lrprop.pipeline.tune._TrialPlacementGroups).
    named = {}
    if loop_config.get("name_placement_group"):
        named[PLACEMENT_GROUP_KEY] = ray.get_runtime_context().get_placement_group_id()  # Ray

    # Each epoch's numbers to the driver's progress display (lrprop.pipeline.progress), from one worker
    board = loop_config.get("progress") if rank == 0 else None

    def report(metrics: dict, checkpoint_dir: Path | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None  # Ray
        ray.train.report({**metrics, **named}, checkpoint=checkpoint)  # Ray
        if board is not None:  # metrics["epoch"] counts from 0 (a run that optim.max_steps stops reports its part epoch last)
            update = {"epoch": metrics["epoch"] + 1, "step": metrics["step"], "loss": metrics.get("loss_total")}
            board.update.remote(data.action, update)  # Ray: not waited for

    # A worker killed before (SIGKILL, a stopped run) left its local folder on this node
    remove_left_worker_dirs()
    prefix = worker_dir_prefix()  # the local checkpoints, and the stored ones copied down to resume
    with tempfile.TemporaryDirectory(prefix=prefix) as local, tempfile.TemporaryDirectory(prefix=prefix) as restored:
        resume_from = None
        previous = ray.train.get_checkpoint()  # Ray: set when Ray restarts a failed worker or resumes a run
        if previous is not None:
            local_store = previous.filesystem.type_name == "local"
            resume_from = newest_complete_checkpoint(
                previous, restored, uri_of=lambda path: path if local_store else _uri_of(data.store, path)
            )
        train(
            config,
            source,
            checkpoint_dir=local,
            resume_from=resume_from,
            report=report,
            world_rank=rank,
            world_size=world,
            wrap_model=ray.train.torch.prepare_model if world > 1 else None,  # Ray
            validate=validate,
            validate_every=config.ray.validate_every,
        )


def worker_resources(config: Config) -> dict[str, float]:
    """One Train worker's resources (``ray.cpus_per_worker``, ``ray.gpus_per_worker``), as in
    its placement group's bundle: ``{"CPU": 1.0}`` or ``{"CPU": 1.0, "GPU": 0.5}``."""
    r = config.ray
    return {"CPU": float(r.cpus_per_worker), **({"GPU": float(r.gpus_per_worker)} if r.gpus_per_worker else {})}


def make_trainer(
    config: Config,
    data: ClassData,
    *,
    run_name: str,
    validate: bool = False,
    callbacks: list | None = None,
    name_placement_group: bool = False,
    progress=None,
):
    """The TorchTrainer of one class: scaling and failure handling from ``config.ray``.

    Run it with :func:`fit`, which bounds the wait for its workers (``ray.start_timeout_s``).
    ``name_placement_group``: the workers add their placement group's id to every report
    (``PLACEMENT_GROUP_KEY``), for a Tune search to remove it when the trial ends.
    ``progress``: a :class:`lrprop.pipeline.progress.ProgressBoard` actor that the rank-0
    worker sends each epoch's numbers to, under the class's name.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig  # Ray
    from ray.train.torch import TorchTrainer  # Ray

    from lrprop.pipeline.worker_failures import StopOnPermanentError

    r = config.ray
    storage_path, storage_filesystem = store.ray_storage(run_ray_dir(data.store, run_name))
    resources = worker_resources(config)
    return TorchTrainer(  # Ray
        train_loop_per_worker,
        train_loop_config={
            "config": config_to_dict(config),
            "data": data,
            "validate": validate,
            "name_placement_group": name_placement_group,
            "progress": progress,
        },
        scaling_config=ScalingConfig(num_workers=r.num_workers, use_gpu=r.gpus_per_worker > 0, resources_per_worker=resources),
        run_config=RunConfig(
            name=data.action,
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            # With a start bound, a worker group that cannot start fails the job at once: Ray's
            # default (-1) retries the start for ever, which is how a search hung (issue 12).
            failure_config=FailureConfig(max_failures=r.max_failures, controller_failure_limit=0 if r.start_timeout_s else -1),
            # The newest train.keep_checkpoints of the class stay in the store, older ones are
            # deleted: unbounded, a nightly Penn Action run would leave ~1 TB (issue 14).
            checkpoint_config=CheckpointConfig(num_to_keep=config.train.keep_checkpoints),
            # Ray restarts workers after any error: not after one that a retry cannot fix
            callbacks=[StopOnPermanentError(data.action), *(callbacks or [])],
        ),
    )


def train_classes(
    config: Config,
    store_uri: str,
    *,
    dataset: str,
    version: str,
    actions: list[str],
    run_name: str,
    progress_logger=None,
) -> dict[str, ClassRun]:
    """Train every class in ``actions`` as its own Ray Train job, all at once.

    ``progress_logger`` (e.g. Prefect's run logger): where each class's epoch, step, loss and
    ETA are logged while it trains, with tqdm bars on a terminal
    (:class:`lrprop.pipeline.progress.TrainingProgress`); None shows nothing.

    Returns:
        {action: ClassRun} with each class's last checkpoint as a store URI.

    Raises:
        PermanentError: every failed class failed with an error no retry can fix (a bad config,
            a data error, a NaN loss: :mod:`lrprop.failures`), which Ray did not retry.
        RuntimeError: naming the classes whose job failed (after Ray's retries).
    """
    from lrprop.pipeline.resume import remove_orphan_checkpoints

    ensure_ray(config.ray.address)
    store_uri = store.absolute(store_uri)  # the workers run in other directories

    board = None

    def fit_class(action: str) -> ClassRun:
        started = time.time()
        trainer = make_trainer(
            config.for_class(action),  # the class's own T, alpha, beta, … (config.actions)
            ClassData(store_uri, dataset, version, action),
            run_name=run_name,
            progress=board,
        )
        result = fit(trainer, config, action)  # Ray: blocks until this class is done
        if result.checkpoint is None:
            raise RuntimeError(f"{action}: the Ray Train job reported no checkpoint")
        fs = result.checkpoint.filesystem
        local_store = fs is None or fs.type_name == "local"

        def uri_of(path: str) -> str:
            return path if local_store else _uri_of(store_uri, path)

        remove_orphan_checkpoints(result, uri_of=uri_of)
        return ClassRun(action, uri_of(result.checkpoint.path), dict(result.metrics or {}), started, time.time())

    if progress_logger is None:
        return _per_class(fit_class, actions, "training")
    from lrprop.pipeline.progress import TrainingProgress

    with TrainingProgress({a: config.for_class(a).optim.epochs for a in actions}, logger=progress_logger) as shown:
        board = shown.board
        return _per_class(fit_class, actions, "training")


def _per_class(run, actions: list[str], what: str) -> dict:
    """``run(action)`` for every class at once, each from a thread of its own (Ray schedules
    them); {action: its result}.

    Raises:
        PermanentError: naming every class that failed, when no retry can fix any of them.
        RuntimeError: naming every class that failed, with its error; raised from a store's
            error that a retry may fix when every class failed of one (:func:`lrprop.failures.kind_of`).
    """
    failures, results = {}, {}
    pool = ThreadPoolExecutor(max_workers=max(1, len(actions)))
    try:
        futures = {action: pool.submit(run, action) for action in actions}
        for action, future in futures.items():
            try:
                results[action] = future.result()
            except Exception as exc:  # noqa: BLE001 - collected and raised below, naming each class
                failures[action] = exc
    except BaseException:
        # Interrupted (lrprop.interrupts): do not wait for the threads, which wait on Ray; the
        # Ray shutdown that follows ends them
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    if failures:
        detail = "; ".join(
            str(e) if isinstance(e, PermanentError) else f"{a}: {type(e).__name__}: {e}"  # the former names its class
            for a, e in failures.items()
        )
        # Classified as the classes' errors are when they all agree, so that a retry (Prefect's)
        # runs them all again only when it can help every one: a store that did not answer is
        # transient (the classes then resume from their checkpoints), a bad input permanent.
        message = f"{what} failed for {sorted(failures)}: {detail}"
        kinds = {kind_of(e) for e in failures.values()}
        if kinds == {"permanent"}:
            raise PermanentError(message)
        if kinds == {"transient"}:
            raise RuntimeError(message) from unwrapped(next(iter(failures.values())))
        raise RuntimeError(message)
    return results


def pretrain_and_publish(
    config: Config,
    store_uri: str,
    *,
    dataset: str,
    version: str,
    action: str,
    publish_as: str | None = None,
    on_step=None,
) -> dict:
    """Pretrain ``action``'s backbone as :func:`lrprop.training.train.train` would and publish it.

    Args:
        config: the whole config; the class's own (``config.for_class(action)``) is used.
        version: the data-set version whose training split it pretrains on.
        publish_as: the backbone version id (default a new one).
        on_step: called with (steps done, loss) after each pretraining step (a progress display).

    Returns:
        {"action", "uri", "version", "steps", "final_loss", "wall_s"}.
    """
    from lrprop.core.model import backbone_weights_bytes
    from lrprop.training.train import pretrained_backbone, resolve_device

    config = config.for_class(action)
    source = ParquetVideos(store_uri, dataset, version=version, action=action, split="train")
    started = time.perf_counter()
    backbone, result = pretrained_backbone(config, source, on_step)
    wall_s = time.perf_counter() - started
    manifest = publish_backbone(
        store_uri,
        dataset=dataset,
        action=action,
        weights=backbone_weights_bytes(backbone),
        config=config,
        dataset_manifest=source.manifest,
        losses=result.losses,
        frames_per_s=result.frames_per_s,
        wall_s=wall_s,
        device=resolve_device(config.train.device).type,
        version=publish_as,
    )
    return {
        "action": action,
        "uri": weights_uri(store_uri, dataset, action, manifest["version"]),
        "version": manifest["version"],
        "steps": manifest["steps"],
        "final_loss": manifest["final_loss"],
        "wall_s": wall_s,
    }


class _Pretrainer:
    """A Ray actor that pretrains one class's backbone and publishes it (:func:`pretrain_and_publish`)."""

    def run(self, config: Config, data: ClassData, publish_as: str | None, board=None) -> dict:
        on_step = None
        if board is not None:  # the driver's progress display (lrprop.pipeline.progress): at most a report a second
            sent = [0.0]

            def on_step(step: int, loss: float) -> None:
                now = time.monotonic()
                if now - sent[0] >= 1.0 or step == config.for_class(data.action).pretrain.steps:
                    board.update.remote(data.action, {"epoch": step, "loss": loss})  # Ray: not waited for
                    sent[0] = now

        return pretrain_and_publish(
            config, data.store, dataset=data.dataset, version=data.version, action=data.action, publish_as=publish_as,
            on_step=on_step,
        )  # fmt: skip


def pretrain_class(
    config: Config,
    data: ClassData,
    *,
    publish_as: str | None = None,
    what: str = "backbone pretraining",
    progress=None,
) -> dict:
    """Pretrain the class's backbone in a Ray actor on one training worker's resources and
    publish it to the store's backbones; returns what :func:`pretrain_and_publish` does.

    On the resources of a Train worker (``ray.cpus_per_worker``, ``ray.gpus_per_worker``), so
    that on a cluster it runs where training would, not on the head node, and with the threads
    a worker has: the weights are those the class's Train job would have pretrained itself. Its
    start is bounded like a Train job's (``ray.start_timeout_s``), or a cluster whose CPUs are
    all held would keep it waiting for ever.

    ``progress``: a :class:`lrprop.pipeline.progress.ProgressBoard` actor the pretraining
    reports its steps to.

    Raises:
        WorkerStartTimeout: the actor did not start in time; ``what`` names it in the message.
    """
    import ray  # Ray

    r = config.ray
    pretrainer = ray.remote(num_cpus=r.cpus_per_worker, num_gpus=r.gpus_per_worker)(_Pretrainer).remote()  # Ray
    try:
        ready, _ = ray.wait([pretrainer.__ray_ready__.remote()], timeout=r.start_timeout_s or None)  # Ray
        if not ready:
            wanted = worker_resources(config)
            raise WorkerStartTimeout(
                f"{data.action}: the {what} did not start within {r.start_timeout_s:g} s "
                f"(ray.start_timeout_s); it waited for 1 x {wanted}. {held_resources()}"
            )
        return ray.get(pretrainer.run.remote(config, data, publish_as, progress))  # Ray
    finally:
        ray.kill(pretrainer)  # Ray: frees its resources for the training that follows


def pretrain_classes(
    config: Config,
    store_uri: str,
    *,
    dataset: str,
    version: str,
    actions: list[str],
    on_done: Callable[[str, dict], None] | None = None,
    publish_as: str | None = None,
    progress_logger=None,
) -> dict[str, dict]:
    """Pretrain every class in ``actions`` (:func:`pretrain_class`), all at once, and publish
    their backbones under one version id, ``publish_as`` (default a new one), so that
    ``{action}`` in ``model.pretrained`` names them all.
    ``on_done(action, result)`` is called from the class's thread as soon as its backbone is
    published, before the others finish (or fail). ``progress_logger`` (e.g. Prefect's run
    logger): where each class's pretraining step, loss and ETA go every 30 s
    (:class:`lrprop.pipeline.progress.TrainingProgress`); None shows nothing.

    Returns:
        {action: {"action", "uri", "version", "steps", "final_loss", "wall_s"}}.

    Raises:
        RuntimeError: naming the classes whose pretraining failed or could not start.
    """
    ensure_ray(config.ray.address)
    store_uri = store.absolute(store_uri)  # the actors run in other directories
    shared = store.check_version(publish_as) if publish_as else store.new_version_id()

    def pretrain(action: str, board=None) -> dict:
        shown = {"progress": board} if board is not None else {}
        result = pretrain_class(config, ClassData(store_uri, dataset, version, action), publish_as=shared, **shown)
        if on_done is not None:
            on_done(action, result)
        return result

    if progress_logger is None:
        return _per_class(pretrain, actions, "pretraining")
    from lrprop.pipeline.progress import TrainingProgress

    steps = {a: config.for_class(a).pretrain.steps for a in actions}
    with TrainingProgress(steps, logger=progress_logger, unit="pretraining step") as shown:
        return _per_class(lambda action: pretrain(action, shown.board), actions, "pretraining")


def fit(trainer, config: Config, what: str):
    """``trainer.fit()`` with its worker group's start bounded by ``config.ray.start_timeout_s``.

    Raises:
        WorkerStartTimeout: the workers did not start in time; the message names the resources
            they waited for and what held the cluster's (:func:`held_resources`).
        PermanentError: a worker's error that no retry can fix, not retried
            (:class:`lrprop.pipeline.worker_failures.StopOnPermanentError`).
    """
    r = config.ray
    if r.start_timeout_s:
        # Read by fit() in this process and passed on to the Train controller it starts.
        os.environ[START_TIMEOUT_ENV] = f"{r.start_timeout_s:g}"
    try:
        return trainer.fit()  # Ray
    except Exception as exc:
        if isinstance(getattr(exc, "controller_failure", None), PermanentError):  # StopOnPermanentError's
            raise exc.controller_failure from None
        # The type is internal to Ray Train (ray.train.v2._internal.exceptions): match its name.
        if type(getattr(exc, "controller_failure", None)).__name__ != "WorkerGroupStartupTimeoutError":
            raise
        wanted = worker_resources(config)
        raise WorkerStartTimeout(
            f"{what}: Ray Train's workers did not start within {r.start_timeout_s:g} s (ray.start_timeout_s); "
            f"they waited for {r.num_workers} x {wanted}. {held_resources()}"
        ) from exc


def live_placement_groups() -> dict[str, dict]:
    """The placement groups not REMOVED: {id: {"state", "bundles"}} (Ray's GCS, no dashboard needed)."""
    import ray  # Ray

    return {
        pg: {"state": info["state"], "bundles": list(info["bundles"].values())}
        for pg, info in ray.util.placement_group_table().items()  # Ray
        if info["state"] != "REMOVED"
    }


def remove_placement_groups(ids) -> list[str]:
    """Remove the placement groups ``ids`` that are not REMOVED yet; returns those removed."""
    import ray  # Ray
    from ray.util.placement_group import PlacementGroup  # Ray

    live = live_placement_groups()
    removed = [pg for pg in ids if pg in live]
    for pg in removed:
        ray.util.remove_placement_group(PlacementGroup(ray.PlacementGroupID.from_hex(pg)))  # Ray
    return removed


def placement_group_members(timeout_s: float = 10.0) -> dict[str, list[str]]:
    """The actors not DEAD in each placement group: {group id: ["<class> <state>", …]}; a
    group with none has no run left in it. From the State API (the dashboard, ``ray[default]``);
    raises what it raises when it does not answer within ``timeout_s``."""
    import ray  # Ray
    from ray.util.state import list_actors  # Ray

    actors = list_actors(
        address=ray.get_runtime_context().gcs_address,  # this cluster's, not any other on the machine
        filters=[("state", "!=", "DEAD")],
        detail=True,
        limit=10_000,
        timeout=max(1, round(timeout_s)),
        raise_on_missing_output=False,
    )
    members: dict[str, list[str]] = {}
    for actor in actors:
        if actor.placement_group_id:
            members.setdefault(actor.placement_group_id, []).append(f"{actor.class_name} {actor.state}")
    return members


def held_resources() -> str:
    """What holds the cluster's resources, for an error message: the free and total CPU, GPU and
    memory, then every placement group not REMOVED with its state, bundles and the live actors
    placed in it (from the State API; a CREATED group with no actor is one an ended run left)."""
    import ray  # Ray

    def amount(key: str, value: float) -> str:
        return f"{value / 2**20:.0f} MiB" if key == "memory" else f"{value:g}"

    total, free = ray.cluster_resources(), ray.available_resources()  # Ray
    keys = [k for k in ("CPU", "GPU", "memory") if k in total]
    text = "Free: " + ", ".join(f"{k} {amount(k, free.get(k, 0.0))} of {amount(k, total[k])}" for k in keys) + "."
    groups = live_placement_groups()
    if not groups:
        return text + " No placement group holds any."
    try:
        members = placement_group_members(timeout_s=30.0)
        unknown = "no live actor"
    except Exception as exc:  # noqa: BLE001 - the message is still useful without the actors
        members, unknown = {}, f"actors unknown ({type(exc).__name__}: State API)"
    held = []
    for pg, info in groups.items():
        bundles = [{k: amount(k, v) for k, v in b.items()} for b in info["bundles"]]
        held.append(f"{pg} {info['state']} {bundles}: {', '.join(members.get(pg, [])) or unknown}")
    return text + " Placement groups holding resources: " + "; ".join(held) + "."


def _uri_of(store_uri: str, path: str) -> str:
    """A path inside the store's filesystem (as Ray reports it) back to a full URI."""
    fs, _ = store.filesystem(store_uri)
    return fs.unstrip_protocol(path)


def export_checkpoint(checkpoint_uri: str, out_dir: str | Path, meta: dict) -> Path:
    """Export the model of a (Ray-stored) checkpoint as ``model.safetensors`` + config + meta.

    Raises:
        ValueError: naming the checkpoint's URI and the file, when a file read is not the one
            its ``complete.json`` lists (an upload cut short, a damaged file).
    """
    import hashlib
    import json

    from safetensors.torch import load

    from lrprop.training.checkpoint import COMPLETE_FILE, MODEL_FILE, check_listed, export_model
    from lrprop.training.train import build_model

    try:
        listed = store.read_json(store.join(checkpoint_uri, COMPLETE_FILE))["files"]
    except FileNotFoundError:  # made before checkpoints listed their files (not exists(): s3fs says False to an outage)
        listed = None

    def read(file: str) -> bytes:
        data = store.read_bytes(store.join(checkpoint_uri, file))
        if listed is not None:
            check_listed(checkpoint_uri, file, {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}, listed)
        return data

    state = json.loads(read("state.json"))
    stored = upgrade_stored(state["config"])
    config = config_from_dict(stored)
    model = build_model(config_from_dict({**stored, "model": {**stored["model"], "pretrained": None}}))
    weights = read(MODEL_FILE)
    model.load_state_dict(load(weights))
    # The weights' digest tells a version made from this checkpoint from one made from another
    # that a retrain under the same run name wrote at the same URI (lrprop.registry.run_published).
    meta = {**meta, "step": state["step"], "checkpoint": checkpoint_uri, "weights_sha256": hashlib.sha256(weights).hexdigest()}
    return export_model(out_dir, model, config_to_dict(config), meta)
