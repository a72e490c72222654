"""The cached synthetic Aff-Wild2 that the demo and the tests train on: rendered and converted to shards once per
argument set, under a cache folder."""

import os
import shutil
import time

from pasn_jax.data import affwild2
from pasn_jax.data.synthetic import tree


def prepare_synthetic(cache_dir: str, *, videos: int, frames: int, size: int, seed: int, num_shards: int) -> str:
    """Renders and converts the synthetic Aff-Wild2 once per argument set; returns its shards folder.

    Everything is built in a temporary folder of `cache_dir` that is renamed into place at the end, so an
    interrupted run leaves nothing that looks finished and concurrent callers agree on one result.
    """
    name = (f"synthetic-v{tree.GENERATOR_VERSION}-{videos}videos-{frames}frames-{size}px-seed{seed}-"
            f"{num_shards}shards")
    final = os.path.join(cache_dir, name)
    shards_dir = os.path.join(final, "shards")
    if all(os.path.isfile(os.path.join(shards_dir, f"{s}.json")) for s in affwild2.SPLIT_SETS):
        print(f"synthetic Aff-Wild2: using {shards_dir}")
        return shards_dir
    start = time.perf_counter()
    os.makedirs(cache_dir, exist_ok=True)
    tmp = os.path.join(cache_dir, f".{name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        marker = tree.generate(os.path.join(tmp, "tree"), videos=videos, frames=frames, size=size, seed=seed)
        metadata = affwild2.convert(os.path.join(tmp, "tree"), os.path.join(tmp, "shards"), num_shards=num_shards)
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isdir(final):
                raise
            shutil.rmtree(tmp)  # another process finished the same dataset first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"synthetic Aff-Wild2: rendered {marker['images']} images ({videos} videos x {frames} frames, {size} px, "
          f"seed {seed}) and wrote {shards_dir} in {time.perf_counter() - start:.1f} s")
    for split in affwild2.SPLIT_SETS:
        print("  " + affwild2.describe(metadata[split]))
    return shards_dir
