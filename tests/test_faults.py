"""Faults injected into the training command, and what must happen (README, "Reliability"): killed anywhere it
resumes to the parameters and metrics of an uninterrupted run; preempted it checkpoints the step it is at and exits
0; a checkpoint that does not restore is moved aside and the one before used; a write that fails mid-save is one
error line with the last checkpoint intact; damaged data stops training with one line naming file and record (or
is skipped and counted); a config value out of range is named before any work; the rate logged is the one applied.

The runs through the command line (kill -9 five times in a row at five kinds of point, SIGTERM, damaged
checkpoints, a failing write) are slow-marked: CI runs them (`make test-slow`). PASN_JAX_FAULT
(pasn_jax/faults.py) picks where a run dies.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from runs import (REPO, SMOKE_STEPS, env_with_devices, load_state, max_abs_difference, run_main,
                  smoke_run_args)

from configs import abaw
from pasn_jax import config_checks, optim, train, train_state
from pasn_jax.data import shards, train_stream

FAULT_SEED = 2026


def _kill_chain(seed: int) -> list[str]:
    """PASN_JAX_FAULT of each killed run of one workdir, in order, every run resuming from what the one before left:
    before its first step; inside step k (drawn from the seed among the first 150, so that at least two saves are
    still to come); during its first asynchronous save; right after its first or second save commits (drawn); in the
    final evaluation. A checkpoint in flight when a run dies is not committed, so each run's resume point is at most
    the one its point allows, and every point is reached."""
    rng = np.random.default_rng(seed)
    return ["start:1", f"step:{int(rng.integers(1, 151))}", "async_save:1", f"after_save:{int(rng.integers(1, 3))}",
            "eval:1"]


def _metrics(workdir: str) -> dict:
    with open(os.path.join(workdir, "eval", str(SMOKE_STEPS), "metrics.json")) as f:
        return json.load(f)


def _rounded(metrics: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items() if k != "chance"}


@pytest.mark.slow
def test_killed_anywhere_resumes_to_the_uninterrupted_result(smoke_cache, smoke_run, tmp_path):
    """One workdir killed (SIGKILL) five times in a row, at each kind of point, then run once more to the end: the
    parameters, batch statistics and metrics of the uninterrupted run."""
    workdir = str(tmp_path / "killed")
    args = smoke_run_args(workdir, smoke_cache)
    for fault in _kill_chain(FAULT_SEED):
        killed = subprocess.run([sys.executable, "-m", "pasn_jax.main", *args], cwd=REPO, capture_output=True,
                                env=env_with_devices(1) | {"PASN_JAX_FAULT": fault}, text=True, timeout=600)
        assert killed.returncode == -signal.SIGKILL, (fault, killed.stdout[-2000:], killed.stderr[-2000:])
    run_main(args)  # the same command again
    reference, state = load_state(smoke_run[0]), load_state(workdir)
    assert int(state.step) == SMOKE_STEPS
    assert max_abs_difference(state.params, reference.params) < 1e-5
    assert max_abs_difference(state.batch_stats, reference.batch_stats) < 1e-5
    assert _rounded(_metrics(workdir)) == _rounded(_metrics(smoke_run[0]))


@pytest.mark.slow
def test_sigterm_checkpoints_the_current_step_and_resumes_identically(smoke_cache, smoke_run, tmp_path):
    workdir = str(tmp_path / "preempted")
    args = smoke_run_args(workdir, smoke_cache)
    proc = subprocess.Popen([sys.executable, "-m", "pasn_jax.main", *args], cwd=REPO, env=env_with_devices(1),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not os.path.isdir(os.path.join(workdir, "tb")):
        time.sleep(0.05)
    time.sleep(2.0)  # somewhere in the steps (compiling or running)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stdout[-2000:] + stderr[-2000:]
    line = [x for x in stdout.splitlines() if x.startswith("preempted (SIGTERM)")]
    assert len(line) == 1, stdout[-2000:]
    step = int(line[0].split("checkpoint of step ")[1].split(" ")[0])
    assert 0 < step < SMOKE_STEPS and os.path.isdir(os.path.join(workdir, "checkpoints", str(step)))
    resumed = run_main(args)
    assert f"resumed from {os.path.join(workdir, 'checkpoints')}/{step}" in resumed.stdout
    reference, state = load_state(smoke_run[0]), load_state(workdir)
    assert max_abs_difference(state.params, reference.params) < 1e-5
    assert _rounded(_metrics(workdir)) == _rounded(_metrics(smoke_run[0]))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "removed"])
def test_a_damaged_newest_checkpoint_is_moved_aside_and_the_one_before_used(damage, smoke_cache, smoke_run, tmp_path):
    workdir = str(tmp_path / damage)
    shutil.copytree(smoke_run[0], workdir)
    newest = os.path.join(workdir, "checkpoints", str(SMOKE_STEPS))
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(newest, "state")) for f in fs)
    for path in files:
        if damage == "removed":
            os.remove(path)
        else:
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)
    proc = run_main(smoke_run_args(workdir, smoke_cache))
    assert f"{newest}: checkpoint does not restore" in proc.stdout and "trying the one before" in proc.stdout
    assert f"resumed from {os.path.join(workdir, 'checkpoints')}/150" in proc.stdout
    assert os.path.isdir(f"{newest}.unreadable-0")  # kept, never deleted
    state, reference = load_state(workdir), load_state(smoke_run[0])
    assert int(state.step) == SMOKE_STEPS and max_abs_difference(state.params, reference.params) < 1e-5


@pytest.mark.slow
def test_a_write_failing_mid_save_is_one_error_and_keeps_the_last_checkpoint(smoke_cache, tmp_path):
    workdir = str(tmp_path / "failing")
    env = env_with_devices(1) | {"PASN_JAX_FAULT": "save_error:2"}
    proc = subprocess.run([sys.executable, "-m", "pasn_jax.main", *smoke_run_args(workdir, smoke_cache)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "writing the checkpoint of step 100 failed (" in last
    assert "InjectedWriteFailure" in last
    assert "the last committed checkpoint, step 50, is intact" in last
    assert int(load_state(workdir).step) == 50  # restores


def _bad_jpeg_shards(tmp_path, synthetic_shards) -> tuple[str, str]:
    """A copy of the tiny shards whose train shard 1 holds, as record 2, a record with valid CRCs whose image bytes
    are not a JPEG; returns (data dir, that shard's path)."""
    data_dir = str(tmp_path / "shards")
    shutil.copytree(synthetic_shards, data_dir)
    source = shards.ShardSource(data_dir, "train")
    start = int(source._starts[1])
    records = [dict(source[start + k]) for k in range(int(source._starts[2] - start))]
    records[2]["image"] = b"\xff\xd8 this is not a JPEG"
    path = os.path.join(data_dir, shards.shard_name("train", 1, 3))
    entry = shards.write_shard(path, records)
    metadata = shards.read_metadata(data_dir, "train")
    metadata["shards"][1] = entry
    shards.write_metadata(data_dir, "train", metadata)
    return data_dir, path


def test_an_undecodable_image_names_its_shard_and_record_or_is_skipped_and_counted(synthetic_shards, tmp_path):
    data_dir, path = _bad_jpeg_shards(tmp_path, synthetic_shards)
    augment = abaw.get_config("smoke").data.augment
    batches = train_stream.train_dataset(data_dir, batch_size=64, image_size=32, seed=0, augment=augment,
                                     shard_index=0, shard_count=1)
    with pytest.raises(shards.ShardError, match=rf"^{path}: record 2: the image does not decode as a JPEG"):
        next(batches)
    skipping = train_stream.train_dataset(data_dir, batch_size=64, image_size=32, seed=0, augment=augment,
                                      shard_index=0, shard_count=1, skip_bad=True)
    batch = next(skipping)  # 64 of the 36 train records: each at least once
    bad = batch["bad"] == 1  # mid-grey uint8 stand-ins, left as they are on the device
    assert bad.sum() >= 1 and np.all(batch["image"][bad] == 128) and not batch["flip"][bad].any()
    assert np.all(batch["jitter"][bad] == 1)
    assert np.all(batch["au_mask"][batch["bad"] == 1] == 0) and np.all(batch["expr_mask"][batch["bad"] == 1] == 0)


@pytest.mark.parametrize("damage, message", [
    ("index", r"train-00000-of-00003\.tfrecord\.index: expected \d+ increasing offsets"),
    ("json", r"train\.json: not valid JSON"),
    ("key", r"train\.json: shards\[0\] lacks the key 'bytes'"),
])
def test_damaged_index_and_metadata_are_named(damage, message, synthetic_shards, tmp_path):
    data_dir = str(tmp_path / "shards")
    shutil.copytree(synthetic_shards, data_dir)
    if damage == "index":
        index = os.path.join(data_dir, shards.shard_name("train", 0, 3) + ".index")
        with open(index, "r+b") as f:
            f.truncate(os.path.getsize(index) - 8)
    else:
        metadata = os.path.join(data_dir, "train.json")
        text = open(metadata).read()
        if damage == "json":
            text = text[:len(text) // 2]
        else:
            loaded = json.loads(text)
            del loaded["shards"][0]["bytes"]
            text = json.dumps(loaded)
        with open(metadata, "w") as f:
            f.write(text)
    with pytest.raises(shards.ShardError, match=message):
        shards.ShardSource(data_dir, "train")


@pytest.mark.parametrize("key, value, message", [
    ("num_steps", 0, "config.num_steps: expected an int >= 1, got 0"),
    ("batch_size", 6, "config.batch_size: 6 does not split over 4 devices"),
    ("loss.smoothing", 1.5, r"config.loss.smoothing: expected a number in \[0, 1\], got 1.5"),
    ("data.image_size", 40, "config.model.image_size: iresnet18 needs a multiple of 16, got 40"),
    ("optim.momentum", 1.0, r"config.optim.momentum: expected a number in \[0, 1\), got 1.0"),
])
def test_a_config_value_out_of_range_is_named_before_any_work(key, value, message):
    config = abaw.get_config("smoke")
    section, _, name = key.rpartition(".")
    (config[section] if section else config)[name] = value
    with pytest.raises(config_checks.ConfigError, match=message):
        config_checks.check(config, device_count=4)


def test_the_rate_logged_is_the_one_applied_after_skipped_steps():
    """A skipped (non-finite) step does not advance optax's count, so the schedule runs on applied steps: the rate a
    step logs is schedule(step - skipped), the one its update uses, and equals the update's own size."""
    config = abaw.get_config("smoke").optim
    config.update(momentum=0.0, weight_decay=0.0, warmup_steps=0, t0_steps=10)
    optimizer, schedule = optim.make_optimizer(config, {"w": True})
    params = {"w": jnp.ones(())}
    zero = jnp.zeros((), jnp.int32)
    state = train_state.TrainState(step=zero, params=params, batch_stats={}, opt_state=optimizer.init(params),
                                   nonfinite_total=zero, nonfinite_in_a_row=zero)
    loss = lambda variables, batch, rng: (variables["params"]["w"] * batch["x"][0], {}, {})  # d/dw = x

    applied_before = [0, 1, 1, 1, 2]  # updates applied before each of: good, bad, bad, good, good
    for bad, applied in zip([False, True, True, False, False], applied_before):
        batch = {"x": jnp.array([np.inf if bad else 1.0]), "preempt": jnp.zeros(1, jnp.int32),
                 "bad": jnp.zeros(1, jnp.int32)}
        before = float(state.params["w"])
        state, metrics = train.train_step(loss, optimizer, schedule, state, batch, jax.random.key(0))
        assert float(metrics["lr"]) == pytest.approx(float(schedule(applied)), rel=1e-6)
        decrease = before - float(state.params["w"])
        assert decrease == (0.0 if bad else pytest.approx(float(metrics["lr"]), rel=1e-5))
    assert int(state.nonfinite_total) == 2 and int(state.step) == 5 and schedule(1) != schedule(3)
