"""The paper's Table 3 on our synthetic data: the four loss variants at an equal budget.

    .venv/bin/python benchmarks/ablation.py [--seeds 3] [--epochs N] [--set KEY=VALUE ...] [--jobs 2]
        [--store /tmp/lrprop-ablation]

Variants: {L_same} (the SCL baseline), {L_same + L_prop}, {L_same + SDTW}, all three (LRProp).
Each trains one model per synthetic action class from the smoke config (same data, same steps,
same seed set; --epochs defaults to the config's), then the five metrics are computed on the
validation videos and averaged over classes. The backbone is pretrained once per class and seed
and shared, frozen, by the four variants (the default route; lrprop.training.train.pretrained_backbone).
The time-stretch baseline and the label oracle, scored on the same videos, are rows of the
table. Prints a markdown table of mean ± standard deviation over seeds (percent); the latest
figures live in docs/results.md. Each (seed, class) pair is one process on one core (--jobs at once).
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from lrprop.config import config_from_dict, config_to_dict, load_config
from lrprop.core.model import backbone_weights_bytes
from lrprop.data.parquet import ParquetVideos
from lrprop.evaluation.evaluate import evaluate_class
from lrprop.evaluation.report import mean_over_classes
from lrprop.ingest.synthetic import GENERATORS, ensure_synthetic_dataset
from lrprop.training.train import pretrained_backbone, pretrains, train

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "L_same (SCL)": ["same"],
    "L_same + L_prop": ["same", "prop"],
    "L_same + SDTW": ["same", "sdtw"],
    "all (LRProp)": ["same", "prop", "sdtw"],
}
# --variants names them by these short ids
VARIANT_IDS = dict(zip(["scl", "prop", "sdtw", "all"], VARIANTS, strict=True))
# The references scored on the same videos (lrprop.core.baselines): rows of the table, not variants.
REFERENCE_ROWS = {"time-stretch baseline (no model)": "baseline", "label oracle (phase + progress)": "oracle"}
SHOWN = ["classification@0.1", "classification@1.0", "phase_progression", "kendalls_tau", "ap@5", "ap@10", "dtw_accuracy"]


def run_class(seeded: dict, action: str, store: str, version: str, weights_dir: str, variants: list[str]) -> dict[str, dict]:
    """Every variant on one class for one seed (one process): {variant: the class's metrics}.

    The backbone is pretrained once and shared by the variants: given back frozen
    (model.train_from: none) it trains draw for draw as the default route would.
    """
    import torch

    torch.set_num_threads(1)  # one job per core (--jobs)
    train_source = ParquetVideos(store, "synthetic", version=version, action=action, split="train")
    val_source = ParquetVideos(store, "synthetic", version=version, action=action, split="val")
    base = config_from_dict(seeded)
    shared = pretrains(base) and base.pretrain.freeze_backbone  # else each run trains its own backbone
    if shared:
        backbone, _ = pretrained_backbone(base, train_source)
        weights = Path(weights_dir) / f"{action}-seed{base.train.seed}.safetensors"
        weights.write_bytes(backbone_weights_bytes(backbone))
    per_variant = {}
    for name in variants:
        overrides = copy.deepcopy(seeded)
        overrides["loss"]["terms"] = VARIANTS[name]
        if shared:
            overrides["model"].update(pretrained=str(weights), train_from="none")
        config = config_from_dict(overrides)
        with tempfile.TemporaryDirectory() as ckpt:
            model = train(config, train_source, checkpoint_dir=ckpt).model
        per_variant[name] = evaluate_class(model, config, train_source, val_source, device="cpu").metrics
    return per_variant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="default: the smoke config's optim.epochs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    parser.add_argument("--store", default=None, help="store for the generated data (default: a temporary folder)")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANT_IDS),
        help=f"comma-separated variants to train, of {', '.join(VARIANT_IDS)} (default: all four)",
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="(seed, class) jobs at once, one core each")
    args = parser.parse_args()
    unknown = sorted(set(args.variants.split(",")) - set(VARIANT_IDS))
    if unknown:
        parser.error(f"--variants: unknown {unknown}; known: {list(VARIANT_IDS)}")
    variants = [VARIANT_IDS[v] for v in args.variants.split(",")]
    epochs = [f"optim.epochs={args.epochs}"] if args.epochs is not None else []
    base = load_config(REPO / "configs" / "smoke.yaml", [*epochs, *args.set])
    store = args.store or tempfile.mkdtemp(prefix="lrprop-ablation-")
    version = ensure_synthetic_dataset(base, store, progress=False)
    spec = GENERATORS[base.synthetic.generator][1]
    actions = [spec(c, base.synthetic.seed).name for c in range(base.synthetic.num_actions)]
    results: dict[str, list[dict]] = {name: [] for name in [*variants, *REFERENCE_ROWS]}
    started = time.perf_counter()
    weights_dir = tempfile.mkdtemp(prefix="lrprop-ablation-backbones-")
    seeded = {}
    for seed in range(args.seeds):
        seeded[seed] = config_to_dict(base)
        seeded[seed]["train"].update(seed=seed, log_every=0)
    # One thread per job: numba sizes its pool when it loads, and a pool of every core spins on
    # the cores the other jobs need (4x slower here); the children inherit this.
    os.environ["NUMBA_NUM_THREADS"] = "1"
    # "spawn": a forked child would inherit torch's and numba's thread pools half set up.
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        jobs = {
            (seed, action): pool.submit(run_class, seeded[seed], action, store, version, weights_dir, variants)
            for seed in seeded
            for action in actions
        }
        done = {}
        for key, job in jobs.items():
            done[key] = job.result()
            line = " ".join(f"{name} {100 * m['dtw_accuracy']:.1f}" for name, m in done[key].items())
            print(f"seed {key[0]} {key[1]} dtw_accuracy: {line}", flush=True)
    for seed in seeded:
        for name in variants:
            mean = mean_over_classes({action: done[seed, action][name] for action in actions})
            results[name].append(mean)
            for row, key in REFERENCE_ROWS.items():
                if name == variants[0]:  # the same videos for every variant
                    results[row].append(mean[key])
            print(f"seed {seed} {name}: " + " ".join(f"{k} {100 * mean[k]:.1f}" for k in SHOWN), flush=True)
    minutes = (time.perf_counter() - started) / 60
    print()
    print(
        f"{args.seeds} seeds × {len(actions)} classes, {base.optim.epochs} epochs of "
        f"{base.synthetic.train_videos // base.data.videos_per_step} steps each after "
        f"{base.pretrain.steps} pretraining steps per class and seed, smoke config; "
        f"{minutes:.1f} min on {platform.machine()}, {args.jobs} jobs"
    )
    print("| variant | " + " | ".join(SHOWN) + " |")
    print("|---|" + "---:|" * len(SHOWN))
    for name, runs in results.items():
        cells = []
        for key in SHOWN:
            values = 100 * np.array([r[key] for r in runs])
            cells.append(f"{values.mean():.1f} ± {values.std():.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
