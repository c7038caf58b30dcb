"""The frame encoder of METHOD.md §2: a CNN per frame, then a transformer over the frames.

    frames (N, T, 3, H, W) ─ backbone on the valid frames ─ global max-pool ─ (N, T, F)
      ─ 2 × [dropout, Linear 512, BatchNorm, ReLU] ─ Linear 256 ─ + sinusoidal positions
      ─ pre-LN transformer encoder (7 layers, key-padding mask) ─ Linear 128 ─ embedding z
    z ─ Linear 128, BatchNorm, ReLU, Linear 128 ─ L2-normalise ─ projection h (for the KL terms)

The embedding z is returned L2-normalised: it is what evaluation and published embeddings use.

Padding never changes a valid frame's output: the backbone and every BatchNorm see the valid
frames only, and the transformer masks padded keys.

Positions, three modes (``positions``):
- "sinusoidal" (SCL): a view of S frames gets positions linspace(0, T - 1, S), T being the
  training view length; at S = T these are the frame indices 0..T-1, at evaluation a longer
  video is spread over the range the model was trained on. Each embedding then carries the
  frame's relative place in its own video: a trimmed or re-paced copy of a video embeds
  differently, and DTW on such embeddings follows the clock as much as the content.
- "local": no position is added to a frame. Each frame attends only to the frames within
  ``attention_window`` frames of it in the video's own time (training views pass their time
  stamps, evaluation the frame indices), with a learned bias per head for "earlier", "itself"
  and "later": the model sees which way the action moves, never where in the video it is.
  Trimming a video changes no embedding farther than ``context_frames`` from a cut; playing it
  at another pace changes a frame's embedding only through which neighbours fall in its
  window. A long video is embedded by overlapping windows, exactly.
- "none": no positions and global attention: content only, orderless.
"""

from __future__ import annotations

import io
import logging
import math
import pickle
import re
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ResNet50Backbone",
    "SmallCNNBackbone",
    "SinusoidalPositions",
    "FrameEncoder",
    "build_backbone",
    "pooled_features",
    "pooled_width",
    "POOLINGS",
    "load_backbone_weights",
    "backbone_weights_bytes",
    "RESNET_STAGES",
]

log = logging.getLogger(__name__)

RESNET_STAGES = ("conv1", "layer1", "layer2", "layer3", "layer4")


class ResNet50Backbone(nn.Module):
    """ResNet-50 without its classifier; the stages before ``train_from`` are frozen.

    Frozen stages run in eval mode (their BatchNorm statistics stay fixed) and without gradient,
    whatever mode the module is put in.

    Args:
        train_from: the first trained stage, one of RESNET_STAGES, or "none" to freeze all.

    Shapes: (N, 3, H, W) -> (N, 2048, H/32, W/32).
    """

    out_channels = 2048

    def __init__(self, train_from: str = "layer4") -> None:
        super().__init__()
        from torchvision.models import resnet50

        if train_from not in RESNET_STAGES + ("none",):
            raise ValueError(f"train_from must be one of {RESNET_STAGES + ('none',)}, got {train_from!r}")
        net = resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        n_frozen = len(RESNET_STAGES) if train_from == "none" else RESNET_STAGES.index(train_from)
        self.frozen_stages = RESNET_STAGES[:n_frozen]
        for module in self._stage_modules(self.frozen_stages):
            module.requires_grad_(False)

    def _stage_modules(self, stages) -> list[nn.Module]:
        by_stage = {
            "conv1": [self.conv1, self.bn1],
            "layer1": [self.layer1],
            "layer2": [self.layer2],
            "layer3": [self.layer3],
            "layer4": [self.layer4],
        }
        return [m for s in stages for m in by_stage[s]]

    def train(self, mode: bool = True) -> ResNet50Backbone:
        super().train(mode)
        for module in self._stage_modules(self.frozen_stages):
            module.eval()
        return self

    def _stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name == "conv1":
            return self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return getattr(self, name)(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            for name in self.frozen_stages:
                x = self._stage(name, x)
        for name in RESNET_STAGES[len(self.frozen_stages) :]:
            x = self._stage(name, x)
        return x


class SmallCNNBackbone(nn.Module):
    """A four-block CNN for CPU demos and tests: [conv 3×3 stride 2, BatchNorm, ReLU] × 4.

    Shapes: (N, 3, H, W) -> (N, 8 · width, H/16, W/16).
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)
        self.out_channels = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_backbone(name: str, *, train_from: str = "layer4", width: int = 32) -> nn.Module:
    """A backbone by name: "resnet50" or "small_cnn"."""
    if name == "resnet50":
        return ResNet50Backbone(train_from=train_from)
    if name == "small_cnn":
        return SmallCNNBackbone(width=width)
    raise ValueError(f"unknown backbone {name!r}; expected 'resnet50' or 'small_cnn'")


_PREFIXES = ("module.", "backbone.", "encoder.", "online_network.")


def backbone_weights_bytes(backbone: nn.Module) -> bytes:
    """The bytes of a safetensors file of ``backbone``'s state dict (contiguous CPU copies),
    which :func:`load_backbone_weights` reads back."""
    from safetensors.torch import save as save_safetensors

    return save_safetensors({k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()})


def load_backbone_weights(backbone: nn.Module, data: bytes, *, name: str = "<weights>") -> None:
    """Load pretrained weights into ``backbone`` from the bytes of a weights file.

    Accepts safetensors, or a torchvision-style state-dict file read with ``weights_only=True``
    (no arbitrary unpickling). Common wrapper prefixes (``module.``, ``backbone.``, …) are
    stripped and classifier keys (``fc.*``) ignored. Every backbone parameter and buffer must be
    present: a partial load is an error naming the missing keys.

    Args:
        backbone: the module to fill.
        data: the file's bytes (the caller reads them from a path or URI).
        name: where they came from, for error messages.
    """
    if data[8:9] == b"{":  # safetensors: a u64 header size, then a JSON header
        from safetensors.torch import load as load_safetensors

        state = load_safetensors(data)
    else:
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            # torch's message advises weights_only=False, which would run the file's code: only
            # the name of what the file would call is kept.
            found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
            if found is None:  # not a pickle of a state dict at all (text, a damaged file)
                raise ValueError(f"{name}: neither safetensors nor a torch state dict (not a readable pickle)") from None
            raise ValueError(
                f"{name}: refused: loading it would run code from the file (it calls {found.group(1)}); weights "
                "are read only from safetensors or a plain state dict of tensors"
            ) from None
        except (RuntimeError, EOFError, OSError, KeyError) as exc:  # not a torch file: truncated, text, …
            raise ValueError(f"{name}: neither safetensors nor a torch state dict ({exc})") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{name}: expected a state dict, got {type(state).__name__}")
    expected = set(backbone.state_dict())
    cleaned = {}
    for key, value in state.items():
        # Strip wrapper prefixes only while the key is not already one of the backbone's.
        stripped = True
        while key not in expected and stripped:
            stripped = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix) :], True
        if not key.startswith("fc."):
            cleaned[key] = value
    # ResNet50Backbone keeps the torchvision names (conv1, layer1, …); SmallCNN uses net.*.
    result = backbone.load_state_dict(cleaned, strict=False)
    if result.missing_keys:
        raise ValueError(f"{name}: weights lack {len(result.missing_keys)} backbone keys, e.g. {result.missing_keys[:5]}")
    if result.unexpected_keys:
        log.warning(
            "%s: ignored %d keys the backbone does not have, e.g. %s",
            name,
            len(result.unexpected_keys),
            result.unexpected_keys[:5],
        )


class SinusoidalPositions(nn.Module):
    """Sinusoidal encoding of real-valued positions (Vaswani et al. 2017).

    pe(p)_{2k} = sin(p / 10000^{2k/d}), pe(p)_{2k+1} = cos(p / 10000^{2k/d}).

    Shapes: positions (N, S) float -> (N, S, d).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"positional encoding needs an even dimension, got {dim}")
        freqs = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        angles = positions.float()[..., None] * self.freqs  # (N, S, d/2)
        return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)


POOLINGS = ("max", "max_where")


def pooled_width(backbone: nn.Module, pooling: str = "max") -> int:
    """The width F of :func:`pooled_features`' output for ``backbone`` and ``pooling``."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    return backbone.out_channels * (3 if pooling == "max_where" else 1)


def pooled_features(backbone: nn.Module, images: torch.Tensor, pooling: str = "max") -> torch.Tensor:
    """A backbone's feature map, pooled over space: (N, 3, H, W) -> (N, F).

    "max" (SCL): each channel's maximum, F = C. Global max-pooling forgets where in the frame a
    feature fires, so where the body and limbs are, which is much of a pose. "max_where": the
    maximum and, beside it, where the channel fires, as the mean x and y (in [-1, 1]) under a
    softmax over the map (a spatial soft-argmax), F = 3C [choice].
    """
    fmap = backbone(images)  # (N, C, h, w)
    peak = fmap.amax(dim=(-2, -1))
    if pooling == "max":
        return peak
    if pooling != "max_where":
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    N, C, h, w = fmap.shape
    weights = torch.softmax(fmap.flatten(2).float(), dim=-1).view(N, C, h, w)
    ys = torch.linspace(-1, 1, h, device=fmap.device)
    xs = torch.linspace(-1, 1, w, device=fmap.device)
    where_y = (weights.sum(-1) * ys).sum(-1)  # (N, C)
    where_x = (weights.sum(-2) * xs).sum(-1)
    return torch.cat([peak, where_x.to(peak.dtype), where_y.to(peak.dtype)], dim=-1)


def _on_valid(module: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Apply a per-frame ``module`` to the valid frames of x (N, T, C) only; padding gets 0."""
    out_valid = module(x[mask])  # (n_valid, C')
    out = out_valid.new_zeros(*mask.shape, out_valid.shape[-1])
    out[mask] = out_valid
    return out


def local_transformer(encoder: nn.TransformerEncoder, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``encoder`` (pre-LN layers, batch first) applied to x (N, S, D) with an additive attention
    mask ``bias`` (N, heads, S, S), with the encoder's own weights.

    Why not ``encoder(x, mask=...)``: in eval mode PyTorch's fused encoder path (2.14) applies a
    per-head 3-D float mask wrongly (the outputs differ from its own training-mode path with
    dropout off, tests/test_model.py); this is the training-mode computation, in both modes.
    """
    N, S, D = x.shape
    for layer in encoder.layers:
        if not layer.norm_first:
            raise ValueError("local_transformer computes pre-LN layers (norm_first=True) only")
        attn = layer.self_attn
        H = attn.num_heads
        q, k, v = F.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.view(N, S, H, D // H).transpose(1, 2) for t in (q, k, v))  # (N, H, S, D/H)
        dropout = attn.dropout if layer.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
        x = x + layer.dropout1(attn.out_proj(a.transpose(1, 2).reshape(N, S, D)))
        x = x + layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm2(x))))))
    return encoder.norm(x) if encoder.norm is not None else x


class FrameEncoder(nn.Module):
    """Backbone + temporal transformer -> per-frame embeddings and projections.

    Args:
        backbone: a module mapping (N, 3, H, W) to a feature map (N, F, h, w) with an
            ``out_channels`` attribute.
        frames_per_view: T, the training view length (sets evaluation positions).
        hidden_dim: width of the two MLP blocks (512).
        model_dim: transformer width d_model (256).
        num_layers: transformer layers (7).
        num_heads: attention heads (8).
        ffn_dim: transformer feed-forward width (1024).
        embedding_dim: output embedding width (128).
        projection_dim: projection head width (128).
        dropout: dropout of the MLP blocks, positions and transformer (0.1).
        positions: "sinusoidal" (METHOD.md §2), "local" (window attention with a direction
            bias, no position: the module docstring) or "none": no positional encoding, so the
            transformer sees the frames' content only and cannot align by counting them.
        drop_positions: in training, the share of sequences embedded without positions
            ("sinusoidal" only).
        attention_window: "local" only: a frame attends to the frames at most this many frames
            away from it in time.
        pooling: how the backbone's map is pooled over space (:func:`pooled_features`).
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        frames_per_view: int,
        hidden_dim: int = 512,
        model_dim: int = 256,
        num_layers: int = 7,
        num_heads: int = 8,
        ffn_dim: int = 1024,
        embedding_dim: int = 128,
        projection_dim: int = 128,
        dropout: float = 0.1,
        positions: str = "sinusoidal",
        drop_positions: float = 0.0,
        attention_window: int = 8,
        pooling: str = "max",
    ) -> None:
        super().__init__()
        if not 0.0 <= drop_positions < 1.0:
            raise ValueError(f"drop_positions must be in [0, 1), got {drop_positions}")
        self.drop_positions = drop_positions
        if positions not in ("sinusoidal", "local", "none"):
            raise ValueError(f"positions must be 'sinusoidal', 'local' or 'none', got {positions!r}")
        if attention_window < 1:
            raise ValueError(f"attention_window must be >= 1, got {attention_window}")
        self.backbone = backbone
        self.position_mode = positions
        self.use_positions = positions == "sinusoidal"
        self.attention_window = attention_window
        self.num_heads = num_heads
        self.frames_per_view = frames_per_view
        self.channels_last = False  # see use_channels_last
        self.backbone_frozen = False  # see freeze_backbone
        self.pooling = pooling
        feat = pooled_width(backbone, pooling)
        self.mlp = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(feat, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, model_dim),
        )
        self.positions = SinusoidalPositions(model_dim)
        self.position_dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(model_dim, num_heads, ffn_dim, dropout, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(model_dim), enable_nested_tensor=False)
        self.embed = nn.Linear(model_dim, embedding_dim)
        # "local": per head, the attention bias towards an earlier frame, the frame itself, a later one
        self.direction_bias = nn.Parameter(torch.zeros(num_heads, 3)) if positions == "local" else None
        self.project = nn.Sequential(
            nn.Linear(embedding_dim, projection_dim),
            nn.BatchNorm1d(projection_dim),
            nn.ReLU(inplace=True),
            nn.Linear(projection_dim, projection_dim),
        )

    def use_channels_last(self) -> FrameEncoder:
        """Keep the backbone's weights, and the images it is given, in channels-last (NHWC) memory.

        cuDNN's convolutions under bf16 run on tensor cores in NHWC; in NCHW every layer's input
        is transposed first. The numbers are the same up to rounding, the state dict the same
        (checkpoints store contiguous copies). Call it before building the optimizer, whose
        state then follows the parameters' layout.
        """
        self.backbone.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    def freeze_backbone(self) -> FrameEncoder:
        """Keep the backbone as it is: no gradients to its weights, and its BatchNorm layers in
        eval mode (running statistics used, not updated) even while the encoder trains.

        Why: after the time-contrastive pretraining (lrprop/training/pretrain.py) the backbone's features
        see the action; LRProp's objective, which a frame counter can satisfy, would otherwise
        train them back towards the clock (docs/results.md). Call it before building the
        optimizer, which then holds only the head's parameters. Also saves the backbone's
        backward pass.
        """
        self.backbone.requires_grad_(False)
        self.backbone_frozen = True
        self.backbone.eval()
        return self

    def train(self, mode: bool = True) -> FrameEncoder:
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self

    @property
    def context_frames(self) -> int | None:
        """How far, in frames, what a frame's embedding depends on reaches on either side: each
        layer of "local" attention looks ``attention_window`` further. None: the whole video
        (the other modes)."""
        if self.position_mode != "local":
            return None
        return len(self.transformer.layers) * self.attention_window

    def default_positions(self, length: int, batch: int, device) -> torch.Tensor:
        """The positions of ``batch`` sequences of S = ``length`` consecutive frames: (batch, S) float.

        "local": the frame indices 0..S-1 (the video's own time); otherwise linspace(0, T - 1, S).
        """
        if self.position_mode == "local":
            return torch.arange(length, device=device, dtype=torch.float32).expand(batch, -1)
        return torch.linspace(0, self.frames_per_view - 1, length, device=device).expand(batch, -1)

    def local_attention_bias(self, times: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The additive attention mask of "local" attention: (N, heads, S, S).

        Frame i may attend to frame j when |t_i - t_j| <= ``attention_window`` and j is valid,
        with the bias of its direction (earlier, itself, later) for each head; -inf elsewhere.
        Every frame may attend to itself, padded or not, so no row is empty (an empty row is
        NaN, and NaN reaches the gradients even of rows that are dropped).

        Args:
            times: (N, S) the frames' times in frames of their video.
            mask: (N, S) bool, True on valid frames.
        """
        N, S = mask.shape
        diff = times[:, :, None] - times[:, None, :]  # (N, S, S): t_i - t_j
        allowed = (diff.abs() <= self.attention_window) & mask[:, None, :]
        allowed |= torch.eye(S, dtype=torch.bool, device=mask.device)
        direction = (torch.sign(diff) + 1).long()  # 0: j later than i, 1: the same time, 2: j earlier
        bias = self.direction_bias[:, direction].transpose(0, 1)  # (N, heads, S, S)
        return bias.masked_fill(~allowed[:, None], float("-inf"))

    def forward(
        self,
        frames: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor | None = None,
        *,
        times: torch.Tensor | None = None,
        with_features: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """Embed every frame of N sequences.

        Args:
            frames: (N, S, 3, H, W) normalised images.
            mask: (N, S) bool, True on valid frames.
            positions: optional (N, S) positions of the sinusoidal encoding; default
                :meth:`default_positions`. Not read by the other modes.
            times: optional (N, S) the frames' times in frames of their video (a training
                view's time stamps), which "local" attention reads; default 0..S-1. Not read
                by the other modes.
            with_features: also return the backbone's pooled features (N, S, F) (zero on
                padding), which see no positions (the training loop's ``loss.prop_path``).

        Returns:
            embeddings (N, S, E) L2-normalised, projections (N, S, P) L2-normalised; both zero
            on padded frames.
        """
        N, S = mask.shape
        mask = mask.bool()
        images = frames[mask]  # (n_valid, 3, H, W)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.backbone_frozen):
            feats = pooled_features(self.backbone, images, self.pooling)  # (n_valid, F)
        x = frames.new_zeros(N, S, feats.shape[-1], dtype=feats.dtype)
        x[mask] = feats
        feats_seq = x
        x = _on_valid(self.mlp, x, mask)  # (N, S, model_dim)
        if self.use_positions:
            if positions is None:
                positions = self.default_positions(S, N, frames.device)
            encoded = self.positions(positions).to(x.dtype)
            if self.training and self.drop_positions > 0:
                # Whole sequences without positions: only what their frames show can embed them.
                keep = torch.rand(N, 1, 1, device=x.device) >= self.drop_positions
                encoded = encoded * keep
            x = x + encoded
        x = self.position_dropout(x)
        if self.position_mode == "local":
            if times is None:
                times = self.default_positions(S, N, frames.device)
            bias = self.local_attention_bias(times.float(), mask).to(x.dtype)
            x = local_transformer(self.transformer, x, bias)
        else:
            x = self.transformer(x, src_key_padding_mask=~mask)
        z = _on_valid(self.embed, x, mask)  # (N, S, E)
        h = _on_valid(lambda v: F.normalize(self.project(v), dim=-1), z, mask)
        if with_features:
            return F.normalize(z, dim=-1), h, feats_seq
        return F.normalize(z, dim=-1), h
