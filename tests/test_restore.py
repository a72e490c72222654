"""One restore decision for all processes (pasn_jax/checkpointing.py), with 2 processes started as a multi-host job
starts them (the coordinator on 127.0.0.1, each process's output kept apart): a truncated newest checkpoint makes
both restore the same earlier step, and a host-local error that is not damage (permission denied on one process's
read) stops both with one line each and renames nothing.

Training through the command line with several processes: slow-marked, run by CI (`make test-slow`).
"""

import os
import shutil
import socket
import subprocess
import sys

import pytest
from runs import REPO, env_with_devices, load_state, max_abs_difference, printed_losses, run_main, smoke_args

pytestmark = pytest.mark.slow
STEPS = 4
TOLERANCE = 1e-4  # the float32 reductions of 1 device against 2 processes (tests/test_parallel.py)


def _args(workdir: str, cache: str) -> list[str]:
    return smoke_args(workdir, cache, f"--config.num_steps={STEPS}", "--config.log_every=1",
                      "--config.checkpoint_every=2", "--config.eval_every=1000", "--config.keep_checkpoints=3")


def _two_processes(args: list[str], fault: str | None = None) -> list[subprocess.CompletedProcess]:
    """`python -m pasn_jax.main ARGS` as processes 0 and 1 of one job (one device each); their results."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = env_with_devices(1) | ({"PASN_JAX_FAULT": fault} if fault else {})
    procs = [subprocess.Popen([sys.executable, "-m", "pasn_jax.main", f"--coordinator_address=127.0.0.1:{port}",
                               "--num_processes=2", f"--process_id={i}", *args], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = []
    for i, proc in enumerate(procs):
        stdout, stderr = proc.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return results


def _listing(folder: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


@pytest.fixture(scope="module")
def trained(smoke_cache, tmp_path_factory):
    """(workdir, stdout) of a one-process run of STEPS steps, checkpoints at steps 2 and 4."""
    workdir = str(tmp_path_factory.mktemp("restore") / "base")
    return workdir, run_main(_args(workdir, smoke_cache)).stdout


def test_a_truncated_newest_checkpoint_makes_both_processes_restore_the_step_before(trained, smoke_cache, tmp_path):
    workdir = str(tmp_path / "truncated")
    shutil.copytree(trained[0], workdir)
    newest = os.path.join(workdir, "checkpoints", str(STEPS))
    for name in _listing(os.path.join(newest, "state")):
        path = os.path.join(newest, "state", name)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    p0, p1 = _two_processes(_args(workdir, smoke_cache))
    assert p0.returncode == 0 and p1.returncode == 0, p0.stderr[-3000:] + p1.stderr[-3000:]
    assert p0.stdout.count("checkpoint does not restore") == 1 and f"{newest}: checkpoint does not restore" in p0.stdout
    assert f"resumed from {os.path.join(workdir, 'checkpoints')}/2" in p0.stdout
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4", "4.unreadable-0"]
    # Steps 3 and 4 again: each loss is the mean over both processes' halves of the batch, each half computed with
    # that process's restored copy of the state, so both copies are step 2's (the one-process run's losses).
    base, resumed = printed_losses(trained[1]), printed_losses(p0.stdout)
    assert sorted(resumed) == [3, 4] and all(abs(resumed[s] - base[s]) <= TOLERANCE for s in (3, 4)), (base, resumed)
    assert max_abs_difference(load_state(workdir).params, load_state(trained[0]).params) < TOLERANCE


def test_a_host_local_read_error_stops_both_processes_with_one_line_and_renames_nothing(trained, smoke_cache,
                                                                                         tmp_path):
    workdir = str(tmp_path / "refused")
    shutil.copytree(trained[0], workdir)
    before = _listing(os.path.join(workdir, "checkpoints"))
    newest = os.path.join(workdir, "checkpoints", str(STEPS))
    p0, p1 = _two_processes(_args(workdir, smoke_cache), fault="restore_error:1@1")  # refused on process 1 only
    assert p0.returncode == 1 and p1.returncode == 1, p0.stderr[-3000:] + p1.stderr[-3000:]
    kept = "not a damaged checkpoint: every checkpoint is left as it was; fix the cause and run again"
    assert [line for line in p1.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {newest}: restoring failed (PermissionError: [Errno 13] Permission denied (injected): "
        f"'{newest}'); {kept}"]
    assert [line for line in p0.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {newest}: restoring failed on process 1 (its error says why); {kept}"]
    assert "Traceback" not in p0.stderr + p1.stderr
    assert _listing(os.path.join(workdir, "checkpoints")) == before  # nothing moved aside, renamed or removed
