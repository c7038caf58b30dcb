"""``lrprop synth``: write the synthetic data set in the generic layout, then ingest it as such.

    <dest>/train/<action>/<video_id>/000000.jpg …  and  <dest>/train/<action>/<video_id>.npy
    <dest>/val/…
    <dest>/synthetic.json   the generator's parameters

Frames are JPEG (quality 95) at the generator's size, so ingesting them with the same
``frame_size`` keeps their bytes exactly.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from lrprop import store
from lrprop.config import SyntheticConfig, config_to_dict
from lrprop.data.synthetic import action_spec, synthetic_videos

__all__ = ["write_synthetic"]


def _jpeg(frame: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(frame).save(out, format="JPEG", quality=95)
    return out.getvalue()


def write_synthetic(dest: str, config: SyntheticConfig, *, workers: int = 4, **storage_options) -> dict:
    """Generate ``config``'s videos into ``dest``; returns {split: {action: n_videos}}."""
    counts: dict[str, dict[str, int]] = {}
    splits = {"train": (0, config.train_videos), "val": (config.train_videos, config.val_videos)}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for class_index in range(config.num_classes):
            for split, (first, count) in splits.items():
                if count == 0:
                    continue
                videos = synthetic_videos(
                    class_index,
                    count,
                    seed=config.seed,
                    size=config.frame_size,
                    length_range=config.length_range,
                    first_video=first,
                )
                action = action_spec(class_index, config.seed).name
                folder = store.join(dest, split, action)
                for video in videos:

                    def write_frame(i: int, video=video, folder=folder) -> None:
                        name = store.join(folder, video.video_id, f"{i:06d}.jpg")
                        store.write_bytes(name, _jpeg(video.frames[i]), **storage_options)

                    list(pool.map(write_frame, range(len(video.frames))))
                    buf = io.BytesIO()
                    np.save(buf, video.labels, allow_pickle=False)
                    store.write_bytes(store.join(folder, f"{video.video_id}.npy"), buf.getvalue(), **storage_options)
                counts.setdefault(split, {})[action] = len(videos)
    store.write_json(store.join(dest, "synthetic.json"), {"config": config_to_dict(config), "counts": counts}, **storage_options)
    return counts
