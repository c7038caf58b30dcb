"""How well a published model's alignment recovers a known time warp, beside the time stretch.

    .venv/bin/python benchmarks/warp_recovery.py --store lrprop-store [--model synthetic/{action}@production]

For every validation video A of each class (the frame folders the synthetic data set was
generated into, under ``<store>/raw/``), B is A played with a speed that changes through the
video: B is 1.3 times as long and its frame j shows A's frame round((Ta - 1) (j / (Tb - 1))^γ),
γ = 0.5 (fast, then slow) and 2 (slow, then fast). The model aligns A with B (exact DTW on its
embeddings, ``lrprop.alignment.align``); each frame of B is matched with the mean of A's frames
the path gives it. The error is the mean distance from the true frame, in % of A's length. The
peer, measured on the same pairs: the time stretch (frame j of B is frame j (Ta - 1) / (Tb - 1)
of A), which needs no model. Frames are the same images in A and B, so this measures how far
the embeddings follow the content rather than the frame's position in its video.

Then different executions, not copies: each validation video A against the next one B of its
class (other timing, other appearance). The generator knows each frame's moment (its phase and
how far its pose has gone towards the next key pose), and two executions show the same pose at
the same moment: B's frame j truly matches A's frame at B's moment
(:func:`lrprop.core.pace.execution_map`). Errors as above, beside the time stretch's.

The maps and both errors are :mod:`lrprop.core.pace`'s, which every evaluation's ``pace``
metric also uses (on its own seeded copies: docs/evaluation.md); this script keeps its two fixed
warps, so its numbers stay comparable with those published.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from lrprop.alignment.align import align_embeddings
from lrprop.alignment.models import load_model
from lrprop.config import SyntheticConfig, config_from_dict
from lrprop.core.pace import execution_map, path_error, power_map, stretch_error
from lrprop.data.generator import video_moments
from lrprop.data.stick_figures import stick_moments
from lrprop.evaluation.evaluate import embed_video
from lrprop.ingest.synthetic import GENERATORS

MOMENTS = {"figure": video_moments, "stick_figures": stick_moments}

GAMMAS = (0.5, 2.0)
STRETCH = 1.3


def errors(model, config, frames: np.ndarray) -> tuple[list[float], list[float]]:
    """(the model's, the time stretch's) mean error per warp of one video, in % of its length."""
    ta = len(frames)
    ea = embed_video(model, frames, image_size=config.data.image_size, max_chunk=config.eval.max_chunk)
    ours, stretch = [], []
    for gamma in GAMMAS:
        true = power_map(ta, int(ta * STRETCH), gamma)  # B's frame j shows A's frame true[j]
        eb = embed_video(model, frames[true], image_size=config.data.image_size, max_chunk=config.eval.max_chunk)
        path = align_embeddings(ea, eb).path
        ours.append(100 * path_error(path, true, ta))
        stretch.append(100 * stretch_error(true, ta))
    return ours, stretch


def execution_errors(model, config, videos: list[tuple[np.ndarray, np.ndarray]]) -> tuple[list[float], list[float]]:
    """(the model's, the time stretch's) error of each video against the next one, in % of the
    first's length; ``videos``: (frames, moments) of one class."""
    size, chunk = config.data.image_size, config.eval.max_chunk
    embs = [embed_video(model, frames, image_size=size, max_chunk=chunk) for frames, _ in videos]
    ours, stretch = [], []
    for k in range(len(videos) - 1):
        (a, moments_a), (_, moments_b) = videos[k], videos[k + 1]
        true = execution_map(moments_a, moments_b)
        path = align_embeddings(embs[k], embs[k + 1]).path
        ours.append(100 * path_error(path, true, len(a)))
        stretch.append(100 * stretch_error(true, len(a)))
    return ours, stretch


def _row(action: str, spec: str, meta: dict, ours: list[float], stretch: list[float]) -> str:
    return (
        f"| {action} | {meta.get('published', spec).rsplit('/', 1)[-1]} | {len(ours)} | {np.mean(ours):.2f} "
        f"| {np.mean(stretch):.2f} | {np.mean(ours) / np.mean(stretch):.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default="lrprop-store")
    parser.add_argument("--model", default="synthetic/{action}@production", help="the model of each class ({action})")
    parser.add_argument("--raw", default=None, help="the generated videos' folder under <store>/raw (default: the newest)")
    args = parser.parse_args()
    raws = sorted((Path(args.store) / "raw").iterdir(), key=lambda p: p.stat().st_mtime)
    if not raws:
        raise SystemExit(f"no generated synthetic videos under {args.store}/raw: run the README's main command first")
    raw = Path(args.raw) if args.raw else raws[-1]
    synthetic = config_from_dict({"synthetic": json.loads((raw / "synthetic.json").read_text())["config"]}).synthetic
    header = "| class | model | pairs | model error | time stretch error | model / stretch |\n|---|---|---:|---:|---:|---:|"
    print(f"Warp recovery on {raw}/val, error in % of the video's length (mean over videos and warps)")
    print()
    print("Copies of each video, re-paced:")
    print(header)
    by_class = {}
    for classes in sorted(p for p in (raw / "val").iterdir() if p.is_dir()):
        action = classes.name
        spec = args.model.format(action=action)
        model, config, meta = load_model(spec, store_uri=args.store)
        videos = []
        ours, stretch = [], []
        for folder in sorted(p for p in classes.iterdir() if p.is_dir()):
            frames = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in sorted(folder.glob("*.jpg"))])
            o, s = errors(model, config, frames)
            ours += o
            stretch += s
            videos.append((frames, _moments(synthetic, action, folder.name)))
        by_class[action] = (spec, model, config, meta, videos)
        print(_row(action, spec, meta, ours, stretch))
    print()
    print("Different executions (each video against the next of its class, truth from the generator's moments):")
    print(header)
    for action, (spec, model, config, meta, videos) in by_class.items():
        print(_row(action, spec, meta, *execution_errors(model, config, videos)))


def _moments(synthetic: SyntheticConfig, action: str, video_id: str) -> np.ndarray:
    """The moments of a generated video, from its generator's settings and its id (<action>_<k>)."""
    spec_of = GENERATORS[synthetic.generator][1]
    class_index = next(c for c in range(synthetic.num_actions) if spec_of(c, synthetic.seed).name == action)
    video_index = int(video_id.rsplit("_", 1)[1])
    moments_of = MOMENTS[synthetic.generator]
    return moments_of(class_index, video_index, seed=synthetic.seed, length_range=synthetic.length_range)

if __name__ == "__main__":
    main()
