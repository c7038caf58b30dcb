"""What Prefect and Ray add around the compute of the main command.

    .venv/bin/python benchmarks/pipeline_overhead.py [--epochs 20]

Runs the smoke config twice on a fresh temporary store: once as the pipeline
(``retrain_and_evaluate``: Prefect's temporary server, a local Ray, one Ray Train job per
class), once as the same work in this process without either (ingest, train the classes one
after another, then evaluate and publish their embeddings). Prints a table of the phases; the latest figures live in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def direct(config, store_uri: str) -> dict:
    """The pipeline's work with no Prefect and no Ray: the peer of this benchmark."""
    from lrprop import store
    from lrprop.checkpoint import export_model
    from lrprop.config import config_to_dict
    from lrprop.data.parquet import ParquetVideos
    from lrprop.embeddings import publish_embeddings
    from lrprop.evaluate import evaluate_models
    from lrprop.ingest.synthetic import ensure_synthetic_dataset
    from lrprop.train import train

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
    from lrprop.config import config_to_dict, load_config

    config = load_config(REPO / "configs" / "smoke.yaml", [f"optim.epochs={args.epochs}"])

    started = time.perf_counter()
    import ray

    from lrprop.flows import retrain_and_evaluate

    imports = time.perf_counter() - started
    t = time.perf_counter()
    from lrprop.distributed import ensure_ray

    ensure_ray(None)
    ray_start = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as store_a:
        t = time.perf_counter()
        result = retrain_and_evaluate(config_to_dict(config), store_a, "bench")
        pipeline_total = time.perf_counter() - t
    ray.shutdown()
    with tempfile.TemporaryDirectory() as store_b:
        peer = direct(config, store_b)
    phases = result["timings"]
    spans = [r["finished"] - r["started"] for r in result["checkpoints"].values()]
    prefect_overhead = pipeline_total - sum(phases.values())
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; smoke config, {args.epochs} epochs, 2 classes")
    print("| phase | pipeline (s) | in-process, no Prefect/Ray (s) | pipeline / in-process |")
    print("|---|---:|---:|---:|")
    for key, label in (("ingest_s", "ingest"), ("train_s", "train (2 classes)"), ("evaluate_publish_s", "evaluate + publish")):
        print(f"| {label} | {phases[key]:.1f} | {peer[key]:.1f} | {phases[key] / peer[key]:.2f} |")
    total = pipeline_total + ray_start
    print(f"| total | {total:.1f} | {peer['total_s']:.1f} | {total / peer['total_s']:.2f} |")
    print()
    print(f"- Ray start (ray.init): {ray_start:.1f} s; Prefect's flow and task bookkeeping: {prefect_overhead:.1f} s")
    print(f"- each class's Ray Train job from fit() to result: {', '.join(f'{s:.1f} s' for s in spans)}")
    print(f"- imports of ray + prefect in the driver: {imports:.1f} s")
    overhead = (pipeline_total + ray_start) - peer["total_s"]
    print(f"- overhead of the pipeline over the in-process run: {overhead:.1f} s")


if __name__ == "__main__":
    main()
