"""A self-contained HTML report of an evaluation: tables beside the paper's numbers, and plots.

:func:`metrics_table` is the one metrics table of an evaluation, as HTML here, as text for the
CLI and as markdown for the Prefect artifact: per metric the model's row, then the time-stretch
baseline's, the gain (model − baseline, percentage points; baseline − model for the pace
errors, lower is better) and the label oracle's, per class, their mean and the paper's number.

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

from lrprop.core.baselines import lower_is_better
from lrprop.core.dtw import dtw_path

__all__ = ["PAPER", "TABLE_NOTE", "flatten_metrics", "mean_over_classes", "metrics_table", "render_report"]

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
    """{"classification@0.1": …, "ap@5": …, "phase_progression": …, "pace/repaced": …} from a
    metrics dict (its references left out)."""
    out = {}
    for f, v in m["phase_classification"].items():
        out[f"classification@{float(f)}"] = v
    out["phase_progression"] = m["phase_progression"]
    out["kendalls_tau"] = m["kendalls_tau"]
    for k, v in m["ap_at_k"].items():
        out[f"ap@{int(k)}"] = v
    out["dtw_accuracy"] = m["dtw_accuracy"]
    if "phase_transfer" in m:  # metrics stored before issue 16 have none
        out["phase_transfer"] = m["phase_transfer"]
    for kind, v in m.get("pace", {}).items():  # errors, lower is better; none where not measured
        out[f"pace/{kind}"] = v
    return out


# The rows under each model row of the table, named by their keys in a class's metrics (from
# lrprop.evaluation.evaluate.score_with_references).
REFERENCE_ROWS = ("baseline", "gain", "oracle")
TABLE_NOTE = (
    "model: the trained model; baseline: the time-stretch baseline, frame i of L embedded as i / L "
    "(no model, no labels); gain: model − baseline, in points; oracle: phase index plus progress "
    "within the phase, read from the labels (an upper reference, not a bound on τ or progression). "
    "All scored on the same videos and frames. pace: errors, lower is better: how far from the true "
    "frames DTW matches a copy of a video played at another pace (re-paced) or cut short (trimmed), "
    "in % of the video's length; its baseline is the time stretch of the copy, its gain baseline − "
    "model; no oracle."
)


def _keys(flat: list[dict[str, float]]) -> list[str]:
    """Every flattened name some class has, in the order the classes first name them."""
    return list(dict.fromkeys(key for f in flat for key in f))


def _flat_mean(flat: list[dict[str, float]]) -> dict[str, float]:
    # a metric some classes lack (stored by an earlier version) is averaged over those that have it
    return {key: float(np.nanmean([f.get(key, np.nan) for f in flat])) for key in _keys(flat)}


def mean_over_classes(per_class: Mapping[str, Mapping]) -> dict:
    """The mean of each flattened metric over action classes (NaNs ignored).

    Returns:
        {"classification@0.1": …, …} for the model; when every class carries the references
        (:func:`lrprop.evaluation.evaluate.score_with_references`), also "baseline" and "oracle" (their
        flattened means) and "gain" = mean of the model − mean of the baseline, per metric (the
        other way round for an error, ``pace/…``: :func:`lrprop.core.baselines.metrics_gain`), so
        that the table's mean column subtracts as it reads.
    """
    if not per_class:
        return {}
    mean: dict = _flat_mean([flatten_metrics(m) for m in per_class.values()])
    for ref in ("baseline", "oracle"):
        if all(ref in m for m in per_class.values()):
            mean[ref] = _flat_mean([flatten_metrics(m[ref]) for m in per_class.values()])
    if "baseline" in mean:
        mean["gain"] = {
            key: mean["baseline"][key] - mean[key] if lower_is_better(key) else mean[key] - mean["baseline"][key]
            for key in mean["baseline"]
            if key in mean
        }
    return mean


def _cell(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"


def metrics_table(per_class: Mapping[str, Mapping], *, dataset: str = "", style: str = "text") -> str:
    """The metrics table of an evaluation, in percent.

    One block of rows per metric: the model's (with the paper's LRProp number where the data
    set is the paper's), then, where the classes' metrics carry them, the time-stretch
    baseline's, the gain over it (signed, points) and the label oracle's. Columns: each class,
    their mean (when more than one), the paper. The pace errors (``pace/…``, lower is better)
    read the other way: their gain is baseline − model, and the oracle has none ("–").

    Args:
        per_class: {action: metrics}, as in ``metrics.json`` (keys may be strings).
        dataset: "pouring" and "pennaction" get the paper's column.
        style: "text" (aligned columns), "markdown" or "html".
    """
    if style not in ("text", "markdown", "html"):
        raise ValueError(f"style must be 'text', 'markdown' or 'html', got {style!r}")
    paper = PAPER.get(dataset.lower())
    names = list(per_class)
    flat = {name: flatten_metrics(m) for name, m in per_class.items()}
    mean = mean_over_classes(per_class)
    refs = [key for key in REFERENCE_ROWS if flat and all(key in m for m in per_class.values())]
    ref_flat = {key: {name: flatten_metrics(m[key]) for name, m in per_class.items()} for key in refs}
    header = ["metric (%)", "", *names] + (["mean"] if len(names) > 1 else []) + (["paper (LRProp)"] if paper else [])
    rows = []
    for metric in _keys(list(flat.values())):
        # .get: a class whose metrics an earlier version stored may lack a newer metric ("–")
        cells = [_cell(flat[n].get(metric)) for n in names] + ([_cell(mean.get(metric))] if len(names) > 1 else [])
        rows.append([metric, "model", *cells] + ([f"{paper[metric]:.2f}" if metric in paper else "–"] if paper else []))
        for key in refs:
            signed = key == "gain"
            cells = [_cell(ref_flat[key][n].get(metric), signed) for n in names]
            if len(names) > 1:
                cells.append(_cell(mean[key].get(metric), signed))
            rows.append(["", key, *cells] + (["–"] if paper else []))
    note = TABLE_NOTE if refs else ""
    if style == "html":
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join(
            "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in r[:2]) + "".join(f"<td>{c}</td>" for c in r[2:]) + "</tr>"
            for r in rows
        )
        return f"<table><tr>{head}</tr>{body}</table>" + (f"<p>{html.escape(note)}</p>" if note else "")
    if style == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + (f"\n\n{note}" if note else "")
    widths = [max(10, len(h) + 2) for h in header[2:]]
    lines = [
        f"{r[0]:<22}{r[1]:<9}" + "".join(f"{c:>{w}}" for c, w in zip(r[2:], widths, strict=True)) for r in [header, *rows]
    ]
    return "\n".join(lines) + (f"\n{note}" if note else "")


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _bars(per_class: Mapping[str, Mapping]) -> str:
    import matplotlib.pyplot as plt

    flat = {name: flatten_metrics(m) for name, m in per_class.items()}
    keys = _keys(list(flat.values()))
    fig, ax = plt.subplots(figsize=(max(8, len(keys) * 0.9), 4))
    width = 0.8 / len(flat)
    for n, (name, values) in enumerate(flat.items()):
        x = np.arange(len(keys)) + n * width
        ax.bar(x, [100 * values.get(k, np.nan) for k in keys], width, label=name)
        if "baseline" in per_class[name]:
            base = flatten_metrics(per_class[name]["baseline"])
            label = "time-stretch baseline" if n == 0 else None
            ax.scatter(x, [100 * base.get(k, np.nan) for k in keys], marker="_", s=120, color="black", zorder=3, label=label)
    # the pace errors stand beside the scores: their labels say that lower is better
    names = [f"{k} (error, lower is better)" if lower_is_better(k) else k for k in keys]
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, names, rotation=45, ha="right")
    ax.set_ylabel("%")
    ax.set_ylim(min(0, *(100 * v for f in flat.values() for v in f.values() if np.isfinite(v))), 102)
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
        per_class: {action: metrics dict of :func:`lrprop.evaluation.evaluate.score_with_references`
            (or of :func:`lrprop.evaluation.evaluate.score_embeddings`: no reference rows then)}.
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
    parts.append("<h2>Metrics</h2>" + metrics_table(per_class, dataset=dataset, style="html"))
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
