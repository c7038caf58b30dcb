"""Ray Train jobs: :func:`lrprop.train.train` as one TorchTrainer per action class.

    results = train_classes(config, store_uri, dataset="synthetic", version=v, actions=[...],
                            run_name="run-1")
    results["reach"].checkpoint_uri   # the class's last checkpoint in the store

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lrprop import store
from lrprop.config import Config, config_from_dict, config_to_dict

__all__ = [
    "ClassRun",
    "ensure_ray",
    "export_checkpoint",
    "make_trainer",
    "train_classes",
    "train_loop_per_worker",
    "validation_metrics",
]

log = logging.getLogger(__name__)


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
        ray.init(address=address, log_to_driver=False)  # Ray


def validation_metrics(config: Config, train_source, val_source):
    """A ``validate`` hook for :func:`lrprop.train.train`: the evaluation metrics, flattened."""
    from lrprop.evaluate import evaluate_class
    from lrprop.report import flatten_metrics

    def validate(model) -> dict:
        return flatten_metrics(evaluate_class(model, config, train_source, val_source, device="auto", references=False).metrics)

    return validate


def train_loop_per_worker(loop_config: dict) -> None:
    """The Ray Train worker: resume from Ray's checkpoint, train, report each epoch."""
    # Size numba's thread pool to this worker's CPUs before numba loads (it reads the variable
    # once). A pool of every core in each of several workers spins on the same cores: two
    # classes on 2 CPUs trained 5 times slower than one after the other.
    os.environ["NUMBA_NUM_THREADS"] = str(max(1, int(loop_config["config"]["ray"]["cpus_per_worker"])))
    import ray.train  # Ray
    import ray.train.torch  # Ray

    from lrprop.data.parquet import ParquetVideos
    from lrprop.train import train

    config = config_from_dict(loop_config["config"])
    where = {"dataset": loop_config["dataset"], "version": loop_config["version"], "action": loop_config["action"]}
    options = loop_config.get("storage_options") or {}
    source = ParquetVideos(loop_config["store"], split="train", storage_options=options, **where)
    validate = None
    if loop_config.get("validate"):
        val_source = ParquetVideos(loop_config["store"], split=config.eval.val_split, storage_options=options, **where)
        validate = validation_metrics(config, source, val_source)
    context = ray.train.get_context()  # Ray
    rank, world = context.get_world_rank(), context.get_world_size()

    def report(metrics: dict, checkpoint_dir: Path | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None  # Ray
        ray.train.report(metrics, checkpoint=checkpoint)  # Ray

    with tempfile.TemporaryDirectory(prefix="lrprop-ckpt-") as local, tempfile.TemporaryDirectory() as restored:
        resume_from = None
        previous = ray.train.get_checkpoint()  # Ray: set when Ray restarts a failed worker or resumes a run
        if previous is not None:
            resume_from = previous.to_directory(restored)
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


def make_trainer(
    config: Config,
    store_uri: str,
    *,
    dataset: str,
    version: str,
    action: str,
    run_name: str,
    validate: bool = False,
    callbacks: list | None = None,
    storage_options: dict | None = None,
):
    """The TorchTrainer of one class: scaling and failure handling from ``config.ray``."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig  # Ray
    from ray.train.torch import TorchTrainer  # Ray

    r = config.ray
    storage_path, storage_filesystem = store.ray_storage(
        store.join(store_uri, "runs", run_name, "ray"), **(storage_options or {})
    )
    resources = {"CPU": r.cpus_per_worker}
    if r.gpus_per_worker:
        resources["GPU"] = r.gpus_per_worker
    return TorchTrainer(  # Ray
        train_loop_per_worker,
        train_loop_config={
            "config": config_to_dict(config),
            "store": store_uri,
            "dataset": dataset,
            "version": version,
            "action": action,
            "validate": validate,
            "storage_options": storage_options,
        },
        scaling_config=ScalingConfig(num_workers=r.num_workers, use_gpu=r.gpus_per_worker > 0, resources_per_worker=resources),
        run_config=RunConfig(
            name=action,
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            failure_config=FailureConfig(max_failures=r.max_failures),
            callbacks=callbacks,
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
    storage_options: dict | None = None,
) -> dict[str, ClassRun]:
    """Train every class in ``actions`` as its own Ray Train job, all at once.

    Returns:
        {action: ClassRun} with each class's last checkpoint as a store URI.

    Raises:
        RuntimeError: naming the classes whose job failed (after Ray's retries).
    """
    ensure_ray(config.ray.address)
    store_uri = store.absolute(store_uri)  # the workers run in other directories

    def fit(action: str) -> ClassRun:
        started = time.time()
        trainer = make_trainer(
            config.for_class(action),  # the class's own T, alpha, beta, … (config.classes)
            store_uri,
            dataset=dataset,
            version=version,
            action=action,
            run_name=run_name,
            storage_options=storage_options,
        )
        result = trainer.fit()  # Ray: blocks until this class is done
        if result.checkpoint is None:
            raise RuntimeError(f"{action}: the Ray Train job reported no checkpoint")
        fs = result.checkpoint.filesystem
        path = result.checkpoint.path
        uri = path if fs is None or fs.type_name == "local" else _uri_of(store_uri, path, storage_options)
        return ClassRun(action, uri, dict(result.metrics or {}), started, time.time())

    failures, runs = {}, {}
    with ThreadPoolExecutor(max_workers=max(1, len(actions))) as pool:
        futures = {action: pool.submit(fit, action) for action in actions}
        for action, future in futures.items():
            try:
                runs[action] = future.result()
            except Exception as exc:  # noqa: BLE001 - collected and raised below, naming each class
                failures[action] = exc
    if failures:
        detail = "; ".join(f"{a}: {type(e).__name__}: {e}" for a, e in failures.items())
        raise RuntimeError(f"training failed for {sorted(failures)}: {detail}")
    return runs


def _uri_of(store_uri: str, path: str, storage_options: dict | None) -> str:
    """A path inside the store's filesystem (as Ray reports it) back to a full URI."""
    fs, _ = store.filesystem(store_uri, **(storage_options or {}))
    return fs.unstrip_protocol(path)


def export_checkpoint(checkpoint_uri: str, out_dir: str | Path, meta: dict, storage_options: dict | None = None) -> Path:
    """Export the model of a (Ray-stored) checkpoint as ``model.safetensors`` + config + meta."""
    import json

    from safetensors.torch import load

    from lrprop.checkpoint import MODEL_FILE, export_model
    from lrprop.train import build_model

    opts = storage_options or {}
    state = json.loads(store.read_bytes(store.join(checkpoint_uri, "state.json"), **opts))
    config = config_from_dict(state["config"])
    model = build_model(config_from_dict({**state["config"], "model": {**state["config"]["model"], "pretrained": None}}))
    model.load_state_dict(load(store.read_bytes(store.join(checkpoint_uri, MODEL_FILE), **opts)))
    return export_model(out_dir, model, config_to_dict(config), {**meta, "step": state["step"], "checkpoint": checkpoint_uri})
