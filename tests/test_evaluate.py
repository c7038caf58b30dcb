"""Evaluation of trained models (lrprop/evaluation/evaluate.py), the HTML report (lrprop/evaluation/report.py) and
``lrprop evaluate``.

Oracles: the model's own ``forward`` called here with explicitly built inputs and positions
(the preprocessing written out from its definition: /255, ImageNet mean and std); the state
dict that went into an export; numbers formatted and averaged here with numpy.
"""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
import torch
from tiny import tiny

from lrprop.cli import main
from lrprop.config import EvalConfig, SyntheticConfig, config_from_dict, config_to_dict
from lrprop.core.pace import pace_maps, stretch_error
from lrprop.data.source import InMemoryVideos, Video
from lrprop.evaluation import evaluate
from lrprop.evaluation.evaluate import (
    REFERENCES,
    embed_video,
    evaluate_class,
    load_trained_model,
    pace_video_indices,
    score_embeddings,
    score_pace,
)
from lrprop.evaluation.report import mean_over_classes, render_report
from lrprop.training.checkpoint import export_model
from lrprop.training.train import build_model

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _config(**sections):
    return config_from_dict(tiny(**sections))


def _model(seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(_config())
    # Non-trivial BatchNorm statistics, so eval mode really differs from train mode.
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _frames(length: int, seed: int = 0, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (length, size, size, 3), dtype=np.uint8)


def _inputs(frames: np.ndarray) -> torch.Tensor:
    """(1, L, 3, H, W) model input of frames already at the model's image size: scale to [0, 1],
    normalise with the ImageNet mean and std."""
    x = (frames.astype(np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(x).permute(0, 3, 1, 2)[None].contiguous()


def _forward(model, frames: np.ndarray, positions: torch.Tensor | None) -> np.ndarray:
    x = _inputs(frames)
    mask = torch.ones(1, x.shape[1], dtype=torch.bool)
    with torch.no_grad():
        z, _ = model(x, mask, positions)
    return z[0].numpy()


# ----------------------------------------------------------------------------- embed_video


def test_embed_video_gives_unit_rows_and_one_pass_equals_forward_with_default_positions():
    model = _model()
    frames = _frames(23)
    z = embed_video(model, frames, image_size=32)
    assert z.shape == (23, 32) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(z, _forward(model, frames, None), atol=1e-5)
    # Default positions are linspace(0, T - 1, L) with T = data.frames_per_view = 16.
    explicit = torch.linspace(0, 15, 23)[None]
    np.testing.assert_allclose(z, _forward(model, frames, explicit), atol=1e-5)


def test_embed_video_in_chunks_uses_the_slices_of_the_global_positions():
    model = _model(1)
    L, chunk = 23, 8
    frames = _frames(L, seed=3)
    z = embed_video(model, frames, image_size=32, max_chunk=chunk)
    assert z.shape == (L, 32)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    positions = torch.linspace(0, 15, L)  # the whole video's positions
    for start in range(0, L, chunk):
        stop = min(L, start + chunk)
        expected = _forward(model, frames[start:stop], positions[start:stop][None])
        np.testing.assert_allclose(z[start:stop], expected, atol=1e-5, err_msg=f"chunk at {start}")
    # The positions matter: the last chunk embedded with its own default positions differs.
    own = _forward(model, frames[16:], None)
    assert np.abs(own - z[16:]).max() > 1e-3


# ----------------------------------------------------------------------------- load_trained_model


def test_an_exported_model_loads_back_with_the_same_weights_in_eval_mode(tmp_path):
    model = _model(2)
    config = _config()
    meta = {"dataset": "synthetic", "dataset_version": "v-test", "action": "a0"}
    export_model(tmp_path / "model", model, config_to_dict(config), meta)
    loaded, loaded_config, loaded_meta = load_trained_model(tmp_path / "model")
    assert not loaded.training and all(not m.training for m in loaded.modules())
    assert loaded_meta == meta
    assert loaded_config.model.embedding_dim == 32 and loaded_config.data.frames_per_view == 16
    want, got = model.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0, msg=key)
    frames = _frames(12, seed=4)
    np.testing.assert_allclose(embed_video(loaded, frames, image_size=32), embed_video(model, frames, image_size=32), atol=1e-6)


def test_loading_a_missing_model_names_the_directory(tmp_path):
    missing = tmp_path / "nowhere" / "model"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_trained_model(missing)


# ----------------------------------------------------------------------------- score_embeddings


def _labelled_videos(seed: int, n: int, num_phases: int = 3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_phases, 8))
    embs, labels = [], []
    for _ in range(n):
        L = int(rng.integers(20, 30))
        lab = np.minimum(np.arange(L) * num_phases // L, num_phases - 1)
        embs.append(centres[lab] + 0.5 * rng.normal(size=(L, 8)))
        labels.append(lab)
    return embs, labels


def test_score_embeddings_returns_the_five_metrics_and_phase_transfer():
    embs, labels = _labelled_videos(0, 7)
    labels[0] = labels[0].copy()
    labels[0][:3] = -1  # unlabelled frames are dropped, not scored
    config = EvalConfig(fractions=(0.5, 1.0), ap_ks=(1, 5), tau_stride=2, ap_stride=1)
    scores = score_embeddings(embs[:4], labels[:4], embs[4:], labels[4:], config)
    five = {"phase_classification", "phase_progression", "kendalls_tau", "ap_at_k", "dtw_accuracy"}
    assert set(scores) == five | {"phase_transfer"}
    # Phase centres far apart next to the noise: aligned to the training videos, most frames get their own
    # (tests/test_phase_transfer.py checks the transfer itself against closed forms)
    assert 0.8 < scores["phase_transfer"] <= 1.0
    assert set(scores["phase_classification"]) == {0.5, 1.0}
    assert set(scores["ap_at_k"]) == {1, 5}
    for value in [*scores["phase_classification"].values(), *scores["ap_at_k"].values(), scores["dtw_accuracy"]]:
        assert 0.0 <= value <= 1.0
    assert -1.0 <= scores["kendalls_tau"] <= 1.0 and scores["phase_progression"] <= 1.0


def test_score_embeddings_needs_two_labelled_validation_videos():
    embs, labels = _labelled_videos(1, 5)
    config = EvalConfig(fractions=(1.0,), ap_ks=(1,))
    with pytest.raises(ValueError, match="validation"):
        score_embeddings(embs[:3], labels[:3], embs[3:4], labels[3:4], config)
    # Two validation videos, but one has no labelled frame.
    unlabelled = [labels[3], np.full_like(labels[4], -1)]
    with pytest.raises(ValueError, match="validation"):
        score_embeddings(embs[:3], labels[:3], embs[3:], unlabelled, config)


# ----------------------------------------------------------------------------- pace


def _gray_videos(lengths: list[int], size: int = 8) -> InMemoryVideos:
    """Videos whose frame t is one gray level, 2t + v (v the video's index): each frame of a video
    shows something else, and what it shows is its mean pixel value."""
    videos = []
    for v, length in enumerate(lengths):
        levels = (2 * np.arange(length) + v).astype(np.uint8)
        frames = np.broadcast_to(levels[:, None, None, None], (length, size, size, 3)).copy()
        videos.append(Video(f"v{v}", frames, np.minimum(np.arange(length) * 3 // length, 2)))
    return InMemoryVideos(videos)


def _content(model, frames: np.ndarray, *, image_size: int, max_chunk: int = 1000) -> np.ndarray:
    """An embedding of what a frame shows only: its mean pixel value (L, 1)."""
    return frames.reshape(len(frames), -1).mean(1, keepdims=True) / 255.0


def _counter(model, frames: np.ndarray, *, image_size: int, max_chunk: int = 1000) -> np.ndarray:
    """An embedding of where a frame sits only: i / (L − 1) (L, 1)."""
    return np.linspace(0.0, 1.0, len(frames))[:, None]


def _score_pace(monkeypatch, embed, source, **kwargs):
    monkeypatch.setattr(evaluate, "embed_video", embed)
    embs = [embed(None, source.read_frames(i, np.arange(source.num_frames(i))), image_size=8) for i in range(len(source))]
    return score_pace(None, source, embs, image_size=8, **kwargs)


def test_pace_of_an_embedding_of_what_frames_show_is_near_zero_where_the_time_stretch_is_not(monkeypatch):
    source = _gray_videos([40, 57, 90, 33])
    model, stretch = _score_pace(monkeypatch, _content, source, videos=3, seed=0)
    assert set(model) == set(stretch) == {"repaced", "trimmed"}
    # Re-paced: the path finds every frame; where the copy skips frames of A, DTW still visits
    # them, matched with a neighbour, a fraction of a frame off on average.
    assert model["repaced"] < 0.003 and stretch["repaced"] > 0.05
    # Trimmed: subsequence DTW finds the clip, every frame on the one it shows; the time stretch
    # spreads the clip over the whole video
    assert model["trimmed"] == 0.0 and stretch["trimmed"] > 0.05


def test_pace_of_an_embedding_of_frame_positions_is_the_time_stretch(monkeypatch):
    model, stretch = _score_pace(monkeypatch, _counter, _gray_videos([40, 57, 90]), videos=3, seed=0)
    # A frame counter aligns a copy as the time stretch does, up to DTW's steps (a clip's frame
    # counter spans the whole video's, so subsequence DTW matches it with the whole video)
    assert model == pytest.approx(stretch, abs=0.005)
    assert min(stretch.values()) > 0.05


def test_pace_scores_the_first_videos_of_three_frames_or_more_with_their_seeded_copies(monkeypatch):
    source = _gray_videos([30, 2, 44, 51])
    assert pace_video_indices(source, 2) == [0, 2] and pace_video_indices(source, 0) == []
    _, stretch = _score_pace(monkeypatch, _content, source, videos=2, seed=4)
    # The time stretch's error needs no embedding: from the copies of videos 0 and 2, seed 4
    maps = {i: pace_maps(source.num_frames(i), seed=4, video_index=i) for i in (0, 2)}
    for kind in ("repaced", "trimmed"):
        want = np.mean([stretch_error(true, source.num_frames(i)) for i in maps for true in maps[i][kind]])
        assert stretch[kind] == pytest.approx(want, abs=1e-12), kind
    assert _score_pace(monkeypatch, _content, source, videos=2, seed=4)[1] == stretch  # the same every time
    assert _score_pace(monkeypatch, _content, source, videos=2, seed=5)[1] != stretch
    with pytest.raises(ValueError, match="at least 3 frames"):
        _score_pace(monkeypatch, _content, _gray_videos([2, 2]), videos=2)


def test_evaluate_class_reports_pace_with_the_time_stretch_and_the_gain_of_an_error():
    config = _config(eval={"pace_videos": 2, "fractions": [1.0], "ap_ks": [1]})
    train, val = _gray_videos([20, 24, 28]), _gray_videos([22, 26, 30])
    metrics = evaluate_class(_model(), config, train, val, device="cpu").metrics
    pace, base = metrics["pace"], metrics["baseline"]["pace"]
    assert set(pace) == set(base) == {"repaced", "trimmed"}
    assert all(0.0 <= v < 1.0 for v in [*pace.values(), *base.values()])
    for kind in pace:  # lower is better: the gain is how much lower the model's error is
        assert metrics["gain"]["pace"][kind] == pytest.approx(base[kind] - pace[kind], abs=1e-12)
    assert "pace" not in metrics["oracle"]
    assert list(metrics)[-3:] == ["baseline", "oracle", "gain"]  # the model's metrics first, pace among them
    # The same copies, the same numbers, every evaluation
    assert evaluate_class(_model(), config, train, val, device="cpu").metrics["pace"] == pace
    # Without the references, the model's pace alone; a validation hook leaves it out; 0 videos: not measured
    alone = evaluate_class(_model(), config, train, val, device="cpu", references=False).metrics
    assert alone["pace"] == pace and not set(REFERENCES) & set(alone)
    assert "pace" not in evaluate_class(_model(), config, train, val, device="cpu", pace=False).metrics
    none = _config(eval={"pace_videos": 0, "fractions": [1.0], "ap_ks": [1]})
    assert "pace" not in evaluate_class(_model(), none, train, val, device="cpu").metrics


# ----------------------------------------------------------------------------- report

MODEL_ONLY = {  # as score_embeddings gives them: no references
    "reach": {
        "phase_classification": {0.1: 0.812345, 1.0: 0.93456},
        "phase_progression": 0.701234,
        "kendalls_tau": 0.955555,
        "ap_at_k": {5: 0.8811, 10: 0.8622},
        "dtw_accuracy": 0.77777,
        "pace": {"repaced": 0.0412, "trimmed": 0.0951},
    },
    "throw": {
        "phase_classification": {0.1: 0.61234, 1.0: 0.71999},
        "phase_progression": 0.5,
        "kendalls_tau": 0.88123,
        "ap_at_k": {5: 0.70005, 10: 0.69},
        "dtw_accuracy": 0.66,
        "pace": {"repaced": 0.1523, "trimmed": 0.0877},
    },
}
REFERENCE_VALUES = {  # (baseline, oracle) per class
    "reach": (
        {
            "phase_classification": {0.1: 0.501, 1.0: 0.6234},
            "phase_progression": 0.8123,
            "kendalls_tau": 0.99511,
            "ap_at_k": {5: 0.5571, 10: 0.5482},
            "dtw_accuracy": 0.5963,
            "pace": {"repaced": 0.0934, "trimmed": 0.1208},
        },
        {
            "phase_classification": {0.1: 1.0, 1.0: 1.0},
            "phase_progression": 0.8741,
            "kendalls_tau": 0.99322,
            "ap_at_k": {5: 0.99913, 10: 0.9871},
            "dtw_accuracy": 1.0,
        },
    ),
    "throw": (
        {
            "phase_classification": {0.1: 0.4433, 1.0: 0.61111},
            "phase_progression": 0.83641,
            "kendalls_tau": 0.9977,
            "ap_at_k": {5: 0.52233, 10: 0.5119},
            "dtw_accuracy": 0.50013,
            "pace": {"repaced": 0.1105, "trimmed": 0.1333},
        },
        {
            "phase_classification": {0.1: 0.9912, 1.0: 1.0},
            "phase_progression": 0.8512,
            "kendalls_tau": 0.9901,
            "ap_at_k": {5: 0.98871, 10: 0.97632},
            "dtw_accuracy": 0.99731,
        },
    ),
}


def _minus(a, b):
    """a − b over nested dicts, b − a under "pace" (an error: lower is better), written here, not lrprop's."""
    return {
        k: (_minus(b[k], v) if k == "pace" else _minus(v, b[k])) if isinstance(v, dict) else v - b[k] for k, v in a.items()
    }


PER_CLASS = {  # as evaluate_class gives them: the oracle has no pace
    action: {**m, "baseline": base, "oracle": oracle, "gain": _minus(m, base)}
    for (action, m), (base, oracle) in zip(MODEL_ONLY.items(), REFERENCE_VALUES.values())
}
KEYS = {  # flattened name -> how to read it from a metrics dict
    "classification@0.1": lambda m: m["phase_classification"][0.1],
    "classification@1.0": lambda m: m["phase_classification"][1.0],
    "phase_progression": lambda m: m["phase_progression"],
    "kendalls_tau": lambda m: m["kendalls_tau"],
    "ap@5": lambda m: m["ap_at_k"][5],
    "ap@10": lambda m: m["ap_at_k"][10],
    "dtw_accuracy": lambda m: m["dtw_accuracy"],
    "pace/repaced": lambda m: m["pace"]["repaced"],
    "pace/trimmed": lambda m: m["pace"]["trimmed"],
}
ERRORS = {"pace/repaced", "pace/trimmed"}  # lower is better: the gain is baseline − model; no oracle
PAPER_POURING = {  # METHOD.md §7, typed here
    "classification@0.1": "92.70",
    "classification@1.0": "94.36",
    "phase_progression": "94.09",
    "kendalls_tau": "99.46",
    "ap@5": "92.41",
    "ap@10": "90.33",
    "dtw_accuracy": "90.22",
}


def _expected_rows(per_class: dict, paper: dict | None = None) -> dict[tuple[str, str], list[str]]:
    """{(metric, row): cells} of the table, formatted and averaged here: the model's row, then
    the baseline's, the gain (signed; baseline − model for an error) and the oracle's ("–" for
    an error), a mean column for 2+ classes, the paper's number on the model's row only."""
    out = {}
    many = len(per_class) > 1
    for key, get in KEYS.items():
        model = [get(m) for m in per_class.values()]
        cells = [f"{100 * v:.2f}" for v in model] + ([f"{100 * np.mean(model):.2f}"] if many else [])
        out[key, "model"] = cells + ([paper.get(key, "–")] if paper is not None else [])
        if "baseline" not in next(iter(per_class.values())):
            continue
        base = [get(m["baseline"]) for m in per_class.values()]
        sign = -1 if key in ERRORS else 1
        gain = [sign * (a - b) for a, b in zip(model, base)]
        mean_gain = sign * (np.mean(model) - np.mean(base))
        if key in ERRORS:
            oracle = ["–"] * (len(per_class) + many)
        else:
            values = [get(m["oracle"]) for m in per_class.values()]
            oracle = [f"{100 * v:.2f}" for v in values] + ([f"{100 * np.mean(values):.2f}"] if many else [])
        rows = {
            "baseline": [f"{100 * v:.2f}" for v in base] + ([f"{100 * np.mean(base):.2f}"] if many else []),
            "gain": [f"{100 * v:+.2f}" for v in gain] + ([f"{100 * mean_gain:+.2f}"] if many else []),
            "oracle": oracle,
        }
        for row, cells in rows.items():
            out[key, row] = cells + (["–"] if paper is not None else [])
    return out


def _samples():
    rng = np.random.default_rng(0)
    out = {}
    for n, action in enumerate(PER_CLASS):
        lengths = [18, 22, 25]
        labels = [np.minimum(np.arange(L) * 3 // L, 2) for L in lengths]
        embs = [rng.normal(size=(L, 8)) + lab[:, None] for L, lab in zip(lengths, labels)]
        frames = [_frames(L, seed=10 * n + i, size=16) for i, L in enumerate(lengths[:2])]
        out[action] = {"embs": embs, "labels": labels, "ids": [f"{action}_{i}" for i in range(3)], "frames": frames}
    return out


def _table_rows(page: str) -> dict[tuple[str, str], list[str]]:
    """{(metric, row): cells} of the report's HTML table (a reference row belongs to the
    metric of the model row above it)."""
    table = re.search(r"<table>.*?</table>", page, re.S).group(0)
    rows, metric = {}, None
    for key, row, cells in re.findall(r"<tr><th>([^<]*)</th><th>([^<]*)</th>(.*?)</tr>", table):
        metric = key or metric
        tds = re.findall(r"<td>(.*?)</td>", cells)
        if tds:
            rows[metric, row] = tds
    return rows


def _text_rows(text: str) -> dict[tuple[str, str], list[str]]:
    """The same from the CLI's aligned text table."""
    rows, metric = {}, None
    for line in text.splitlines():
        tokens = line.split()
        if len(tokens) > 1 and tokens[1] == "model":
            metric = tokens[0]
            rows[metric, "model"] = tokens[2:]
        elif tokens and tokens[0] in ("baseline", "gain", "oracle") and metric is not None:
            rows[metric, tokens[0]] = tokens[1:]
    return rows


def _markdown_rows(text: str) -> dict[tuple[str, str], list[str]]:
    """The same from the artifact's markdown table."""
    rows, metric = {}, None
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith("| metric"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        metric = cells[0] or metric
        rows[metric, cells[1]] = cells[2:]
    return rows


def test_mean_over_classes_is_the_mean_of_each_metric():
    mean = mean_over_classes(MODEL_ONLY)
    assert set(mean) == set(KEYS)
    for key, get in KEYS.items():
        assert mean[key] == pytest.approx(float(np.mean([get(m) for m in MODEL_ONLY.values()])), abs=1e-12), key


def test_mean_over_classes_carries_the_references_and_the_gain_of_the_means():
    mean = mean_over_classes(PER_CLASS)
    assert set(mean) == set(KEYS) | {"baseline", "oracle", "gain"}
    for key, get in KEYS.items():
        for ref in ("baseline",) if key in ERRORS else ("baseline", "oracle"):
            want = np.mean([get(m[ref]) for m in PER_CLASS.values()])
            assert mean[ref][key] == pytest.approx(float(want), abs=1e-12), (ref, key)
        sign = -1 if key in ERRORS else 1  # an error's gain is how much lower it is
        assert mean["gain"][key] == pytest.approx(sign * (mean[key] - mean["baseline"][key]), abs=1e-12), key
    assert not ERRORS & set(mean["oracle"])


@pytest.mark.parametrize(
    "dataset, paper", [("synthetic", None), ("pouring", PAPER_POURING), ("pennaction", {"dtw_accuracy": "90.16"})]
)
def test_report_has_the_table_and_every_plot(dataset, paper):
    page = render_report("evaluation", PER_CLASS, dataset=dataset, samples=_samples(), details={"run": "r1"})
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    header = re.search(r"<table><tr>(.*?)</tr>", page, re.S).group(1)
    assert ("paper" in header) == (paper is not None)
    rows = _table_rows(page)
    expected = _expected_rows(PER_CLASS, {} if paper is not None else None)
    assert set(rows) == set(expected) == {(k, r) for k in KEYS for r in ("model", "baseline", "gain", "oracle")}
    for key, cells in expected.items():
        want = cells[:-1] if paper is not None else cells  # the paper's cell checked below
        assert rows[key][: len(want)] == want, key
    for key, number in (paper or {}).items():
        assert rows[key, "model"][-1] == number, key
        for row in ("baseline", "gain", "oracle"):
            assert rows[key, row][-1] == "–"
    assert "time-stretch baseline" in page
    # One bar chart, then per class: cost matrix with its path, aligned strip, trajectories.
    images = re.findall(r"<img alt='([^']*)' src='data:image/png;base64,([^']*)'>", page)
    assert len(images) == page.count("<img") == 1 + 3 * len(PER_CLASS)
    alts = [alt for alt, _ in images]
    assert alts.count("metrics per class") == 1
    for alt in ("cost matrix and DTW path", "aligned frames", "embedding trajectories"):
        assert alts.count(alt) == len(PER_CLASS), alt
    for _, data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    for action in PER_CLASS:
        assert f"<h2>{action}</h2>" in page


def test_report_without_samples_has_the_table_and_the_bars_only():
    page = render_report("t", {"reach": PER_CLASS["reach"]}, dataset="synthetic")
    assert page.count("<img") == 1
    rows = _table_rows(page)
    assert rows["dtw_accuracy", "model"] == ["77.78"]  # one class: no mean column
    assert rows["dtw_accuracy", "baseline"] == ["59.63"] and rows["dtw_accuracy", "gain"] == ["+18.15"]
    assert rows["dtw_accuracy", "oracle"] == ["100.00"]
    # An error: 4.12 % of the video against the time stretch's 9.34 % is 5.22 points better
    assert rows["pace/repaced", "model"] == ["4.12"] and rows["pace/repaced", "baseline"] == ["9.34"]
    assert rows["pace/repaced", "gain"] == ["+5.22"] and rows["pace/repaced", "oracle"] == ["–"]
    assert rows == _expected_rows({"reach": PER_CLASS["reach"]})


def test_report_of_metrics_without_references_has_the_model_rows_only():
    page = render_report("t", MODEL_ONLY, dataset="synthetic")
    assert _table_rows(page) == _expected_rows(MODEL_ONLY)
    assert "time-stretch baseline" not in page


def _summary(dataset: str = "pouring") -> dict:
    """A summary as metrics.json holds it: through JSON, so its keys are strings."""
    return json.loads(json.dumps({"dataset": dataset, "per_class": PER_CLASS, "mean": mean_over_classes(PER_CLASS)}))


def test_cli_table_shows_the_baseline_gain_and_oracle_beside_every_number(capsys):
    from lrprop.cli import _print_metrics

    _print_metrics(_summary())
    out = capsys.readouterr().out
    assert _text_rows(out) == _expected_rows(PER_CLASS, PAPER_POURING)
    assert "time-stretch baseline" in out


def test_prefect_artifact_shows_the_baseline_gain_and_oracle_beside_every_number():
    from lrprop.pipeline.flows import _metrics_markdown

    text = _metrics_markdown(_summary("synthetic"), "s3://b/runs/r1/evaluation/report.html", "r1")
    assert text.startswith("# r1: synthetic") and "[s3://b/runs/r1/evaluation/report.html]" in text
    assert _markdown_rows(text) == _expected_rows(PER_CLASS)
    assert "time-stretch baseline" in text


# ----------------------------------------------------------------------------- CLI


SYN = SyntheticConfig(num_actions=2, train_videos=4, val_videos=3, frame_size=32, length_range=(20, 40), seed=5)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A store with the synthetic data set and a run with one exported model per action."""
    from lrprop.data.parquet import ParquetVideos
    from lrprop.ingest.generic import read_generic
    from lrprop.ingest.synthetic import write_synthetic
    from lrprop.ingest.writer import ingest
    from lrprop.training.train import train

    root = tmp_path_factory.mktemp("evaluate-cli")
    raw, store = root / "raw", str(root / "store")
    write_synthetic(str(raw), SYN, threads=2)
    result = ingest(
        read_generic(str(raw)), store_uri=store, dataset="synthetic", source=str(raw), frame_size=32, progress=False, threads=2
    )
    actions = sorted(result.manifest["counts"])
    assert len(actions) == 2
    config = _config(optim={"epochs": 1})
    run_dir = root / "runs" / "r1"
    for action in actions:
        source = ParquetVideos(store, "synthetic", version=result.version, action=action, split="train")
        trained = train(config, source, checkpoint_dir=run_dir / action / "checkpoints")
        meta = {"dataset": "synthetic", "dataset_version": result.version, "action": action}
        export_model(run_dir / action / "model", trained.model, config_to_dict(config), meta)
    return {"store": store, "run": run_dir, "actions": actions, "version": result.version, "config": config}


def _check_metrics(summary: dict, actions: list[str], config) -> None:
    assert summary["dataset"] == "synthetic"
    assert sorted(summary["per_class"]) == actions
    for action in actions:
        m = summary["per_class"][action]
        for scores in (m, m["baseline"], m["oracle"]):
            assert {float(f) for f in scores["phase_classification"]} == set(config.eval.fractions)
            assert {int(k) for k in scores["ap_at_k"]} == set(config.eval.ap_ks)
            for v in [*scores["phase_classification"].values(), *scores["ap_at_k"].values(), scores["dtw_accuracy"]]:
                assert 0.0 <= v <= 1.0
            assert -1.0 <= scores["kendalls_tau"] <= 1.0
        assert m["gain"]["dtw_accuracy"] == pytest.approx(m["dtw_accuracy"] - m["baseline"]["dtw_accuracy"], abs=1e-12)
        assert m["gain"]["ap_at_k"]["5"] == pytest.approx(m["ap_at_k"]["5"] - m["baseline"]["ap_at_k"]["5"], abs=1e-12)
        # The synthetic phases come in order: the oracle keeps them apart under DTW.
        assert m["oracle"]["dtw_accuracy"] == 1.0
        # pace: the model's errors and the time stretch's on the same copies; the gain of an error is baseline − model
        assert set(m["pace"]) == set(m["baseline"]["pace"]) == {"repaced", "trimmed"} and "pace" not in m["oracle"]
        for kind, error in m["pace"].items():
            assert 0.0 <= error < 1.0 and 0.0 < m["baseline"]["pace"][kind] < 1.0
            assert m["gain"]["pace"][kind] == pytest.approx(m["baseline"]["pace"][kind] - error, abs=1e-12)
    # The mean over classes, recomputed here.
    mean = summary["mean"]
    expect = {
        "phase_progression": np.mean([summary["per_class"][a]["phase_progression"] for a in actions]),
        "kendalls_tau": np.mean([summary["per_class"][a]["kendalls_tau"] for a in actions]),
        "dtw_accuracy": np.mean([summary["per_class"][a]["dtw_accuracy"] for a in actions]),
        "classification@1.0": np.mean([summary["per_class"][a]["phase_classification"]["1.0"] for a in actions]),
        "ap@5": np.mean([summary["per_class"][a]["ap_at_k"]["5"] for a in actions]),
    }
    for key, value in expect.items():
        assert mean[key] == pytest.approx(float(value), abs=1e-9), key
    base = np.mean([summary["per_class"][a]["baseline"]["dtw_accuracy"] for a in actions])
    assert mean["baseline"]["dtw_accuracy"] == pytest.approx(float(base), abs=1e-9)
    assert mean["gain"]["dtw_accuracy"] == pytest.approx(mean["dtw_accuracy"] - float(base), abs=1e-9)
    assert "dtw_accuracy" in mean["oracle"]
    repaced = [summary["per_class"][a]["pace"]["repaced"] for a in actions]
    stretched = [summary["per_class"][a]["baseline"]["pace"]["repaced"] for a in actions]
    assert mean["pace/repaced"] == pytest.approx(float(np.mean(repaced)), abs=1e-9)
    assert mean["gain"]["pace/repaced"] == pytest.approx(float(np.mean(stretched) - np.mean(repaced)), abs=1e-9)


@pytest.mark.integration
def test_cli_evaluates_every_class_of_a_run(tiny_run, capsys):
    run = tiny_run["run"]
    assert main(["evaluate", "--run", str(run), "--store", tiny_run["store"]]) == 0
    out_dir = run / "evaluation"
    summary = json.loads((out_dir / "metrics.json").read_text())
    _check_metrics(summary, tiny_run["actions"], tiny_run["config"])
    assert summary["dataset_version"] == [tiny_run["version"]]
    page = (out_dir / "report.html").read_text()
    assert page.count("<img") == 1 + 3 * len(tiny_run["actions"])
    rows = _table_rows(page)
    for n, action in enumerate(tiny_run["actions"]):
        m = summary["per_class"][action]
        assert rows["dtw_accuracy", "model"][n] == f"{100 * m['dtw_accuracy']:.2f}"
        assert rows["dtw_accuracy", "baseline"][n] == f"{100 * m['baseline']['dtw_accuracy']:.2f}"
    assert "paper" not in re.search(r"<table><tr>(.*?)</tr>", page, re.S).group(1)
    printed = capsys.readouterr().out
    assert str(out_dir / "report.html") in printed
    text = _text_rows(printed)
    for row in ("model", "baseline", "gain", "oracle"):
        assert len(text["dtw_accuracy", row]) == len(tiny_run["actions"]) + 1, row  # classes and their mean
    for n, action in enumerate(tiny_run["actions"]):
        m = summary["per_class"][action]
        assert rows["pace/repaced", "model"][n] == text["pace/repaced", "model"][n] == f"{100 * m['pace']['repaced']:.2f}"
        assert rows["pace/trimmed", "baseline"][n] == f"{100 * m['baseline']['pace']['trimmed']:.2f}"
        assert rows["pace/trimmed", "oracle"][n] == text["pace/trimmed", "oracle"][n] == "–"


@pytest.mark.integration
def test_cli_evaluates_one_model(tiny_run, tmp_path):
    action = tiny_run["actions"][1]
    out = tmp_path / "one"
    model_dir = tiny_run["run"] / action / "model"
    assert main(["evaluate", "--model", str(model_dir), "--store", tiny_run["store"], "--out", str(out)]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    _check_metrics(summary, [action], tiny_run["config"])
    assert (out / "report.html").read_text().count("<img") == 1 + 3
    # Two metrics recomputed end to end: the model's forward on the stored validation frames
    # (one pass, default positions), then scipy's Kendall's tau and tslearn's DTW (tests/oracles.py).
    from oracles import dtw_accuracy_oracle, kendalls_tau_oracle

    from lrprop.data.parquet import ParquetVideos

    model, config, _ = load_trained_model(model_dir)
    val = ParquetVideos(tiny_run["store"], "synthetic", version=tiny_run["version"], action=action, split="val")
    embs, labels = [], []
    for i in range(len(val)):
        keep = np.asarray(val.labels(i)) >= 0
        frames = val.read_frames(i, np.arange(val.num_frames(i)))
        embs.append(_forward(model, frames, None)[keep])
        labels.append(np.asarray(val.labels(i))[keep])
    scores = summary["per_class"][action]
    assert scores["kendalls_tau"] == pytest.approx(kendalls_tau_oracle(embs, config.eval.tau_stride), abs=1e-4)
    assert scores["dtw_accuracy"] == pytest.approx(dtw_accuracy_oracle(embs, labels), abs=1e-4)
    # The baseline's DTW accuracy from its definition: frame i of a video of L frames at i / L,
    # L counting every frame, then the unlabelled frames dropped.
    stretch = [(np.arange(val.num_frames(i)) / val.num_frames(i))[np.asarray(val.labels(i)) >= 0, None] for i in range(len(val))]
    assert scores["baseline"]["dtw_accuracy"] == pytest.approx(dtw_accuracy_oracle(stretch, labels), abs=1e-9)


def test_cli_evaluate_on_a_run_without_models_is_an_error(tmp_path, capsys):
    (tmp_path / "run" / "reach" / "checkpoints").mkdir(parents=True)
    assert main(["evaluate", "--run", str(tmp_path / "run"), "--store", str(tmp_path / "store")]) == 2
    assert "no exported models" in capsys.readouterr().err
    assert not (tmp_path / "run" / "evaluation").exists()


def test_cli_evaluate_of_a_run_that_published_nothing_names_where_it_looked(tmp_path, capsys):
    assert main(["evaluate", "--run", "never-ran", "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert f"nothing published under {tmp_path / 'store'}/runs/never-ran/published.json" in err


def test_classes_stored_before_phase_transfer_show_a_dash_and_the_mean_of_those_that_have_it():
    mixed = {"reach": {**MODEL_ONLY["reach"], "phase_transfer": 0.75}, "throw": MODEL_ONLY["throw"]}  # throw: an old one
    assert mean_over_classes(mixed)["phase_transfer"] == pytest.approx(0.75)
    page = render_report("mixed", mixed, dataset="synthetic")  # the bars leave the missing one out
    assert _table_rows(page)["phase_transfer", "model"] == ["75.00", "–", "75.00"]
