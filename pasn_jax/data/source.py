"""Which shards a config reads: converted Aff-Wild2 in `data.dir`, or the synthetic Aff-Wild2 rendered on first use;
and for training, the mixture of sources `data.sources` names (pasn_jax/data/mixture.py)."""

from collections.abc import Callable

import jax
from jax.experimental import multihost_utils

from pasn_jax import paths
from pasn_jax.data import mixture, shards
from pasn_jax.data.synthetic import prepare

NO_DATA_MESSAGE = (
    "config.data.dir is not set: convert Aff-Wild2 with `python -m pasn_jax.data.convert affwild2 --root ROOT "
    "--out SHARDS` and pass --config.data.dir=SHARDS, or run the demo on the synthetic Aff-Wild2 instead: "
    "`python -m pasn_jax.main --config=configs/abaw.py:demo --workdir=runs/demo`")


def _prepared_once(prepare_fn: Callable[[], str], what: str) -> str:
    """prepare_fn() on every process: process 0 first, the others after it (they then find its cache, or, on hosts
    without a shared file system, prepare their own copy)."""
    if jax.process_index() == 0:
        out = prepare_fn()
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"pasn_jax: {what} prepared")
    if jax.process_index() != 0:
        out = prepare_fn()
    return out


def resolve_data_dir(data_config) -> str:
    """Returns the shards folder of `data_config`, rendering and converting the synthetic set if asked.

    With several processes, process 0 prepares the synthetic cache first and the others then find it (or, on
    hosts without a shared file system, prepare their own copy).
    """
    if data_config.source == "synthetic":
        s = data_config.synthetic
        kwargs = dict(videos=s.videos, frames=s.frames, size=s.size, seed=s.seed, num_shards=s.num_shards,
                      test_videos=s.get("test_videos", 0), expr_keep=s.get("expr_keep", 1.0))
        cache_dir = str(paths.check(s.cache_dir, "config.data.synthetic.cache_dir"))
        return _prepared_once(lambda: prepare.prepare_synthetic(cache_dir, **kwargs), "synthetic Aff-Wild2")
    if data_config.source != "shards":
        raise ValueError(f"config.data.source: expected 'shards' or 'synthetic', got {data_config.source!r}")
    if not data_config.dir:
        raise ValueError(NO_DATA_MESSAGE)
    if not paths.check(data_config.dir, "config.data.dir").is_dir():
        raise ValueError(f"config.data.dir: {data_config.dir} is not a folder of converted shards")
    return data_config.dir


def train_source(data_config, own):
    """What training draws from: `own` (this config's Aff-Wild2 training records) alone when `data.sources` is
    empty, else the mixture it lists (a synthetic external set is rendered and converted on first use)."""
    entries = mixture.parse_sources(data_config.get("sources", ""))
    if not entries:
        return own
    sources = []
    for entry in entries:
        if entry.where == mixture.OWN:
            sources.append(own)
        elif entry.where.startswith(mixture.SYNTHETIC_PREFIX):
            name = entry.where[len(mixture.SYNTHETIC_PREFIX):]
            if name not in prepare.EXTERNAL_SETS:
                raise mixture.MixtureError(f"config.data.sources: {entry.where}: expected one of "
                                           f"{', '.join(mixture.SYNTHETIC_PREFIX + n for n in prepare.EXTERNAL_SETS)}")
            options = dict(data_config.external.get(name, {}))
            cache_dir = str(paths.check(data_config.synthetic.cache_dir, "config.data.synthetic.cache_dir"))
            folder = _prepared_once(lambda: prepare.EXTERNAL_SETS[name](cache_dir, **options), f"synthetic {name}")
            sources.append(shards.ShardSource(folder, "train"))
        else:
            if not paths.check(entry.where, "config.data.sources").joinpath("train.json").is_file():
                raise mixture.MixtureError(f"config.data.sources: {entry.where}: not a folder of converted shards "
                                           "with a train split (train.json missing)")
            sources.append(shards.ShardSource(entry.where, "train"))
    weights = [len(s) if e.weight is None else e.weight for e, s in zip(entries, sources)]
    mix = mixture.Mixture(sources, weights, [e.where for e in entries])
    if jax.process_index() == 0:
        print(f"training on {mix!r}", flush=True)
    return mix
