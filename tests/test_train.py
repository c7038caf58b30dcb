"""The trainer: it learns, it resumes exactly, it checkpoints without pickle, and the CLI runs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from tiny import tiny

from lrprop.config import ConfigError, config_from_dict
from lrprop.core.model import SmallCNNBackbone
from lrprop.data.generator import synthetic_videos
from lrprop.data.source import InMemoryVideos
from lrprop.training.checkpoint import latest_checkpoint
from lrprop.training.train import build_model, train

REPO = Path(__file__).resolve().parents[1]


def _config(**sections):
    return config_from_dict(tiny(**sections))


@pytest.fixture(scope="module")
def videos():
    return InMemoryVideos(synthetic_videos(0, 12, size=32, length_range=(24, 60)))


def test_a_few_hundred_steps_lower_every_loss_term(tmp_path, videos):
    config = _config(optim={"epochs": 40})  # 6 steps per epoch: 240 steps
    result = train(config, videos, checkpoint_dir=tmp_path)
    assert result.step == 240 and len(result.history) == 40
    for term in ("same", "prop", "sdtw", "total"):
        first = np.mean([h[f"loss_{term}"] for h in result.history[:5]])
        last = np.mean([h[f"loss_{term}"] for h in result.history[-5:]])
        assert last < first, (term, first, last)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("checkpoint_every", [0, 4])
def test_a_stopped_run_resumes_to_the_same_state(tmp_path, videos, checkpoint_every):
    base = {"epochs": 3}  # 6 steps per epoch
    straight = train(_config(optim=base, train={"checkpoint_every": checkpoint_every}), videos, checkpoint_dir=tmp_path / "a")

    # Stop part way through epoch 1 (step 8), then resume in a fresh call.
    part = train(
        _config(optim={**base, "max_steps": 8}, train={"checkpoint_every": checkpoint_every}),
        videos,
        checkpoint_dir=tmp_path / "b",
    )
    assert part.step == 8 and len(part.history) == 1
    torch.manual_seed(12345)  # the resumed run must not depend on the global generator's state
    resumed = train(_config(optim=base, train={"checkpoint_every": checkpoint_every}), videos, checkpoint_dir=tmp_path / "b")

    assert resumed.step == straight.step == 18
    a, b = _state(straight.model), _state(resumed.model)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)
    assert resumed.history == straight.history


def test_augmenting_on_the_device_trains_exactly_as_augmenting_in_the_loader(tmp_path, videos):
    data = {"augment": True, "loader_workers": 1}
    in_loader = train(_config(optim={"epochs": 2}, data=data), videos, checkpoint_dir=tmp_path / "a")
    on_device = train(_config(optim={"epochs": 2}, data={**data, "augment_on": "device"}), videos, checkpoint_dir=tmp_path / "b")
    a, b = _state(in_loader.model), _state(on_device.model)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)
    assert on_device.history == in_loader.history


def test_decoding_on_the_device_needs_augmenting_there_and_a_source_of_jpeg_frames(tmp_path, videos):
    with pytest.raises(ConfigError, match="data.decode_on: 'device' needs data.augment_on"):
        _config(data={"decode_on": "device"})
    with pytest.raises(ConfigError, match="needs a source of JPEG frames .* not InMemoryVideos"):
        train(_config(data={"augment_on": "device", "decode_on": "device"}), videos, checkpoint_dir=tmp_path)


def test_checkpoints_hold_no_pickle_and_are_pruned(tmp_path, videos):
    config = _config(optim={"epochs": 4}, train={"keep_checkpoints": 2})
    reports = []
    train(config, videos, checkpoint_dir=tmp_path, report=lambda m, c: reports.append((m, c)))
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["step_00000018", "step_00000024"]
    files = {p.name for p in (tmp_path / "step_00000024").iterdir()}
    assert files == {"model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json", "complete.json"}
    state = json.loads((tmp_path / "step_00000024" / "state.json").read_text())
    assert state["step"] == 24 and state["config"]["loss"]["alpha"] == 0.01
    assert [m["epoch"] for m, _ in reports] == [0, 1, 2, 3]
    assert reports[-1][1] == latest_checkpoint(tmp_path)


def test_checkpoints_every_few_epochs_and_always_at_the_end(tmp_path, videos):
    config = _config(optim={"epochs": 5}, train={"keep_checkpoints": 10, "checkpoint_epochs": 2})
    reports = []
    train(config, videos, checkpoint_dir=tmp_path, report=lambda m, c: reports.append((m["epoch"], c)))
    assert [epoch for epoch, _ in reports] == [0, 1, 2, 3, 4]  # every epoch reports its metrics
    assert [epoch for epoch, c in reports if c is not None] == [1, 3, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000012", "step_00000024", "step_00000030"]
    with pytest.raises(ConfigError, match="train.checkpoint_epochs"):
        _config(train={"checkpoint_epochs": 0})


def test_pretrained_backbone_weights_are_loaded_from_a_path(tmp_path):
    source = SmallCNNBackbone(width=8)
    torch.nn.init.normal_(source.net[0].weight)
    weights = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, weights)
    model = build_model(_config(model={"pretrained": str(weights)}))
    torch.testing.assert_close(model.backbone.net[0].weight, source.net[0].weight)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        build_model(_config(model={"pretrained": str(tmp_path / "missing.safetensors")}))


def test_resume_refuses_a_changed_config_or_data_set(tmp_path, videos):
    train(_config(optim={"epochs": 1}), videos, checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"loss.beta: 0.4 -> 1.6"):
        train(_config(optim={"epochs": 1}, loss={"beta": 1.6}), videos, checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match="optim.epochs"):
        train(_config(optim={"epochs": 3}), videos, checkpoint_dir=tmp_path)
    fewer = InMemoryVideos(videos.videos[:10])
    with pytest.raises(ConfigError, match="12 videos"):
        train(_config(optim={"epochs": 1}), fewer, checkpoint_dir=tmp_path)
    # Run mechanics may change: a new log interval resumes (and finds nothing left to do).
    done = train(_config(optim={"epochs": 1}, train={"log_every": 3}), videos, checkpoint_dir=tmp_path)
    assert done.step == 6


def test_an_unreadable_newest_checkpoint_falls_back_to_the_one_before(tmp_path, videos):
    straight = train(_config(optim={"epochs": 2}), videos, checkpoint_dir=tmp_path / "a")
    train(_config(optim={"epochs": 2, "max_steps": 6}), videos, checkpoint_dir=tmp_path / "b")
    newest = latest_checkpoint(tmp_path / "b")
    train(_config(optim={"epochs": 2, "max_steps": 9}), videos, checkpoint_dir=tmp_path / "b")
    broken = latest_checkpoint(tmp_path / "b")
    assert broken != newest
    (broken / "model.safetensors").write_bytes(b"torn write")
    resumed = train(_config(optim={"epochs": 2}), videos, checkpoint_dir=tmp_path / "b")
    for key, value in _state(straight.model).items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_data_parallel_ranks_split_each_epoch_and_only_rank_0_writes(tmp_path, videos):
    seen = {}
    for rank in (0, 1):
        reports = []
        result = train(
            _config(optim={"epochs": 1}),
            videos,
            checkpoint_dir=tmp_path / f"rank{rank}",
            report=lambda m, c, reports=reports: reports.append(c),
            world_rank=rank,
            world_size=2,
        )
        assert result.step == 3  # 12 videos / 2 per step / 2 workers
        seen[rank] = reports
    assert seen[0][0] is not None and seen[1] == [None]
    assert not (tmp_path / "rank1").exists()


def test_train_step_is_one_adam_step_on_the_loss_of_the_batch(videos):
    """The public step against the sequence its docstring states, written out here on a copy of
    the model: forward, loss, backward, clipping, Adam, bit for bit on the CPU."""
    import copy

    from lrprop.data.views import EpochBatchSampler
    from lrprop.training.train import build_loss, make_loader, train_step

    config = _config()
    batch = next(iter(make_loader(config, videos, EpochBatchSampler(len(videos), 2, seed=0), pin_memory=False)))
    frames, mask, stamps = batch["frames"], batch["mask"], batch["timestamps"]
    torch.manual_seed(0)
    model = build_model(config).train()
    twin = copy.deepcopy(model)
    loss_fn = build_loss(config.loss)

    def parts(m):
        params = [p for p in m.parameters() if p.requires_grad]
        return params, torch.optim.Adam(params, lr=1e-3)

    params, optimizer = parts(model)
    torch.manual_seed(1)  # dropout draws
    terms = train_step(model, loss_fn, optimizer, params, frames, mask, stamps, grad_clip=config.optim.grad_clip)

    twin_params, twin_optimizer = parts(twin)
    torch.manual_seed(1)
    B, V, T = mask.shape
    z, h = twin(frames.flatten(0, 1), mask.flatten(0, 1))
    total = loss_fn(z.view(B, V, T, -1), h.view(B, V, T, -1), mask, stamps)["total"]
    total.backward()
    torch.nn.utils.clip_grad_norm_(twin_params, config.optim.grad_clip)
    twin_optimizer.step()

    torch.testing.assert_close(terms["total"].detach(), total.detach(), rtol=0, atol=0)
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_a_non_finite_loss_stops_the_run_naming_the_step_videos_and_last_checkpoint(tmp_path, videos, monkeypatch):
    import lrprop.training.train as training

    real = training.build_loss

    def poisoned(loss_config):
        loss = real(loss_config)
        calls = []

        def forward(*args):
            terms = loss(*args)
            calls.append(1)
            return {**terms, "total": terms["total"] * float("nan")} if len(calls) == 8 else terms

        return forward

    monkeypatch.setattr(training, "build_loss", poisoned)
    config = _config(optim={"epochs": 3}, train={"checkpoint_epochs": 1})  # 6 steps per epoch
    with pytest.raises(
        FloatingPointError, match=r"^loss is nan at step 7 \(epoch 1, videos \[\d+, \d+\]\); the last checkpoint is .*step_0+6$"
    ):
        train(config, videos, checkpoint_dir=tmp_path)
    assert [p.name for p in sorted(tmp_path.iterdir())][-1].endswith("00000006")  # nothing written after


def test_views_longer_than_every_video_train_with_a_warning_naming_the_key(tmp_path, caplog):
    short = InMemoryVideos(synthetic_videos(0, 2, size=32, length_range=(10, 12)))
    longest = max(short.num_frames(i) for i in range(len(short)))
    with caplog.at_level(logging.WARNING, logger="lrprop.training.train"):
        train(_config(optim={"epochs": 1}, data={"frames_per_view": 16, "videos_per_step": 2}), short, checkpoint_dir=tmp_path)
    (warning,) = [r.getMessage() for r in caplog.records if "data.frames_per_view" in r.getMessage()]
    assert f"(T = 16) is longer than every training video (the longest has {longest} frames)" in warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lrprop.training.train"):
        train(_config(optim={"epochs": 1}, data={"frames_per_view": 8}), short, checkpoint_dir=tmp_path / "fits")
    assert not [r for r in caplog.records if "data.frames_per_view" in r.getMessage()]


def test_prop_path_labels_finds_l_prop_s_path_on_the_label_oracle_of_the_sampled_frames(tmp_path, videos, monkeypatch):
    """The diagnostic route: each step's L_prop path is found on the views' oracle points (phase
    plus progress, read at their time stamps), whose cost is lowest between frames of one phase;
    an unlabelled video is refused by name."""
    import lrprop.core.losses as losses_module
    from lrprop.data.source import Video

    seen = []
    real = losses_module.LRPropLoss.prop_term

    def spy(self, h, t, mask, cost, ix, iy, lengths):
        seen.append(cost.detach().clone())
        return real(self, h, t, mask, cost, ix, iy, lengths)

    monkeypatch.setattr(losses_module.LRPropLoss, "prop_term", spy)
    config = _config(optim={"epochs": 1, "max_steps": 2}, loss={"prop_path": "labels"})
    result = train(config, videos, checkpoint_dir=tmp_path)
    assert result.step == 2 and len(seen) >= 2  # the memory estimate's trial step comes first
    # On oracle points x_i, y_j of the plane the cost is 2 - 2 x_i·y_j: 2 - cost has rank 2 at
    # most, where the embeddings' cost (the memory estimate's step, first) has full rank.
    for cost, rank in ((seen[-1], 2), (seen[0], None)):
        singular = torch.linalg.svdvals(2 - cost.double())  # (pairs, T)
        small = (singular[:, 2:] < 1e-4 * singular[:, :1]).all()
        assert bool(small) == (rank == 2)
    assert float(seen[-1].min()) < 0.05  # some frames of two videos are at the same moment

    plain = synthetic_videos(0, 3, size=32, length_range=(24, 60))
    unlabelled = InMemoryVideos([*plain, Video("no_labels_7", plain[0].frames, None)])
    with pytest.raises(ValueError, match="no_labels_7"):
        train(config, unlabelled, checkpoint_dir=tmp_path / "other")
