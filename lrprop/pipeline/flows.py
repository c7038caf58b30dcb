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

import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from lrprop import store
from lrprop.config import ConfigError, check_for_a_run, config_from_dict, config_to_dict
from lrprop.failures import kind_of
from lrprop.names import check_name
from lrprop.pipeline.flow_runs import claim_run
from lrprop.registry.backbones import with_pretrained_backbones
from lrprop.registry.layout import embeddings_collection, run_backbones_record, run_evaluation_dir, run_ray_class_dir

__all__ = [
    "evaluate_and_publish",
    "ingest_flow",
    "pretrain_flow",
    "promote_published",
    "retrain_and_evaluate",
    "train_flow",
    "tune_flow",
]

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

    # the count of videos ingested: a bar on a terminal, a line every 30 s in the flow run's logs
    return dataset_version(config_from_dict(config), store_uri, progress=sys.stderr.isatty(), progress_logger=get_run_logger())


@task(name="list-actions", retry_condition_fn=_transient, **STORAGE_RETRIES)
def list_actions(store_uri: str, dataset: str, version: str) -> list[str]:
    """The action classes of a data-set version that have training videos."""
    manifest = store.read_manifest(store.datasets_collection(store_uri, dataset), version)
    return sorted(a for a, splits in manifest["counts"].items() if "train" in splits)


@task(name="unchanged-classes", retry_condition_fn=_transient, **STORAGE_RETRIES)
def unchanged_classes(
    config: dict, store_uri: str, dataset: str, version: str, actions: list[str], run_name: str | None = None
) -> dict:
    """Each class's training fingerprint, and which classes it leaves nothing to train for.

    Returns:
        {"fingerprints": {action: fingerprint}, "unchanged": {action: {"version", "uri", "run"}}}:
        ``unchanged`` the classes whose latest published version was trained on the same data,
        config and code (:mod:`lrprop.registry.fingerprint`) by another run than ``run_name``:
        a run started again resumes and reports its own classes (what it published stands,
        :mod:`lrprop.registry.run_published`).
    """
    from lrprop.registry.fingerprint import training_fingerprint, unchanged_version

    parsed = config_from_dict(config)
    dataset_manifest = store.read_manifest(store.datasets_collection(store_uri, dataset), version)
    fingerprints = {a: training_fingerprint(parsed.for_class(a), dataset_manifest) for a in actions}
    unchanged = {}
    for action, fingerprint in fingerprints.items():
        manifest = unchanged_version(store_uri, dataset, action, fingerprint)
        if manifest is not None and manifest["model"]["meta"].get("run") != run_name:
            uri = store.join(embeddings_collection(store_uri, dataset, action), manifest["version"])
            unchanged[action] = {"version": manifest["version"], "uri": uri, "run": manifest["model"]["meta"].get("run")}
    return {"fingerprints": fingerprints, "unchanged": unchanged}


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
    record = run_backbones_record(store_uri, run_name)
    recorded = store.read_json(record) if store.exists(record) else {}
    return [a for a in chosen if a in recorded or not store.exists(run_ray_class_dir(store_uri, run_name, a))]


@task(name="pretrain", retry_condition_fn=_transient, **STORAGE_RETRIES)
def pretrain_task(
    config: dict, store_uri: str, dataset: str, version: str, actions: list[str], run_name: str | None = None
) -> dict:
    """Pretrain each class's backbone as a Ray actor, all at once, and publish it to the store's
    backbones (:func:`pretrain_recorded`); returns {action: {"uri", "version", "steps",
    "final_loss", "wall_s", "reused"}}."""
    # each class's pretraining step, loss and ETA in the flow run's logs
    results = pretrain_recorded(config, store_uri, dataset, version, actions, run_name, progress_logger=get_run_logger())
    get_run_logger().info("backbones %s", {a: r["uri"] for a, r in results.items()})
    return results


def pretrain_recorded(
    config: dict,
    store_uri: str,
    dataset: str,
    version: str,
    actions: list[str],
    run_name: str | None = None,
    progress_logger=None,
) -> dict:
    """What :func:`pretrain_task` does (:func:`lrprop.pipeline.distributed.pretrain_classes`;
    ``progress_logger`` gets each class's pretraining step, loss and ETA).

    With a ``run_name`` each URI is recorded in ``<store>/runs/<run_name>/backbones.json`` as
    soon as its class is published, and a run started again (a resume, or this task's retry
    after another class failed) reuses those that its config would pretrain the same way on
    the same data: pretraining anew would name other weights and its checkpoints would not resume.
    """
    import threading

    from lrprop.pipeline.distributed import pretrain_classes
    from lrprop.registry.backbones import published_as

    parsed = config_from_dict(config)
    record = run_backbones_record(store_uri, run_name) if run_name else None
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
            progress_logger=progress_logger,
        )
    return {**reused, **{a: {**r, "reused": False} for a, r in done.items()}}


# A retry after the store failed to answer resumes each class from its stored checkpoints (a
# finished class trains no further): what the Ray Train controller does not retry itself.
@task(name="train-classes", retry_condition_fn=_transient, **STORAGE_RETRIES)
def train_classes_task(config: dict, store_uri: str, dataset: str, version: str, actions: list[str], run_name: str) -> dict:
    """One Ray Train job per class, all at once; returns {action: checkpoint URI} and timings."""
    from lrprop.pipeline.distributed import train_classes

    runs = train_classes(
        config_from_dict(config),
        store_uri,
        dataset=dataset,
        version=version,
        actions=actions,
        run_name=run_name,
        progress_logger=get_run_logger(),  # each class's epoch, loss and ETA in the flow run's logs
    )
    get_run_logger().info("trained %s", {a: r.checkpoint_uri for a, r in runs.items()})
    return {a: {"checkpoint": r.checkpoint_uri, "started": r.started, "finished": r.finished} for a, r in runs.items()}


@task(name="evaluate-and-publish", retry_condition_fn=_transient, **STORAGE_RETRIES)
def evaluate_and_publish_task(
    store_uri: str,
    dataset: str,
    version: str,
    checkpoints: dict,
    run_name: str,
    promotion: dict | None = None,
    unchanged: dict | None = None,
) -> dict:
    """Export each class's model, evaluate it, publish its embeddings; write the report to the
    store; move the ``promotion`` alias of each class through the gate.

    Args:
        checkpoints: {action: {"checkpoint": URI, "fingerprint": what it was trained under (optional)}}.
        promotion: the config's ``promotion`` section (None: the defaults; alias null: no promotion).
        unchanged: {action: {"version", "uri", …}} the classes the run did not retrain: recorded
            in the run's ``published.json`` (marked ``"unchanged": true``) and promoted as the
            run's own versions are (an alias set up after the version was published, or rolled
            back by hand, is decided as for a new version).

    Idempotent per (run, class): a class this run already published from the same checkpoint (a
    retry after a storage error, the run started again) keeps that version, and nothing new is
    published for it (:mod:`lrprop.registry.run_published`).

    Returns:
        {"metrics", "report" (URIs; None with no checkpoint), "published": {action: version},
        "promotions": {action: move}} (:func:`lrprop.registry.aliases.promote`).
    """
    from lrprop.evaluation.evaluate import evaluate_models
    from lrprop.pipeline.distributed import export_checkpoint
    from lrprop.registry.embeddings import publish_embeddings
    from lrprop.registry.run_published import already_published, read_published, record_published

    unchanged = unchanged or {}
    recorded = read_published(store_uri, run_name)
    if unchanged:
        for action, u in unchanged.items():
            recorded[action] = {"dataset": dataset, "version": u["version"], "uri": u["uri"], "unchanged": True}
        record_published(store_uri, run_name, recorded)
    published = {}
    logger = get_run_logger()

    def publish(action, evaluation, meta, model_dir) -> str:
        checkpoint = checkpoints[action]["checkpoint"]
        manifest = already_published(store_uri, dataset, action, meta, recorded.get(action))
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

    summary, metrics_uri, report_uri = None, None, None
    if checkpoints:
        dataset_manifest = store.read_manifest(store.datasets_collection(store_uri, dataset), version)
        out = run_evaluation_dir(store_uri, run_name)
        metrics_uri, report_uri = store.join(out, "metrics.json"), store.join(out, "report.html")
        with tempfile.TemporaryDirectory(prefix="lrprop-eval-") as tmp:
            model_dirs = {}
            for action, info in sorted(checkpoints.items()):
                meta = {
                    "dataset": dataset,
                    "dataset_version": version,
                    "action": action,
                    "run": run_name,
                    "checkpoint": info["checkpoint"],
                    "fingerprint": info.get("fingerprint"),
                }
                model_dirs[action] = export_checkpoint(info["checkpoint"], Path(tmp) / action / "model", meta)
            summary = evaluate_models(
                model_dirs,
                store_uri,
                Path(tmp) / "evaluation",
                on_class=publish,
                progress_logger=logger,  # each class's count of embedded videos
                bars=sys.stderr.isatty(),
            )
            for name, uri in (("metrics.json", metrics_uri), ("report.html", report_uri)):
                store.write_bytes(uri, (Path(tmp) / "evaluation" / name).read_bytes())
    versions = {**{a: u["version"] for a, u in unchanged.items()}, **published}
    promotions = promote_published(store_uri, dataset, versions, run_name, promotion)
    _metrics_artifact(summary, report_uri, run_name, promotions=promotions, unchanged=unchanged)
    return {"metrics": metrics_uri, "report": report_uri, "published": published, "promotions": promotions}


def promote_published(store_uri: str, dataset: str, versions: dict, run_name: str, promotion: dict | None) -> dict:
    """Move the ``promotion`` alias of each class to the version ``versions`` names, through the
    gate (:func:`lrprop.registry.aliases.promote`); returns {action: move}, {} with no alias."""
    from lrprop.config import PromotionConfig
    from lrprop.registry.aliases import promote, who

    gate = PromotionConfig(**promotion) if promotion is not None else PromotionConfig()
    if not gate.alias:
        return {}
    logger = get_run_logger()
    moves = {}
    for action, version in sorted(versions.items()):
        try:
            move = promote(store_uri, dataset, action, version, gate, by=f"run {run_name} ({who()})", automatic=True)
        except (ValueError, KeyError) as exc:  # a damaged alias file: the class's version stays published, its alias as it was
            move = {"alias": gate.alias, "moved": False, "from": None, "to": version, "why": f"not promoted: {exc}"}
            logger.error("%s: %s", action, move["why"])
        moves[action] = move
        verb = "moved" if move["moved"] else "not moved"
        logger.info("%s: %s %s to %s: %s", action, gate.alias, verb, version, move["why"])
    return moves


def _metrics_artifact(summary: dict | None, report_uri: str | None, run_name: str, **lines) -> None:
    create_markdown_artifact(
        _metrics_markdown(summary, report_uri, run_name, **lines),
        key=f"metrics-{run_name.lower().replace('_', '-').replace('.', '-')}",
    )


def _metrics_markdown(
    summary: dict | None, report_uri: str | None, run_name: str, *, promotions: dict | None = None, unchanged: dict | None = None
) -> str:
    """The artifact's text: the run, the report's address, each class's published version, the
    classes it did not retrain (unchanged), where each alias moved or why not, and the metrics
    table (model, time-stretch baseline, gain, oracle per metric) of
    :func:`lrprop.evaluation.report.metrics_table`. ``summary`` None: the run trained nothing."""
    from lrprop.evaluation.report import metrics_table

    dataset = summary["dataset"] if summary else ""
    lines = [f"# {run_name}: {dataset}".rstrip(": "), *([f"Report: [{report_uri}]({report_uri})"] if report_uri else []), ""]
    models = [f"- {action}: `{uri}`" for action, uri in sorted((summary or {}).get("models", {}).items())]
    if models:
        lines += ["Published models:", *models, ""]
    if unchanged:
        lines += ["Not retrained (data, config and code unchanged since the version named; `--force` retrains):"]
        lines += [*(f"- {action}: `{u['uri']}`" for action, u in sorted(unchanged.items())), ""]
    if promotions:
        lines += ["Promotion:"]
        for action, m in sorted(promotions.items()):
            if m["moved"]:
                lines.append(f"- {action}: {m['alias']} moved to `{m['to']}`: {m['why']}")
            else:
                lines.append(f"- {action}: {m['alias']} not moved to `{m['to']}` (stays at {m['from'] or 'unset'}): {m['why']}")
        lines.append("")
    if summary:
        lines.append(metrics_table(summary["per_class"], dataset=str(dataset or ""), style="markdown"))
    return "\n".join(lines)


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
def evaluate_and_publish(
    store_uri: str, dataset: str, version: str, checkpoints: dict, run_name: str, promotion: dict | None = None
) -> dict:
    """Evaluate trained classes, publish their embeddings and models, promote them through the
    gate, record the metrics."""
    return evaluate_and_publish_task(store_uri, dataset, version, checkpoints, run_name, promotion)


@flow(name="retrain-and-evaluate")
def retrain_and_evaluate(config: dict, store_uri: str, run_name: str | None = None, force: bool = False) -> dict:
    """The whole pipeline: ingest → pretrain the backbones → train all classes → evaluate →
    publish → promote through the gate.

    A class whose latest published version was trained on the same data, config and code
    (:mod:`lrprop.registry.fingerprint`) is not trained again unless ``force``: its version
    stands, and goes through the gate as the run's own would.

    Args:
        config: a full config as a dict (``config_to_dict``); ``config["ray"]["address"]``
            picks the cluster (None: a local Ray).
        store_uri: the store root (local path or ``s3://…``).
        run_name: reuse a name to resume that run; default a new time-stamped name.
        force: train every class, unchanged or not.

    Returns:
        {"run_name", "dataset_version", "backbones", "checkpoints", "metrics", "report", "published",
        "unchanged", "promotions", "timings"}: ``backbones`` the URI of each class's pretrained
        backbone (none when the config does not pretrain); ``unchanged`` {action: {"version",
        "uri", "run"}} the classes not retrained; ``promotions`` {action: move}
        (:func:`lrprop.registry.aliases.promote`); ``metrics`` and ``report`` None when every
        class was unchanged; ``timings`` ingest_s, pretrain_s, train_s and evaluate_publish_s.
    """
    from lrprop.pipeline.distributed import ensure_ray

    started = time.time()
    check_for_a_run(config_from_dict(config))  # before anything is claimed or trained
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
    # Before pretraining: the fingerprint is of the config the user gave, not of the backbone
    # URIs the pretraining stage would name (new ones each run).
    known = unchanged_classes(config, store_uri, dataset, version, actions, run_name)
    unchanged = {} if force else known["unchanged"]
    logger = get_run_logger()
    for action, u in sorted(unchanged.items()):
        logger.info("%s: not retrained: data, config and code are those of %s (--force retrains)", action, u["uri"])
    to_train = [a for a in actions if a not in unchanged]
    # Pretrained as their own Ray actors and published, the backbones are given to training as
    # model.pretrained (frozen when pretrain.freeze_backbone): the same models as pretraining
    # inside each class's Train job, with the weights versioned and named by the run.
    backbones = {}
    if pretraining := _pretraining(config, to_train, store_uri, run_name):
        done = pretrain_task(config, store_uri, dataset, version, pretraining, run_name)
        backbones = {a: r["uri"] for a, r in done.items()}
        config = config_to_dict(with_pretrained_backbones(config_from_dict(config), backbones))
    pretrained = time.time()
    checkpoints = train_classes_task(config, store_uri, dataset, version, to_train, run_name) if to_train else {}
    for action, info in checkpoints.items():
        info["fingerprint"] = known["fingerprints"][action]
    trained = time.time()
    evaluated = evaluate_and_publish_task(store_uri, dataset, version, checkpoints, run_name, config.get("promotion"), unchanged)
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
        "unchanged": unchanged,
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
    best = tune_class(
        config_from_dict(config),
        store_uri,
        dataset=dataset,
        version=version,
        action=action,
        run_name=run_name,
        progress_logger=get_run_logger(),  # each trial's epoch and metric, the trials ended
    )
    create_markdown_artifact(
        f"# tune {run_name} {action}\n\nbest: `{best['params']}`\n\n{best['metric']} = {best['value']:.4f}\n\n"
        f"config: {best['config_uri']}",
        key=f"tune-{run_name.lower().replace('_', '-').replace('.', '-')}",
    )
    return best
