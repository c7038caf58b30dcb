"""The ``lrprop`` command line.

    lrprop run --config configs/smoke.yaml [--store DIR] [--run-name NAME] [--set key=value ...]
    lrprop config --config FILE [--set key=value ...]      print the resolved configuration

``run`` trains one model per action class of the generated data set into
``<store>/runs/<run-name>/<action>/``: ``checkpoints/``, ``model/`` (safetensors + config.json)
and ``history.json``. Running it again with the same ``--run-name`` resumes each class from its
newest checkpoint; a finished class trains no further.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from lrprop.config import ConfigError, config_to_dict, load_config
from lrprop.names import check_name

__all__ = ["main"]

log = logging.getLogger("lrprop")


def _local_store(store: str) -> Path:
    if "://" in store and not store.startswith("file://"):
        raise SystemExit(f"--store {store!r}: this command writes to a local directory only for now")
    return Path(store.removeprefix("file://"))


def _cmd_run(args: argparse.Namespace) -> int:
    from lrprop.checkpoint import export_model
    from lrprop.data.source import InMemoryVideos
    from lrprop.data.synthetic import action_spec, synthetic_videos
    from lrprop.train import train

    config = load_config(args.config, args.set)
    run_name = check_name(args.run_name or datetime.now(UTC).strftime("run-%Y%m%dT%H%M%SZ"), "run name")
    run_dir = _local_store(args.store) / "runs" / run_name
    syn = config.synthetic
    print(f"run {run_name}: {syn.num_classes} synthetic classes -> {run_dir}")
    rows = []
    for class_index in range(syn.num_classes):
        action = action_spec(class_index, syn.seed).name
        videos = synthetic_videos(
            class_index, syn.train_videos, seed=syn.seed, size=syn.frame_size, length_range=syn.length_range
        )
        class_dir = run_dir / action
        started = time.perf_counter()

        def progress(metrics: dict, checkpoint: Path, action: str = action) -> None:
            terms = " ".join(f"{k[5:]} {v:.4f}" for k, v in metrics.items() if k.startswith("loss_"))
            print(f"  {action} epoch {metrics['epoch'] + 1}/{config.optim.epochs} step {metrics['step']}: {terms}", flush=True)

        result = train(config, InMemoryVideos(videos), checkpoint_dir=class_dir / "checkpoints", report=progress)
        seconds = time.perf_counter() - started
        export_model(class_dir / "model", result.model, config_to_dict(config))
        (class_dir / "history.json").write_text(json.dumps(result.history, indent=2))
        first, last = (result.history[0], result.history[-1]) if result.history else ({}, {})
        rows.append((action, result.step, first.get("loss_total"), last.get("loss_total"), seconds))
    print(f"{'action':<10} {'steps':>6} {'loss first epoch':>17} {'loss last epoch':>16} {'seconds':>8}")
    for action, steps, first, last, seconds in rows:
        fmt = lambda v: f"{v:.4f}" if v is not None else "-"  # noqa: E731
        print(f"{action:<10} {steps:>6} {fmt(first):>17} {fmt(last):>16} {seconds:>8.1f}")
    print(f"models in {run_dir}/<action>/model")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    print(yaml.safe_dump(config_to_dict(load_config(args.config, args.set)), sort_keys=False), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lrprop", description="LRProp: frame embeddings for temporal video alignment.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every training step line")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="YAML file of overrides of the defaults (see configs/)")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override one key, e.g. --set loss.alpha=0.01 (repeatable)",
        )

    run = sub.add_parser("run", help="train one model per action class of the generated data set")
    with_config(run)
    run.add_argument("--store", default="lrprop-store", help="output directory (default: ./lrprop-store)")
    run.add_argument("--run-name", help="name of the run; an existing run of that name is resumed")
    run.set_defaults(func=_cmd_run)

    show = sub.add_parser("config", help="print the resolved configuration")
    with_config(show)
    show.set_defaults(func=_cmd_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    try:
        return args.func(args)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"lrprop: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
