"""The training stream: global batch k is a pure function of (seed, k) (ARCHITECTURE.md, "Data flow").

Stream position q holds record perm_e[q mod N] of epoch e = q div N (perm_e: a permutation of the split's N records
drawn from (seed, e)) with an augmentation drawn from (seed, q). Global batch k is positions [kG, (k + 1)G); process
p of P takes positions kG + p, kG + p + P, ... (G / P of them), so the global batch does not depend on how many
processes share it. Since each step consumes one batch, the stream's position is the train step: resuming at step s
starts at batch s, on any number of devices, processes or input workers, and from any copy of the data: there is no
iterator state to save. Batches are drawn by grain in reader threads and, with `worker_count` > 0, in that many
worker processes (grain's mp_prefetch keeps the order): the same batches for any worker count.
"""

import functools
import os

import grain
import jax
import numpy as np
from absl import flags

from pasn_jax.data import mixture, pipeline, shards

_ENDLESS = 1 << 62  # batches in the stream
_READ = grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)  # batches, drawn by reader threads


def auto_worker_count() -> int:
    """Input worker processes for `data.worker_count = -1`: none on a CPU backend (XLA's threads use every core the
    input would), else the cores this process may use but one, at most 16."""
    if jax.default_backend() == "cpu":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(16, cores - 1))


@functools.lru_cache(maxsize=4)
def _permutation(seed: int, epoch: int, size: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(size)


class TrainBatches(grain.MapDataset):
    """This process's train batches: batch k of its share of the stream (see the module docstring)."""

    def __init__(self, source, transform: grain.transforms.RandomMap, *, seed: int, global_batch: int,
                 shard_index: int, shard_count: int):
        super().__init__()
        self._source, self._transform, self._seed = source, transform, seed
        self._global, self._index, self._count = global_batch, shard_index, shard_count

    def __len__(self) -> int:
        return _ENDLESS

    def positions(self, k: int) -> np.ndarray:
        """The stream positions of this process's part of global batch k."""
        return k * self._global + np.arange(self._index, self._global, self._count)

    def record_key(self, position: int) -> int:
        size = len(self._source)
        return int(_permutation(self._seed, position // size, size)[position % size])

    def record(self, position: int):
        """The record at a stream position: of the one source, or of a mixture's (pasn_jax/data/mixture.py)."""
        if isinstance(self._source, mixture.Mixture):
            return self._source.record(self._seed, position)
        return self._source[self.record_key(position)]

    def __getitem__(self, k):
        if isinstance(k, slice):
            return self.slice(k)
        examples = [self._transform.random_map(self.record(q), np.random.default_rng([self._seed, q]))
                    for q in self.positions(int(k)).tolist()]
        return pipeline.stack(examples)


def train_stream(source, transform: grain.transforms.RandomMap, *, batch_size: int, seed: int, start: int = 0,
                 worker_count: int = 0, shard_index: int = 0, shard_count: int = 1):
    """An endless iterator over this process's batches of `batch_size` (its share of global batches of
    batch_size * shard_count) of a random-access source of records, starting at batch `start`; worker_count -1
    picks auto_worker_count()."""
    if not isinstance(source, mixture.Mixture) and len(source) == 0:
        raise shards.ShardError(f"{source!r}: no records to train on")
    batches = TrainBatches(source, transform, seed=seed, global_batch=batch_size * shard_count,
                           shard_index=shard_index, shard_count=shard_count)
    stream = batches[start:].to_iter_dataset(_READ)
    workers = auto_worker_count() if worker_count < 0 else worker_count
    if workers:
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()  # grain's worker processes read absl flags (ARCHITECTURE.md)
        stream = stream.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=2))
    return iter(stream)


def train_dataset(data_dir: str, *, batch_size: int, image_size: int, seed: int, augment, split: str = "train",
                  start: int = 0, worker_count: int = 0, shard_index: int = 0, shard_count: int = 1,
                  skip_bad: bool = False, source=None):
    """Augmented train batches of frame records (pipeline.TrainTransform) from batch `start`: of `source` when given
    (e.g. a fold's videos, pasn_jax/data/folds.py, or a mixture of sources, pasn_jax/data/mixture.py), else of the
    split's shards."""
    transform = pipeline.TrainTransform(image_size, pipeline.augment_options(augment), skip_bad)
    source = shards.ShardSource(data_dir, split) if source is None else source
    return train_stream(source, transform, batch_size=batch_size, seed=seed, start=start,
                        worker_count=worker_count, shard_index=shard_index, shard_count=shard_count)
