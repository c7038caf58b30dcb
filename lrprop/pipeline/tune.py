"""Ray Tune over T, α, β for one action class, with ASHA early stopping (METHOD.md §4).

Each trial is a function trainable that builds the class's TorchTrainer (:mod:`lrprop.pipeline.distributed`)
with the trial's T, α, β and calls ``fit()``; Ray Train reports each epoch's metrics, with the
validation metrics, to Tune through ``TuneReportCallback``. The trial itself holds no CPU (its
Train workers do), which is what keeps a trial that waits on its workers from starving them.

Trap (issue 12): a trial's Train run reserves its workers' CPUs in a placement group of its
own, which outlives the trial unless something removes it. Tune ends every trial by removing
the trial's own placement group, which kills the trial and its Train controller at once (even a
trial that ran all its epochs: ASHA stops it on its last result), so the controller never
removes its group; only Ray Train's detached ``PlacementGroupCleaner`` does. Its monitor thread
died when another Ray ran on the machine (``lrprop.pipeline.distributed.init_local_ray`` says why and
fixes it), and then the group held its CPU until the search ended and the next trial waited
for ever. In depth: the workers name their group in every report and the search removes what
the cleaner left once the trial's run has gone (:class:`_TrialPlacementGroups`), and a trial whose
workers still cannot start within ``ray.start_timeout_s`` fails, naming what holds the cluster.

The best trial is recorded in the store under ``<store>/tune/<run_name>/<action>/``:
``best.json`` (parameters, metrics, checkpoint) and ``best.yaml``, a complete config that a
normal run takes as it is: ``lrprop run --config best.yaml``. The backbone the trials share is
a version of the store's backbones (``<store>/backbones/<dataset>/<action>/<version>/``,
:mod:`lrprop.registry.backbones`), which ``best.yaml`` names.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import yaml

from lrprop import store
from lrprop.config import Config, config_from_dict, config_to_dict
from lrprop.data.parquet import ClassData
from lrprop.registry.layout import tune_class_dir, tune_dir

__all__ = ["TUNE_METRIC", "apply_params", "frame_choices", "search_space", "tune_class"]

log = logging.getLogger(__name__)

TUNE_METRIC = "val_dtw_accuracy"
_STOP_WAIT_S = 60.0  # how long a trial whose Train run ended waits for Tune to stop it


def frame_choices(shortest_video: int, step: int = 20, largest: int = 240) -> list[int]:
    """T ∈ {20, 40, 60, …} up to the class's shortest video (at least one choice)."""
    choices = [t for t in range(step, largest + 1, step) if t <= shortest_video]
    return choices or [max(2, shortest_video)]


def search_space(shortest_video: int) -> dict:
    """METHOD.md §4: T from :func:`frame_choices`, α log-uniform [1e-4, 1e-1], β log-uniform [0.1, 3.2]."""
    from ray import tune  # Ray

    return {
        "frames_per_view": tune.choice(frame_choices(shortest_video)),
        "alpha": tune.loguniform(1e-4, 1e-1),
        "beta": tune.loguniform(0.1, 3.2),
    }


def apply_params(config: Config, params: dict) -> Config:
    """``config`` with a trial's T, α, β."""
    overrides = config_to_dict(config)
    overrides["data"]["frames_per_view"] = int(params["frames_per_view"])
    overrides["loss"]["alpha"] = float(params["alpha"])
    overrides["loss"]["beta"] = float(params["beta"])
    overrides["ray"]["validate_every"] = 1  # ASHA needs the metric in every result
    return config_from_dict(overrides)


def _trial(params: dict, *, base: dict, data: ClassData, run_name: str) -> None:
    """One Tune trial: a Ray Train job of this class with the trial's parameters."""
    from ray import tune  # Ray
    from ray.tune.integration.ray_train import TuneReportCallback  # Ray

    from lrprop.pipeline.distributed import fit, make_trainer

    config = apply_params(config_from_dict(base), params)
    trial = tune.get_context().get_trial_id()  # Ray
    trainer = make_trainer(
        config,
        data,
        run_name=f"{run_name}-{trial}",
        validate=True,
        callbacks=[TuneReportCallback()],  # Ray: each Train report becomes a Tune result
        name_placement_group=True,  # for _TrialPlacementGroups
    )
    fit(trainer, config, f"trial {trial}")  # Ray
    # Ray 2.60 trap (seen here as a trial RUNNING for ever with no Train run left): if this
    # function returns while Train's last report is still on its way to Tune (through
    # TuneReportCallback's queue), the trial's main thread blocks for ever putting that report
    # behind the end-of-trial marker this return puts first. Tune stops the trial when it sees
    # the last epoch's result (ASHA's max_t is the epochs), which ends this thread with the
    # trial: wait for that, and return only if it does not come.
    time.sleep(_STOP_WAIT_S)


class _TrialPlacementGroups:
    """Removes the Train placement groups the search's trials leave (a Tune callback).

    The workers name their group in every result (``PLACEMENT_GROUP_KEY``; a restarted worker
    group names its new one). A trial's group is removed once the trial has ended and no live
    actor is left in it, as Ray Train's own cleaner waits for the controller's death: while the
    trial's Train controller lives, removing its workers' group makes it restart them in a new
    group (``ray.max_failures``), which no result names. Such a group, and any other Train worker
    group no trial named (``worker_bundles``, created after the search started, CREATED and with
    no live actor at two looks ``poll_s`` apart), is removed as a stray: that was how a search
    on a loaded machine still left a group when a fixed grace after a trial's end came before
    its controller's death (stop 21's CI). Ray Train's cleaner usually removes a group within a
    second or two; this catches the ones it misses. :meth:`finish` waits for the last runs to go
    when the search returns, and removes what is left.
    """

    def __init__(
        self,
        worker_bundles: list[dict] | None = None,
        *,
        grace_s: float = 2.0,
        force_after_s: float = 120.0,
        poll_s: float = 2.0,
    ):
        from ray import tune  # Ray

        from lrprop.pipeline.distributed import live_placement_groups

        self.worker_bundles = worker_bundles  # a Train worker group's, e.g. [{"CPU": 1.0}]; None: no strays
        self.grace_s = grace_s  # after a trial's end, before the first look: Ray Train's cleaner usually wins
        self.force_after_s = force_after_s  # a trial's groups are removed then, runs in them or not
        self.poll_s = poll_s  # between two looks
        self.groups: dict[str, set[str]] = {}  # trial id -> its Train placement groups
        self.ended: dict[str, float] = {}  # trial id -> when it ended
        self.removed: list[str] = []
        self._before = set(live_placement_groups()) if worker_bundles else set()  # not the search's
        self._idle: dict[str, float] = {}  # stray -> when it was first seen with no live actor
        self._looked = float("-inf")
        outer = self

        class Callback(tune.Callback):  # Ray
            def on_trial_result(self, iteration, trials, trial, result, **info):
                from lrprop.pipeline.distributed import PLACEMENT_GROUP_KEY

                if result.get(PLACEMENT_GROUP_KEY):
                    outer.groups.setdefault(trial.trial_id, set()).add(result[PLACEMENT_GROUP_KEY])

            def on_trial_complete(self, iteration, trials, trial, **info):
                outer.ended[trial.trial_id] = time.monotonic()

            def on_trial_error(self, iteration, trials, trial, **info):
                outer.ended[trial.trial_id] = time.monotonic()

            def on_step_end(self, iteration, trials, **info):
                outer.sweep()

        self.callback = Callback()

    def _strays(self, live: dict[str, dict]) -> list[str]:
        """Live Train worker groups of the search's shape that no trial named."""
        if not self.worker_bundles:
            return []
        known = self._before.union(*self.groups.values())  # older than the search, or a trial's
        return [
            pg
            for pg, info in live.items()
            if pg not in known and info["state"] == "CREATED" and info["bundles"] == self.worker_bundles
        ]

    def sweep(self, *, search_ended: bool = False, force: bool = False) -> bool:
        """One look, at most every ``poll_s`` during the search: remove the groups of ended
        trials that no live actor is in (those of trials that ended ``force_after_s`` ago, or
        all with ``force``, whatever is in them), and the strays idle at two looks. A trial's
        groups wait ``grace_s`` after its end; at the search's end (``search_ended``) all are due.
        Returns whether a trial's group or a stray is left after this look (True when not looking)."""
        from lrprop.pipeline.distributed import live_placement_groups, placement_group_members, remove_placement_groups

        now = time.monotonic()
        if not search_ended and now - self._looked < self.poll_s:
            return True
        self._looked = now
        due = [t for t, ended in self.ended.items() if search_ended or now - ended >= self.grace_s]
        live = live_placement_groups()
        for trial in due:  # a group Ray Train's cleaner removed needs nothing
            self.groups[trial] = {pg for pg in self.groups.get(trial, ()) if pg in live}
        strays = self._strays(live)
        members = None  # unknown: nothing is removed unless forced
        if strays or any(self.groups[t] for t in due):
            try:
                members = placement_group_members(timeout_s=5.0)
            except Exception as exc:  # noqa: BLE001 - asked again at the next look; forced in the end
                log.debug("the State API did not answer (%s): no group removed at this look", exc)
        when = "the search ended" if search_ended else "a trial ended"
        for trial in due:
            forced = force or now - self.ended[trial] >= self.force_after_s
            gone = {pg for pg in self.groups[trial] if forced or (members is not None and pg not in members)}
            removed = remove_placement_groups(gone)
            self.groups[trial] -= gone
            if removed:
                inside = {pg: members[pg] for pg in removed if members and pg in members}
                still = f", with {inside} still in them" if inside else ""
                # Empty groups that Ray Train's cleaner had not yet removed are the usual end of
                # a trial (see the module), not worth a warning in a normal search's output
                log.log(
                    logging.WARNING if inside else logging.INFO,
                    "%s: trial %s's Train placement groups %s were left%s: removed them",
                    when,
                    trial,
                    removed,
                    still,
                )
                self.removed += removed
            if not self.groups[trial]:
                del self.groups[trial], self.ended[trial]
        idle = {pg for pg in strays if members is not None and pg not in members}
        self._idle = {pg: self._idle.get(pg, now) for pg in idle}
        twice = [pg for pg, first in self._idle.items() if now - first >= self.poll_s]
        removed = remove_placement_groups(twice)
        if removed:
            log.warning(
                "%s: Train placement groups %s that no trial named had no live actor for %g s (restarted "
                "after their trial ended, their controller now gone): removed them",
                when,
                removed,
                self.poll_s,
            )
            self.removed += removed
        for pg in twice:
            del self._idle[pg]
        return bool(self.groups) or bool(set(strays) - set(twice))

    def finish(self, timeout_s: float = 60.0) -> None:
        """At the end of the search: wait up to ``timeout_s`` for the trials' runs to go (Tune
        has stopped the trials; their Train controllers and workers die with them), removing
        each group as its run goes, then remove the trials' groups still left."""
        started = time.monotonic()
        for trial in self.groups:
            self.ended.setdefault(trial, started)  # a trial Tune had not reported ended
        left = self.sweep(search_ended=True)
        while left and time.monotonic() - started < timeout_s:
            time.sleep(self.poll_s)
            left = self.sweep(search_ended=True)
        self.sweep(search_ended=True, force=True)


def _raise_start_timeouts(results) -> None:
    """Fail the search if a trial's workers could not start: the other trials' results were
    not obtained under the resources the search asked for, and the cause needs a person."""
    from lrprop.pipeline.distributed import WorkerStartTimeout

    # A trial's exception comes back as Ray's RayTaskError, a subclass of the raised class
    # whose ``cause`` is the exception itself (its own message, without the traceback).
    stuck = [str(getattr(r.error, "cause", r.error)) for r in results if isinstance(r.error, WorkerStartTimeout)]
    if stuck:
        raise WorkerStartTimeout(f"{len(stuck)} of {len(results)} trials could not start their workers: {stuck[0]}")


def _with_shared_backbone(config: Config, data: ClassData, logger) -> Config:
    """``config`` with the class's backbone pretrained once, for every trial of the search.

    The search varies T, α and β, none of which the pretraining reads, and the default route
    freezes the pretrained backbone; without this each trial repeated the same pretraining
    (issue 12: about 6 minutes a trial on 2 cores). The backbone is published to the store's
    backbones (:func:`lrprop.pipeline.distributed.pretrain_class`) and every trial gets it as
    ``model.pretrained`` with ``model.train_from: none``, which trains draw for draw as a trial
    that pretrained itself (:func:`lrprop.training.train.pretrained_backbone`), so ``best.yaml`` names it
    too. A run that would not pretrain and freeze is left as it is.
    """
    from lrprop.registry.backbones import with_pretrained_backbones
    from lrprop.training.train import pretrains

    if not (pretrains(config) and config.pretrain.freeze_backbone):
        return config
    from lrprop.pipeline.distributed import pretrain_class

    logger.info("%s: pretraining the backbone once for every trial (%d steps)", data.action, config.pretrain.steps)
    done = pretrain_class(config, data, what="search's backbone pretraining")
    logger.info("%s: pretrained the backbone for the search: %s", data.action, done["uri"])
    return with_pretrained_backbones(config, {data.action: done["uri"]}).for_class(data.action)


def tune_class(
    config: Config,
    store_uri: str,
    *,
    dataset: str,
    version: str,
    action: str,
    run_name: str,
    progress_logger=None,
) -> dict:
    """Search T, α, β for ``action`` and record the best trial in the store.

    ``progress_logger`` (e.g. Prefect's run logger; default this module's logger) gets each
    trial's epoch and metric every 30 s and the count of trials ended with the best so far
    (:class:`lrprop.pipeline.progress.SearchProgress`; a bar of trials on a terminal too).

    Returns:
        {"params", "metric", "value", "metrics", "checkpoint", "config_uri", "trials"}.
    """
    from functools import partial

    from ray import tune  # Ray
    from ray.tune.schedulers import ASHAScheduler  # Ray

    from lrprop.pipeline.distributed import ensure_ray, worker_resources
    from lrprop.pipeline.progress import SearchProgress

    ensure_ray(config.ray.address)
    store_uri = store.absolute(store_uri)  # the trials and workers run in other directories
    data = ClassData(store_uri, dataset, version, action)
    config = config.for_class(action)  # search around the class's own settings
    source = data.videos("train")
    shortest = min(source.num_frames(i) for i in range(len(source)))
    progress_logger = progress_logger or log
    config = _with_shared_backbone(config, data, progress_logger)
    trainable = partial(_trial, base=config_to_dict(config), data=data, run_name=run_name)
    storage_path, storage_filesystem = store.ray_storage(tune_dir(store_uri, run_name))
    placement_groups = _TrialPlacementGroups([worker_resources(config)] * config.ray.num_workers)
    shown = SearchProgress(
        action, trials=config.ray.tune_samples, epochs=config.optim.epochs, metric=TUNE_METRIC, logger=progress_logger
    )
    tuner = tune.Tuner(  # Ray
        # No CPU for the trial itself: its Train workers take theirs (a trial holding one while
        # waiting for them deadlocks on a small machine).
        tune.with_resources(trainable, {"cpu": 0, "memory": 256 * 1024**2}),
        param_space=search_space(shortest),
        tune_config=tune.TuneConfig(
            metric=TUNE_METRIC,
            mode="max",
            scheduler=ASHAScheduler(
                max_t=config.optim.epochs, grace_period=min(config.ray.tune_grace_epochs, config.optim.epochs)
            ),
            num_samples=config.ray.tune_samples,
            max_concurrent_trials=config.ray.tune_max_concurrent,
        ),
        run_config=tune.RunConfig(
            name=action,
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            callbacks=[placement_groups.callback, shown.callback],
            verbose=config.ray.tune_verbose,
        ),
    )
    try:
        results = tuner.fit()  # Ray
    except BaseException:
        shown.close(failed=True)  # Tune does not end its callbacks when the search fails
        raise
    finally:
        placement_groups.finish()
    _raise_start_timeouts(results)
    best = results.get_best_result(metric=TUNE_METRIC, mode="max")
    params = {k: (int(v) if k == "frames_per_view" else float(v)) for k, v in best.config.items()}
    metrics = {k: float(v) for k, v in (best.metrics or {}).items() if isinstance(v, (int, float, np.floating))}
    out = tune_class_dir(store_uri, run_name, action)
    best_config = config_to_dict(apply_params(config, params))
    best_config["ray"]["validate_every"] = config.ray.validate_every
    header = f"# lrprop run --config best.yaml\n# The best of {len(results)} trials of tune run {run_name}, class {action}.\n"
    store.write_bytes(store.join(out, "best.yaml"), (header + yaml.safe_dump(best_config, sort_keys=False)).encode())
    record = {
        "params": params,
        "metric": TUNE_METRIC,
        "value": metrics.get(TUNE_METRIC, float("nan")),
        "metrics": metrics,
        "checkpoint": (best.metrics or {}).get("checkpoint_path"),
        "config_uri": store.join(out, "best.yaml"),
        "trials": len(results),
        "stopped_early": sum(1 for r in results if r.metrics and r.metrics.get("epoch", 0) + 1 < config.optim.epochs),
    }
    store.write_json(store.join(out, "best.json"), record)
    return record
