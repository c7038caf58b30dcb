"""The tiny configuration the tests train with: a model that runs in milliseconds on a CPU."""

from __future__ import annotations

import copy

TINY_MODEL = {
    "backbone": "small_cnn",
    "cnn_width": 8,
    "num_layers": 1,
    "hidden_dim": 64,
    "model_dim": 32,
    "num_heads": 4,
    "ffn_dim": 64,
    "embedding_dim": 32,
    "projection_dim": 32,
}

TINY = {
    "data": {"frames_per_view": 16, "image_size": 32},
    "model": TINY_MODEL,
    "loss": {"alpha": 0.01, "beta": 0.4},
    "optim": {"lr": 1e-3},
    # A few cheap steps, so every training test also runs the backbone's pretraining.
    "pretrain": {"steps": 2, "videos_per_step": 2, "frames_per_video": 4},
    "train": {"log_every": 0},
    "synthetic": {"frame_size": 32},
}


def with_sections(base: dict, **sections) -> dict:
    """A deep copy of ``base`` with the given sections updated (each section's keys, not the
    whole section), e.g. ``with_sections(TINY, optim={"epochs": 2})``."""
    merged = copy.deepcopy(base)
    for key, value in sections.items():
        merged.setdefault(key, {}).update(value)
    return merged


def tiny(**sections) -> dict:
    """A deep copy of TINY with the given sections updated, e.g. ``tiny(optim={"epochs": 2})``."""
    return with_sections(TINY, **sections)
