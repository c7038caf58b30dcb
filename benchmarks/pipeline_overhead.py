"""What Prefect and Ray add around the compute of the main command.

    .venv/bin/python benchmarks/pipeline_overhead.py [--epochs 20]

Runs the smoke config twice, each in its own Python process on a fresh temporary store, and
times each process from launch to exit (imports, start-up and shut-down included):

- the pipeline: the main command, ``lrprop run`` (``retrain_and_evaluate``: Prefect's
  temporary server, a local Ray, one Ray Train job per class);
- the peer: the same work in one process without Prefect or Ray (ingest, train the classes
  one after another, then evaluate and publish their embeddings).

Prints a table of the phases; the latest figures live in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def direct(config, store_uri: str) -> dict:
    """The pipeline's work with no Prefect and no Ray: the peer of this benchmark."""
    from lrprop import store
    from lrprop.config import config_to_dict
    from lrprop.data.parquet import ParquetVideos
    from lrprop.evaluation.evaluate import evaluate_models
    from lrprop.ingest.synthetic import ensure_synthetic_dataset
    from lrprop.registry.embeddings import publish_embeddings
    from lrprop.training.checkpoint import export_model
    from lrprop.training.train import train

    t0 = time.perf_counter()
    version = ensure_synthetic_dataset(config, store_uri, progress=False)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model_dirs = {}
        for action in ("reach", "swing"):
            source = ParquetVideos(store_uri, "synthetic", version=version, action=action, split="train")
            model = train(config.for_class(action), source, checkpoint_dir=Path(tmp) / action / "ckpt").model
            meta = {"dataset": "synthetic", "dataset_version": version, "action": action}
            model_dirs[action] = export_model(Path(tmp) / action / "model", model, config_to_dict(config), meta)
        t2 = time.perf_counter()
        dataset_manifest = store.read_manifest(store.datasets_collection(store_uri, "synthetic"), version)

        def publish(action, evaluation, meta, model_dir) -> None:
            publish_embeddings(
                store_uri,
                dataset="synthetic",
                action=action,
                splits=evaluation.splits(),
                model_dir=model_dir,
                dataset_manifest=dataset_manifest,
                metrics=evaluation.metrics,
            )

        evaluate_models(model_dirs, store_uri, Path(tmp) / "evaluation", on_class=publish)
    t3 = time.perf_counter()
    return {"ingest_s": t1 - t0, "train_s": t2 - t1, "evaluate_publish_s": t3 - t2, "total_s": t3 - t0}


def _child(mode: str, epochs: int, store_uri: str) -> None:
    """One side of the comparison, run in a fresh process; prints its phases as JSON."""
    started = time.perf_counter()
    from lrprop.config import config_to_dict, load_config

    config = load_config(REPO / "configs" / "smoke.yaml", [f"optim.epochs={epochs}"])
    if mode == "direct":
        phases = direct(config, store_uri)
    else:
        from lrprop.pipeline.flows import retrain_and_evaluate

        flow_started = time.perf_counter()
        result = retrain_and_evaluate(config_to_dict(config), store_uri, "bench")
        phases = dict(result["timings"])
        phases["flow_s"] = time.perf_counter() - flow_started
        phases["jobs_s"] = [r["finished"] - r["started"] for r in result["checkpoints"].values()]
    phases["in_process_s"] = time.perf_counter() - started
    print("PHASES " + json.dumps(phases), flush=True)


def _timed(mode: str, epochs: int) -> dict:
    """Launch a child process and time it from launch to exit."""
    with tempfile.TemporaryDirectory() as store_uri:
        command = [sys.executable, __file__, "--child", mode, "--epochs", str(epochs), "--store", store_uri]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"{mode} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("PHASES "))
    return {**json.loads(line[len("PHASES ") :]), "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--child", choices=("pipeline", "direct"), help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if args.child:
        _child(args.child, args.epochs, args.store)
        return
    # One Prefect home for the whole benchmark, its database made by a first flow: what a
    # user's second and later runs see (the very first run also migrates the database, ~8 s).
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
    subprocess.run(
        [sys.executable, "-c", "from prefect import flow; flow(lambda: None, name='warm-up')()"], capture_output=True, check=True
    )
    pipe = _timed("pipeline", args.epochs)
    peer = _timed("direct", args.epochs)
    # The pipeline pretrains the backbones as a stage of its own; the peer inside train().
    pipe["train_s"] += pipe.get("pretrain_s", 0.0)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; smoke config, {args.epochs} epochs, 2 classes")
    print("| phase | pipeline (s) | in-process, no Prefect/Ray (s) | pipeline / in-process |")
    print("|---|---:|---:|---:|")
    for key, label in (
        ("ingest_s", "ingest (+ Ray start, in parallel)"),
        ("train_s", "pretrain + train (2 classes)"),
        ("evaluate_publish_s", "evaluate + publish"),
    ):
        print(f"| {label} | {pipe[key]:.1f} | {peer[key]:.1f} | {pipe[key] / peer[key]:.2f} |")
    print(
        f"| whole process, launch to exit | {pipe['wall_s']:.1f} | {peer['wall_s']:.1f} | {pipe['wall_s'] / peer['wall_s']:.2f} |"
    )
    print()
    phases = pipe["ingest_s"] + pipe["train_s"] + pipe["evaluate_publish_s"]
    print(f"- Prefect's flow start (temporary server) and end: {pipe['flow_s'] - phases:.1f} s")
    print(f"- each class's Ray Train job from fit() to result: {', '.join(f'{s:.1f} s' for s in pipe['jobs_s'])}")
    print(
        f"- process start-up and shut-down outside the flow: {pipe['wall_s'] - pipe['flow_s']:.1f} s "
        f"(peer: {peer['wall_s'] - peer['total_s']:.1f} s)"
    )
    print(f"- overhead of the pipeline over the in-process run: {pipe['wall_s'] - peer['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
