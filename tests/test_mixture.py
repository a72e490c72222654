"""Mixed-source training (pasn_jax/data/mixture.py) and fine-tuning from another run (config.init_from)."""

import collections

import numpy as np
import pytest
from runs import load_state, max_abs_difference, printed_losses, run_main, smoke_args

from pasn_jax.data import mixture, shards, train_stream
from pasn_jax.data.source import train_source


class _Tag:
    """A transform that keeps the record (a (source, index) tag) as the example."""

    def random_map(self, record, rng):
        return {"tag": np.asarray(record)}


def _tagged(names_sizes):
    return [[(k, i) for i in range(size)] for k, size in enumerate(names_sizes)]


def test_quotas_are_largest_remainder_shares_of_a_block():
    assert mixture.quotas([1, 0.5, 0.25]).tolist() == [571, 286, 143]  # 1000 * (4, 2, 1) / 7 = 571.4, 285.7, 142.9
    assert mixture.quotas([1, 1]).tolist() == [500, 500]
    with pytest.raises(mixture.MixtureError, match="less than 1/1000"):
        mixture.quotas([1, 1e-4])


@pytest.mark.parametrize("text, message", [("affwild2=1,b", "every entry a weight, or none"),
                                           ("affwild2=0", "weight > 0"), ("a=1,b=x", "'b=x'"),
                                           ("a=1,a=2", "listed twice")])
def test_bad_sources_entry_is_named(text, message):
    with pytest.raises(mixture.MixtureError, match=message):
        mixture.parse_sources(text)


def test_mixture_draws_each_source_by_its_weight_and_every_record_once_per_pass():
    sources = _tagged([7, 50, 300])
    mix = mixture.Mixture(sources, [2, 1, 1], ["a", "b", "c"])
    drawn = [mix.record(seed=3, position=q) for q in range(3000)]
    counts = collections.Counter(k for k, _ in drawn)
    assert [counts[k] for k in range(3)] == [1500, 750, 750]  # exactly the quotas: 3 blocks of 500/250/250
    for k, size in enumerate((7, 50, 300)):
        picks = [i for j, i in drawn if j == k]
        for start in range(0, len(picks) - size + 1, size):  # each pass over a source is a permutation of it
            assert sorted(picks[start:start + size]) == list(range(size))
    assert drawn == [mix.record(seed=3, position=q) for q in range(3000)]  # a pure function of (seed, position)
    assert drawn != [mix.record(seed=4, position=q) for q in range(3000)]


def test_processes_share_the_mixture_stream_as_one_process_would():
    mix = mixture.Mixture(_tagged([11, 40]), [1, 3])
    whole = train_stream.TrainBatches(mix, _Tag(), seed=0, global_batch=8, shard_index=0, shard_count=1)
    parts = [train_stream.TrainBatches(mix, _Tag(), seed=0, global_batch=8, shard_index=p, shard_count=2)
             for p in range(2)]
    for k in (0, 5, 130):  # batch 130 lies in a later block
        expected = whole[k]["tag"]
        np.testing.assert_array_equal(parts[0][k]["tag"], expected[0::2])
        np.testing.assert_array_equal(parts[1][k]["tag"], expected[1::2])


def test_train_source_reads_folders_and_names_a_bad_one(synthetic_shards, tmp_path):
    import ml_collections
    own = shards.ShardSource(synthetic_shards, "val")
    config = ml_collections.ConfigDict(dict(sources="", synthetic=dict(cache_dir=str(tmp_path)), external={}))
    assert train_source(config, own) is own
    config.sources = f"affwild2=3,{synthetic_shards}=1"
    mix = train_source(config, own)
    assert [len(s) for s in mix.sources] == [len(own), len(shards.ShardSource(synthetic_shards, "train"))]
    assert mix.quota.tolist() == [750, 250]
    config.sources = f"affwild2,{synthetic_shards}"  # no weights: each source weighs its records
    assert train_source(config, own).quota.tolist() == list(mixture.quotas([len(own), len(mix.sources[1])]))
    config.sources = f"affwild2=1,{tmp_path}=1"
    with pytest.raises(mixture.MixtureError, match=f"{tmp_path}: not a folder of converted shards"):
        train_source(config, own)
    config.sources = "synthetic:nope=1"
    with pytest.raises(mixture.MixtureError, match="synthetic:nope: expected one of"):
        train_source(config, own)


@pytest.mark.slow
def test_fine_tuning_on_a_mixture_starts_from_another_run(smoke_cache, smoke_run, synthetic_shards, tmp_path):
    """`init_from` starts every parameter (and batch statistic) from the smoke run's last checkpoint, with a fresh
    optimizer; training then draws from the smoke set and another shard folder. A workdir of another model is
    refused with the leaf that differs."""
    source_dir, _ = smoke_run
    workdir = str(tmp_path / "finetune")
    proc = run_main(smoke_args(workdir, smoke_cache, f"--config.init_from={source_dir}", "--config.num_steps=2",
                               "--config.log_every=1", "--config.eval_every=1000", "--config.optim.lr=1e-4",
                               f"--config.data.sources=affwild2=1,{synthetic_shards}=1"))
    assert f"every parameter from {source_dir} (step 200)" in proc.stdout
    assert "training on Mixture(affwild2: " in proc.stdout and f"{synthetic_shards}: " in proc.stdout
    assert sorted(printed_losses(proc.stdout)) == [1, 2]
    tuned, start = load_state(workdir), load_state(source_dir)
    assert int(tuned.step) == 2
    assert 0 < max_abs_difference(tuned.params, start.params) < 1e-2  # two small steps away from the start
    refused = run_main(smoke_args(str(tmp_path / "other"), smoke_cache, f"--config.init_from={source_dir}",
                                  "--config.model.width=16"), check=False)
    assert refused.returncode == 1
    assert "config.init_from" in refused.stderr.strip().splitlines()[-1] and "holds another model" in refused.stderr


def test_a_synthetic_external_set_is_rendered_converted_and_mixed(synthetic_shards, tmp_path):
    import ml_collections
    own = shards.ShardSource(synthetic_shards, "train")
    config = ml_collections.ConfigDict(dict(
        sources="affwild2=1,synthetic:affectnet=1", synthetic=dict(cache_dir=str(tmp_path)),
        external=dict(affectnet=dict(images=24, val_images=6, size=48, seed=0))))
    mix = train_source(config, own)
    external = mix.sources[1]
    assert mix.names == ["affwild2", "synthetic:affectnet"] and 0 < len(external) <= 24
    assert {external[i]["source"] for i in range(len(external))} == {"synthetic-affectnet"}
    assert repr(train_source(config, own).sources[1]) == repr(external)  # cached: rendered once
