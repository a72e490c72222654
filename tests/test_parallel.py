"""Data parallelism: 1 device against 8 simulated devices and against 2 processes x 2 devices (launch/local.sh).

The global batch and the data order do not depend on the device or process count, batch norm statistics are
reduced over the global batch, and dropout masks come from a sharding-independent key: runs differ only in the
order of float32 reductions. Tolerance: 1e-4 on each printed loss (4 decimals) and 1e-4 on every parameter
after 6 steps.

End to end with several processes and simulated devices (compiles for each device count): slow-marked, run by CI
(`make test-slow`).
"""

import os
import subprocess
import sys

import pytest
from runs import REPO, env_with_devices, load_state, max_abs_difference, printed_losses, run_main, smoke_args

STEPS = 6
pytestmark = pytest.mark.slow
TOLERANCE = 1e-4


def _args(workdir, cache):
    return smoke_args(workdir, cache, f"--config.num_steps={STEPS}", "--config.log_every=1",
                      "--config.eval_every=1000", "--config.checkpoint_every=1000")


def _assert_same_run(a_workdir, a_stdout, b_workdir, b_stdout):
    a, b = printed_losses(a_stdout), printed_losses(b_stdout)
    assert sorted(a) == sorted(b) == list(range(1, STEPS + 1))
    for step in a:
        assert abs(a[step] - b[step]) <= TOLERANCE + 1e-9, (step, a[step], b[step])
    assert max_abs_difference(load_state(a_workdir).params, load_state(b_workdir).params) < TOLERANCE


@pytest.fixture(scope="module")
def one_device(smoke_cache, tmp_path_factory):
    """(workdir, stdout) of the reference run on one device."""
    workdir = str(tmp_path_factory.mktemp("parallel") / "d1")
    return workdir, run_main(_args(workdir, smoke_cache), devices=1).stdout


def test_one_and_eight_devices_train_alike(smoke_cache, one_device, tmp_path):
    eight = run_main(_args(str(tmp_path / "d8"), smoke_cache), devices=8)
    assert "1 process(es), 8 device(s)" in eight.stdout
    _assert_same_run(*one_device, str(tmp_path / "d8"), eight.stdout)


def test_two_processes_match_one_process(smoke_cache, one_device, tmp_path):
    env = env_with_devices(2)
    env["PYTHON"] = sys.executable
    multi = subprocess.run(["launch/local.sh", "2", *_args(str(tmp_path / "p2"), smoke_cache)], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
    assert multi.returncode == 0, multi.stdout + multi.stderr
    assert "[p0] " in multi.stdout and "2 process(es), 4 device(s)" in multi.stdout
    p0 = "\n".join(line[5:] for line in multi.stdout.splitlines() if line.startswith("[p0] "))
    assert "step 1/" not in "\n".join(line for line in multi.stdout.splitlines() if line.startswith("[p1] "))
    _assert_same_run(*one_device, str(tmp_path / "p2"), p0)
    # Each process stored its own grain iterator state next to the shared train state.
    data_dir = os.path.join(tmp_path, "p2", "checkpoints", str(STEPS), "data")
    assert sorted(f for f in os.listdir(data_dir) if f.startswith("process_")) == [
        "process_0-of-2.json", "process_1-of-2.json"]
