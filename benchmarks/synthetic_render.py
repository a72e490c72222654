"""Benchmark: synthetic Aff-Wild2 frames rendered and written per second on one core (issue 2 target: >= 500/s
at 112 px, JPEG writing included).

    python -m benchmarks.synthetic_render [--videos 8 --frames 150 --size 112]
"""

import argparse
import datetime
import os
import platform
import tempfile
import time

from pasn_jax.data import synthetic


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"{model}, {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
            f"{datetime.datetime.now().isoformat(timespec='seconds')}, load average {load} (shared machine)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", type=int, nargs="+", default=[112, 224])
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    print(f"machine: {machine()}; pinned to 1 core")
    for size in args.size:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            marker = synthetic.generate(os.path.join(tmp, "tree"), videos=args.videos, frames=args.frames, size=size,
                                        seed=0)
            seconds = time.perf_counter() - start
        print(f"synthetic render @{size}px: {marker['images']} frames (+ label files) in {seconds:.2f} s = "
              f"{marker['images'] / seconds:.0f} frames/s on one core")


if __name__ == "__main__":
    main()
