"""The estimate of one training step's memory, and the refusal of a step that cannot fit (issue 14).

Oracles: the peak resident memory of a real training step, measured in a process of its own
(``getrusage``); and the bytes a whole step at full size saves for its backward pass, against
the estimate's extrapolation from short, small ones.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from lrprop.config import ConfigError, load_config
from lrprop.training import memory

_GIB = 1 << 30

# A real step, measured: how far the peak resident memory rose over what the process held
# before it (the model, the optimiser, the batch), against the estimate's activations plus the
# gradients and Adam's moments that the step allocates.
_MEASURE = """
import json, resource, sys, torch
from lrprop.config import load_config
from lrprop.training.memory import step_memory
from lrprop.training.train import build_loss, build_model, train_step

config = load_config(None, sys.argv[1:])
estimate = step_memory(config)
torch.manual_seed(0)
model = build_model(config).train()
params = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.Adam(params)
d = config.data
B, V, T, S = d.videos_per_step, d.num_views, d.frames_per_view, d.image_size
frames = torch.randn(B, V, T, 3, S, S)
mask = torch.ones(B, V, T, dtype=torch.bool)
timestamps = torch.arange(T, dtype=torch.float32).expand(B, V, -1).contiguous()
with open("/proc/self/status") as status:
    before = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS"))
train_step(model, build_loss(config.loss), optimizer, params, frames, mask, timestamps, grad_clip=10.0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
allocated = 3 * sum(p.numel() * p.element_size() for p in params)  # gradients, Adam's two moments
print(json.dumps({"measured": peak - before, "estimated": estimate.activations + allocated}))
"""


@pytest.mark.parametrize(
    "sets",
    [
        # pretrain.steps=0: the backbone trains, as in the step measured (no pretraining freezes it)
        ["model.backbone=small_cnn", "data.image_size=64", "data.frames_per_view=200", "pretrain.steps=0"],  # per frame
        ["model.backbone=small_cnn", "data.image_size=32", "data.frames_per_view=600", "pretrain.steps=0"],  # T×T
    ],
    ids=["per-frame", "quadratic"],
)
def test_the_estimate_is_near_the_peak_a_real_step_reaches(sets):
    done = subprocess.run([sys.executable, "-c", _MEASURE, *sets], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["measured"] > 500 << 20  # large enough for the allocator's noise not to matter
    # What is saved for the backward pass is most of the peak; the backward's own transients
    # (each layer's input gradient) come on top, so the peak may run over the estimate a little.
    assert 0.8 <= found["measured"] / found["estimated"] <= 1.6, found


def test_extrapolating_from_short_small_steps_gives_what_a_full_step_saves():
    """The estimate's law, checked at a third point: a whole ResNet-50 step at 64 pixels and
    T = 40 saves what the per-frame part at 64 pixels plus a·T + b·T² (from T = 8, 16 at 32
    pixels) says."""
    import dataclasses

    from lrprop.training.train import build_loss, build_model

    config = load_config(None, ["data.image_size=64", "data.frames_per_view=40", "model.train_from=layer3", "pretrain.steps=0"])
    estimate = memory.step_memory(config)
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(config, model=dataclasses.replace(config.model, pretrained=None))).train()
    saved = memory._whole_step(model, build_loss(config.loss), config, 40, 64)
    assert estimate.activations == pytest.approx(saved, rel=0.02)


def test_a_step_that_cannot_fit_is_refused_naming_the_keys_that_size_it():
    config = load_config(None, ["model.backbone=small_cnn", "data.image_size=64", "data.frames_per_view=5000"])
    need = memory.step_memory(config)
    assert need.total > 8 * _GIB  # T×T losses of 5000 frames
    with pytest.raises(ConfigError) as refused:
        memory.check_step_fits(config, torch.device("cpu"), free=8 * _GIB)
    message = str(refused.value)
    assert message.startswith("data.frames_per_view=5000, data.videos_per_step=2, data.num_views=2, data.image_size=64")
    assert f"needs about {need.total / _GIB:.1f} GiB" in message and "cpu has 8.0 GiB free" in message
    assert "train.check_memory: false" in message
    assert memory.check_step_fits(config, torch.device("cpu"), free=need.total) == need  # exactly fits
    off = load_config(None, ["model.backbone=small_cnn", "data.frames_per_view=5000", "train.check_memory=false"])
    assert memory.check_step_fits(off, torch.device("cpu"), free=1) is None


def test_training_refuses_a_step_too_large_before_it_loads_a_video(tmp_path, monkeypatch):
    from lrprop.data.generator import synthetic_videos
    from lrprop.data.source import InMemoryVideos
    from lrprop.training import train as train_module

    monkeypatch.setattr(memory, "free_bytes", lambda device: 2 * _GIB)
    loaders = []
    monkeypatch.setattr(train_module, "make_loader", lambda *a, **k: loaders.append(1))
    config = load_config(None, ["model.backbone=small_cnn", "data.image_size=32", "data.frames_per_view=5000"])
    source = InMemoryVideos(synthetic_videos(0, 2, size=32, length_range=(20, 30)))
    with pytest.raises(ConfigError, match=r"^data\.frames_per_view=5000.* and cpu has 2\.0 GiB free"):
        train_module.train(config, source, checkpoint_dir=tmp_path / "ckpt")
    assert loaders == [] and not any((tmp_path / "ckpt").glob("*"))


def test_a_local_run_refuses_a_class_whose_step_cannot_fit_before_any_work(monkeypatch):
    from lrprop.config import config_to_dict
    from lrprop.pipeline import flows

    monkeypatch.setattr(memory, "free_bytes", lambda device: 2 * _GIB)
    config = load_config(None, ["model.backbone=small_cnn", "data.image_size=32"])
    flows._steps_fit_here(config_to_dict(config))  # fits
    config = config_to_dict(config)
    config["actions"] = {"swing": {"data": {"frames_per_view": 5000}}}
    with pytest.raises(ConfigError, match=r"^actions\.swing \(the class's config\): data\.frames_per_view=5000"):
        flows._steps_fit_here(config)
    config["ray"]["address"] = "ray://cluster:10001"  # a cluster's workers check their own memory
    flows._steps_fit_here(config)


def test_estimating_leaves_the_random_streams_as_they_were():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    memory.step_memory(load_config(None, ["model.backbone=small_cnn", "data.image_size=32"]))
    torch.testing.assert_close(torch.rand(3), expected, atol=0, rtol=0)


def test_a_backbone_frozen_after_its_pretraining_is_estimated_frozen():
    """The run's default route: pretrained, then frozen (pretrain.freeze_backbone), so its
    layers keep nothing for a backward pass and have no gradients or Adam moments."""
    small = ["model.backbone=small_cnn", "data.image_size=64"]
    frozen = memory.step_memory(load_config(None, small))
    trained = memory.step_memory(load_config(None, [*small, "pretrain.steps=0"]))
    assert frozen.activations < trained.activations and frozen.parameters < trained.parameters
    assert frozen.batch == trained.batch
