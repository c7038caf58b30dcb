"""What a pretrained backbone sees of the action: a linear probe of its features on the phases.

    .venv/bin/python benchmarks/backbone_probe.py [--generator stick_figures] [--sizes 64 96 128]

For each frame size and class, the generated videos (the smoke data set's counts: 16 training
and 8 validation videos a class, or the stick-figure check's 12 and 12) are rendered at that
size, the class's backbone is pretrained on its training videos as ``configs/smoke.yaml`` says
(``lrprop.training.train.pretrained_backbone``: the small CNN, time-contrastive, 300 steps),
and a logistic regression (scikit-learn, standardised inputs) learns each training frame's
phase from its pooled features. Its accuracy on the validation videos' frames is the probe.

Peers, on the same frames in the same run, none of them learnt from the videos:
- ``clock``: the frame's place in its video, i / L, alone (and its square): what the time
  stretch knows. Features that probe no better than this carry nothing a frame counter lacks.
- ``random``: the same backbone with its random initial weights, not pretrained.
- ``pixels``: the frame itself at 16 x 16, grey.

``--without camera light`` (stick figures) leaves those nuisances out of every video, the
videos otherwise the same: which of them defeats the pretraining.

The question it answers (issue 27): which frame size lets the backbone's pretraining see a
small, thin action, and whether it sees it at all where a camera moves and the light changes.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lrprop.config import load_config
from lrprop.core.model import pooled_features
from lrprop.data.augment import eval_transform
from lrprop.data.generator import synthetic_videos
from lrprop.data.source import InMemoryVideos, Video
from lrprop.data.stick_figures import NUISANCES, stick_videos
from lrprop.training.train import build_model, pretrained_backbone

RENDER = {"figure": (synthetic_videos, 16, 8, (30, 200)), "stick_figures": (stick_videos, 12, 12, (30, 90))}


def features(backbone: torch.nn.Module, videos: list[Video], image_size: int, pooling: str) -> np.ndarray:
    """The pooled features of every frame: (sum of lengths, F) float32."""
    transform = eval_transform(image_size)
    out = []
    backbone.eval()
    with torch.no_grad():
        for v in videos:
            frames = transform(torch.from_numpy(np.ascontiguousarray(v.frames)).permute(0, 3, 1, 2))
            out.append(pooled_features(backbone, frames, pooling).float().numpy())
    return np.concatenate(out)


def pixels(videos: list[Video]) -> np.ndarray:
    """Every frame at 16 x 16, grey: (sum of lengths, 256)."""
    out = []
    for v in videos:
        grey = torch.from_numpy(np.ascontiguousarray(v.frames)).float().mean(-1, keepdim=True).permute(0, 3, 1, 2)
        out.append(F.interpolate(grey, size=(16, 16), mode="area").flatten(1).numpy() / 255.0)
    return np.concatenate(out)


def clock(videos: list[Video]) -> np.ndarray:
    """Each frame's place in its video, i / L and its square: (sum of lengths, 2)."""
    t = np.concatenate([np.arange(len(v.frames)) / len(v.frames) for v in videos])
    return np.stack([t, t**2], axis=1)


def probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray) -> float:
    """The validation accuracy, in %, of a logistic regression fitted on the training frames."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    model.fit(train_x, train_y)
    return 100.0 * float((model.predict(val_x) == val_y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", choices=sorted(RENDER), default="stick_figures")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128])
    parser.add_argument("--classes", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--without",
        nargs="+",
        default=[],
        choices=NUISANCES,
        help="stick figures: nuisances left out of every video (an ablation)",
    )
    parser.add_argument("--config", default="configs/smoke.yaml", help="the pretraining's settings")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    render, n_train, n_val, lengths = RENDER[args.generator]

    rows = []
    for size in args.sizes:
        config = load_config(args.config, overrides=[*args.set, f"data.image_size={size}"])
        for c in args.classes:
            extra = {"without": args.without} if args.without else {}
            train = render(c, n_train, size=size, length_range=lengths, **extra)
            val = render(c, n_val, size=size, length_range=lengths, first_video=n_train, **extra)
            ty = np.concatenate([v.labels for v in train])
            vy = np.concatenate([v.labels for v in val])
            start = time.perf_counter()
            torch.manual_seed(config.train.seed)
            untrained = build_model(config).backbone
            pooling = config.model.pooling
            random_acc = probe(features(untrained, train, size, pooling), ty, features(untrained, val, size, pooling), vy)
            backbone, _ = pretrained_backbone(config, InMemoryVideos(train))
            pre_acc = probe(features(backbone, train, size, pooling), ty, features(backbone, val, size, pooling), vy)
            rows.append(
                {
                    "size": size,
                    "class": train[0].video_id.rsplit("_", 1)[0],
                    "pretrained": pre_acc,
                    "random": random_acc,
                    "pixels": probe(pixels(train), ty, pixels(val), vy),
                    "clock": probe(clock(train), ty, clock(val), vy),
                    "seconds": time.perf_counter() - start,
                }
            )
            print(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items()), flush=True)

    without = f" without {', '.join(args.without)}" if args.without else ""
    print(f"\nphase probe on the validation frames, {args.generator}{without}, accuracy in % (ratio: pretrained / clock)")
    print(f"{'size':>5} {'class':<14} {'pretrained':>10} {'random':>7} {'pixels':>7} {'clock':>7} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['size']:>5} {r['class']:<14} {r['pretrained']:>10.1f} {r['random']:>7.1f} {r['pixels']:>7.1f} "
            f"{r['clock']:>7.1f} {r['pretrained'] / r['clock']:>6.2f}"
        )


if __name__ == "__main__":
    main()
