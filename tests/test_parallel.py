"""Data parallelism: 1 device against 8 simulated devices and against 2 processes x 2 devices (launch/local.sh), in
training, evaluation, resumption and inference (a checkpoint of 8 devices read on 1 and on 2 x 2).

The global batch and the data order do not depend on the device or process count (the stream's batch k is a function
of the seed and k), batch norm statistics are reduced over the global batch, and dropout masks come from a
sharding-independent key: runs differ only in the order of float32 reductions. Tolerance: 1e-4 on each printed loss
(4 decimals), on every parameter after the run and on every predicted probability of the evaluation.

End to end with several processes and simulated devices (compiles for each device count): slow-marked, run by CI
(`make test-slow`).
"""

import glob
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from runs import REPO, env_with_devices, load_state, max_abs_difference, printed_losses, run_main, smoke_args

from pasn_jax import predict
from pasn_jax.data import pipeline
from pasn_jax.predictions import read_predictions

STEPS = 6
pytestmark = pytest.mark.slow
TOLERANCE = 1e-4


def _args(workdir, cache, steps=STEPS):
    return smoke_args(workdir, cache, f"--config.num_steps={steps}", "--config.log_every=1",
                      "--config.eval_every=1000", "--config.checkpoint_every=1000")


def _assert_same_losses(a_stdout, b_stdout, steps):
    a, b = printed_losses(a_stdout), printed_losses(b_stdout)
    assert sorted(b) == list(steps) and set(b) <= set(a)
    for step in steps:
        assert abs(a[step] - b[step]) <= TOLERANCE + 1e-9, (step, a[step], b[step])


def _assert_same_run(a_workdir, a_stdout, b_workdir, b_stdout):
    _assert_same_losses(a_stdout, b_stdout, range(1, STEPS + 1))
    assert max_abs_difference(load_state(a_workdir).params, load_state(b_workdir).params) < TOLERANCE


def _assert_same_evaluation(a_workdir, b_workdir, step=STEPS):
    """The same frames in the same row order, probabilities within the tolerance, equal metrics to 4 decimals."""
    a, b = (read_predictions(os.path.join(w, "eval", str(step), "predictions.csv")) for w in (a_workdir, b_workdir))
    assert a["video"].tolist() == b["video"].tolist() and a["frame"].tolist() == b["frame"].tolist()
    for key in ("au_prob", "expr_prob", "va_pred"):
        assert np.max(np.abs(a[key] - b[key])) < TOLERANCE, key
    metrics = []
    for w in (a_workdir, b_workdir):
        with open(os.path.join(w, "eval", str(step), "metrics.json")) as f:
            metrics.append({k: round(v, 4) for k, v in json.load(f).items() if isinstance(v, float)})
    assert metrics[0] == metrics[1]


@pytest.fixture(scope="module")
def one_device(smoke_cache, tmp_path_factory):
    """(workdir, stdout) of the reference run on one device (the last test continues it)."""
    workdir = str(tmp_path_factory.mktemp("parallel") / "d1")
    return workdir, run_main(_args(workdir, smoke_cache), devices=1).stdout


@pytest.fixture(scope="module")
def eight_devices(smoke_cache, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("parallel") / "d8")
    return workdir, run_main(_args(workdir, smoke_cache), devices=8).stdout


def test_one_and_eight_devices_train_alike(eight_devices, one_device):
    assert "1 process(es), 8 device(s)" in eight_devices[1]
    _assert_same_run(*one_device, *eight_devices)


def test_two_processes_match_one_process_in_training_and_evaluation(smoke_cache, one_device, tmp_path):
    env = env_with_devices(2)
    env["PYTHON"] = sys.executable
    workdir = str(tmp_path / "p2")
    multi = subprocess.run(["launch/local.sh", "2", *_args(workdir, smoke_cache)], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
    assert multi.returncode == 0, multi.stdout + multi.stderr
    assert "[p0] " in multi.stdout and "2 process(es), 4 device(s)" in multi.stdout
    p0 = "\n".join(line[5:] for line in multi.stdout.splitlines() if line.startswith("[p0] "))
    assert "step 1/" not in "\n".join(line for line in multi.stdout.splitlines() if line.startswith("[p1] "))
    _assert_same_run(*one_device, workdir, p0)
    # Evaluation of the same step: one process with 4 devices against these 2 x 2 (--mode=eval on the same workdir)
    single_eval = str(tmp_path / "eval_single")
    os.makedirs(single_eval)
    for name in ("config.json", "checkpoints"):
        os.symlink(os.path.join(workdir, name), os.path.join(single_eval, name))
    run_main([*_args(single_eval, smoke_cache), "--mode=eval"], devices=4)
    _assert_same_evaluation(workdir, single_eval)


def test_a_run_of_eight_devices_resumes_on_four_with_the_same_next_batches(smoke_cache, eight_devices, one_device):
    """Checkpointed at step 6 on 8 devices, continued to step 8 on 4: the next losses and the parameters are the
    one-device run's (the stream position is the step: no iterator state to carry between topologies)."""
    workdir = eight_devices[0]
    resumed = run_main(_args(workdir, smoke_cache, steps=STEPS + 2), devices=4)
    assert f"resumed from {os.path.join(workdir, 'checkpoints')}/{STEPS}" in resumed.stdout
    reference = run_main(_args(one_device[0], smoke_cache, steps=STEPS + 2), devices=1)  # continued on 1 device
    _assert_same_losses(reference.stdout, resumed.stdout, range(STEPS + 1, STEPS + 3))
    assert max_abs_difference(load_state(one_device[0]).params, load_state(workdir).params) < TOLERANCE



def test_a_checkpoint_of_eight_devices_predicts_alike_on_one_device_and_on_two_processes(eight_devices, smoke_cache,
                                                                                          tmp_path):
    """Inference restores the parameters and batch statistics onto the devices it has: `--mode=eval` on 2 processes
    x 2 devices and `Predictor` in this process (1 device) give the predictions of the 8-device run's evaluation."""
    workdir = eight_devices[0]
    step = max(int(n) for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit())  # 8 when resumed
    evaluated = str(tmp_path / "eval_2x2")
    os.makedirs(evaluated)
    for name in ("config.json", "checkpoints"):
        os.symlink(os.path.join(workdir, name), os.path.join(evaluated, name))
    env = env_with_devices(2) | {"PYTHON": sys.executable}
    multi = subprocess.run(["launch/local.sh", "2", *_args(evaluated, smoke_cache), "--mode=eval"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
    assert multi.returncode == 0, multi.stdout + multi.stderr
    assert f"[p0] wrote {evaluated}/eval/{step}" in multi.stdout
    _assert_same_evaluation(workdir, evaluated, step)

    assert jax.device_count() == 1
    predictor = predict.Predictor.from_workdir(workdir)
    assert predictor.step == step
    expected = read_predictions(os.path.join(workdir, "eval", str(step), "predictions.csv"))
    (tree,) = glob.glob(os.path.join(smoke_cache, "*", "tree"))
    images = []
    for video, frame in zip(expected["video"], expected["frame"]):
        with open(os.path.join(tree, "cropped_aligned", video, f"{int(frame):05d}.jpg"), "rb") as f:
            images.append(pipeline.plain_image(f.read(), predictor.image_size))  # as the evaluation reads a frame
    got = predictor.predict_crops(np.stack(images))
    for key in ("au_prob", "expr_prob", "va_pred"):
        assert np.max(np.abs(got[key] - expected[key])) < TOLERANCE, key
