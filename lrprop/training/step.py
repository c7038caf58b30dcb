"""What one training step is made of under a config: the model, the loss and the forward pass.

:func:`lrprop.training.train.train` runs them, and :mod:`lrprop.training.memory` runs them on
small inputs to estimate a step's memory before ``train()`` builds anything; they live apart from
the trainer so that the estimate it calls does not import the trainer back.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lrprop.config import ACTION_PLACEHOLDER, Config, ConfigError, LossConfig
from lrprop.core.losses import LRPropLoss
from lrprop.core.model import FrameEncoder, build_backbone, load_backbone_weights
from lrprop.registry.backbones import read_weights

__all__ = ["build_loss", "build_model", "pretrains", "prop_path_on_features", "prop_path_on_labels", "train_step_forward"]


def build_model(config: Config, read_bytes: Callable[[str], bytes] | None = None) -> FrameEncoder:
    """The encoder of ``config.model`` for views of ``config.data.frames_per_view`` frames.

    Pretrained backbone weights at ``config.model.pretrained`` are read with ``read_bytes``
    (default: :func:`lrprop.registry.backbones.read_weights`, any fsspec URI, and a version of the
    store's backbones verified against its manifest); nothing is downloaded otherwise.

    Raises:
        ConfigError: ``model.pretrained`` still holds ``{action}``: a class's config comes from
            ``Config.for_class``, which names the class.
    """
    m = config.model
    if m.pretrained and ACTION_PLACEHOLDER in m.pretrained:
        raise ConfigError(f"model.pretrained: {m.pretrained!r} names no class; make the class's config with Config.for_class")
    backbone = build_backbone(m.backbone, train_from=m.train_from, width=m.cnn_width)
    if m.pretrained:
        load_backbone_weights(backbone, (read_bytes or read_weights)(m.pretrained), name=m.pretrained)
    encoder = FrameEncoder(
        backbone,
        frames_per_view=config.data.frames_per_view,
        hidden_dim=m.hidden_dim,
        model_dim=m.model_dim,
        num_layers=m.num_layers,
        num_heads=m.num_heads,
        ffn_dim=m.ffn_dim,
        embedding_dim=m.embedding_dim,
        projection_dim=m.projection_dim,
        dropout=m.dropout,
        positions=m.positions,
        drop_positions=m.drop_positions,
        attention_window=m.attention_window,
        pooling=m.pooling,
    )
    if m.train_from == "none":
        encoder.freeze_backbone()  # for the small CNN, which has no stages to freeze one by one
    return encoder


def build_loss(loss: LossConfig) -> LRPropLoss:
    """The adapter from config to the loss module's explicit keyword arguments."""
    return LRPropLoss(
        alpha=loss.alpha,
        beta=loss.beta,
        tau=loss.tau,
        sigma2=loss.sigma2,
        gamma=loss.gamma,
        terms=loss.terms,
        cost=loss.cost,
        prop_positions=loss.prop_positions,
        sdtw_normalize=loss.sdtw_normalize,
        sdtw_divergence=loss.sdtw_divergence,
    )


def pretrains(config: Config) -> bool:
    """Whether :func:`lrprop.training.train.train` pretrains the backbone: ``pretrain.steps`` > 0 and the backbone
    neither given as weights (``model.pretrained``) nor kept as built (``model.train_from: none``)."""
    return config.pretrain.steps > 0 and not config.model.pretrained and config.model.train_from != "none"


def prop_path_on_features(loss: LossConfig) -> bool:
    """Whether a step finds L_prop's DTW path on the backbone's features (``loss.prop_path``)."""
    return loss.prop_path == "features" and "prop" in loss.terms


def prop_path_on_labels(loss: LossConfig) -> bool:
    """Whether a step finds L_prop's DTW path on the label oracle of its frames (``loss.prop_path:
    labels``, a diagnostic: the right path, to see what L_prop does when its path is right)."""
    return loss.prop_path == "labels" and "prop" in loss.terms


def train_step_forward(
    net: torch.nn.Module,
    loss_fn: LRPropLoss,
    frames: torch.Tensor,
    mask: torch.Tensor,
    timestamps: torch.Tensor,
    *,
    use_bf16: bool = False,
    path_on_features: bool = False,
    path_features: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The forward half of :func:`lrprop.training.train.train_step`: the encoder (under bf16 autocast when
    ``use_bf16``) and the loss in float32; the loss terms, "total" still to be backpropagated.

    ``path_features`` (B, V, T, F), when given, are what L_prop's path is found on (the label
    oracle of ``loss.prop_path: labels``); ``path_on_features`` finds it on the backbone's.

    Raises:
        FloatingPointError: non-finite embeddings or loss (the message says which).
    """
    B, V, T = mask.shape
    with torch.autocast(frames.device.type, dtype=torch.bfloat16, enabled=use_bf16):
        # (B·V, T, E), (B·V, T, P), and the backbone's features (B·V, T, F) when L_prop's path needs them
        z, h, *feats = net(
            frames.flatten(0, 1), mask.flatten(0, 1), times=timestamps.flatten(0, 1), with_features=path_on_features
        )
    if not (torch.isfinite(z).all() and torch.isfinite(h).all()):
        raise FloatingPointError("non-finite embeddings")
    path = feats[0].detach().float().view(B, V, T, -1) if path_on_features else path_features
    terms = loss_fn(z.float().view(B, V, T, -1), h.float().view(B, V, T, -1), mask, timestamps, path)
    if not torch.isfinite(terms["total"]):
        raise FloatingPointError(f"loss is {terms['total'].item()}")
    return terms
