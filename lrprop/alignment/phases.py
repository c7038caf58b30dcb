"""Label every frame of new videos with the phases of labelled references (issue 16).

    refs = references_from_split(model, config, store_uri, meta, "train")   # or references_from_folder(...)
    labelled = label_videos(model, config, ["new.mp4", "frames/"], refs)
    labelled[0].phases, labelled[0].confidence, labelled[0].segments()

Each new video is embedded (streamed, :mod:`lrprop.alignment.videos`) and aligned with every
reference; the references vote for each frame's phase (:mod:`lrprop.core.phase_transfer`).
References are a split of the model's own data set in the store, or a folder of labelled videos:
each a video file or a folder of frames, with its labels beside it in ``<name>.npy`` or
``<name>.csv`` (one integer per frame, < 0 unlabelled), as ``lrprop ingest generic`` reads them.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrprop import store
from lrprop.alignment.align import embed_video_file
from lrprop.alignment.outputs import new_figure, written_atomically
from lrprop.alignment.videos import open_video
from lrprop.core.phase_transfer import transfer_phases

__all__ = [
    "LabelledVideo",
    "References",
    "label_videos",
    "references_from_folder",
    "references_from_split",
    "write_phases",
    "write_timeline",
]


@dataclass(frozen=True)
class References:
    """Labelled reference videos: their names, embeddings [(Tr, E)] and labels [(Tr,)]."""

    names: list[str]
    embeddings: list[np.ndarray]
    labels: list[np.ndarray]

    @property
    def num_phases(self) -> int:
        return 1 + max(int(lab.max()) for lab in self.labels if len(lab))


@dataclass(frozen=True)
class LabelledVideo:
    """A video's transferred phases (T,) (-1 where no reference voted) and confidence (T,)."""

    name: str
    phases: np.ndarray
    confidence: np.ndarray

    def segments(self) -> list[dict]:
        """The runs of one phase: [{"phase", "start", "end"}] with ``end`` exclusive, in order."""
        changes = np.flatnonzero(np.diff(self.phases)) + 1
        starts = np.r_[0, changes]
        ends = np.r_[changes, len(self.phases)]
        return [{"phase": int(self.phases[s]), "start": int(s), "end": int(e)} for s, e in zip(starts, ends, strict=True)]


def references_from_split(model, config, store_uri: str, meta: dict, split: str, max_videos: int | None = 20) -> References:
    """The first ``max_videos`` (data-set order; None: all) labelled videos of ``split`` of the
    data set, version and class the model was trained on (its ``meta``)."""
    from lrprop.data.parquet import ParquetVideos
    from lrprop.evaluation.evaluate import embed_video

    missing = [k for k in ("dataset", "dataset_version", "action") if not meta.get(k)]
    if missing:
        raise ValueError(f"the model's meta names no {', '.join(missing)}: give --reference a folder of labelled videos")
    counts = store.read_manifest(store.datasets_collection(store_uri, meta["dataset"]), meta["dataset_version"])["counts"]
    splits = sorted(counts.get(meta["action"], {}))
    if split not in splits:
        raise ValueError(
            f"{meta['dataset']} {meta['dataset_version']} {meta['action']} has no split {split!r} (it has {splits}); "
            "a folder of labelled videos is given as a path (./NAME)"
        )
    source = ParquetVideos(store_uri, meta["dataset"], version=meta["dataset_version"], action=meta["action"], split=split)
    names, embs, labels = [], [], []
    for i in range(len(source)):
        lab = source.labels(i)
        if lab is None or not (np.asarray(lab) >= 0).any():
            continue
        frames = source.read_frames(i, np.arange(source.num_frames(i)))
        embs.append(embed_video(model, frames, image_size=config.data.image_size, max_chunk=config.eval.max_chunk))
        labels.append(np.asarray(lab, dtype=np.int64))
        names.append(source.video_id(i))
        if max_videos is not None and len(names) >= max_videos:
            break
    if not names:
        raise ValueError(f"{meta['dataset']} {meta['dataset_version']} {meta['action']}/{split}: no labelled video")
    return References(names, embs, labels)


def references_from_folder(model, config, folder: str, max_videos: int | None = 20) -> References:
    """The labelled videos of ``folder`` (see the module), in name order, the first ``max_videos``."""
    from lrprop.ingest.generic import VIDEO_SUFFIXES, parse_label_file

    fs, root = store.filesystem(folder)
    if not fs.isdir(root):
        raise FileNotFoundError(f"no folder of reference videos at {folder}")
    entries = {p.rstrip("/").rsplit("/", 1)[-1]: p for p in fs.ls(root, detail=False)}
    names, embs, labels = [], [], []
    for name in sorted(entries):
        stem, ext = os.path.splitext(name)
        video_file = ext.lower() in VIDEO_SUFFIXES
        if not (video_file or fs.isdir(entries[name])):
            continue  # a label file, or anything else
        base = stem if video_file else name  # a.mp4's labels are a.npy, frame folder a's too
        label_name = next((base + suffix for suffix in (".npy", ".csv") if base + suffix in entries), None)
        if label_name is None:
            continue  # a video without labels is not a reference
        uri = fs.unstrip_protocol(entries[name])
        lab = parse_label_file(label_name, fs.cat_file(entries[label_name]))
        video = open_video(uri, short_side=config.data.image_size)
        emb = embed_video_file(model, config, video)
        if len(lab) != len(emb):
            raise ValueError(f"{fs.unstrip_protocol(entries[label_name])}: {len(lab)} labels for the {len(emb)} frames of {uri}")
        names.append(name)
        embs.append(emb)
        labels.append(lab.astype(np.int64))
        if max_videos is not None and len(names) >= max_videos:
            break
    if not names:
        raise ValueError(f"{folder}: no labelled video (a video file or frame folder with <name>.npy or <name>.csv beside it)")
    return References(names, embs, labels)


def label_videos(
    model, config, videos: list[str], references: References, *, device: str = "auto", subsequence: bool = False
) -> list[LabelledVideo]:
    """Each video's phases by the vote of ``references`` (see the module). ``subsequence``: each
    video is a clip, matched with the part of each reference it fits best (subsequence DTW);
    a video longer than a reference is refused, before it is embedded when its header or
    folder says so."""
    from lrprop.training.train import resolve_device

    model = model.to(resolve_device(device)).eval()
    out = []
    for uri in videos:
        video = open_video(uri, short_side=config.data.image_size)
        if subsequence:
            _check_clip(uri, len(video), references)
        emb = embed_video_file(model, config, video)
        if subsequence:  # again at the decoded length: a header can miscount
            _check_clip(uri, len(emb), references)
        phases, confidence = transfer_phases(
            emb, references.embeddings, references.labels, references.num_phases, subsequence=subsequence
        )
        out.append(LabelledVideo(uri, phases, confidence))
    return out


def _check_clip(uri: str, frames: int, references: References) -> None:
    """ValueError naming both when a clip is longer than a reference it is to be found in."""
    for name, emb in zip(references.names, references.embeddings, strict=True):
        if frames > len(emb):
            raise ValueError(
                f"{uri} ({frames} frames) is longer than reference {name} ({len(emb)} frames): a subsequence match "
                "finds each video in a part of each reference"
            )


def _atomic_text(path: Path, text: str) -> Path:
    with written_atomically(path) as tmp:
        tmp.write_text(text)
    return path


def write_phases(out: Path, labelled: list[LabelledVideo], references: References) -> tuple[Path, Path]:
    """``phases.csv`` (video, frame, phase, confidence) and ``phases.json`` (per video its
    frames, phases, confidence and segments; the references used)."""
    table = io.StringIO()
    rows = csv.writer(table)  # quotes a video name with a comma in it
    rows.writerow(["video", "frame", "phase", "confidence"])
    for v in labelled:
        for i, (phase, confidence) in enumerate(zip(v.phases.tolist(), v.confidence.tolist(), strict=True)):
            rows.writerow([v.name, i, phase, f"{confidence:.3f}"])
    doc = {
        "references": references.names,
        "videos": [
            {
                "video": v.name,
                "frames": len(v.phases),
                "segments": v.segments(),
                "phases": v.phases.tolist(),
                "confidence": [round(c, 3) for c in v.confidence.tolist()],
            }
            for v in labelled
        ],
    }
    return _atomic_text(out / "phases.csv", table.getvalue()), _atomic_text(out / "phases.json", json.dumps(doc, indent=1))


def write_timeline(path: Path, labelled: list[LabelledVideo], num_phases: int) -> Path:
    """A picture of each video's phases over its frames (one bar per video, a colour per phase;
    paler where the references agreed less)."""
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    colours = colormaps["tab10" if num_phases <= 10 else "tab20"]
    fig = new_figure(8, 0.6 + 0.45 * len(labelled))
    ax = fig.subplots()
    for row, v in enumerate(labelled):
        for seg in v.segments():
            if seg["phase"] < 0:
                continue
            alpha = 0.35 + 0.65 * float(v.confidence[seg["start"] : seg["end"]].mean())
            ax.broken_barh(
                [(seg["start"], seg["end"] - seg["start"])], (row - 0.4, 0.8), color=colours(seg["phase"]), alpha=alpha
            )
    ax.set_yticks(range(len(labelled)), [v.name.rstrip("/").rsplit("/", 1)[-1] for v in labelled], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("frame")
    handles = [Rectangle((0, 0), 1, 1, color=colours(k)) for k in range(num_phases)]
    ax.legend(handles, [f"phase {k}" for k in range(num_phases)], fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1),
              frameon=False)  # fmt: skip
    fig.tight_layout()
    with written_atomically(path) as tmp:
        fig.savefig(tmp, bbox_inches="tight")
    return path
