"""Shared fixtures: one tiny synthetic Aff-Wild2 tree and its shards per test session, and one persistent XLA
compilation cache for this process and every command the tests start (the suite compiles the same small programs
many times; a cached executable is the same program, so no result changes), compiled at LLVM optimisation level 0
(tests/runs.py says why)."""

import os

import jax
import pytest
import runs

from pasn_jax import xla_flags
from pasn_jax.data import affwild2
from pasn_jax.data.synthetic import tree
from pasn_jax.data.synthetic.prepare import prepare_synthetic

# 8 videos (6 train, 2 val) x 12 frames at 48 px: every kind of Aff-Wild2 label gap, rendered in about a second.
TINY_TREE = dict(videos=8, frames=12, size=48, seed=0, test_videos=2)
TINY_SHARDS = 3
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

xla_flags.add_xla_flags((runs.FAST_COMPILE,))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(REPO, ".cache", "xla-tests"))
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(scope="session")
def synthetic_tree(tmp_path_factory) -> str:
    """Root of a synthetic Aff-Wild2 tree (TINY_TREE); read-only for tests."""
    root = str(tmp_path_factory.mktemp("data") / "affwild2")
    tree.generate(root, **TINY_TREE)
    return root


@pytest.fixture(scope="session")
def synthetic_shards(synthetic_tree, tmp_path_factory) -> str:
    """Shard folder converted from `synthetic_tree` (TINY_SHARDS shards per split); read-only for tests."""
    out = str(tmp_path_factory.mktemp("data") / "shards")
    affwild2.convert(synthetic_tree, out, num_shards=TINY_SHARDS)
    return out


@pytest.fixture(scope="session")
def expected_labels(synthetic_tree) -> dict:
    """Independent parse of the tree's text files: {split: {(video, frame): (au, expr, va)}} for every frame that
    has an image and a label line in some task set of the split, with sentinels where a set gives none."""
    missing = {"AU_Set": (-1,) * 12, "EXPR_Set": -1, "VA_Set": (-5.0, -5.0)}
    result = {}
    for split, split_set in (("train", "Train_Set"), ("val", "Validation_Set"), ("test", "Test_Set")):
        per_video = {}
        for task_set in missing:
            folder = os.path.join(synthetic_tree, "annotations", task_set, split_set)
            for name in os.listdir(folder):
                with open(os.path.join(folder, name)) as f:
                    rows = [line.strip().split(",") for line in f.read().strip().split("\n")[1:]]
                per_video.setdefault(name[:-4], {})[task_set] = rows
        frames = {}
        for video, sets in per_video.items():
            for frame in range(1, max(len(rows) for rows in sets.values()) + 1):
                if not os.path.exists(os.path.join(synthetic_tree, "cropped_aligned", video, f"{frame:05d}.jpg")):
                    continue
                value = dict(missing)
                for task_set, rows in sets.items():
                    if frame <= len(rows):
                        parse = {"AU_Set": lambda r: tuple(int(v) for v in r), "EXPR_Set": lambda r: int(r[0]),
                                 "VA_Set": lambda r: tuple(float(v) for v in r)}[task_set]
                        value[task_set] = parse(rows[frame - 1])
                frames[(video, frame)] = (value["AU_Set"], value["EXPR_Set"], value["VA_Set"])
        result[split] = frames
    return result


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory) -> str:
    """A synthetic cache folder holding the smoke config's rendered and converted set."""
    cache = str(tmp_path_factory.mktemp("cache"))
    prepare_synthetic(cache, **runs.smoke_synthetic())
    return cache


@pytest.fixture(scope="session")
def smoke_run(smoke_cache, tmp_path_factory) -> tuple[str, str]:
    """(workdir, stdout) of one uninterrupted `python -m pasn_jax.main` smoke run of SMOKE_STEPS steps."""
    from runs import run_main, smoke_run_args

    workdir = str(tmp_path_factory.mktemp("smoke") / "run")
    return workdir, run_main(smoke_run_args(workdir, smoke_cache)).stdout
