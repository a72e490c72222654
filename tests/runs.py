"""Helpers for tests that run the product's command line (`python -m pasn_jax.main`) on the smoke config."""

import os
import re
import subprocess
import sys

import jax
import numpy as np

SMOKE_STEPS = 200  # four checkpoints (every 50): the fault tests kill runs between them and in them
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LOSS_LINE = re.compile(r"step (\d+)/\d+ \| loss ([0-9.naif-]+)")


def smoke_args(workdir: str, cache_dir: str, *overrides: str, config: str = "smoke") -> list[str]:
    return [f"--config=configs/abaw.py:{config}", f"--workdir={workdir}",
            f"--config.data.synthetic.cache_dir={cache_dir}", *overrides]


def smoke_synthetic() -> dict:
    """The keyword arguments of prepare_synthetic for the smoke config's synthetic set."""
    from configs import abaw

    s = abaw.get_config("smoke").data.synthetic
    return dict(videos=s.videos, frames=s.frames, size=s.size, seed=s.seed, num_shards=s.num_shards,
                test_videos=s.test_videos)


def smoke_run_args(workdir: str, cache_dir: str) -> list[str]:
    """The smoke run the resume tests share: SMOKE_STEPS steps, a checkpoint every 50, the last 2 kept."""
    return smoke_args(workdir, cache_dir, f"--config.num_steps={SMOKE_STEPS}", "--config.log_every=50",
                      "--config.checkpoint_every=50", "--config.eval_every=100000", "--config.keep_checkpoints=2")


# The suite's programs are small and most run a few steps, so compiling them dominates (a fresh clone starts with
# an empty compilation cache): LLVM at optimisation level 0 compiles the smoke training step in half the time, for a
# step 1.7x slower, and `make test` from an empty cache took 8 min 19 s instead of 10 min 31 s (2 AVX-512 cores).
# What trains for minutes (the demo) keeps the full optimisation: env_with_devices(n, optimize=True).
FAST_COMPILE = "--xla_backend_optimization_level=0"


def env_with_devices(devices: int, *, optimize: bool = False) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}" + ("" if optimize else f" {FAST_COMPILE}")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_main(args: list[str], *, devices: int = 1, timeout: int = 600, check: bool = True, optimize: bool = False,
             env: dict | None = None):
    """Runs `python -m pasn_jax.main ARGS` in the repository (with `env` added to the environment); returns the
    CompletedProcess."""
    proc = subprocess.run([sys.executable, "-m", "pasn_jax.main", *args], cwd=REPO,
                          env=env_with_devices(devices, optimize=optimize) | (env or {}),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"pasn_jax.main failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def printed_losses(stdout: str) -> dict[int, float]:
    """{step: loss} from the console log lines `step S/N | loss L ...`."""
    return {int(s): float(v) for s, v in _LOSS_LINE.findall(stdout)}


def load_state(workdir: str, config_arg: str = "smoke", overrides: dict | None = None, step: int | None = None):
    """The train state of a workdir's checkpoint (latest by default), restored on this process's devices."""
    from configs import abaw
    from pasn_jax import checkpointing, tasks, train_state

    config = abaw.get_config(config_arg)
    for key, value in (overrides or {}).items():
        section, _, name = key.rpartition(".")
        (config[section] if section else config)[name] = value
    task = tasks.load(config)
    model = task.build_model(config, None)
    optimizer, _ = train_state.make_optimizer(model, config, task.trainable_mask)
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = train_state.abstract_train_state(model, optimizer, config.model.image_size, sharding)
    ckpt = checkpointing.Checkpointer(workdir, read_only=True)
    state = ckpt.restore(ckpt.latest_step() if step is None else step, abstract)
    ckpt.close()
    return jax.tree.map(np.asarray, state)


def max_abs_difference(a, b) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
