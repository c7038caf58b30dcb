"""Find the unusual executions of a class: its videos ranked by their alignment cost to the rest
(issue 16; the score is :mod:`lrprop.core.outliers`').

    ranked = find_outliers(model, config, store_uri, "synthetic", "reach", split="val")
    ranked.rows[0]          # {"video", "frames", "score", "z", "rank"}, the most unusual first
    write_outliers(out_dir, ranked, top=10)     # outliers.csv, outliers.html, outliers.png
"""

from __future__ import annotations

import base64
import csv
import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lrprop.alignment.outputs import new_figure, written_atomically
from lrprop.core.outliers import outlier_scores

__all__ = ["RankedVideos", "find_outliers", "write_outliers", "write_outliers_picture"]


@dataclass(frozen=True)
class RankedVideos:
    """A class's videos, most unusual first: rows {"rank", "video", "frames", "score", "z"},
    the pairwise costs (N, N) in the videos' data-set order, and a few frames of each video."""

    dataset: str
    version: str
    action: str
    split: str
    rows: list[dict]
    costs: np.ndarray
    strips: dict[str, np.ndarray]  # video id: (h, w, 3) uint8, frames side by side


def _strip(frames: np.ndarray, count: int = 6, height: int = 64) -> np.ndarray:
    """``count`` frames spread evenly over the video, side by side at ``height`` pixels."""
    picked = frames[np.linspace(0, len(frames) - 1, min(count, len(frames))).astype(int)]
    resized = [np.asarray(Image.fromarray(f).resize((round(f.shape[1] * height / f.shape[0]), height))) for f in picked]
    return np.concatenate(resized, axis=1)


def find_outliers(model, config, store_uri: str, dataset: str, action: str, *, split: str = "val", version=None, device="auto"):
    """Embed every video of ``split`` of a class (the data set's latest version unless
    ``version``) with ``model`` and rank them by :func:`lrprop.core.outliers.outlier_scores`.

    Returns:
        :class:`RankedVideos`.
    """
    from lrprop.data.parquet import ParquetVideos
    from lrprop.evaluation.evaluate import embed_video
    from lrprop.training.train import resolve_device

    model = model.to(resolve_device(device)).eval()
    source = ParquetVideos(store_uri, dataset, version=version, action=action, split=split)
    if len(source) < 3:
        raise ValueError(f"{dataset} {source.version} {action}/{split}: {len(source)} videos; ranking needs at least 3")
    embs, ids, strips = [], [], {}
    for i in range(len(source)):
        frames = source.read_frames(i, np.arange(source.num_frames(i)))
        embs.append(embed_video(model, frames, image_size=config.data.image_size, max_chunk=config.eval.max_chunk))
        ids.append(source.video_id(i))
        strips[ids[-1]] = _strip(frames)
    scores, z, costs = outlier_scores(embs)
    order = np.argsort(-scores, kind="stable")
    rows = [
        {"rank": r + 1, "video": ids[v], "frames": len(embs[v]), "score": float(scores[v]), "z": float(z[v])}
        for r, v in enumerate(order)
    ]
    return RankedVideos(dataset, source.version, action, split, rows, costs, strips)


def _png(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def write_outliers_picture(path: Path, ranked: RankedVideos, *, top: int = 3) -> Path:
    """The ``top`` most unusual videos and the most typical one, each as frames spread over it
    with its rank, score and z, as PNG."""
    shown = [*ranked.rows[:top], ranked.rows[-1]] if len(ranked.rows) > top else list(ranked.rows)
    fig = new_figure(7, 1.25 * len(shown))
    axes = fig.subplots(len(shown), 1, squeeze=False)
    for ax, r in zip(axes[:, 0], shown, strict=True):
        ax.imshow(ranked.strips[r["video"]])
        what = "most typical" if r is ranked.rows[-1] and len(ranked.rows) > top else f"rank {r['rank']}"
        ax.set_title(
            f"{what}: {r['video']} ({r['frames']} frames), score {r['score']:.4g}, z {r['z']:+.2f}", fontsize=8, loc="left"
        )
        ax.axis("off")
    fig.tight_layout()
    with written_atomically(path) as tmp:
        fig.savefig(tmp)
    return path


def write_outliers(out: Path, ranked: RankedVideos, *, top: int = 10) -> tuple[Path, Path, Path]:
    """``outliers.csv`` (every video: rank, video, frames, score, z), ``outliers.html`` (the
    ``top`` most unusual, each with frames spread over it, beside the most typical one) and
    ``outliers.png`` (:func:`write_outliers_picture`)."""
    out = Path(out)
    csv_path, page_path = out / "outliers.csv", out / "outliers.html"
    with written_atomically(csv_path) as tmp, tmp.open("w", newline="") as f:
        rows = csv.DictWriter(f, fieldnames=["rank", "video", "frames", "score", "z"])
        rows.writeheader()
        rows.writerows({**r, "score": f"{r['score']:.6g}", "z": f"{r['z']:.3f}"} for r in ranked.rows)

    typical = ranked.rows[-1]
    title = f"Unusual executions: {ranked.dataset} {ranked.version}, {ranked.action}/{ranked.split}"

    def row(r: dict) -> str:
        flag = " (unusual: z > 3)" if r["z"] > 3 else ""
        return (
            f"<tr><td>{r['rank']}</td><td>{html.escape(r['video'])}</td><td>{r['frames']}</td>"
            f"<td>{r['score']:.4g}</td><td>{r['z']:+.2f}{flag}</td>"
            f'<td><img src="data:image/png;base64,{_png(ranked.strips[r["video"]])}"></td></tr>'
        )

    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 8px;text-align:left;vertical-align:middle}}
tr:nth-child(even){{background:#f4f4f4}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Score: the median, over the class's other videos, of the mean squared distance between the
embeddings along the exact DTW path of the pair. z: (score − the class's median score) /
(1.4826 · the median absolute deviation of the scores). A video performed in another order, or
of another action, aligns badly with all the others. {len(ranked.rows)} videos; the {min(top, len(ranked.rows))}
highest scores, then the most typical one.</p>
<table><tr><th>rank</th><th>video</th><th>frames</th><th>score</th><th>z</th><th>frames spread over it</th></tr>
{"".join(row(r) for r in ranked.rows[:top])}
<tr><th colspan="6">the most typical</th></tr>{row(typical)}
</table></body></html>
"""
    with written_atomically(page_path) as tmp:
        tmp.write_text(page)
    return csv_path, page_path, write_outliers_picture(out / "outliers.png", ranked)
