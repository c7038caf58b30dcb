"""A self-contained HTML report of an evaluation: tables beside the paper's numbers, and plots.

The plots (matplotlib, embedded as PNG): each metric per action class; the cost matrix of a
sample pair of validation videos with its DTW path; a strip of frames of one video above the
frames of another that DTW aligns to them; the embedding trajectories of a few videos projected
to 2-D (PCA), coloured by phase.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping

import numpy as np

from lrprop.dtw import dtw_path

__all__ = ["PAPER", "flatten_metrics", "mean_over_classes", "render_report"]

# METHOD.md §7: the paper's LRProp numbers (percent) on the real data sets.
PAPER = {
    "pouring": {
        "kendalls_tau": 99.46,
        "phase_progression": 94.09,
        "ap@5": 92.41,
        "ap@10": 90.33,
        "ap@15": 90.86,
        "classification@0.1": 92.70,
        "classification@0.25": 93.88,
        "classification@0.5": 94.44,
        "classification@1.0": 94.36,
        "dtw_accuracy": 90.22,
    },
    "pennaction": {
        "kendalls_tau": 99.09,
        "phase_progression": 93.03,
        "ap@5": 92.46,
        "ap@10": 92.20,
        "ap@15": 92.03,
        "classification@0.1": 91.90,
        "classification@0.5": 92.96,
        "classification@0.75": 93.17,
        "classification@1.0": 93.25,
        "dtw_accuracy": 90.16,
    },
}


def flatten_metrics(m: Mapping) -> dict[str, float]:
    """{"classification@0.1": …, "ap@5": …, "phase_progression": …} from a metrics dict."""
    out = {}
    for f, v in m["phase_classification"].items():
        out[f"classification@{float(f)}"] = v
    out["phase_progression"] = m["phase_progression"]
    out["kendalls_tau"] = m["kendalls_tau"]
    for k, v in m["ap_at_k"].items():
        out[f"ap@{int(k)}"] = v
    out["dtw_accuracy"] = m["dtw_accuracy"]
    return out


def mean_over_classes(per_class: Mapping[str, Mapping]) -> dict[str, float]:
    """The mean of each flattened metric over action classes (NaNs ignored)."""
    flat = [flatten_metrics(m) for m in per_class.values()]
    return {key: float(np.nanmean([f[key] for f in flat])) for key in flat[0]} if flat else {}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _bars(per_class: Mapping[str, Mapping]) -> str:
    import matplotlib.pyplot as plt

    flat = {name: flatten_metrics(m) for name, m in per_class.items()}
    keys = list(next(iter(flat.values())))
    fig, ax = plt.subplots(figsize=(max(8, len(keys) * 0.9), 4))
    width = 0.8 / len(flat)
    for n, (name, values) in enumerate(flat.items()):
        ax.bar(np.arange(len(keys)) + n * width, [100 * values[k] for k in keys], width, label=name)
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, keys, rotation=45, ha="right")
    ax.set_ylabel("%")
    ax.set_ylim(min(0, *(100 * v for f in flat.values() for v in f.values() if np.isfinite(v))), 100)
    ax.legend(fontsize="small")
    ax.set_title("metrics per action class")
    return _png(fig)


def _cost_and_path(emb_a: np.ndarray, emb_b: np.ndarray, ids: tuple[str, str]) -> tuple[str, np.ndarray]:
    import matplotlib.pyplot as plt

    cost = ((emb_a[:, None, :] - emb_b[None, :, :]) ** 2).sum(-1)
    path = dtw_path(cost)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(cost, cmap="viridis", origin="upper", aspect="auto")
    ax.plot(path[:, 1], path[:, 0], color="red", linewidth=1.5)
    ax.set_xlabel(f"frame of {ids[1]}")
    ax.set_ylabel(f"frame of {ids[0]}")
    ax.set_title("squared-Euclidean cost and DTW path")
    return _png(fig), path


def _strip(frames_a: np.ndarray, frames_b: np.ndarray, ids: tuple[str, str]) -> str:
    import matplotlib.pyplot as plt

    k = len(frames_a)
    fig, axes = plt.subplots(2, k, figsize=(1.4 * k, 3.2))
    axes = np.asarray(axes).reshape(2, k)
    for col in range(k):
        for row, frames in enumerate((frames_a, frames_b)):
            axes[row, col].imshow(frames[col])
            axes[row, col].axis("off")
    axes[0, 0].set_title(ids[0], fontsize="small", loc="left")
    axes[1, 0].set_title(f"{ids[1]} (DTW-aligned)", fontsize="small", loc="left")
    return _png(fig)


def _trajectories(embs: list[np.ndarray], labels: list[np.ndarray], ids: list[str]) -> str:
    import matplotlib.pyplot as plt

    stacked = np.concatenate(embs)
    centre = stacked.mean(0)
    _, _, vt = np.linalg.svd(stacked - centre, full_matrices=False)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for emb, lab in zip(embs, labels):
        xy = (emb - centre) @ vt[:2].T
        ax.plot(xy[:, 0], xy[:, 1], color="grey", linewidth=0.5, alpha=0.6)
        labelled = lab >= 0
        ax.scatter(xy[~labelled, 0], xy[~labelled, 1], color="lightgrey", s=6)  # unlabelled frames
        points = ax.scatter(xy[labelled, 0], xy[labelled, 1], c=lab[labelled], cmap="tab10", s=8, vmin=0, vmax=9)
    ax.set_title(f"embeddings of {len(embs)} videos, PCA, coloured by phase")
    fig.colorbar(points, ax=ax, label="phase")
    return _png(fig)


def _table(per_class: Mapping[str, Mapping], paper: Mapping[str, float] | None) -> str:
    flat = {name: flatten_metrics(m) for name, m in per_class.items()}
    keys = list(next(iter(flat.values())))
    mean = mean_over_classes(per_class)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in flat) + ("<th>mean</th>" if len(flat) > 1 else "")
    head += "<th>paper (LRProp)</th>" if paper else ""
    rows = []
    for key in keys:
        cells = "".join(f"<td>{100 * f[key]:.2f}</td>" for f in flat.values())
        if len(flat) > 1:
            cells += f"<td><b>{100 * mean[key]:.2f}</b></td>"
        if paper:
            cells += f"<td>{paper[key]:.2f}</td>" if key in paper else "<td>–</td>"
        rows.append(f"<tr><th>{html.escape(key)}</th>{cells}</tr>")
    return f"<table><tr><th>metric (%)</th>{head}</tr>{''.join(rows)}</table>"


def render_report(
    title: str,
    per_class: Mapping[str, Mapping],
    *,
    dataset: str,
    samples: Mapping[str, dict] | None = None,
    details: Mapping[str, str] | None = None,
) -> str:
    """The report as one HTML string.

    Args:
        title: heading.
        per_class: {action: metrics dict of :func:`lrprop.evaluate.score_embeddings`}.
        dataset: the data set's name; "pouring" and "pennaction" get the paper's column.
        samples: {action: {"embs": [...], "labels": [...], "ids": [...], "frames": [(L, H, W, 3), …]}}
            for the plots of each class: the first two videos make the pair plots.
        details: extra lines (model, data-set version, …) shown under the title.
    """
    paper = PAPER.get(dataset.lower())
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}img{max-width:100%}</style>",
        f"</head><body><h1>{html.escape(title)}</h1>",
    ]
    for key, value in (details or {}).items():
        parts.append(f"<div><b>{html.escape(key)}</b>: {html.escape(str(value))}</div>")
    parts.append("<h2>Metrics</h2>" + _table(per_class, paper))
    if paper is None:
        parts.append("<p>The paper reports no numbers for this data set.</p>")
    parts.append(f"<h2>Per action class</h2><img alt='metrics per class' src='data:image/png;base64,{_bars(per_class)}'>")
    for action, sample in (samples or {}).items():
        embs, labels, ids = sample["embs"], sample["labels"], sample["ids"]
        parts.append(f"<h2>{html.escape(action)}</h2>")
        if len(embs) >= 2:
            png, path = _cost_and_path(embs[0], embs[1], (ids[0], ids[1]))
            parts.append(f"<img alt='cost matrix and DTW path' src='data:image/png;base64,{png}'>")
            frames = sample.get("frames")
            if frames is not None and len(frames) >= 2:
                picks = np.linspace(0, len(embs[0]) - 1, min(8, len(embs[0]))).round().astype(int)
                first_match = {}
                for i, j in path:
                    first_match.setdefault(int(i), int(j))
                matched = [first_match[int(i)] for i in picks]
                strip = _strip(frames[0][picks], frames[1][matched], (ids[0], ids[1]))
                parts.append(f"<img alt='aligned frames' src='data:image/png;base64,{strip}'>")
        parts.append(f"<img alt='embedding trajectories' src='data:image/png;base64,{_trajectories(embs, labels, ids)}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
