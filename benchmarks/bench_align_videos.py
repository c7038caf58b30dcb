"""`lrprop align` end to end on two long mp4s: decode, embed, exact path, outputs; time and peak memory.

    .venv/bin/python benchmarks/bench_align_videos.py [--sizes 6000x7200,20000x24000] [--workdir /tmp/bench-align]

Each case writes two H.264 videos of a generated action (B a re-paced copy of A's frames,
64x64 pixels), exports a model of the smoke config's shape (random weights: the time and memory
do not depend on what the weights learnt), and runs the `lrprop align` command in a fresh
process with `--video none` (the side-by-side video is a separate cost), once with the default
sinusoidal model and once with `model.positions: local`, whose frames are embedded by
overlapping windows. The peer is the sinusoidal model in the same run: the table gives the
local model's time and memory over it. Peak memory is the child process's maximum resident set
size (getrusage). Prints a markdown table; the latest figures live in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LRPROP = str(Path(sys.executable).with_name("lrprop"))


def write_video(path: Path, frames_of, length: int, fps: int = 25) -> None:
    """Write ``length`` frames, ``frames_of(start, stop)`` giving (n, H, W, 3) uint8 a block at a time."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        first = frames_of(0, 1)
        stream.height, stream.width = first.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for start in range(0, length, 2000):
            for frame in frames_of(start, min(length, start + 2000)):
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_videos(folder: Path, ta: int, tb: int) -> tuple[Path, Path]:
    """A: a generated action of ``ta`` frames (one 400-frame execution looped); B: its frames at a
    changing pace, ``tb`` frames (frame j shows A's frame round((ta - 1)(j / (tb - 1))^1.3))."""
    from lrprop.data.generator import action_spec, render_video

    base, _ = render_video(action_spec(0), 400, 64, np.random.default_rng(0))
    a_path, b_path = folder / f"a{ta}.mp4", folder / f"b{tb}.mp4"
    if not a_path.exists():
        write_video(a_path, lambda s, e: base[np.arange(s, e) % len(base)], ta)
    if not b_path.exists():
        true = np.round((ta - 1) * np.linspace(0, 1, tb) ** 1.3).astype(int)
        write_video(b_path, lambda s, e: base[true[s:e] % len(base)], tb)
    return a_path, b_path


def export(folder: Path, positions: str) -> Path:
    from lrprop.config import config_to_dict, load_config
    from lrprop.training.checkpoint import export_model
    from lrprop.training.train import build_model

    out = folder / f"model-{positions}"
    if not out.exists():
        config = load_config(REPO / "configs" / "smoke.yaml", [f"model.positions={positions}", "pretrain.steps=0"])
        export_model(out, build_model(config), config_to_dict(config), {"action": "reach"})
    return out


# One child per measurement: getrusage(RUSAGE_CHILDREN) is the largest of all the children a
# process has waited for, so each run goes through a wrapper process of its own.
_WRAPPER = (
    "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(done.returncode)"
)


def run_align(a: Path, b: Path, model: Path, out: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one `lrprop align` process."""
    cmd = [LRPROP, "align", str(a), str(b), "--model", str(model), "--out", str(out), "--video", "none"]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return seconds, int(done.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="6000x7200,20000x24000", help="comma-separated TAxTB frame counts")
    parser.add_argument("--workdir", default="/tmp/lrprop-bench-align-videos")
    args = parser.parse_args()
    folder = Path(args.workdir)
    folder.mkdir(parents=True, exist_ok=True)
    models = {p: export(folder, p) for p in ("sinusoidal", "local")}
    print(f"`lrprop align A B --video none`, {platform.machine()}, {os.cpu_count()} cores, 64x64 frames")
    print()
    print("| A × B frames | model | seconds | peak MiB | local / sinusoidal time | local / sinusoidal memory |")
    print("|---|---|---:|---:|---:|---:|")
    for size in args.sizes.split(","):
        ta, tb = (int(v) for v in size.split("x"))
        a, b = make_videos(folder, ta, tb)
        measured = {p: run_align(a, b, m, folder / f"out-{p}-{size}") for p, m in models.items()}
        for p, (seconds, mib) in measured.items():
            if p == "local":
                ratio = f"| {seconds / measured['sinusoidal'][0]:.2f} | {mib / measured['sinusoidal'][1]:.2f}"
            else:
                ratio = "| – | –"
            print(f"| {ta} × {tb} | {p} | {seconds:.1f} | {mib:.0f} {ratio} |")


if __name__ == "__main__":
    main()
