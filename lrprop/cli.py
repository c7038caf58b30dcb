"""The ``lrprop`` command line.

    lrprop run --config configs/smoke.yaml [--store URI] [--run-name NAME] [--ray-address ADDR] [--force] [--set k=v ...]
    lrprop pretrain --config configs/smoke.yaml [--store URI] [--action A ...] [--run-name NAME] [--ray-address ADDR] [--set k=v]
    lrprop tune --config configs/tune.yaml [--store URI] [--action A] [--ray-address ADDR]
    lrprop synth --dest URI [--config FILE] [--set synthetic.key=value ...]
    lrprop ingest {pennaction,pouring,generic,synthetic} --src URI --store STORE_URI [options]
    lrprop evaluate (--run RUN | --model MODEL_DIR) --store STORE
    lrprop align A B --model DATASET/ACTION[@VERSION|@ALIAS] [--subsequence] [--store URI] [--out DIR]   frame to frame
    lrprop phases VIDEO ... --model M --reference (train | FOLDER) [--subsequence] [--store URI] [--out DIR]   phases
    lrprop outliers --dataset D --action A [--split val] [--model M] [--store URI] [--out DIR]   unusual executions
    lrprop embeddings list --store URI                       versions and aliases of each class
    lrprop embeddings pull --store URI --dataset D --action A [--version V | --alias production] --out FILE.parquet
    lrprop embeddings promote --store URI --dataset D --action A --version V [--alias A] [--force] [--reason TEXT]
    lrprop embeddings rollback --store URI --dataset D --action A [--alias A] [--to V] [--reason TEXT]
    lrprop embeddings history --store URI --dataset D --action A [--alias A]
    lrprop backbones list --store URI
    lrprop datasets list --store URI
    lrprop store check --store URI [--no-checksums]      every version against its manifest
    lrprop store gc --store URI [--min-age 24h] [--remove]   versions without a manifest
    lrprop config --config FILE [--set key=value ...]      print the resolved configuration

``run`` is the main job, the Prefect flow ``retrain_and_evaluate`` (:mod:`lrprop.pipeline.flows`):
ingest the configured data set (the synthetic one by default, generated once), train every
action class as its own Ray Train job, all at once, evaluate them, publish each class's
embeddings and model as a new version, write ``metrics.json`` and ``report.html`` under
``<store>/runs/<run-name>/evaluation/``, and move each class's ``production`` alias to its new
version if it passes the gate (``promotion.*``). A class whose data, config and code are those
of its latest version is not trained again (``--force`` trains it). With no Prefect server and
no Ray address it all runs on this machine. The same ``--run-name`` resumes a run from its checkpoints. When the config
pretrains the backbones (``pretrain.steps`` > 0 and no ``model.pretrained``), the flow first
pretrains every class's backbone as its own Ray actor and publishes it
(``<store>/backbones/<dataset>/<action>/<version>/``), then trains from it.

Exit codes: 0 done; 1 a run failed on an error no retry can fix (its last line names it),
``store check`` found damage or the gate refused ``embeddings promote``; 2 bad input or config;
128 + N stopped by signal N (SIGTERM 143).

``pretrain`` is that stage alone: it prints each class's backbone URI and the ``--set`` flags
with which ``run`` (on the same data set) trains from them instead of pretraining again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import yaml

from lrprop.config import ConfigError, config_to_dict, load_config, with_ray_address
from lrprop.names import check_name

__all__ = ["main"]

log = logging.getLogger("lrprop")


def _cmd_run(args: argparse.Namespace) -> int:
    from lrprop.pipeline.flows import retrain_and_evaluate

    config = with_ray_address(load_config(args.config, args.set), args.ray_address)
    run_name = check_name(args.run_name, "run name") if args.run_name else None
    started = time.perf_counter()
    result = retrain_and_evaluate(config_to_dict(config), args.store, run_name, force=args.force)
    seconds = time.perf_counter() - started
    dataset = config.dataset.name
    print(f"run {result['run_name']} on {dataset} {result['dataset_version']} ({seconds:.0f} s)")
    if result["metrics"]:
        _print_metrics(json.loads(_read(result["metrics"])))
    for action, version in sorted(result["published"].items()):
        print(f"published embeddings {dataset}/{action} {version}")
    for action, u in sorted(result["unchanged"].items()):
        print(f"not retrained {dataset}/{action}: data, config and code unchanged since {u['version']} (--force retrains)")
    _print_promotions(dataset, result["promotions"])
    if result["metrics"]:
        print(f"metrics: {result['metrics']}\nreport:  {result['report']}")
    return 0


def _print_promotions(dataset: str, promotions: dict) -> None:
    for action, m in sorted(promotions.items()):
        if m["from"] == m["to"]:
            print(f"{m['alias']} of {dataset}/{action} already names {m['to']}")
        elif m["moved"]:
            print(f"promoted {dataset}/{action} {m['alias']}: {m['from'] or 'unset'} -> {m['to']} ({m['why']})")
        else:
            print(f"not promoted {dataset}/{action} {m['to']}: {m['alias']} stays at {m['from'] or 'unset'} ({m['why']})")


def _read(uri: str) -> bytes:
    from lrprop import store

    return store.read_bytes(uri)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from lrprop.pipeline.flows import pretrain_flow
    from lrprop.registry.backbones import weights_template

    config = with_ray_address(load_config(args.config, args.set), args.ray_address)
    actions = [check_name(a, "action name") for a in args.action] if args.action else None
    result = pretrain_flow(config_to_dict(config), args.store, actions, args.run_name)
    done = result["backbones"]
    print(f"pretrained {len(done)} backbones on {result['dataset']} {result['dataset_version']} (run {result['run_name']})")
    for action, r in sorted(done.items()):
        loss = f"final loss {r['final_loss']:.4f}"
        print(f"{action:<20} {r['version']}  {r['steps']} steps, {loss}, {r['wall_s']:.0f} s  {r['uri']}")
    # What `lrprop run` takes to train from them: one {action} template when they are every
    # class of the data set under one version id (one stage's classes are), else each class's
    # own values, so the classes not pretrained here keep pretraining in their run.
    command = ["lrprop", "run"] + ["--config", args.config] * bool(args.config) + ["--store", args.store]
    command += ["--ray-address", args.ray_address] * bool(args.ray_address)
    sets = list(args.set)
    versions = {r["version"] for r in done.values()}
    frozen = {a: config.for_class(a).pretrain.freeze_backbone for a in done}
    if len(versions) == 1 and set(done) == set(result["actions"]):
        sets.append(f"model.pretrained={weights_template(result['store'], result['dataset'], versions.pop())}")
        if all(frozen.values()):
            sets.append("model.train_from=none")  # as the run would have frozen them after pretraining
    else:
        for a, r in sorted(done.items()):
            sets.append(f"actions.{a}.model.pretrained={r['uri']}")
            if frozen[a]:
                sets.append(f"actions.{a}.model.train_from=none")
    command += [part for value in sets for part in ("--set", value)]
    print("to train from them:\n  " + shlex.join(command))
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from lrprop.pipeline.flows import tune_flow

    config = with_ray_address(load_config(args.config, args.set), args.ray_address)
    best = tune_flow(config_to_dict(config), args.store, args.action, args.run_name)
    print(f"best of {best['trials']} trials ({best['stopped_early']} stopped early by ASHA): {best['params']}")
    print(f"{best['metric']} = {best['value']:.4f}")
    print(f"config: {best['config_uri']}  (lrprop run --config <that file>)")
    return 0


def _at_least(low: int):
    """An argparse type: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def _base(uri: str) -> str:
    """The last part of a path or URI (a video's name in a picture's title)."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _cmd_align(args: argparse.Namespace) -> int:
    from lrprop.alignment.align import align_videos, check_subsequence_lengths
    from lrprop.alignment.models import load_model
    from lrprop.alignment.outputs import write_aligned_video, write_alignment_csv, write_cost_picture
    from lrprop.alignment.videos import open_video

    if args.subsequence:  # the lengths a header or a folder gives, before the model loads
        check_subsequence_lengths(len(open_video(args.a)), len(open_video(args.b)), args.a, args.b)
    model, config, meta = load_model(args.model, store_uri=args.store)
    print(f"model: {meta.get('published', args.model)}", flush=True)
    done = align_videos(model, config, args.a, args.b, device=args.device, subsequence=args.subsequence)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = [write_alignment_csv(out / "alignment.csv", done.alignment)]
    title = f"A: {_base(args.a)}   B: {_base(args.b)}"
    written.append(write_cost_picture(out / "alignment.png", done.alignment, done.emb_a, done.emb_b, title=title))
    if args.video != "none":
        written.append(write_aligned_video(out / f"aligned.{args.video}", done.alignment, args.a, args.b, height=args.height))
    print(done.alignment.summary())
    for path in written:
        print(f"  {path}")
    return 0


def _cmd_phases(args: argparse.Namespace) -> int:
    from lrprop.alignment.models import load_model
    from lrprop.alignment.phases import label_videos, references_from_folder, references_from_split, write_phases, write_timeline

    model, config, meta = load_model(args.model, store_uri=args.store)
    print(f"model: {meta.get('published', args.model)}", flush=True)
    limit = args.max_references or None
    # A path (with a slash: ./train for a folder named like a split) or URI is a folder; a bare
    # name is a split of the model's data set, never a folder that happens to be here
    if "/" in args.reference:
        refs = references_from_folder(model, config, args.reference, limit)
    else:
        refs = references_from_split(model, config, args.store, meta, args.reference, limit)
    print(f"references: {len(refs.names)} labelled videos, {refs.num_phases} phases", flush=True)
    labelled = label_videos(model, config, args.videos, refs, device=args.device, subsequence=args.subsequence)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = [*write_phases(out, labelled, refs), write_timeline(out / "timeline.png", labelled, refs.num_phases)]
    for v in labelled:
        shown = ", ".join(f"{s['phase']} {s['start']}-{s['end'] - 1}" for s in v.segments())
        print(f"{_base(v.name)}: {len(v.phases)} frames; phases {shown}; mean confidence {v.confidence.mean():.2f}")
    for path in written:
        print(f"  {path}")
    return 0


def _cmd_outliers(args: argparse.Namespace) -> int:
    from lrprop.alignment.models import load_model
    from lrprop.alignment.outliers import find_outliers, write_outliers

    spec = args.model or f"{args.dataset}/{args.action}"
    model, config, meta = load_model(spec, store_uri=args.store)
    print(f"model: {meta.get('published', spec)}", flush=True)
    ranked = find_outliers(
        model, config, args.store, args.dataset, args.action, split=args.split, version=args.version, device=args.device
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = write_outliers(out, ranked, top=args.top)
    print(f"{args.dataset} {ranked.version} {args.action}/{args.split}: {len(ranked.rows)} videos, the most unusual first")
    print(f"{'rank':>4}  {'video':<24} {'frames':>6} {'score':>10} {'z':>7}")
    for r in ranked.rows[: args.top]:
        print(f"{r['rank']:>4}  {r['video']:<24} {r['frames']:>6} {r['score']:>10.4g} {r['z']:>+7.2f}")
    for path in written:
        print(f"  {path}")
    return 0


def _print_metrics(summary: dict) -> None:
    """The metrics table of an evaluation summary: per metric the model, the time-stretch
    baseline, the gain over it and the label oracle; classes, their mean, the paper's numbers."""
    from lrprop.evaluation.report import metrics_table

    print(metrics_table(summary["per_class"], dataset=str(summary["dataset"] or ""), style="text"))


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from lrprop.evaluation.evaluate import evaluate_models

    with tempfile.TemporaryDirectory(prefix="lrprop-models-") as tmp:
        addresses: dict[str, str] = {}
        if args.run:
            model_dirs, addresses, out_dir = _run_models(args.run, args.store, Path(tmp))
        else:
            model_dir = Path(args.model)
            model_dirs = {model_dir.parent.name if model_dir.name == "model" else model_dir.name: model_dir}
            out_dir = model_dir / "evaluation"
        out_dir = Path(args.out) if args.out else out_dir
        print("evaluating", flush=True)
        # The report names each model by its published version, not by the temporary folder it was read into
        summary = evaluate_models(
            model_dirs,
            args.store,
            out_dir,
            on_class=lambda action, *_: addresses.get(action),
            progress_logger=log,  # with --verbose
            bars=sys.stderr.isatty(),
        )
    _print_metrics(summary)
    print(f"metrics: {out_dir / 'metrics.json'}\nreport:  {out_dir / 'report.html'}")
    return 0


def _run_models(run: str, store_uri: str, tmp: Path) -> tuple[dict[str, Path], dict[str, str], Path]:
    """The models of ``run``, as ({action: local model folder}, {action: published version's URI},
    the default output folder): the versions the run published (``<store>/runs/<run>/published.json``),
    downloaded under ``tmp`` with their checksums verified; else, for a folder of exported models
    (``<run>/<action>/model``), those."""
    from lrprop.registry.embeddings import download_published_model
    from lrprop.registry.layout import run_published_record
    from lrprop.registry.run_published import read_published

    try:
        record = run_published_record(store_uri, run)
    except ValueError:  # not a run name: a folder's path
        record = None
    recorded = read_published(store_uri, run) if record else {}
    if recorded:
        dirs = {
            action: download_published_model(store_uri, r["dataset"], action, r["version"], tmp / action)
            for action, r in sorted(recorded.items())
        }
        return dirs, {action: r["uri"] for action, r in recorded.items()}, Path("lrprop-evaluation") / run
    run_dir = Path(run)
    dirs = {p.parent.name: p for p in sorted(run_dir.glob("*/model")) if (p / "model.safetensors").is_file()}
    if not dirs:
        looked = f"nothing published under {record} (a run writes it as it publishes) and " if record else ""
        raise FileNotFoundError(f"run {run!r}: {looked}no exported models under {run_dir}/<action>/model")
    return dirs, {}, run_dir / "evaluation"


def _cmd_synth(args: argparse.Namespace) -> int:
    from lrprop.ingest.synthetic import write_synthetic

    config = load_config(args.config, args.set)
    counts = write_synthetic(args.dest, config.synthetic, threads=config.ingest.threads)
    for split, per_action in counts.items():
        for action, n in per_action.items():
            print(f"{split:<6} {action:<10} {n} videos")
    print(f"written to {args.dest}")
    return 0


def _renamed_flag(value: str | None, old_value: str | None, flag: str, old_flag: str, what: str, meaning: str) -> str | None:
    """The value of ``lrprop ingest``'s ``flag``, also read under its old name with a message
    saying the new one; both at once are refused."""
    if old_value is None:
        return value
    if value is not None:
        raise SystemExit(f"lrprop ingest: give {what} once, as {flag} ({old_flag} is its old name)")
    print(f"lrprop ingest: {old_flag} is now {flag} ({meaning})", file=sys.stderr)
    return old_value


def _cmd_ingest(args: argparse.Namespace) -> int:
    from lrprop.ingest.from_config import ingest_source

    store_uri = _renamed_flag(
        args.store, args.old_dest, "--store", "--dest", "the store", "the store root, as in every other command"
    )
    labels_dir = _renamed_flag(
        args.labels_dir, args.old_labels, "--labels-dir", "--labels", "the label folder", "the folder of phase labels"
    )
    result = ingest_source(
        load_config(args.config, args.set),
        store_uri or "lrprop-store",
        kind=args.kind,
        source=args.src,
        dataset=args.dataset or args.kind,
        labels_dir=labels_dir,
        frame_size=args.frame_size,
        max_label=args.max_label,
        strict=True if args.strict else None,
        progress=sys.stderr.isatty(),
    )
    m = result.manifest
    print(f"{m['dataset']} {result.version} ({'new version' if result.created else 'unchanged: existing version'})")
    for action, per_split in sorted(m["counts"].items()):
        for split, c in sorted(per_split.items()):
            print(f"  {action:<20} {split:<6} {c['videos']:>5} videos {c['frames']:>8} frames")
    for note in m["notes"]:
        print(f"  note: {note['file']}: {note['message']}")
    for p in result.skipped:
        print(f"  skipped: {p['file']}: {p['video_id']}: {p['reason']}")
    return 0


def _cmd_embeddings_list(args: argparse.Namespace) -> int:
    from lrprop.registry.embeddings import list_embeddings

    _print_registry(list_embeddings(args.store), aliases=True)
    return 0


def _print_registry(entries: list[dict], *, aliases: bool = False) -> None:
    """The table of a registry's collections (``store.list_collections``); with ``aliases`` a
    last column of each class's aliases, ``alias=version`` (``-``: none)."""
    print(f"{'dataset':<16} {'action':<20} {'latest_version':<34} {'n_versions':>10}" + ("  aliases" if aliases else ""))
    for e in entries:
        line = f"{e['dataset']:<16} {e['action']:<20} {e['latest_version']:<34} {e['n_versions']:>10}"
        if aliases:
            line += "  " + (" ".join(f"{a}={v}" for a, v in sorted(e.get("aliases", {}).items())) or "-")
        print(line)


def _cmd_embeddings_pull(args: argparse.Namespace) -> int:
    import pyarrow.parquet as pq

    from lrprop.registry.embeddings import EMBEDDINGS_FILE, pull_embeddings

    table, manifest = pull_embeddings(args.store, args.dataset, args.action, args.version, alias=args.alias)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(out)  # never a half-written file at --out
    verified = f"{EMBEDDINGS_FILE}'s sha256 and row count verified"
    print(f"{args.dataset}/{args.action} {manifest['version']}: {table.num_rows} frames -> {out} ({verified})")
    return 0


def _cmd_embeddings_promote(args: argparse.Namespace) -> int:
    from lrprop.registry.aliases import promote

    config = load_config(args.config, args.set)
    move = promote(
        args.store, args.dataset, args.action, args.version, config.promotion, alias=args.alias, force=args.force,
        reason=args.reason,
    )  # fmt: skip
    _print_promotions(args.dataset, {args.action: move})
    return 0 if move["moved"] or move["from"] == move["to"] else 1


def _alias_of(args: argparse.Namespace) -> str:
    """``--alias``, else the config's ``promotion.alias`` (the one runs move)."""
    alias = args.alias or load_config(args.config, args.set).promotion.alias
    if alias is None:
        raise ValueError("no alias: promotion.alias of the config is null; name one with --alias")
    return alias


def _cmd_embeddings_rollback(args: argparse.Namespace) -> int:
    from lrprop.registry.aliases import rollback

    alias = _alias_of(args)
    move = rollback(args.store, args.dataset, args.action, alias, to=args.to, reason=args.reason)
    print(f"rolled back {args.dataset}/{args.action} {alias}: {move['from']} -> {move['to']}")
    return 0


def _cmd_embeddings_history(args: argparse.Namespace) -> int:
    from lrprop.registry.aliases import read_alias, resolve_alias

    alias = _alias_of(args)
    doc = read_alias(args.store, args.dataset, args.action, alias)
    if doc is None:
        resolve_alias(args.store, args.dataset, args.action, alias)  # raises, naming the file
    print(f"{args.dataset}/{args.action} {alias} = {doc['version']}")
    for m in doc["history"]:
        why = "; ".join(x for x in (m.get("reason"), m.get("gate")) if x)
        print(f"{m['at']}  {m['kind']:<8} {m['from'] or 'unset'} -> {m['to']}  by {m['by']}" + (f"  ({why})" if why else ""))
    return 0


def _cmd_backbones_list(args: argparse.Namespace) -> int:
    from lrprop.registry.backbones import list_backbones

    _print_registry(list_backbones(args.store))
    return 0


def _cmd_datasets_list(args: argparse.Namespace) -> int:
    from lrprop import store

    fs, root = store.filesystem(store.datasets_root(args.store))
    names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)) if fs.isdir(root) else []
    print(f"{'dataset':<20} {'latest_version':<34} {'n_versions':>10} {'videos':>7}")
    for name in names:
        collection = store.datasets_collection(args.store, name)
        versions = store.list_versions(collection)
        if not versions:
            continue
        manifest = store.read_manifest(collection, versions[-1])
        videos = sum(c["videos"] for per_split in manifest["counts"].values() for c in per_split.values())
        print(f"{name:<20} {versions[-1]:<34} {len(versions):>10} {videos:>7}")
    return 0


def _cmd_store_check(args: argparse.Namespace) -> int:
    from lrprop.registry.store_audit import audit_store

    reports = audit_store(args.store, checksums=not args.no_checksums)
    for report in reports:
        if report.state != "ok":
            print(f"{report.state:<8} {report.uri}")
            for problem in report.problems:
                print(f"         {problem}")
    counts = {state: sum(r.state == state for r in reports) for state in ("ok", "damaged", "partial", "unknown")}
    checked = "sizes and sha256" if not args.no_checksums else "sizes only"
    print(f"{len(reports)} versions ({checked}): " + ", ".join(f"{n} {state}" for state, n in counts.items()))
    if counts["partial"]:
        print("partial versions are invisible to readers; `lrprop store gc` lists and removes them")
    return 1 if counts["damaged"] else 0


_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _age_seconds(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``24h``, ``7d`` -> seconds."""
    number, unit = (text[:-1], text[-1]) if text and text[-1] in _AGE_UNITS else (text, "s")
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an age like 90s, 30m, 24h or 7d, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"an age cannot be negative, got {text!r}")
    return value * _AGE_UNITS[unit]


def _cmd_store_gc(args: argparse.Namespace) -> int:
    from lrprop.registry.store_audit import audit_store, remove_partial

    reports = audit_store(args.store, checksums=False)
    chosen = remove_partial(reports, min_age_s=args.min_age, dry_run=not args.remove)
    young = sum(r.state == "partial" for r in reports) - len(chosen)
    for report in chosen:
        print(f"{'removed' if args.remove else 'partial'} {report.uri} ({report.bytes / 1e6:.1f} MB)")
    total = sum(r.bytes for r in chosen) / 1e6
    if args.remove:
        print(f"removed {len(chosen)} partial versions ({total:.1f} MB)", end="")
    else:
        print(f"{len(chosen)} partial versions ({total:.1f} MB); --remove deletes them", end="")
    print(f"; {young} younger than --min-age left alone (a write may be in progress)" if young else "")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    print(yaml.safe_dump(config_to_dict(load_config(args.config, args.set)), sort_keys=False), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lrprop", description="LRProp: frame embeddings for temporal video alignment.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every training step line")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config", help="YAML file of overrides of the defaults (see configs/): a path or a store URI, e.g. s3://…/best.yaml"
        )
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a key, e.g. loss.alpha=0.01 (repeatable)",
        )

    run = sub.add_parser("run", help="the pipeline: ingest, train every class on Ray, evaluate, publish embeddings")
    with_config(run)
    run.add_argument(
        "--store", default="lrprop-store", help="store root: a folder or s3://bucket/prefix (default ./lrprop-store)"
    )
    run.add_argument("--run-name", help="name of the run; an existing run of that name is resumed")
    run.add_argument("--ray-address", help="Ray cluster address (default: config ray.address, else a local Ray)")
    run.add_argument(
        "--force", action="store_true", help="train every class, also those whose data, config and code are unchanged"
    )
    run.set_defaults(func=_cmd_run)

    pre = sub.add_parser(
        "pretrain",
        help="pretrain every class's backbone on Ray and publish it to the store, for model.pretrained",
        description="Ingest as `run` does, pretrain each class's backbone (pretrain.*) as its own Ray actor, all at "
        "once, and publish it as a new version under <store>/backbones/<dataset>/<action>/. Prints the --set flags "
        "with which `lrprop run` trains from them.",
    )
    with_config(pre)
    pre.add_argument("--store", default="lrprop-store", help="store root: a folder or s3://bucket/prefix")
    pre.add_argument("--action", nargs="+", action="extend", metavar="A", help="the classes to pretrain (default: every class)")
    pre.add_argument(
        "--run-name", help="name of the pretraining; started again under it, it pretrains only the classes not yet published"
    )
    pre.add_argument("--ray-address", help="Ray cluster address (default: config ray.address, else a local Ray)")
    pre.set_defaults(func=_cmd_pretrain)

    tune = sub.add_parser("tune", help="search T, alpha, beta for one class with Ray Tune (ASHA)")
    with_config(tune)
    tune.add_argument("--store", default="lrprop-store", help="store root: a folder or s3://bucket/prefix")
    tune.add_argument("--action", help="the class to tune (default: the first)")
    tune.add_argument("--run-name", help="name of the search")
    tune.add_argument("--ray-address", help="Ray cluster address (default: config ray.address, else a local Ray)")
    tune.set_defaults(func=_cmd_tune)

    synth = sub.add_parser("synth", help="write the synthetic data set (generic layout) to a folder or URI")
    with_config(synth)
    synth.add_argument("--dest", required=True, help="destination folder or fsspec URI")
    synth.set_defaults(func=_cmd_synth)

    ing = sub.add_parser("ingest", help="ingest a data set into a new Parquet version in a store")
    with_config(ing)
    ing.add_argument(
        "kind", choices=["pennaction", "pouring", "generic", "synthetic"], help="source layout (synthetic = generic)"
    )
    ing.add_argument("--src", required=True, help="source folder or URI")
    ing.add_argument("--store", default=None, help="store root (folder or URI; default lrprop-store)")
    # The store was --dest here, as no other command calls it (issue 13): still read, with a warning.
    ing.add_argument("--dest", dest="old_dest", help=argparse.SUPPRESS)
    ing.add_argument("--dataset", help="data-set name in the store (default: the kind)")
    ing.add_argument("--labels-dir", help="pennaction: phase-label folder (default <src>/phase_labels)")
    ing.add_argument("--labels", dest="old_labels", help=argparse.SUPPRESS)  # the old --labels-dir
    ing.add_argument("--frame-size", type=int, help="shorter side of stored frames (default ingest.frame_size)")
    ing.add_argument("--max-label", type=int, help="labels must be < this (pouring: 5)")
    ing.add_argument("--strict", action="store_true", help="fail at the first bad video instead of skipping it")
    ing.set_defaults(func=_cmd_ingest)

    ev = sub.add_parser("evaluate", help="score trained models: metrics.json and an HTML report")
    which = ev.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--run",
        help="a run's name: evaluates the model each of its classes published (<store>/runs/<run>/published.json); "
        "or a folder of exported models, <run>/<action>/model",
    )
    which.add_argument("--model", help="one exported model directory")
    ev.add_argument("--store", default="lrprop-store", help="store holding the run and the data set the models name")
    ev.add_argument(
        "--out", help="output directory (default ./lrprop-evaluation/<run>, <run folder>/evaluation or <model>/evaluation)"
    )
    ev.set_defaults(func=_cmd_evaluate)

    al = sub.add_parser(
        "align",
        help="align two videos frame to frame with a trained model: alignment.csv, alignment.png, aligned.mp4",
        description="Embed two videos (video files or folders of frames, local or store URIs) with a model "
        "and align them with exact DTW, at any length. Writes alignment.csv (frame_a, frame_b, cost), "
        "alignment.png (the cost matrix with the path) and aligned.mp4 (A beside B warped onto A's time).",
    )
    al.add_argument("a", help="video A: a video file (.mp4, .mov, ...) or a folder of frames")
    al.add_argument("b", help="video B, aligned onto A's time")
    al.add_argument(
        "--model",
        required=True,
        help="DATASET/ACTION (its latest published version), DATASET/ACTION@VERSION or @ALIAS (e.g. @production), "
        "or an exported model folder",
    )
    al.add_argument("--store", default="lrprop-store", help="store root the published model is in")
    al.add_argument("--out", default="alignment", help="folder for the files written (default ./alignment)")
    al.add_argument("--video", choices=("mp4", "gif", "none"), default="mp4", help="the side-by-side video's format")
    al.add_argument("--height", type=_at_least(2), default=160, help="the side-by-side video's height in pixels")
    al.add_argument(
        "--subsequence",
        action="store_true",
        help="B is a clip of what happens somewhere in A: match it with the part of A it fits best (subsequence DTW; "
        "the path may start and end on any frame of A, which the printed line names) rather than all of A; "
        "B must be the shorter",
    )
    al.add_argument("--device", default="auto", help="where to embed: auto (CUDA when there is one), cpu, cuda")
    al.set_defaults(func=_cmd_align)

    ph = sub.add_parser(
        "phases",
        help="label every frame of new videos with the phases of labelled references: phases.csv, phases.json, timeline.png",
        description="Embed each video and align it with every reference (exact DTW); the references vote for each "
        "frame's phase. Writes phases.csv (video, frame, phase, confidence), phases.json (with each video's "
        "segments) and timeline.png.",
    )
    ph.add_argument("videos", nargs="+", help="video files or folders of frames, local or store URIs")
    ph.add_argument("--model", required=True, help="as for align: DATASET/ACTION[@VERSION|@ALIAS] or a model folder")
    ph.add_argument(
        "--reference",
        default="train",
        help="a split of the model's data set in --store (a bare name: train, the default, or val), or a folder of "
        "labelled videos given as a path with a slash (./refs, s3://...): each a video file or frame folder with "
        "<name>.npy or <name>.csv labels beside it",
    )
    ph.add_argument("--max-references", type=_at_least(0), default=20, help="the first N labelled references (0: all)")
    ph.add_argument("--store", default="lrprop-store", help="store root the published model and its data set are in")
    ph.add_argument("--out", default="phases", help="folder for the files written (default ./phases)")
    ph.add_argument(
        "--subsequence",
        action="store_true",
        help="each video is a clip: match it with the part of each reference it fits best (subsequence DTW) rather "
        "than the whole reference; no video may be longer than a reference",
    )
    ph.add_argument("--device", default="auto", help="where to embed: auto, cpu, cuda")
    ph.set_defaults(func=_cmd_phases)

    ol = sub.add_parser(
        "outliers",
        help="rank a class's videos by their alignment cost to the others: outliers.csv, outliers.html",
        description="Embed every video of a split of a class and score each by the median, over the other videos, "
        "of the mean cost along their exact DTW path (robust z-score beside it; lrprop.core.outliers). "
        "Writes outliers.csv and outliers.html (the top ones with frames of each).",
    )
    ol.add_argument("--dataset", required=True)
    ol.add_argument("--action", required=True)
    ol.add_argument("--split", default="val", help="the split ranked (default val)")
    ol.add_argument("--version", help="the data set's version (default its latest)")
    ol.add_argument("--model", help="as for align (default DATASET/ACTION: the class's latest published version)")
    ol.add_argument("--store", default="lrprop-store", help="store root")
    ol.add_argument("--out", default="outliers", help="folder for the files written (default ./outliers)")
    ol.add_argument("--top", type=_at_least(1), default=10, help="how many to print and show on the page")
    ol.add_argument("--device", default="auto", help="where to embed: auto, cpu, cuda")
    ol.set_defaults(func=_cmd_outliers)

    emb = sub.add_parser("embeddings", help="published embeddings in a store")
    emb_sub = emb.add_subparsers(dest="embeddings_command", required=True)
    emb_list = emb_sub.add_parser("list", help="one line per class: dataset action latest_version n_versions")
    emb_list.add_argument("--store", default="lrprop-store", help="store root (folder or URI)")
    emb_list.set_defaults(func=_cmd_embeddings_list)
    emb_pull = emb_sub.add_parser("pull", help="write one version (default the latest) to a Parquet file")
    emb_pull.add_argument("--store", default="lrprop-store", help="store root (folder or URI)")
    emb_pull.add_argument("--dataset", required=True)
    emb_pull.add_argument("--action", required=True)
    pulled = emb_pull.add_mutually_exclusive_group()
    pulled.add_argument("--version", help="a version id (default: the latest complete one)")
    pulled.add_argument("--alias", help="the version an alias names, e.g. production")
    emb_pull.add_argument("--out", required=True, help="output .parquet file")
    emb_pull.set_defaults(func=_cmd_embeddings_pull)

    def class_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--store", default="lrprop-store", help="store root (folder or URI)")
        p.add_argument("--dataset", required=True)
        p.add_argument("--action", required=True)

    emb_promote = emb_sub.add_parser(
        "promote",
        help="move an alias to a version if it passes the gate (promotion.* of the config), or with --force regardless",
    )
    with_config(emb_promote)
    class_args(emb_promote)
    emb_promote.add_argument("--version", required=True, help="the version to promote")
    emb_promote.add_argument("--alias", help="the alias (default promotion.alias: production)")
    emb_promote.add_argument("--force", action="store_true", help="move it even if the gate refuses (recorded as forced)")
    emb_promote.add_argument("--reason", default="", help="why, for the alias's history")
    emb_promote.set_defaults(func=_cmd_embeddings_promote)
    emb_rollback = emb_sub.add_parser("rollback", help="move an alias back to the version it held before (or --to one)")
    with_config(emb_rollback)
    class_args(emb_rollback)
    emb_rollback.add_argument("--alias", help="the alias (default promotion.alias of the config: production)")
    emb_rollback.add_argument("--to", help="a version to move it to (default: the one it held before its current one)")
    emb_rollback.add_argument("--reason", default="", help="why, for the alias's history")
    emb_rollback.set_defaults(func=_cmd_embeddings_rollback)
    emb_history = emb_sub.add_parser("history", help="an alias's moves: when, by whom, from, to, why")
    with_config(emb_history)
    class_args(emb_history)
    emb_history.add_argument("--alias", help="the alias (default promotion.alias of the config: production)")
    emb_history.set_defaults(func=_cmd_embeddings_history)

    bb = sub.add_parser("backbones", help="pretrained backbones in a store (lrprop pretrain, lrprop run)")
    bb_sub = bb.add_subparsers(dest="backbones_command", required=True)
    bb_list = bb_sub.add_parser(
        "list",
        help="one line per class: dataset action latest_version n_versions; a version's weights are "
        "<store>/backbones/<dataset>/<action>/<version>/backbone.safetensors",
    )
    bb_list.add_argument("--store", default="lrprop-store", help="store root (folder or URI)")
    bb_list.set_defaults(func=_cmd_backbones_list)

    ds = sub.add_parser("datasets", help="data sets in a store")
    ds_sub = ds.add_subparsers(dest="datasets_command", required=True)
    ds_list = ds_sub.add_parser("list", help="one line per data set: latest version, number of versions")
    ds_list.add_argument("--store", default="lrprop-store", help="store root (folder or URI)")
    ds_list.set_defaults(func=_cmd_datasets_list)

    st = sub.add_parser("store", help="check a store's versions; find what killed writers left")
    st_sub = st.add_subparsers(dest="store_command", required=True)
    st_check = st_sub.add_parser(
        "check", help="verify every version's files against its manifest (size, sha256); list partial versions"
    )
    st_check.add_argument("--store", default="lrprop-store", help="store root (folder or URI)")
    st_check.add_argument("--no-checksums", action="store_true", help="compare sizes only (no file is read)")
    st_check.set_defaults(func=_cmd_store_check)
    st_gc = st_sub.add_parser("gc", help="list (and with --remove delete) versions that have no manifest")
    st_gc.add_argument("--store", default="lrprop-store", help="store root (folder or URI)")
    st_gc.add_argument(
        "--min-age", type=_age_seconds, default=_age_seconds("24h"),
        help="spare partial versions made less than this long ago, which may still be written (default 24h)",
    )  # fmt: skip
    st_gc.add_argument("--remove", action="store_true", help="delete them (default: only list them)")
    st_gc.set_defaults(func=_cmd_store_gc)

    show = sub.add_parser("config", help="print the resolved configuration")
    with_config(show)
    show.set_defaults(func=_cmd_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Prefect's temporary server reports usage to Prefect's servers, and on a machine that cannot
    # reach them logs "ERROR | prefect.server.services.telemetry - Failed to send telemetry"
    # among a run's first lines. Off unless the user set it; read when that server starts.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    from lrprop.failures import PermanentError
    from lrprop.ingest.records import IngestError
    from lrprop.interrupts import Interrupted, stop_cleanly

    try:
        with stop_cleanly():  # SIGTERM/SIGINT: Prefect's run marked Crashed, Ray and temporary files cleaned up
            return args.func(args)
    except Interrupted as exc:
        print(f"lrprop: stopped by {exc}; a run started again under its --run-name resumes it", file=sys.stderr)
        return 128 + exc.signum
    except (ConfigError, IngestError, ValueError, FileNotFoundError) as exc:  # ChecksumError is a ValueError
        print(f"lrprop: error: {exc}", file=sys.stderr)
        return 2
    except (PermanentError, FloatingPointError) as exc:  # an error no retry can fix (a NaN cost, too): one line, last
        print(f"lrprop: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
