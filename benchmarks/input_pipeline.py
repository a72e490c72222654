"""Benchmark: train input pipeline images/s (read + CRC check + parse + JPEG decode + random resized crop +
flip + colour jitter + resize + normalise + batch) at 112 and 224 px (target: >= 1,500 img/s per core at 112).
The shards are synthetic Aff-Wild2 rendered at the measured size.

    python -m benchmarks.input_pipeline [--batch-size 64 --batches 40 --workers 0]
"""

import argparse
import os
import tempfile
import time

import numpy as np

from benchmarks import common
from pasn_jax.data import pipeline, shards, train_stream
from pasn_jax.data.synthetic.prepare import prepare_synthetic

AUGMENT = dict(random_resized_crop=True, crop_scale=(0.8, 1.0), crop_ratio=(0.9, 1.1), hflip=True,
               color_jitter=0.2)


def per_example(data_dir: str, size: int, count: int) -> float:
    """Examples/s of source read + TrainTransform in one thread."""
    source = shards.ShardSource(data_dir, "train")
    transform = pipeline.TrainTransform(size, pipeline.augment_options(AUGMENT))
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for i in range(count):
        transform.random_map(source[i % len(source)], rng)
    return count / (time.perf_counter() - start)


def loader(data_dir: str, size: int, batch_size: int, batches: int, workers: int) -> float:
    """Images/s of train_dataset batches after a warm-up batch."""
    iterator = train_stream.train_dataset(data_dir, batch_size=batch_size, image_size=size, seed=0, augment=AUGMENT,
                                      worker_count=workers, shard_index=0, shard_count=1)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--workers", type=int, default=0, help="grain worker processes for the loader run")
    parser.add_argument("--cache", default=None, help="keep the synthetic shards here (default: a temp folder)")
    args = parser.parse_args()
    cores = "all cores" if args.workers else "1 core"
    if not args.workers and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(f"machine: {common.machine()}; measured on {cores}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in (112, 224):
            data_dir = prepare_synthetic(args.cache or tmp, videos=8, frames=100, size=size, seed=0, num_shards=2)
            print(f"@{size}px: source read + transform, one thread: {per_example(data_dir, size, 1000):.0f} img/s; "
                  f"train_dataset (batch {args.batch_size}, workers {args.workers}): "
                  f"{loader(data_dir, size, args.batch_size, args.batches, args.workers):.0f} img/s")


if __name__ == "__main__":
    main()
