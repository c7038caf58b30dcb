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

The maps and both errors are :mod:`lrprop.core.pace`'s, which every evaluation's ``pace``
metric also uses (on its own seeded copies: docs/evaluation.md); this script keeps its two fixed
warps, so its numbers stay comparable with those published.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from lrprop.alignment.align import align_embeddings
from lrprop.alignment.models import load_model
from lrprop.core.pace import path_error, power_map, stretch_error
from lrprop.evaluation.evaluate import embed_video

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default="lrprop-store")
    parser.add_argument("--model", default="synthetic/{action}@production", help="the model of each class ({action})")
    args = parser.parse_args()
    raws = sorted((Path(args.store) / "raw").iterdir())
    if not raws:
        raise SystemExit(f"no generated synthetic videos under {args.store}/raw: run the README's main command first")
    raw = raws[-1]
    print(f"Warp recovery on {raw}/val, error in % of the video's length (mean over videos and warps)")
    print()
    print("| class | model | pairs | model error | time stretch error | model / stretch |")
    print("|---|---|---:|---:|---:|---:|")
    for classes in sorted(p for p in (raw / "val").iterdir() if p.is_dir()):
        action = classes.name
        spec = args.model.format(action=action)
        model, config, meta = load_model(spec, store_uri=args.store)
        ours, stretch = [], []
        for folder in sorted(p for p in classes.iterdir() if p.is_dir()):
            frames = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in sorted(folder.glob("*.jpg"))])
            o, s = errors(model, config, frames)
            ours += o
            stretch += s
        print(
            f"| {action} | {meta.get('published', spec).rsplit('/', 1)[-1]} | {len(ours)} | {np.mean(ours):.2f} "
            f"| {np.mean(stretch):.2f} | {np.mean(ours) / np.mean(stretch):.2f} |"
        )


if __name__ == "__main__":
    main()
