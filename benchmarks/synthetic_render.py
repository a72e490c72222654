"""Benchmark: synthetic Aff-Wild2 frames rendered and written per second on one core (target: >= 500/s at 112 px,
JPEG writing included).

    python -m benchmarks.synthetic_render [--videos 8 --frames 150 --size 112]
"""

import argparse
import os
import tempfile
import time

from benchmarks import common
from pasn_jax.data.synthetic import tree


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", type=int, nargs="+", default=[112, 224])
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    print(f"machine: {common.machine()}; pinned to 1 core")
    for size in args.size:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            marker = tree.generate(os.path.join(tmp, "tree"), videos=args.videos, frames=args.frames, size=size,
                                        seed=0)
            seconds = time.perf_counter() - start
        print(f"synthetic render @{size}px: {marker['images']} frames (+ label files) in {seconds:.2f} s = "
              f"{marker['images'] / seconds:.0f} frames/s on one core")


if __name__ == "__main__":
    main()
