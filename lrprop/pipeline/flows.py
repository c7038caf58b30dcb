"""Prefect flows: ingest → pretrain every class's backbone → train every class on Ray →
evaluate → publish; the pretraining alone; and a T/α/β search.

    retrain_and_evaluate(config_to_dict(config), "s3://bucket/lrprop", run_name="nightly-1")

(``config.ray.address`` picks the Ray cluster; None starts a local Ray.)

The flows only sequence; each task is small, passes URIs (never tensors) and can run again
without harm: ingestion returns the existing version for an unchanged source, training resumes
its run from Ray's checkpoints, pretraining reuses the backbones its run published, evaluation
and publishing write new files or new versions. Tasks
that only touch storage retry on transient storage errors. Results go to Prefect artifacts:
a markdown table of the metrics (each beside the time-stretch baseline's, the gain over it and
the label oracle's) with the report's address.

With no Prefect server configured these run in-process against Prefect's temporary local
server; with ``PREFECT_API_URL`` set they report to that server. ``flows/`` holds the
deployment entry points (see ``infra/prefect.yaml``).
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from lrprop import store
from lrprop.config import ConfigError, config_from_dict, config_to_dict
from lrprop.failures import kind_of
from lrprop.names import check_name
from lrprop.pipeline.backbones import with_pretrained_backbones
from lrprop.pipeline.flow_runs import claim_run

__all__ = ["evaluate_and_publish", "ingest_flow", "pretrain_flow", "retrain_and_evaluate", "train_flow", "tune_flow"]

STORAGE_RETRIES = {"retries": 3, "retry_delay_seconds": [2, 10, 30]}


def _transient(task, task_run, state) -> bool:
    """Retry on storage hiccups (connection, timeout, throttling), not on bad input nor on what
    lrprop cannot classify (:func:`lrprop.failures.kind_of`)."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - classified, not handled
        return kind_of(exc) == "transient"
    return False


def _usable_store(store_uri: str) -> str:
    """``store_uri`` made absolute (Ray workers resolve paths in their own directory) and checked
    before any work: a missing bucket or an unwritable folder fails here (:func:`lrprop.store.check_store`)."""
    store_uri = store.absolute(store_uri)
    store.check_store(store_uri)
    return store_uri


def _steps_fit_here(config: dict) -> None:
    """With a local Ray (no ``ray.address``) training on the CPU, the workers train in this
    machine's memory: refuse before any work a config (or a class's, ``actions``) whose one
    training step cannot fit in it (:func:`lrprop.training.memory.check_step_fits`). Every Train
    worker checks its own device as it starts (a GPU's there: asking here would open a CUDA
    context in this process for the whole run), a cluster's included."""
    if config["ray"]["address"]:
        return
    from lrprop.training.memory import check_step_fits
    from lrprop.training.train import resolve_device

    base = config_from_dict(config)
    for action, cfg in [(None, base), *((a, base.for_class(a)) for a in base.actions)]:
        device = resolve_device(cfg.train.device)
        if device.type != "cpu":
            continue
        try:
            check_step_fits(cfg, device)
        except ConfigError as exc:
            if action is None:
                raise
            raise ConfigError(f"actions.{action} (the class's config): {exc}") from None


def _new_run_name() -> str:
    return datetime.now(UTC).strftime("run-%Y%m%dT%H%M%SZ")


def _claimed_run(run_name: str | None) -> str:
    """The run's checked name (None: a new one; "", an unset variable in a script, is refused,
    not taken for None), with this flow run named after it and one that a killed process left
    Running marked Crashed (:func:`lrprop.pipeline.flow_runs.claim_run`)."""
    run_name = check_name(_new_run_name() if run_name is None else run_name, "run name")
    claim_run(run_name)
    return run_name


@task(name="ingest", retry_condition_fn=_transient, **STORAGE_RETRIES)
def ingest_task(config: dict, store_uri: str) -> str:
    """Ingest the configured data set if asked (``config.dataset``); returns the version to use."""
    from lrprop.ingest.from_config import dataset_version

    return dataset_version(config_from_dict(config), store_uri)


@task(name="list-actions", retry_condition_fn=_transient, **STORAGE_RETRIES)
def list_actions(store_uri: str, dataset: str, version: str) -> list[str]:
    """The action classes of a data-set version that have training videos."""
    manifest = store.read_manifest(store.datasets_collection(store_uri, dataset), version)
    return sorted(a for a, splits in manifest["counts"].items() if "train" in splits)


def _pretraining(config: dict, actions: list[str], store_uri: str | None = None, run_name: str | None = None) -> list[str]:
    """The classes whose backbone the pretraining stage makes: those whose training would
    pretrain it (:func:`lrprop.training.train.pretrains`), less those that ``run_name`` trained before it
    had the stage (Ray checkpoints, no backbone recorded): their checkpoints name no pretrained
    backbone and resume only as made, pretraining inside ``train()``."""
    from lrprop.training.train import pretrains

    parsed = config_from_dict(config)
    chosen = [a for a in actions if pretrains(parsed.for_class(a))]
    if run_name is None:
        return chosen
    run = store.join(store_uri, "runs", run_name)
    record = store.join(run, "backbones.json")
    recorded = store.read_json(record) if store.exists(record) else {}
    return [a for a in chosen if a in recorded or not store.exists(store.join(run, "ray", a))]


@task(name="pretrain", retry_condition_fn=_transient, **STORAGE_RETRIES)
def pretrain_task(
    config: dict, store_uri: str, dataset: str, version: str, actions: list[str], run_name: str | None = None
) -> dict:
    """Pretrain each class's backbone as a Ray actor, all at once, and publish it to the store's
    backbones (:func:`pretrain_recorded`); returns {action: {"uri", "version", "steps",
    "final_loss", "wall_s", "reused"}}."""
    results = pretrain_recorded(config, store_uri, dataset, version, actions, run_name)
    get_run_logger().info("backbones %s", {a: r["uri"] for a, r in results.items()})
    return results


def pretrain_recorded(
    config: dict, store_uri: str, dataset: str, version: str, actions: list[str], run_name: str | None = None
) -> dict:
    """What :func:`pretrain_task` does (:func:`lrprop.pipeline.distributed.pretrain_classes`).

    With a ``run_name`` each URI is recorded in ``<store>/runs/<run_name>/backbones.json`` as
    soon as its class is published, and a run started again (a resume, or this task's retry
    after another class failed) reuses those that its config would pretrain the same way on
    the same data: pretraining anew would name other weights and its checkpoints would not resume.
    """
    import threading

    from lrprop.pipeline.backbones import published_as
    from lrprop.pipeline.distributed import pretrain_classes

    parsed = config_from_dict(config)
    record = store.join(store_uri, "runs", run_name, "backbones.json") if run_name else None
    previous = {}
    if record:
        try:
            previous = store.read_json(record)
        except FileNotFoundError:  # a new run (not exists(): s3fs says False to an outage)
            pass
    reused = {}
    for a in actions:
        manifest = published_as(previous[a], parsed.for_class(a), version) if a in previous else None
        if manifest is not None:
            keys = ("version", "steps", "final_loss", "wall_s")
            reused[a] = {"action": a, "uri": previous[a], **{k: manifest[k] for k in keys}, "reused": True}
    recorded, writing = dict(previous), threading.Lock()

    def keep(action: str, result: dict) -> None:  # from the class's thread, as it is published
        with writing:
            recorded[action] = result["uri"]
            store.write_json(record, recorded)

    fresh = [a for a in actions if a not in reused]
    done = {}
    if fresh:
        # A retry publishes under the version its first try's classes have, so one version id
        # still names every class's backbone of the run
        shared = next((r["version"] for r in reused.values()), None)
        done = pretrain_classes(
            parsed,
            store_uri,
            dataset=dataset,
            version=version,
            actions=fresh,
            on_done=keep if record else None,
            publish_as=shared,
        )
    return {**reused, **{a: {**r, "reused": False} for a, r in done.items()}}


# A retry after the store failed to answer resumes each class from its stored checkpoints (a
# finished class trains no further): what the Ray Train controller does not retry itself.
@task(name="train-classes", retry_condition_fn=_transient, **STORAGE_RETRIES)
def train_classes_task(config: dict, store_uri: str, dataset: str, version: str, actions: list[str], run_name: str) -> dict:
    """One Ray Train job per class, all at once; returns {action: checkpoint URI} and timings."""
    from lrprop.pipeline.distributed import train_classes

    runs = train_classes(
        config_from_dict(config), store_uri, dataset=dataset, version=version, actions=actions, run_name=run_name
    )
    get_run_logger().info("trained %s", {a: r.checkpoint_uri for a, r in runs.items()})
    return {a: {"checkpoint": r.checkpoint_uri, "started": r.started, "finished": r.finished} for a, r in runs.items()}


@task(name="evaluate-and-publish", retry_condition_fn=_transient, **STORAGE_RETRIES)
def evaluate_and_publish_task(store_uri: str, dataset: str, version: str, checkpoints: dict, run_name: str) -> dict:
    """Export each class's model, evaluate it, publish its embeddings; write the report to the store.

    Idempotent per (run, class): a class this run already published from the same checkpoint (a
    retry after a storage error, the run started again) keeps that version, and nothing new is
    published for it (:mod:`lrprop.pipeline.run_published`).
    """
    from lrprop.evaluation.evaluate import evaluate_models
    from lrprop.pipeline.distributed import export_checkpoint
    from lrprop.pipeline.embeddings import embeddings_collection, publish_embeddings
    from lrprop.pipeline.run_published import already_published, read_published, record_published

    dataset_manifest = store.read_manifest(store.datasets_collection(store_uri, dataset), version)
    recorded = read_published(store_uri, run_name)
    published = {}
    logger = get_run_logger()

    def publish(action, evaluation, meta, model_dir) -> str:
        checkpoint = checkpoints[action]["checkpoint"]
        manifest = already_published(store_uri, dataset, action, run_name, checkpoint, recorded.get(action))
        if manifest is not None:
            logger.info(
                "%s: already published by this run from %s as %s; not published again", action, checkpoint, manifest["version"]
            )
        else:
            manifest = publish_embeddings(
                store_uri,
                dataset=dataset,
                action=action,
                splits=evaluation.splits(),
                model_dir=model_dir,
                dataset_manifest=dataset_manifest,
                metrics=evaluation.metrics,
            )
        uri = store.join(embeddings_collection(store_uri, dataset, action), manifest["version"])
        published[action] = manifest["version"]
        recorded[action] = {"dataset": dataset, "version": manifest["version"], "uri": uri, "checkpoint": checkpoint}
        record_published(store_uri, run_name, recorded)
        return uri

    with tempfile.TemporaryDirectory(prefix="lrprop-eval-") as tmp:
        model_dirs = {}
        for action, info in sorted(checkpoints.items()):
            meta = {
                "dataset": dataset,
                "dataset_version": version,
                "action": action,
                "run": run_name,
                "checkpoint": info["checkpoint"],
            }
            model_dirs[action] = export_checkpoint(info["checkpoint"], Path(tmp) / action / "model", meta)
        summary = evaluate_models(model_dirs, store_uri, Path(tmp) / "evaluation", on_class=publish)
        out = store.join(store_uri, "runs", run_name, "evaluation")
        for name in ("metrics.json", "report.html"):
            store.write_bytes(store.join(out, name), (Path(tmp) / "evaluation" / name).read_bytes())
    _metrics_artifact(summary, store.join(out, "report.html"), run_name)
    return {"metrics": store.join(out, "metrics.json"), "report": store.join(out, "report.html"), "published": published}


def _metrics_artifact(summary: dict, report_uri: str, run_name: str) -> None:
    create_markdown_artifact(
        _metrics_markdown(summary, report_uri, run_name), key=f"metrics-{run_name.lower().replace('_', '-').replace('.', '-')}"
    )


def _metrics_markdown(summary: dict, report_uri: str, run_name: str) -> str:
    """The artifact's text: the run, the report's address, each class's published version and
    the metrics table (model, time-stretch baseline, gain, oracle per metric) of
    :func:`lrprop.evaluation.report.metrics_table`."""
    from lrprop.evaluation.report import metrics_table

    table = metrics_table(summary["per_class"], dataset=str(summary["dataset"] or ""), style="markdown")
    models = [f"- {action}: `{uri}`" for action, uri in sorted(summary.get("models", {}).items())]
    lines = [f"# {run_name}: {summary['dataset']}", f"Report: [{report_uri}]({report_uri})", ""]
    return "\n".join([*lines, *(["Published models:", *models, ""] if models else []), table])


@flow(name="ingest")
def ingest_flow(config: dict, store_uri: str) -> str:
    """Ingest the configured data set; returns its version."""
    return ingest_task(config, store_uri)


@flow(name="train")
def train_flow(config: dict, store_uri: str, dataset: str, version: str, run_name: str) -> dict:
    """Train every action class of a data-set version, in parallel on Ray."""
    actions = list_actions(store_uri, dataset, version)
    return train_classes_task(config, store_uri, dataset, version, actions, run_name)


@flow(name="evaluate-and-publish")
def evaluate_and_publish(store_uri: str, dataset: str, version: str, checkpoints: dict, run_name: str) -> dict:
    """Evaluate trained classes, publish their embeddings and models, record the metrics."""
    return evaluate_and_publish_task(store_uri, dataset, version, checkpoints, run_name)


@flow(name="retrain-and-evaluate")
def retrain_and_evaluate(config: dict, store_uri: str, run_name: str | None = None) -> dict:
    """The whole pipeline: ingest → pretrain the backbones → train all classes → evaluate → publish.

    Args:
        config: a full config as a dict (``config_to_dict``); ``config["ray"]["address"]``
            picks the cluster (None: a local Ray).
        store_uri: the store root (local path or ``s3://…``).
        run_name: reuse a name to resume that run; default a new time-stamped name.

    Returns:
        {"run_name", "dataset_version", "backbones", "checkpoints", "metrics", "report", "published",
        "timings"}: ``backbones`` the URI of each class's pretrained backbone (none when the config
        does not pretrain), ``timings`` ingest_s, pretrain_s, train_s and evaluate_publish_s.
    """
    from lrprop.pipeline.distributed import ensure_ray

    started = time.time()
    run_name = _claimed_run(run_name)
    store_uri = _usable_store(store_uri)
    _steps_fit_here(config)
    dataset = config["dataset"]["name"]
    # The same tasks as the separate flows, called from here rather than as subflows: each
    # subflow costs about a second of Prefect bookkeeping. Ray starts while ingestion runs, in
    # this thread: a local Ray started from a thread that then ends lost its processes here.
    ingesting = ingest_task.submit(config, store_uri)
    ensure_ray(config["ray"]["address"])
    version = ingesting.result()
    ingested = time.time()
    actions = list_actions(store_uri, dataset, version)
    # Pretrained as their own Ray actors and published, the backbones are given to training as
    # model.pretrained (frozen when pretrain.freeze_backbone): the same models as pretraining
    # inside each class's Train job, with the weights versioned and named by the run.
    backbones = {}
    if pretraining := _pretraining(config, actions, store_uri, run_name):
        done = pretrain_task(config, store_uri, dataset, version, pretraining, run_name)
        backbones = {a: r["uri"] for a, r in done.items()}
        config = config_to_dict(with_pretrained_backbones(config_from_dict(config), backbones))
    pretrained = time.time()
    checkpoints = train_classes_task(config, store_uri, dataset, version, actions, run_name)
    trained = time.time()
    evaluated = evaluate_and_publish_task(store_uri, dataset, version, checkpoints, run_name)
    timings = {
        "ingest_s": ingested - started,
        "pretrain_s": pretrained - ingested,
        "train_s": trained - pretrained,
        "evaluate_publish_s": time.time() - trained,
    }
    return {
        "run_name": run_name,
        "dataset_version": version,
        "backbones": backbones,
        "checkpoints": checkpoints,
        "timings": timings,
        **evaluated,
    }


@flow(name="pretrain")
def pretrain_flow(config: dict, store_uri: str, actions: list[str] | None = None, run_name: str | None = None) -> dict:
    """Ingest as :func:`retrain_and_evaluate` does, then pretrain and publish the backbones of
    ``actions`` (default: every class of the data set).

    ``run_name`` (default: a new one) records each backbone as it is published
    (:func:`pretrain_recorded`): the task's retry, and a pretraining started again under that
    name, pretrain only the classes not yet published.

    Returns:
        {"store" (made absolute), "dataset", "dataset_version", "actions" (every class of the
        data-set version), "run_name", "backbones": {action: what :func:`pretrain_task` gives}}.

    Raises:
        ValueError: an action the data-set version lacks.
        ConfigError: a class whose config does not pretrain (``pretrain.steps: 0``,
            ``model.pretrained`` given or ``model.train_from: none``).
    """
    from lrprop.pipeline.distributed import ensure_ray

    run_name = _claimed_run(run_name)
    store_uri = _usable_store(store_uri)
    dataset = config["dataset"]["name"]
    ingesting = ingest_task.submit(config, store_uri)
    ensure_ray(config["ray"]["address"])  # in this thread, as retrain_and_evaluate does
    version = ingesting.result()
    known = list_actions(store_uri, dataset, version)
    actions = list(dict.fromkeys(actions)) if actions else known
    unknown = sorted(set(actions) - set(known))
    if unknown:
        raise ValueError(f"{dataset} {version} has no training videos of {unknown}; its classes are {known}")
    skipped = sorted(set(actions) - set(_pretraining(config, actions)))
    if skipped:
        raise ConfigError(
            f"{skipped} would not pretrain under this config: pretrain.steps is 0, model.pretrained is given "
            "or model.train_from is none"
        )
    done = pretrain_task(config, store_uri, dataset, version, actions, run_name)
    return {
        "store": store_uri,
        "dataset": dataset,
        "dataset_version": version,
        "actions": known,
        "run_name": run_name,
        "backbones": done,
    }


@flow(name="tune")
def tune_flow(config: dict, store_uri: str, action: str | None = None, run_name: str | None = None) -> dict:
    """Search T, α, β for one class (default: the first) with ASHA; records the best in the store."""
    from lrprop.pipeline.tune import tune_class

    run_name = _claimed_run(run_name)
    store_uri = _usable_store(store_uri)
    dataset = config["dataset"]["name"]
    version = ingest_flow(config, store_uri)
    action = action or list_actions(store_uri, dataset, version)[0]
    best = tune_class(config_from_dict(config), store_uri, dataset=dataset, version=version, action=action, run_name=run_name)
    create_markdown_artifact(
        f"# tune {run_name} {action}\n\nbest: `{best['params']}`\n\n{best['metric']} = {best['value']:.4f}\n\n"
        f"config: {best['config_uri']}",
        key=f"tune-{run_name.lower().replace('_', '-').replace('.', '-')}",
    )
    return best
