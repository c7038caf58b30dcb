"""``lrprop synth``: write the synthetic data set in the generic layout, then ingest it as such.

    <dest>/train/<action>/<video_id>/000000.jpg …  and  <dest>/train/<action>/<video_id>.npy
    <dest>/val/…
    <dest>/synthetic.json   the generator's parameters

Frames are JPEG (quality 95) at the generator's size, so ingesting them with the same
``frame_size`` keeps their bytes exactly.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from lrprop import store
from lrprop.config import Config, SyntheticConfig, config_to_dict
from lrprop.data.generator import action_spec, synthetic_videos
from lrprop.data.stick_figures import stick_action_spec, stick_videos
from lrprop.ingest.generic import read_generic
from lrprop.ingest.writer import ingest

__all__ = ["ensure_synthetic_dataset", "write_synthetic"]

log = logging.getLogger(__name__)

# synthetic.generator: (the videos of a class, its key poses and name)
GENERATORS = {"figure": (synthetic_videos, action_spec), "stick_figures": (stick_videos, stick_action_spec)}


def _jpeg(frame: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(frame).save(out, format="JPEG", quality=95)
    return out.getvalue()


def write_synthetic(dest: str, config: SyntheticConfig, *, threads: int = 4) -> dict:
    """Generate ``config``'s videos into ``dest``; returns {split: {action: n_videos}}."""
    counts: dict[str, dict[str, int]] = {}
    splits = {"train": (0, config.train_videos), "val": (config.train_videos, config.val_videos)}
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for class_index in range(config.num_actions):
            for split, (first, count) in splits.items():
                if count == 0:
                    continue
                make, spec = GENERATORS[config.generator]
                videos = make(
                    class_index,
                    count,
                    seed=config.seed,
                    size=config.frame_size,
                    length_range=config.length_range,
                    first_video=first,
                )
                action = spec(class_index, config.seed).name
                folder = store.join(dest, split, action)
                for video in videos:

                    def write_frame(i: int, video=video, folder=folder) -> None:
                        name = store.join(folder, video.video_id, f"{i:06d}.jpg")
                        store.write_bytes(name, _jpeg(video.frames[i]))

                    list(pool.map(write_frame, range(len(video.frames))))
                    buf = io.BytesIO()
                    np.save(buf, video.labels, allow_pickle=False)
                    store.write_bytes(store.join(folder, f"{video.video_id}.npy"), buf.getvalue())
                counts.setdefault(split, {})[action] = len(videos)
    store.write_json(store.join(dest, "synthetic.json"), {"config": config_to_dict(config), "counts": counts})
    return counts


def ensure_synthetic_dataset(config: Config, store_uri: str, progress: bool | None = None, progress_logger=None) -> str:
    """Generate and ingest the synthetic data set of ``config`` (as ``config.dataset.name``, by
    default "synthetic") if needed; returns its version."""
    syn = config_to_dict(config.synthetic)
    if syn["generator"] == "figure":
        del syn["generator"]  # the key of the videos made before there was a second generator
    key = hashlib.sha256(json.dumps(syn, sort_keys=True).encode()).hexdigest()[:12]
    raw = store.join(store_uri, "raw", f"synthetic-{key}")
    if not store.exists(store.join(raw, "synthetic.json")):  # written last: absent = incomplete
        log.info("generating synthetic videos into %s", raw)
        write_synthetic(raw, config.synthetic, threads=config.ingest.threads)
    result = ingest(
        read_generic(raw),
        store_uri=store_uri,
        dataset=config.dataset.name,
        source=raw,
        frame_size=config.ingest.frame_size or config.synthetic.frame_size,
        quality=config.ingest.jpeg_quality,
        strict=config.ingest.strict,
        threads=config.ingest.threads,
        progress=sys.stderr.isatty() if progress is None else progress,
        progress_logger=progress_logger,
    )
    log.info("dataset %s %s (%s)", config.dataset.name, result.version, "new" if result.created else "unchanged")
    return result.version
