"""The backbone's time-contrastive pretraining: its loss against a float64 reference written from
the definition, the per-frame augmentation against closed forms, the pretraining loop and its
place in :func:`lrprop.training.train.train`, and the position-free encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import log_softmax
from tiny import tiny

from lrprop.config import PretrainConfig, config_from_dict
from lrprop.core.losses import time_contrastive_loss
from lrprop.core.model import FrameEncoder, SmallCNNBackbone
from lrprop.data.augment import eval_transform
from lrprop.data.frame_augment import augment_frames
from lrprop.data.generator import synthetic_videos
from lrprop.data.source import InMemoryVideos
from lrprop.training.pretrain import draw_frame_pairs, pretrain_backbone


def _reference_loss(ha, hb, ta, tb, tau, sigma2) -> float:
    """Mean over the rows of both directions of KL(P_i ‖ Q_i), one video at a time, float64."""
    rows = []
    for v in range(len(ha)):
        a = ha[v] / np.linalg.norm(ha[v], axis=-1, keepdims=True)
        b = hb[v] / np.linalg.norm(hb[v], axis=-1, keepdims=True)
        for x, y, tx, ty in ((a, b, ta[v], tb[v]), (b, a, tb[v], ta[v])):
            log_q = log_softmax(x @ y.T / tau, axis=-1)
            log_p = log_softmax(-((tx[:, None] - ty[None, :]) ** 2) / (2 * sigma2), axis=-1)
            rows.extend((np.exp(log_p) * (log_p - log_q)).sum(-1))
    return float(np.mean(rows))


def test_time_contrastive_loss_matches_a_float64_reference():
    rng = np.random.default_rng(0)
    ha, hb = rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 5, 4))
    ta = np.sort(rng.integers(0, 40, size=(3, 5)), axis=-1).astype(float)
    tb = np.clip(ta + rng.integers(-2, 3, size=(3, 5)), 0, 39)
    got = time_contrastive_loss(*(torch.tensor(x, dtype=torch.float32) for x in (ha, hb, ta, tb)), tau=0.1, sigma2=10.0)
    assert float(got) == pytest.approx(_reference_loss(ha, hb, ta, tb, 0.1, 10.0), rel=1e-4)


def test_time_contrastive_loss_compares_frames_of_the_same_video_only():
    """The loss of a batch is the mean of its videos' losses: another video's frames are never a
    candidate (changing them changes nothing of this video's rows)."""
    torch.manual_seed(0)
    ha, hb = torch.randn(2, 6, 8), torch.randn(2, 6, 8)
    t = torch.arange(6.0).expand(2, -1)
    whole = time_contrastive_loss(ha, hb, t, t, tau=0.1, sigma2=10.0)
    parts = [time_contrastive_loss(ha[v : v + 1], hb[v : v + 1], t[:1], t[:1], tau=0.1, sigma2=10.0) for v in range(2)]
    assert float(whole) == pytest.approx(float(sum(parts) / 2), rel=1e-6)


def test_time_contrastive_loss_is_lowest_for_frames_told_apart_by_time():
    t = torch.arange(8.0)[None]
    distinct = torch.eye(8)[None]  # each frame its own direction: Q peaks where P does
    same = torch.ones(1, 8, 8)  # every frame alike: Q uniform, KL = log 8 for a one-hot P
    good = time_contrastive_loss(distinct, distinct, t, t, tau=0.05, sigma2=0.01)
    bad = time_contrastive_loss(same, same, t, t, tau=0.05, sigma2=0.01)
    assert float(good) < 1e-6 and float(bad) == pytest.approx(np.log(8), rel=1e-5)


def _frames(n=4, size=16, seed=0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8))


IDENTITY = {"crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0), "flip_p": 0.0, "jitter_p": 0.0, "grayscale_p": 0.0, "blur_p": 0.0}


def test_augment_frames_with_every_draw_off_is_the_evaluation_transform():
    frames = _frames()
    got = augment_frames(frames, 16, torch.Generator().manual_seed(0), **IDENTITY)
    torch.testing.assert_close(got, eval_transform(16)(frames), atol=1e-5, rtol=0)


def test_augment_frames_flip_and_grayscale_in_closed_form():
    frames = _frames()
    plain = augment_frames(frames, 16, torch.Generator(), **IDENTITY)
    flipped = augment_frames(frames, 16, torch.Generator(), **{**IDENTITY, "flip_p": 1.0})
    torch.testing.assert_close(flipped, plain.flip(-1), atol=1e-5, rtol=0)
    gray = augment_frames(frames, 16, torch.Generator(), **{**IDENTITY, "grayscale_p": 1.0})
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    raw = gray * std + mean  # undo the normalisation: the three channels are equal
    torch.testing.assert_close(raw[:, 0], raw[:, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(raw[:, 0], raw[:, 2], atol=1e-5, rtol=0)


def test_augment_frames_blur_keeps_a_constant_image_and_smooths_noise():
    flat = torch.full((2, 3, 16, 16), 128, dtype=torch.uint8)
    on = {**IDENTITY, "blur_p": 1.0, "blur_sigma": (1.5, 1.5)}
    out = augment_frames(flat, 16, torch.Generator(), **on)
    torch.testing.assert_close(out, augment_frames(flat, 16, torch.Generator(), **IDENTITY), atol=1e-5, rtol=0)
    noisy = _frames(2)
    blurred, sharp = (augment_frames(noisy, 16, torch.Generator(), **kw) for kw in (on, IDENTITY))
    assert blurred.std() < sharp.std()


def test_augment_frames_draws_per_frame_and_reproducibly():
    frame = _frames(1, 32)
    batch = frame.expand(6, -1, -1, -1)
    a = augment_frames(batch, 24, torch.Generator().manual_seed(3))
    b = augment_frames(batch, 24, torch.Generator().manual_seed(3))
    assert a.shape == (6, 3, 24, 24) and a.dtype == torch.float32
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.allclose(a[0], a[1])  # the same frame, its own parameters each time


@pytest.mark.parametrize(("length", "count"), [(50, 16), (5, 16), (16, 16)])
def test_draw_frame_pairs_stay_in_the_video_and_near_their_anchor(length, count):
    anchors, positives = draw_frame_pairs(length, count, 2, np.random.default_rng(0))
    assert anchors.shape == positives.shape == (count,)
    assert (np.diff(anchors) >= 0).all() and anchors.min() >= 0 and anchors.max() < length
    assert positives.min() >= 0 and positives.max() < length and (np.abs(positives - anchors) <= 2).all()
    if count <= length:
        assert len(set(anchors.tolist())) == count


SETTINGS = PretrainConfig(steps=3, videos_per_step=2, frames_per_video=4)


def _source():
    return InMemoryVideos(synthetic_videos(0, 3, size=32, length_range=(12, 20)))


def _backbone():
    torch.manual_seed(0)
    return SmallCNNBackbone(width=4)


def test_pretraining_changes_the_backbone_deterministically_and_leaves_the_global_rng():
    images = torch.rand(2, 3, 32, 32)
    runs = []
    for _ in range(2):
        backbone = _backbone()
        before = backbone.eval()(images).clone()
        torch.manual_seed(7)
        result = pretrain_backbone(backbone.train(), _source(), SETTINGS, image_size=32, seed=0, device=torch.device("cpu"))
        after_rng = torch.rand(())
        runs.append((backbone.eval()(images), after_rng))
        assert len(result.losses) == 3 and np.isfinite(result.losses).all() and result.frames_per_s > 0
        assert not torch.allclose(before, runs[-1][0])
    torch.testing.assert_close(runs[0][0], runs[1][0], atol=0, rtol=0)
    torch.manual_seed(7)
    assert float(runs[0][1]) == float(torch.rand(()))  # the global generator was not advanced


def test_pretraining_reports_each_step_and_its_loss():
    seen = []
    result = pretrain_backbone(
        _backbone().train(), _source(), SETTINGS, image_size=32, seed=0, device=torch.device("cpu"),
        on_step=lambda step, loss: seen.append((step, loss)),
    )  # fmt: skip
    assert seen == list(enumerate(result.losses, start=1))


def test_pretraining_reduces_its_loss():
    backbone = _backbone()
    settings = PretrainConfig(steps=60, videos_per_step=3, frames_per_video=6, lr=3e-3)
    losses = pretrain_backbone(backbone, _source(), settings, image_size=32, seed=0, device=torch.device("cpu")).losses
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def _tiny_encoder(frames_per_view: int, **options) -> FrameEncoder:
    """A one-layer encoder on a 4-channel small CNN, small enough for exact comparisons."""
    sizes = dict(hidden_dim=16, model_dim=16, num_layers=1, num_heads=2, ffn_dim=16, embedding_dim=8, projection_dim=8)
    return FrameEncoder(SmallCNNBackbone(4), frames_per_view=frames_per_view, **sizes, **options)


def _config(**pretrain):
    return config_from_dict(tiny(optim={"epochs": 1}, pretrain=pretrain))


def test_train_pretrains_only_from_random_weights_and_not_when_resuming(tmp_path, monkeypatch):
    import lrprop.training.train
    from lrprop.training.train import train

    calls = []
    real = lrprop.training.train.pretrain_backbone
    monkeypatch.setattr(lrprop.training.train, "pretrain_backbone", lambda *a, **k: calls.append(1) or real(*a, **k))
    source = _source()
    first = train(_config(), source, checkpoint_dir=tmp_path / "a")
    assert calls == [1]
    train(_config(), source, checkpoint_dir=tmp_path / "a")  # resumes from the last checkpoint
    assert calls == [1]
    train(_config(steps=0), source, checkpoint_dir=tmp_path / "b")
    assert calls == [1]
    # Pretraining changes what is trained: the same run without it ends elsewhere.
    without = train(_config(steps=0), source, checkpoint_dir=tmp_path / "c").model.state_dict()
    assert any(not torch.equal(v, without[k]) for k, v in first.model.state_dict().items() if v.is_floating_point())


def test_train_skips_pretraining_when_weights_are_given(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    import lrprop.training.train
    from lrprop.training.train import train

    weights = tmp_path / "w.safetensors"
    torch.manual_seed(1)
    save_file(SmallCNNBackbone(width=8).state_dict(), str(weights))
    monkeypatch.setattr(lrprop.training.train, "pretrain_backbone", lambda *a, **k: pytest.fail("pretrained with weights given"))
    config = config_from_dict(tiny(optim={"epochs": 1}, model={"pretrained": str(weights)}))
    train(config, _source(), checkpoint_dir=tmp_path / "ckpt")


def test_an_encoder_without_positions_is_equivariant_to_the_order_of_frames():
    torch.manual_seed(0)
    model = _tiny_encoder(6, positions="none").eval()
    frames, mask = torch.randn(1, 6, 3, 32, 32), torch.ones(1, 6, dtype=torch.bool)
    order = torch.tensor([3, 1, 5, 0, 2, 4])
    z, _ = model(frames, mask)
    z_perm, _ = model(frames[:, order], mask)
    torch.testing.assert_close(z_perm, z[:, order], atol=1e-5, rtol=1e-5)
    z_pos, _ = model(frames, mask, torch.arange(6.0)[None] * 10)
    torch.testing.assert_close(z_pos, z, atol=0, rtol=0)  # positions are ignored
    with pytest.raises(ValueError, match="positions"):
        FrameEncoder(SmallCNNBackbone(4), frames_per_view=6, positions="learned")


def test_the_encoder_returns_the_backbone_features_it_embedded():
    from lrprop.core.model import pooled_features

    torch.manual_seed(0)
    model = _tiny_encoder(5).eval()
    frames = torch.randn(2, 5, 3, 32, 32)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    z, h, feats = model(frames, mask, with_features=True)
    z0, h0 = model(frames, mask)
    torch.testing.assert_close(z, z0, atol=0, rtol=0)
    torch.testing.assert_close(h, h0, atol=0, rtol=0)
    torch.testing.assert_close(feats[mask], pooled_features(model.backbone, frames[mask]), atol=1e-6, rtol=1e-6)
    assert feats.shape == (2, 5, 32) and not feats[~mask].any()


def test_training_with_the_propagation_path_on_backbone_features(tmp_path):
    from lrprop.training.train import train

    config = config_from_dict(tiny(optim={"epochs": 1}, loss={"alpha": 0.01, "beta": 0.4, "prop_path": "features"}))
    result = train(config, _source(), checkpoint_dir=tmp_path)
    assert np.isfinite(result.history[-1]["loss_prop"]) and result.history[-1]["loss_prop"] > 0
    with pytest.raises(Exception, match="prop_path"):
        config_from_dict(tiny(loss={"prop_path": "pixels"}))


def test_a_frozen_backbone_keeps_its_weights_and_batchnorm_statistics_while_the_encoder_trains():
    torch.manual_seed(0)
    model = _tiny_encoder(5).freeze_backbone()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    model.train()
    assert not model.backbone.training and model.mlp.training
    z, h = model(torch.randn(2, 5, 3, 32, 32), torch.ones(2, 5, dtype=torch.bool))
    (z.sum() + h.sum()).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.mlp[1].weight.grad is not None
    after = model.backbone.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # running means and counts too


def test_train_freezes_the_backbone_as_pretrained_and_resumes_so(tmp_path, monkeypatch):
    import lrprop.training.train
    from lrprop.training.train import train

    pretrained, calls = {}, []
    real = lrprop.training.train.pretrain_backbone

    def pretrain_and_remember(backbone, *a, **k):
        out = real(backbone, *a, **k)
        calls.append(1)
        pretrained.update({k: v.clone() for k, v in backbone.state_dict().items()})
        return out

    monkeypatch.setattr(lrprop.training.train, "pretrain_backbone", pretrain_and_remember)
    frozen = {"freeze_backbone": True}
    # Stopped part way (optim.max_steps), then resumed to the end of its 2 epochs.
    first = train(
        config_from_dict(tiny(optim={"epochs": 2, "max_steps": 1}, pretrain=frozen)), _source(), checkpoint_dir=tmp_path
    )
    assert pretrained and all(torch.equal(v, first.model.backbone.state_dict()[k]) for k, v in pretrained.items())
    head = {k: v.clone() for k, v in first.model.mlp.state_dict().items()}
    final = train(config_from_dict(tiny(optim={"epochs": 2}, pretrain=frozen)), _source(), checkpoint_dir=tmp_path)
    assert final.step > first.step and calls == [1]  # resumed, not pretrained again
    assert all(torch.equal(v, final.model.backbone.state_dict()[k]) for k, v in pretrained.items())
    assert any(not torch.equal(v, final.model.mlp.state_dict()[k]) for k, v in head.items())


def test_sequences_dropped_from_the_positions_are_embedded_as_without_positions():
    torch.manual_seed(0)
    model = _tiny_encoder(6, drop_positions=0.5, dropout=0.0)
    frames, mask = torch.randn(8, 6, 3, 32, 32), torch.ones(8, 6, dtype=torch.bool)
    torch.manual_seed(3)
    keep = (torch.rand(8, 1, 1) >= 0.5).flatten()
    assert 0 < int(keep.sum()) < 8  # this seed drops some sequences and keeps others
    torch.manual_seed(3)
    z_train, _ = model.train()(frames, mask)
    model.use_positions = False
    z_none, _ = model(frames, mask)
    model.use_positions, model.drop_positions = True, 0.0
    z_all, _ = model(frames, mask)
    torch.testing.assert_close(z_train[~keep], z_none[~keep], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(z_train[keep], z_all[keep], atol=1e-6, rtol=1e-6)
    # In evaluation every sequence has its positions.
    model.eval()
    z_eval, _ = model(frames, mask)
    model.drop_positions = 0.5
    torch.testing.assert_close(model(frames, mask)[0], z_eval, atol=0, rtol=0)
    with pytest.raises(Exception, match="drop_positions"):
        config_from_dict(tiny(model={"drop_positions": 1.0}))


def test_a_backbone_pretrained_once_and_given_frozen_trains_as_the_default_route(tmp_path, monkeypatch):
    """Pretrained and frozen in the run, or pretrained once (train.pretrained_backbone), saved,
    and given as model.pretrained with model.train_from: none: the same training, draw for draw."""
    import lrprop.training.train
    from lrprop.core.model import backbone_weights_bytes
    from lrprop.training.train import pretrained_backbone, train

    config = _config(freeze_backbone=True)
    route = train(config, _source(), checkpoint_dir=tmp_path / "a").model.state_dict()
    backbone, result = pretrained_backbone(config, _source())
    assert len(result.losses) == config.pretrain.steps
    saved = tmp_path / "backbone.safetensors"
    saved.write_bytes(backbone_weights_bytes(backbone))
    monkeypatch.setattr(lrprop.training.train, "pretrain_backbone", lambda *a, **k: pytest.fail("pretrained again"))
    given = config_from_dict(tiny(optim={"epochs": 1}, model={"pretrained": str(saved), "train_from": "none"}))
    again = train(given, _source(), checkpoint_dir=tmp_path / "b").model.state_dict()
    for key, value in route.items():
        torch.testing.assert_close(again[key], value, atol=0, rtol=0, msg=key)
