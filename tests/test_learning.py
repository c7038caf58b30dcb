"""Training learns what happens in the videos: it aligns them better than a frame counter.

The time-stretch baseline (frame i of L is i / L; lrprop.core.baselines) needs no model; from random
weights LRProp's objective is solved by the positional encoding alone and lands on it (issue 11).
The default route (the backbone's time-contrastive pretraining on the class's own frames, then
LRProp with it frozen) must beat it on the generated videos, at a budget a test can afford.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lrprop.config import load_config
from lrprop.data.generator import synthetic_videos
from lrprop.data.source import InMemoryVideos
from lrprop.evaluation.evaluate import evaluate_class
from lrprop.training.train import train

REPO = Path(__file__).resolve().parents[1]

# 300 pretraining steps (the smoke config's were 300 then; now 500) and half its LRProp epochs (40 x 8 steps): about a
# minute and a half on one core. Half the pretraining (150 steps of 8 frame pairs per video,
# 30 epochs) gave only +0.7 to +3.9 points over seeds 0-2: too close to the baseline to test.
BUDGET = [
    "pretrain.steps=300",
    "optim.epochs=40",
    "train.log_every=0",
    "train.checkpoint_epochs=1000",
]
# Points of DTW accuracy over the baseline (0-1 scale). Measured at this budget before the smoke
# config's views were warped (data.view_warp; class "reach",
# 16 training and 8 validation videos, baseline 0.5005): seeds 0, 1, 2 gave +0.121, +0.087,
# +0.127; the test runs seed 0 and keeps a margin below the least of them for other CPUs'
# arithmetic.
MIN_GAIN = 0.05


@pytest.mark.integration
def test_a_few_hundred_steps_align_better_than_stretching_time(tmp_path):
    config = load_config(REPO / "configs" / "smoke.yaml", [*BUDGET, "train.seed=0"])
    train_videos = InMemoryVideos(synthetic_videos(0, 16, seed=0, size=64))
    val_videos = InMemoryVideos(synthetic_videos(0, 8, seed=0, size=64, first_video=16))
    model = train(config, train_videos, checkpoint_dir=tmp_path).model
    metrics = evaluate_class(model, config, train_videos, val_videos, device="cpu").metrics
    model_acc, baseline_acc = metrics["dtw_accuracy"], metrics["baseline"]["dtw_accuracy"]
    assert model_acc - baseline_acc >= MIN_GAIN, f"DTW accuracy {model_acc:.3f} against the baseline's {baseline_acc:.3f}"
