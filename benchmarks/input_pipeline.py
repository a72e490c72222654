"""Benchmark: the host's half of the train input (read + CRC check + parse + JPEG decode + random resized crop +
resize + batch; flip, colour jitter and normalisation run on the devices: pasn_jax/data/device_augment.py), in
images/s per core and bytes per batch, for each size and input worker count. The shards are synthetic Aff-Wild2
rendered at the measured size.

    python -m benchmarks.input_pipeline [--sizes 112 224 --workers 0 1 2 --batch-size 64 --batches 40]
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


def loader(data_dir: str, size: int, batch_size: int, batches: int, workers: int) -> tuple[float, int]:
    """(images/s of train_dataset batches after a warm-up batch, bytes of one batch)."""
    iterator = train_stream.train_dataset(data_dir, batch_size=batch_size, image_size=size, seed=0, augment=AUGMENT,
                                          worker_count=workers, shard_index=0, shard_count=1)
    first = next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start), sum(v.nbytes for v in first.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 224])
    parser.add_argument("--workers", type=int, nargs="+", default=[0], help="grain worker processes, each measured")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--cache", default=None, help="keep the synthetic shards here (default: a temp folder)")
    args = parser.parse_args()
    all_cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    print(f"machine: {common.machine()}; W workers run on W cores (0 workers: one core)")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            data_dir = prepare_synthetic(args.cache or tmp, videos=8, frames=100, size=size, seed=0, num_shards=2)
            for workers in args.workers:
                cores = max(1, workers)
                if all_cores:  # the worker processes inherit it
                    os.sched_setaffinity(0, set(all_cores[:cores]))
                one = per_example(data_dir, size, 1000) if workers == 0 else None
                rate, nbytes = loader(data_dir, size, args.batch_size, args.batches, workers)
                print(f"@{size}px workers {workers}: "
                      + (f"source read + transform, one thread: {one:.0f} img/s; " if one else "")
                      + f"train_dataset (batch {args.batch_size}): {rate:.0f} img/s = {rate / cores:.0f} img/s per "
                        f"core; {nbytes / 2**20:.2f} MiB per batch")
            if all_cores:
                os.sched_setaffinity(0, set(all_cores))


if __name__ == "__main__":
    main()
