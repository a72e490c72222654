"""Which shards a config reads: converted Aff-Wild2 in `data.dir`, or the synthetic Aff-Wild2 rendered on first use."""

import os

import jax
from jax.experimental import multihost_utils

from pasn_jax.data.synthetic.prepare import prepare_synthetic

NO_DATA_MESSAGE = (
    "config.data.dir is not set: convert Aff-Wild2 with `python -m pasn_jax.data.convert affwild2 --root ROOT "
    "--out SHARDS` and pass --config.data.dir=SHARDS, or run the demo on the synthetic Aff-Wild2 instead: "
    "`python -m pasn_jax.main --config=configs/abaw.py:demo --workdir=runs/demo`")


def resolve_data_dir(data_config) -> str:
    """Returns the shards folder of `data_config`, rendering and converting the synthetic set if asked.

    With several processes, process 0 prepares the synthetic cache first and the others then find it (or, on
    hosts without a shared file system, prepare their own copy).
    """
    if data_config.source == "synthetic":
        s = data_config.synthetic
        kwargs = dict(videos=s.videos, frames=s.frames, size=s.size, seed=s.seed, num_shards=s.num_shards,
                      test_videos=s.get("test_videos", 0))
        cache_dir = os.path.expanduser(s.cache_dir)
        if jax.process_index() == 0:
            out = prepare_synthetic(cache_dir, **kwargs)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("pasn_jax: synthetic Aff-Wild2 prepared")
        if jax.process_index() != 0:
            out = prepare_synthetic(cache_dir, **kwargs)
        return out
    if data_config.source != "shards":
        raise ValueError(f"config.data.source: expected 'shards' or 'synthetic', got {data_config.source!r}")
    if not data_config.dir:
        raise ValueError(NO_DATA_MESSAGE)
    if not os.path.isdir(data_config.dir):
        raise ValueError(f"config.data.dir: {data_config.dir} is not a folder of converted shards")
    return data_config.dir
