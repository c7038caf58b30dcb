"""Tests of lrprop/core/model.py: shapes, normalisation, padding invariance, positions, freezing, weights.

Oracles: unit norms, zeros on padding, the closed form of the sinusoidal encoding computed here
with numpy, outputs that must not move when padding changes, and state dicts compared with the
model the weights came from.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save as save_safetensors_bytes
from safetensors.torch import save_file

from lrprop.core.model import (
    RESNET_STAGES,
    FrameEncoder,
    ResNet50Backbone,
    SinusoidalPositions,
    SmallCNNBackbone,
    build_backbone,
    load_backbone_weights,
    local_transformer,
    pooled_features,
    pooled_width,
)

IMG = 32  # image side for the small encoder
E, P = 8, 6  # embedding and projection widths of the small encoder


def small_encoder(
    frames_per_view: int = 6,
    dropout: float = 0.1,
    seed: int = 0,
    positions: str = "sinusoidal",
    attention_window: int = 8,
    pooling: str = "max",
) -> FrameEncoder:
    torch.manual_seed(seed)
    return FrameEncoder(
        SmallCNNBackbone(width=4),
        frames_per_view=frames_per_view,
        hidden_dim=24,
        model_dim=16,
        num_layers=2,
        num_heads=2,
        ffn_dim=32,
        embedding_dim=E,
        projection_dim=P,
        dropout=dropout,
        positions=positions,
        attention_window=attention_window,
        pooling=pooling,
    )


def prefix_mask(lengths: list[int], S: int) -> torch.Tensor:
    return torch.arange(S)[None, :] < torch.tensor(lengths)[:, None]  # (N, S)


# ----------------------------------------------------------------------------- FrameEncoder


def test_a_channels_last_encoder_computes_what_the_default_layout_does():
    reference = small_encoder(dropout=0.0).eval()
    encoder = copy.deepcopy(reference).use_channels_last()
    convs = [m for m in encoder.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    seen = []
    nhwc = torch.channels_last
    encoder.backbone.register_forward_pre_hook(lambda _, args: seen.append(args[0].is_contiguous(memory_format=nhwc)))
    frames, mask = torch.randn(3, 6, 3, IMG, IMG), prefix_mask([6, 4, 2], 6)
    with torch.no_grad():
        (z, h), (z_ref, h_ref) = encoder(frames, mask), reference(frames, mask)
    assert seen == [True]  # the images reach the backbone in NHWC too
    torch.testing.assert_close(z, z_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h, h_ref, rtol=1e-5, atol=1e-5)
    state, state_ref = encoder.state_dict(), reference.state_dict()
    assert state.keys() == state_ref.keys() and all(torch.equal(state[k], state_ref[k]) for k in state)


@pytest.mark.parametrize("train", [False, True])
def test_encoder_shapes_norms_and_zero_padding(train):
    N, S = 3, 6
    model = small_encoder(frames_per_view=S)
    model.train(train)
    g = torch.Generator().manual_seed(1)
    frames = torch.randn(N, S, 3, IMG, IMG, generator=g)
    mask = prefix_mask([6, 4, 2], S)
    # A non-prefix mask too: validity is per frame, not assumed to be a prefix by the encoder.
    mask[0, 2] = False
    with torch.no_grad():
        z, h = model(frames, mask)
    assert z.shape == (N, S, E)
    assert h.shape == (N, S, P)
    assert z.dtype == torch.float32 and h.dtype == torch.float32
    ones = torch.ones(int(mask.sum()))
    torch.testing.assert_close(z[mask].norm(dim=-1), ones, atol=1e-5, rtol=0)
    torch.testing.assert_close(h[mask].norm(dim=-1), ones, atol=1e-5, rtol=0)
    assert torch.count_nonzero(z[~mask]) == 0
    assert torch.count_nonzero(h[~mask]) == 0
    assert torch.isfinite(z).all() and torch.isfinite(h).all()


@pytest.mark.parametrize("positions", ["sinusoidal", "local"])
@pytest.mark.parametrize("train", [False, True])
def test_garbage_in_padded_slots_changes_nothing(train, positions):
    """Same S, same mask; the content of the padded frames is replaced by garbage."""
    N, S = 3, 6
    model = small_encoder(frames_per_view=S, dropout=0.0, positions=positions)
    model.train(train)
    g = torch.Generator().manual_seed(2)
    frames = torch.randn(N, S, 3, IMG, IMG, generator=g)
    mask = prefix_mask([6, 3, 2], S)
    other = frames.clone()
    other[~mask] = 100.0 * torch.randn(int((~mask).sum()), 3, IMG, IMG, generator=g)
    with torch.no_grad():
        z1, h1 = model(frames, mask)
        z2, h2 = model(other, mask)
    assert torch.allclose(z1[mask], z2[mask], atol=1e-5, rtol=0)
    assert torch.allclose(h1[mask], h2[mask], atol=1e-5, rtol=0)


@pytest.mark.parametrize("positions", ["sinusoidal", "local"])
@pytest.mark.parametrize("train", [False, True])
def test_appending_padded_frames_changes_nothing(train, positions):
    """Appending masked garbage frames (S -> S + 4) leaves every valid frame's output unchanged.

    The default positions are linspace(0, T - 1, S) and so depend on S by design (§2); the
    positions of the valid frames are passed explicitly so that only the padding changes.
    """
    N, S, extra = 3, 6, 4
    model = small_encoder(frames_per_view=S, dropout=0.0, positions=positions)
    model.train(train)
    g = torch.Generator().manual_seed(3)
    frames = torch.randn(N, S, 3, IMG, IMG, generator=g)
    mask = prefix_mask([6, 5, 2], S)
    positions = torch.arange(S, dtype=torch.float32).expand(N, S)

    garbage = 50.0 * torch.rand(N, extra, 3, IMG, IMG, generator=g) - 25.0
    frames_long = torch.cat([frames, garbage], dim=1)
    mask_long = torch.cat([mask, torch.zeros(N, extra, dtype=torch.bool)], dim=1)
    positions_long = torch.cat([positions, 1000.0 * torch.rand(N, extra, generator=g)], dim=1)
    with torch.no_grad():
        z1, h1 = model(frames, mask, positions, times=positions)
        z2, h2 = model(frames_long, mask_long, positions_long, times=positions_long)
    assert torch.allclose(z1[mask], z2[:, :S][mask], atol=1e-5, rtol=0)
    assert torch.allclose(h1[mask], h2[:, :S][mask], atol=1e-5, rtol=0)
    assert torch.count_nonzero(z2[:, S:]) == 0 and torch.count_nonzero(h2[:, S:]) == 0


def test_padding_invariance_is_not_vacuous():
    """The same comparison does see a change of a *valid* frame (guards the tests above)."""
    N, S = 2, 6
    model = small_encoder(frames_per_view=S, dropout=0.0).eval()
    g = torch.Generator().manual_seed(4)
    frames = torch.randn(N, S, 3, IMG, IMG, generator=g)
    mask = prefix_mask([6, 4], S)
    other = frames.clone()
    other[1, 3] = torch.randn(3, IMG, IMG, generator=g)  # a valid frame
    with torch.no_grad():
        z1, _ = model(frames, mask)
        z2, _ = model(other, mask)
    assert torch.allclose(z1[0], z2[0], atol=1e-5)  # another sequence is untouched in eval mode
    assert not torch.allclose(z1[1, :4], z2[1, :4], atol=1e-3)  # attention spreads the change


# ----------------------------------------------------------------------------- local attention


def _trimmed_and_repaced(model: FrameEncoder, frames: torch.Tensor, true: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The embeddings (S, E) of frames (S, 3, H, W) and (m, E) of the copy whose frame j is frames[true[j]]."""
    with torch.no_grad():
        za, _ = model(frames[None], torch.ones(1, len(frames), dtype=torch.bool))
        zb, _ = model(frames[torch.as_tensor(true)][None], torch.ones(1, len(true), dtype=torch.bool))
    return za[0], zb[0]


@pytest.mark.parametrize("cut", [1, 5, 9])
def test_local_attention_a_trimmed_video_embeds_every_frame_beyond_the_context_the_same(cut):
    """Cut ``cut`` frames off the start: a frame farther than ``context_frames`` from the cut
    sees exactly the frames it saw before, so its embedding is unchanged; nearer ones may move."""
    S = 30
    model = small_encoder(dropout=0.0, positions="local", attention_window=3).eval()
    assert model.context_frames == 2 * 3  # two layers, each looking 3 frames further
    frames = torch.randn(S, 3, IMG, IMG, generator=torch.Generator().manual_seed(7))
    za, zb = _trimmed_and_repaced(model, frames, np.arange(cut, S))
    far = slice(model.context_frames, None)  # of the trimmed copy
    torch.testing.assert_close(zb[far], za[cut:][far], rtol=0, atol=1e-5)
    assert (zb[0] - za[cut]).norm() > 1e-4  # the frame next to the cut did move


def test_sinusoidal_positions_move_every_frame_of_a_trimmed_video():
    """The reason for "local": with linspace positions, trimming a video moves every embedding."""
    S, cut = 30, 5
    model = small_encoder(frames_per_view=20, dropout=0.0).eval()
    frames = torch.randn(S, 3, IMG, IMG, generator=torch.Generator().manual_seed(7))
    za, zb = _trimmed_and_repaced(model, frames, np.arange(cut, S))
    moved = (zb - za[cut:]).norm(dim=-1)
    assert (moved > 1e-3).all()


def test_local_attention_is_blind_to_where_the_frames_sit_in_time():
    """Shifting every time by a constant changes nothing: no absolute position reaches the model."""
    model = small_encoder(dropout=0.0, positions="local", attention_window=4).eval()
    frames = torch.randn(2, 12, 3, IMG, IMG, generator=torch.Generator().manual_seed(8))
    mask = prefix_mask([12, 9], 12)
    times = torch.sort(torch.randint(0, 40, (2, 12), generator=torch.Generator().manual_seed(9)).float()).values
    with torch.no_grad():
        z1, h1 = model(frames, mask, times=times)
        z2, h2 = model(frames, mask, times=times + 1234.0)
        z3, _ = model(frames, mask, times=times * 3.0)  # farther apart: fewer frames in each window
    torch.testing.assert_close(z1, z2, rtol=0, atol=1e-5)
    torch.testing.assert_close(h1, h2, rtol=0, atol=1e-5)
    assert not torch.allclose(z1[mask], z3[mask], atol=1e-3)


def test_local_attention_sees_the_direction_of_time():
    """Played backwards, the frames embed differently, through the direction bias alone: with
    no bias a reversed video embeds as the reversed embeddings (attention is orderless)."""
    model = small_encoder(dropout=0.0, positions="local", attention_window=4).eval()
    frames = torch.randn(10, 3, IMG, IMG, generator=torch.Generator().manual_seed(10))
    backwards = np.arange(9, -1, -1)
    za, zb = _trimmed_and_repaced(model, frames, backwards)
    torch.testing.assert_close(zb.flip(0), za, rtol=0, atol=1e-5)
    with torch.no_grad():
        model.direction_bias.copy_(torch.tensor([[2.0, 0.0, -2.0], [-2.0, 0.0, 2.0]]))
    za, zb = _trimmed_and_repaced(model, frames, backwards)
    assert (zb.flip(0) - za).abs().max() > 1e-4


def test_local_transformer_is_pytorchs_own_encoder_computation():
    """The oracle: nn.TransformerEncoder's unfused (training-mode) path with dropout off, given
    the same per-head mask; in eval mode its fused path gives other numbers for such a mask."""
    model = small_encoder(dropout=0.0, positions="local", attention_window=2)
    with torch.no_grad():
        model.direction_bias.copy_(torch.tensor([[1.5, 0.0, -1.0], [-0.5, 0.3, 2.0]]))
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 7, 16, generator=g)
    times = torch.tensor([[0.0, 1, 2, 4, 5, 8, 9], [0, 2, 3, 4, 6, 7, 7]])
    mask = prefix_mask([7, 5], 7)
    bias = model.local_attention_bias(times, mask)  # (N, heads, S, S)
    model.transformer.train()
    with torch.no_grad():
        expected = model.transformer(x, mask=bias.flatten(0, 1))  # PyTorch's layout: (N·heads, S, S)
        ours = local_transformer(model.transformer, x, bias)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_local_attention_bias_masks_beyond_the_window_and_padding():
    model = small_encoder(positions="local", attention_window=2)
    times = torch.tensor([[0.0, 1.0, 3.0, 4.0]])
    mask = torch.tensor([[True, True, True, False]])
    bias = model.local_attention_bias(times, mask)[0, 0]
    allowed = torch.isfinite(bias)
    expected = torch.tensor(
        [
            [True, True, False, False],  # |0 - 3| > 2; frame 3 is padding
            [True, True, True, False],
            [False, True, True, False],
            [False, False, True, True],  # a padded frame's row holds itself (its output is dropped)
        ]
    )
    assert torch.equal(allowed, expected)


def test_default_positions():
    T = 7
    model = small_encoder(frames_per_view=T)
    same = model.default_positions(T, 3, torch.device("cpu"))
    assert same.shape == (3, T)
    np.testing.assert_allclose(same.numpy(), np.tile(np.arange(T, dtype=np.float64), (3, 1)), atol=1e-6)
    for S in (2, 5, 13, 40):
        pos = model.default_positions(S, 2, torch.device("cpu"))
        assert pos.shape == (2, S)
        expected = np.array([k * (T - 1) / (S - 1) for k in range(S)])
        np.testing.assert_allclose(pos[0].numpy(), expected, atol=1e-5)
        np.testing.assert_allclose(pos[1].numpy(), expected, atol=1e-5)


def test_forward_uses_default_positions():
    """positions=None equals passing linspace(0, T - 1, S) explicitly, and differs from arange."""
    T, S, N = 5, 9, 2
    model = small_encoder(frames_per_view=T, dropout=0.0).eval()
    g = torch.Generator().manual_seed(5)
    frames = torch.randn(N, S, 3, IMG, IMG, generator=g)
    mask = torch.ones(N, S, dtype=torch.bool)
    lin = torch.tensor(np.linspace(0, T - 1, S), dtype=torch.float32).expand(N, S)
    with torch.no_grad():
        z_default, _ = model(frames, mask)
        z_lin, _ = model(frames, mask, lin)
        z_arange, _ = model(frames, mask, torch.arange(S, dtype=torch.float32).expand(N, S))
    assert torch.allclose(z_default, z_lin, atol=1e-5)
    assert not torch.allclose(z_default, z_arange, atol=1e-3)


@pytest.mark.parametrize("dim", [2, 8, 16])
def test_sinusoidal_positions_closed_form(dim):
    positions = np.array([[0.0, 1.0, 2.5, 7.0, 19.0], [3.25, 0.5, 40.0, 79.0, 100.0]])
    pe = SinusoidalPositions(dim)(torch.tensor(positions, dtype=torch.float32)).numpy()
    assert pe.shape == (2, 5, dim)
    expected = np.zeros((2, 5, dim))
    for n in range(2):
        for s in range(5):
            p = positions[n, s]
            for k in range(dim // 2):
                expected[n, s, 2 * k] = math.sin(p / 10000 ** (2 * k / dim))
                expected[n, s, 2 * k + 1] = math.cos(p / 10000 ** (2 * k / dim))
    np.testing.assert_allclose(pe, expected, atol=2e-5, rtol=0)


def test_sinusoidal_positions_odd_dim_raises():
    with pytest.raises(ValueError):
        SinusoidalPositions(7)


# ----------------------------------------------------------------------------- ResNet-50


def _first_bn(module: torch.nn.Module) -> torch.nn.BatchNorm2d:
    return next(m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_resnet_layer4_freezing_and_bn_statistics():
    torch.manual_seed(0)
    net = ResNet50Backbone(train_from="layer4")
    for stage in ("conv1", "bn1", "layer1", "layer2", "layer3"):
        params = list(getattr(net, stage).parameters())
        assert params and all(not p.requires_grad for p in params), stage
    assert all(p.requires_grad for p in net.layer4.parameters())

    net.train()
    assert net.training and net.layer4.training
    assert not net.bn1.training
    assert not _first_bn(net.layer3).training
    assert not any(m.training for m in net.layer1.modules())
    assert _first_bn(net.layer4).training

    bn3, bn4 = _first_bn(net.layer3), _first_bn(net.layer4)
    mean3, mean4 = bn3.running_mean.clone(), bn4.running_mean.clone()
    batches3, batches4 = int(bn3.num_batches_tracked), int(bn4.num_batches_tracked)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    out = net(x)
    assert out.shape == (2, 2048, 2, 2)
    assert torch.equal(bn3.running_mean, mean3)
    assert int(bn3.num_batches_tracked) == batches3
    assert not torch.equal(bn4.running_mean, mean4)
    assert int(bn4.num_batches_tracked) == batches4 + 1

    out.sum().backward()
    assert all(p.grad is None for p in net.layer3.parameters())
    assert net.conv1.weight.grad is None
    assert all(p.grad is not None for p in net.layer4.parameters())


def test_resnet_train_from_none_and_conv1():
    frozen = ResNet50Backbone(train_from="none")
    assert frozen.frozen_stages == RESNET_STAGES
    assert not any(p.requires_grad for p in frozen.parameters())
    frozen.train()
    assert not any(m.training for m in frozen.modules() if isinstance(m, torch.nn.BatchNorm2d))

    free = ResNet50Backbone(train_from="conv1")
    assert free.frozen_stages == ()
    assert all(p.requires_grad for p in free.parameters())
    free.train()
    assert all(m.training for m in free.modules())


def test_resnet_eval_then_train_restores_only_trained_stages():
    net = ResNet50Backbone(train_from="layer3")
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert _first_bn(net.layer3).training and _first_bn(net.layer4).training
    assert not _first_bn(net.layer2).training and not net.bn1.training


def test_resnet_invalid_train_from_raises():
    with pytest.raises(ValueError, match="layer5"):
        ResNet50Backbone(train_from="layer5")


def test_build_backbone():
    assert isinstance(build_backbone("small_cnn", width=4), SmallCNNBackbone)
    assert build_backbone("small_cnn", width=4).out_channels == 32
    with pytest.raises(ValueError, match="vgg16"):
        build_backbone("vgg16")


# ----------------------------------------------------------------------------- weights


def _trained_small_cnn(seed: int) -> SmallCNNBackbone:
    """A SmallCNN whose parameters and BN buffers all differ from a fresh one's."""
    torch.manual_seed(seed)
    net = SmallCNNBackbone(width=4)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    net.train()
    with torch.no_grad():
        net(torch.randn(4, 3, 32, 32))
    return net


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _assert_differs(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert any(not torch.equal(sa[k], sb[k]) for k in sa if sa[k].is_floating_point())


def test_load_weights_safetensors_round_trip_small_cnn(tmp_path):
    source, target = _trained_small_cnn(0), SmallCNNBackbone(width=4)
    _assert_differs(source, target)
    path = tmp_path / "w.safetensors"
    save_file(source.state_dict(), str(path))
    load_backbone_weights(target, path.read_bytes(), name=str(path))
    _assert_same_state(source, target)


def test_load_weights_torch_state_dict_with_prefix_and_classifier(tmp_path):
    source, target = _trained_small_cnn(1), SmallCNNBackbone(width=4)
    _assert_differs(source, target)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["fc.weight"] = torch.randn(10, 32)
    state["fc.bias"] = torch.randn(10)
    path = tmp_path / "w.pth"
    torch.save(state, path)
    load_backbone_weights(target, path.read_bytes(), name=str(path))
    _assert_same_state(source, target)


def test_load_weights_checkpoint_with_state_dict_entry(tmp_path):
    source, target = _trained_small_cnn(2), SmallCNNBackbone(width=4)
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in source.state_dict().items()}, "epoch": 3}, path)
    load_backbone_weights(target, path.read_bytes())
    _assert_same_state(source, target)


def test_load_weights_missing_key_raises_naming_it():
    source, target = _trained_small_cnn(3), SmallCNNBackbone(width=4)
    state = dict(source.state_dict())
    del state["net.3.weight"]
    with pytest.raises(ValueError, match=r"net\.3\.weight"):
        load_backbone_weights(target, save_safetensors_bytes(state), name="partial.safetensors")


def test_load_weights_not_a_state_dict_raises(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ValueError, match="state dict"):
        load_backbone_weights(SmallCNNBackbone(width=4), path.read_bytes(), name="list.pt")


class _RunsCode:
    """What a malicious weights file holds: unpickling it calls ``print``."""

    def __reduce__(self):
        return (print, ("this ran while loading the weights",))


def test_a_pickle_that_would_run_code_is_refused_naming_the_file_without_advising_to_trust_it(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"net.0.weight": _RunsCode()}, path)
    with pytest.raises(ValueError, match=r"^s3://b/evil\.pt: refused: loading it would run code") as caught:
        load_backbone_weights(SmallCNNBackbone(width=4), path.read_bytes(), name="s3://b/evil.pt")
    assert "(it calls print)" in str(caught.value)
    assert "weights_only=False" not in str(caught.value) and "trust" not in str(caught.value)
    assert "this ran" not in capsys.readouterr().out  # and nothing ran
    for junk in (b"plain text, not weights at all", path.read_bytes()[:60]):  # not a torch file; truncated
        with pytest.raises(ValueError, match=r"^junk\.pt: neither safetensors nor a torch state dict"):
            load_backbone_weights(SmallCNNBackbone(width=4), junk, name="junk.pt")


def test_load_weights_resnet50_safetensors_round_trip(tmp_path):
    torch.manual_seed(10)
    source = ResNet50Backbone(train_from="conv1")
    with torch.no_grad():
        source.layer4[0].conv1.weight.mul_(3.0)
        source.train()
        source(torch.randn(2, 3, 64, 64))  # every BN's running statistics move
    torch.manual_seed(11)
    target = ResNet50Backbone(train_from="layer4")
    _assert_differs(source, target)
    state = copy.copy(source.state_dict())
    state["fc.weight"] = torch.randn(1000, 2048)  # a torchvision checkpoint's classifier
    state["fc.bias"] = torch.randn(1000)
    path = tmp_path / "resnet.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    load_backbone_weights(target, path.read_bytes(), name=str(path))
    _assert_same_state(source, target)
    # Loading does not unfreeze anything.
    assert not any(p.requires_grad for p in target.layer3.parameters())


def test_load_weights_resnet50_missing_key_raises_naming_it():
    source, target = ResNet50Backbone(train_from="none"), ResNet50Backbone(train_from="none")
    state = dict(source.state_dict())
    del state["layer2.1.bn2.running_var"]
    with pytest.raises(ValueError, match=r"layer2\.1\.bn2\.running_var"):
        load_backbone_weights(target, save_safetensors_bytes(state), name="partial.safetensors")


def test_load_weights_from_a_whole_encoder_checkpoint(tmp_path):
    """A FrameEncoder's state dict (under DataParallel's 'module.') fills a bare backbone: the
    'backbone.' wrapper is stripped, the head's keys are ignored."""
    encoder = small_encoder()
    with torch.no_grad():
        for p in encoder.backbone.parameters():
            p.add_(1.0)
    path = tmp_path / "encoder.pt"
    torch.save({f"module.{k}": v for k, v in encoder.state_dict().items()}, path)
    target = SmallCNNBackbone(width=4)
    _assert_differs(encoder.backbone, target)
    load_backbone_weights(target, path.read_bytes(), name=str(path))
    _assert_same_state(encoder.backbone, target)


def test_bf16_autocast_path_gives_finite_gradients_to_trained_layers_only():
    """The GPU training path (bf16 autocast) exercised on the CPU: model and loss together."""
    from lrprop.core.losses import LRPropLoss

    torch.manual_seed(0)
    model = FrameEncoder(ResNet50Backbone("layer4"), frames_per_view=4, num_layers=1).train()
    frames = torch.randn(4, 4, 3, 64, 64)  # 2 videos × 2 views, 4 frames
    mask = prefix_mask([4, 3, 4, 2], 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, h = model(frames, mask)
    assert z.dtype == torch.bfloat16
    stamps = torch.arange(4).expand(2, 2, 4)
    out = LRPropLoss(alpha=0.01, beta=0.4)(z.view(2, 2, 4, -1), h.view(2, 2, 4, -1), mask.view(2, 2, 4), stamps)
    assert out["total"].dtype == torch.float32 and torch.isfinite(out["total"])
    out["total"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.backbone.layer4.parameters())
    assert all(p.grad is None for p in model.backbone.layer3.parameters())


# ----------------------------------------------------------------------------- pooling


class _FixedMap(torch.nn.Module):
    """A 'backbone' that returns the feature map it was given, whatever the images."""

    def __init__(self, fmap: torch.Tensor) -> None:
        super().__init__()
        self.fmap, self.out_channels = fmap, fmap.shape[1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fmap


def test_max_where_pooling_is_the_maximum_and_a_spatial_soft_argmax():
    g = torch.Generator().manual_seed(12)
    fmap = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    pooled = pooled_features(_FixedMap(fmap), torch.zeros(2, 3, 8, 8), "max_where")
    assert pooled.shape == (2, 9) and pooled_width(_FixedMap(fmap), "max_where") == 9
    f = fmap.numpy()
    np.testing.assert_allclose(pooled[:, :3].numpy(), f.max(axis=(-2, -1)))
    weights = np.exp(f) / np.exp(f).sum(axis=(-2, -1), keepdims=True)  # softmax over the map
    ys, xs = np.meshgrid(np.linspace(-1, 1, 4), np.linspace(-1, 1, 5), indexing="ij")
    np.testing.assert_allclose(pooled[:, 3:6].numpy(), (weights * xs).sum(axis=(-2, -1)), rtol=1e-6)
    np.testing.assert_allclose(pooled[:, 6:].numpy(), (weights * ys).sum(axis=(-2, -1)), rtol=1e-6)
    # a single strong peak is found where it is
    peak = torch.zeros(1, 1, 4, 5)
    peak[0, 0, 3, 1] = 50.0
    where = pooled_features(_FixedMap(peak), torch.zeros(1, 3, 8, 8), "max_where")[0, 1:]
    torch.testing.assert_close(where, torch.tensor([-0.5, 1.0]), rtol=0, atol=1e-4)
    assert torch.equal(pooled_features(_FixedMap(fmap), torch.zeros(2, 3, 8, 8)), fmap.amax(dim=(-2, -1)))


def test_an_encoder_with_max_where_pooling_takes_three_times_the_channels():
    model = small_encoder(pooling="max_where")
    assert model.mlp[1].in_features == 3 * model.backbone.out_channels
    with torch.no_grad():
        z, _ = model(torch.randn(2, 6, 3, IMG, IMG), prefix_mask([6, 3], 6))
    assert z.shape == (2, 6, E)
