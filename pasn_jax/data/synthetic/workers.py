"""Rendering on every core this process may use: independent items (people, videos) are drawn in worker processes,
each from its own seed, so the result does not depend on how many workers drew it."""

import multiprocessing
import os
from collections.abc import Callable, Sequence

MIN_IMAGES_PER_WORKER = 2_000  # a spawned worker costs ~2 s to start: worth it above ~10 s of drawing


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def map_ordered(fn: Callable, arguments: Sequence[tuple], images: int, processes: int | None = None) -> list:
    """[fn(*a) for a in arguments], drawing `images` images in all: in spawned worker processes (spawned, not
    forked: the parent may run JAX's threads), one per usable core or `processes`, when there are enough images
    to pay for starting them; else in this process."""
    processes = min(processes or cpu_count(), len(arguments), max(1, images // MIN_IMAGES_PER_WORKER))
    if processes <= 1:
        return [fn(*a) for a in arguments]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return pool.starmap(fn, arguments, chunksize=max(1, len(arguments) // (8 * processes)))
