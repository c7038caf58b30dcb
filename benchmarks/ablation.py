"""The paper's Table 3 on our synthetic data: the four loss variants at an equal budget.

    .venv/bin/python benchmarks/ablation.py [--seeds 3] [--epochs 40] [--store /tmp/lrprop-ablation]

Variants: {L_same} (the SCL baseline), {L_same + L_prop}, {L_same + SDTW}, all three (LRProp).
Each trains one model per synthetic action class from the smoke config (same data, same steps,
same seed set), then the five metrics are computed on the validation videos and averaged over
classes. Prints a markdown table of mean ± standard deviation over seeds (percent); the latest
figures live in docs/results.md.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from lrprop.config import config_from_dict, config_to_dict, load_config
from lrprop.data.parquet import ParquetVideos
from lrprop.data.synthetic import action_spec
from lrprop.evaluate import evaluate_class
from lrprop.ingest.synthetic import ensure_synthetic_dataset
from lrprop.report import mean_over_classes
from lrprop.train import train

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "L_same (SCL)": ["same"],
    "L_same + L_prop": ["same", "prop"],
    "L_same + SDTW": ["same", "sdtw"],
    "all (LRProp)": ["same", "prop", "sdtw"],
}
SHOWN = ["classification@0.1", "classification@1.0", "phase_progression", "kendalls_tau", "ap@5", "ap@10", "dtw_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--store", default=None, help="store for the generated data (default: a temporary folder)")
    args = parser.parse_args()
    base = load_config(REPO / "configs" / "smoke.yaml", [f"optim.epochs={args.epochs}"])
    store = args.store or tempfile.mkdtemp(prefix="lrprop-ablation-")
    version = ensure_synthetic_dataset(base, store, progress=False)
    actions = [action_spec(c, base.synthetic.seed).name for c in range(base.synthetic.num_classes)]
    sources = {
        a: (
            ParquetVideos(store, "synthetic", version=version, action=a, split="train"),
            ParquetVideos(store, "synthetic", version=version, action=a, split="val"),
        )
        for a in actions
    }
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    started = time.perf_counter()
    for seed in range(args.seeds):
        for name, terms in VARIANTS.items():
            overrides = config_to_dict(base)
            overrides["loss"]["terms"] = terms
            overrides["train"]["seed"] = seed
            overrides["train"]["log_every"] = 0
            config = config_from_dict(overrides)
            per_class = {}
            for action, (train_source, val_source) in sources.items():
                with tempfile.TemporaryDirectory() as ckpt:
                    model = train(config, train_source, checkpoint_dir=ckpt).model
                per_class[action] = evaluate_class(model, config, train_source, val_source, device="cpu").metrics
            results[name].append(mean_over_classes(per_class))
            print(f"seed {seed} {name}: " + " ".join(f"{k} {100 * results[name][-1][k]:.1f}" for k in SHOWN), flush=True)
    minutes = (time.perf_counter() - started) / 60
    print()
    print(
        f"{args.seeds} seeds × {len(actions)} classes, {args.epochs} epochs of "
        f"{len(sources[actions[0]][0]) // base.data.videos_per_step} steps each, smoke config; "
        f"{minutes:.1f} min on {platform.machine()}"
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
