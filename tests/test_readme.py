"""The README's Aff-Wild2 workflow, command by command, on a tree in Aff-Wild2's layout (the synthetic one):
render -> convert -> train -> evaluate, with the smoke network so that it takes seconds."""

import json
import os
import subprocess
import sys

from runs import REPO, env_with_devices, run_main


def _cli(*args):
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env_with_devices(1), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_convert_train_evaluate_commands(tmp_path):
    tree, shards, workdir = tmp_path / "Aff-Wild2", tmp_path / "shards", tmp_path / "run"
    _cli("pasn_jax.data.synthetic", "--out", str(tree), "--videos", "6", "--frames", "10", "--size", "48")
    printed = _cli("pasn_jax.data.convert", "affwild2", "--root", str(tree), "--out", str(shards),
                   "--num-shards", "2")
    assert printed.splitlines()[0].startswith("train: ") and printed.splitlines()[1].startswith("val: ")
    with open(shards / "val.json") as f:
        val_records = json.load(f)["num_records"]

    data = ["--config.data.source=shards", f"--config.data.dir={shards}"]
    train = run_main(["--config=configs/abaw.py:smoke", f"--workdir={workdir}", *data, "--config.num_steps=4"])
    assert "step 4/4" in train.stdout
    evaluation = run_main(["--config=configs/abaw.py:smoke", f"--workdir={workdir}", *data, "--mode=eval"])
    assert f"ABAW2 metrics at step 4 on val ({val_records} frames)" in evaluation.stdout
    assert os.path.exists(workdir / "eval" / "4" / "predictions.csv")
