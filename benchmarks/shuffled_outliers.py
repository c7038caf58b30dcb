"""Does a video performed in another order rank first among its class's outliers, with a
published model? (issue 16)

    .venv/bin/python benchmarks/shuffled_outliers.py --store lrprop-store [--model synthetic/{action}@production]

For each validation video of each class (the frame folders the synthetic data set was generated
into, under ``<store>/raw/``, with their labels), its phases are put in a random other order
(the same frames, segment by segment) and the copy takes the video's place among the class's
validation videos; ``lrprop.core.outliers.outlier_scores`` ranks them. Chance is 1 in the number
of videos. The time-stretch baseline has nothing to rank by here (its embeddings of two videos
of one length are the same), so the peer is chance.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from lrprop.alignment.models import load_model
from lrprop.core.outliers import outlier_scores
from lrprop.evaluation.evaluate import embed_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default="lrprop-store")
    parser.add_argument("--model", default="synthetic/{action}@production", help="the model of each class ({action})")
    args = parser.parse_args()
    raw = sorted((Path(args.store) / "raw").iterdir())[-1]
    print(f"A shuffled copy in place of each validation video of {raw}/val: how often it ranks first")
    print()
    print("| class | videos | ranked first | chance | its mean rank |")
    print("|---|---:|---:|---:|---:|")
    for classes in sorted(p for p in (raw / "val").iterdir() if p.is_dir()):
        model, config, _ = load_model(args.model.format(action=classes.name), store_uri=args.store)
        folders = sorted(p for p in classes.iterdir() if p.is_dir())
        videos = [np.stack([np.asarray(Image.open(f).convert("RGB")) for f in sorted(d.glob("*.jpg"))]) for d in folders]
        labels = [np.load(f"{d}.npy") for d in folders]

        def embed(frames, model=model, config=config):
            return embed_video(model, frames, image_size=config.data.image_size, max_chunk=config.eval.max_chunk)

        embs = [embed(v) for v in videos]
        ranks = []
        for k, (frames, lab) in enumerate(zip(videos, labels, strict=True)):
            phases = np.unique(lab[lab >= 0])
            rng = np.random.default_rng(k)
            order = rng.permutation(phases)
            while np.array_equal(order, phases):
                order = rng.permutation(phases)
            shuffled = np.concatenate([frames[lab == p] for p in order])
            scores, _, _ = outlier_scores([*embs[:k], embed(shuffled), *embs[k + 1 :]])
            ranks.append(1 + int(np.sum(scores > scores[k])))
        first = sum(r == 1 for r in ranks)
        print(f"| {classes.name} | {len(videos)} | {first} of {len(ranks)} | 1 of {len(videos)} | {np.mean(ranks):.1f} |")


if __name__ == "__main__":
    main()
