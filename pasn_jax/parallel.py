"""Data parallelism with `jax.jit` over a `Mesh` (ARCHITECTURE.md, "Training recipe").

One 1-D mesh over every device of every process, axis `data`: batches are split on it, parameters and optimizer
state are replicated. Each process feeds its own share of the batch (grain shards by process) and
`jax.make_array_from_process_local_data` stitches the shares into one global array.
"""

import collections
from collections.abc import Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh() -> Mesh:
    """A 1-D `data` mesh over all devices, grouped by process (Auto axis type, unlike jax.make_mesh)."""
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    return Mesh(np.array(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def per_process_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """The share of a global batch each process loads; it must split evenly over all devices."""
    if global_batch_size % mesh.size:
        raise ValueError(f"config.batch_size: {global_batch_size} does not split over {mesh.size} devices; "
                         f"use a multiple of {mesh.size}")
    return global_batch_size // jax.process_count()


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Process-local numpy batch -> global jax arrays sharded on `data`; non-numeric fields stay on the host."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v)
            for k, v in local_batch.items() if v.dtype.kind in "biuf"}


def prefetch_to_devices(local_batches: Iterator[dict], mesh: Mesh, size: int) -> Iterator[dict]:
    """`global_batch` of each process-local batch, put on the devices `size` batches ahead of the one yielded, so
    that the copies run while the devices compute."""
    queue = collections.deque()
    for local in local_batches:
        queue.append(global_batch(local, mesh))
        if len(queue) > size:
            yield queue.popleft()
    yield from queue


def gather_to_host(local_arrays: dict) -> dict:
    """Concatenates each process's host arrays in process order (the order of the global batch)."""
    if jax.process_count() == 1:
        return dict(local_arrays)
    return {k: np.asarray(v) for k, v in multihost_utils.process_allgather(local_arrays, tiled=True).items()}
