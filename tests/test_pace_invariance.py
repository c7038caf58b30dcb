"""A frame's embedding should follow what the frame shows, not where it sits in its video or
how fast the video plays: trimmed and re-paced copies of a generated video, embedded by the
"local" encoder (window attention, no positions) and by the sinusoidal one.

Oracles: invariants. A re-paced copy shows A's frame true[j] at its frame j; the distance of
that embedding from A's own embedding of the frame is compared with how far apart A's
neighbouring frames embed. Embedding in chunks with margins is compared with one pass.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lrprop.core.model import FrameEncoder, SmallCNNBackbone
from lrprop.data.generator import action_spec, render_video
from lrprop.evaluation.evaluate import embed_video

SIZE = 32


def encoder(positions: str, seed: int = 0) -> FrameEncoder:
    torch.manual_seed(seed)
    return FrameEncoder(
        SmallCNNBackbone(width=8),
        frames_per_view=20,
        hidden_dim=32,
        model_dim=32,
        num_layers=2,
        num_heads=4,
        ffn_dim=64,
        embedding_dim=16,
        projection_dim=16,
        dropout=0.0,
        positions=positions,
        attention_window=4,
    ).eval()


@pytest.fixture(scope="module")
def video() -> np.ndarray:
    frames, _ = render_video(action_spec(0, 0), 80, SIZE, np.random.default_rng(1))
    return frames  # (80, 32, 32, 3) uint8


def moved_and_neighbours(model: FrameEncoder, video: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """(median distance of a copy's frame j from A's frame true[j], median distance of A's neighbouring frames)."""
    ea = embed_video(model, video, image_size=SIZE)
    eb = embed_video(model, video[true], image_size=SIZE)
    moved = np.linalg.norm(eb - ea[true], axis=1)
    neighbours = np.linalg.norm(ea[1:] - ea[:-1], axis=1)
    return float(np.median(moved)), float(np.median(neighbours))


def repaced(n: int) -> np.ndarray:
    """1.4 times as long, slow then fast: frame j shows frame round((n - 1) (j / (m - 1))^1.6)."""
    m = int(1.4 * n)
    return np.round((n - 1) * np.linspace(0, 1, m) ** 1.6).astype(int)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_local_encoder_embeds_a_frame_of_a_re_paced_copy_nearer_than_its_neighbours(video, seed):
    """The median frame of a re-paced copy. (A trimmed copy's frames beyond the context do not
    move at all, tests/test_model.py; those next to the cut may move more than this.)"""
    moved, neighbours = moved_and_neighbours(encoder("local", seed), video, repaced(len(video)))
    assert moved < neighbours


@pytest.mark.parametrize("copy", ["repaced", "trimmed"])
def test_a_sinusoidal_encoder_moves_a_frame_of_a_copy_farther_than_its_neighbours(video, copy):
    """The same comparison fails for linspace positions (the reason for "local"): not vacuous."""
    true = repaced(len(video)) if copy == "repaced" else np.arange(20, len(video))
    moved, neighbours = moved_and_neighbours(encoder("sinusoidal"), video, true)
    assert moved > 3 * neighbours


@pytest.mark.parametrize("max_chunk", [1, 7, 79])
def test_a_local_encoder_embeds_a_long_video_in_chunks_exactly_as_in_one_pass(video, max_chunk):
    model = encoder("local")
    whole = embed_video(model, video, image_size=SIZE, max_chunk=len(video))
    chunked = embed_video(model, video, image_size=SIZE, max_chunk=max_chunk)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=2e-6)


def test_a_local_encoder_embeds_each_chunk_in_one_pass_whatever_the_last_chunk(video, monkeypatch):
    """One forward pass a chunk (and one for the last frames' margin), each over at most the
    chunk and two margins: a short last chunk must not make the frames before it go through the
    model a few at a time."""
    model = encoder("local")
    sizes = []
    real = FrameEncoder.forward

    def counted(self, frames, *args, **kwargs):
        sizes.append(frames.shape[1])
        return real(self, frames, *args, **kwargs)

    monkeypatch.setattr(FrameEncoder, "forward", counted)
    embed_video(model, video, image_size=SIZE, max_chunk=30)  # 80 frames: chunks of 30, 30, 20
    margin = model.context_frames
    chunks = 3
    assert len(sizes) <= chunks + 1 and max(sizes) <= 30 + 2 * margin
    assert sum(sizes) <= len(video) + 2 * margin * (chunks + 1)
