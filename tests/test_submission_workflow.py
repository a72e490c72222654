"""The README's "From training to an ABAW submission", command by command, with the smoke network: the six fold
members (one of them killed and resumed), the ensemble's report, its predictions on the unlabelled test videos, and
the submission files they make, read back here."""

import csv
import os
import subprocess
import sys

import pytest
from runs import REPO, env_with_devices

pytestmark = pytest.mark.slow
MEMBERS = ["fold-1", "fold-2", "fold-3", "fold-4", "fold-5", "original"]


def _run(*args, env=None):
    proc = subprocess.run(list(args), cwd=REPO, env=env or env_with_devices(1), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_folds_ensemble_predict_submission(smoke_cache, tmp_path):
    runs = str(tmp_path / "folds")
    train = ["--config=configs/abaw.py:smoke", f"--config.data.synthetic.cache_dir={smoke_cache}",
             "--config.num_steps=30", "--config.checkpoint_every=10"]
    env = env_with_devices(1) | {"PYTHON": sys.executable}
    # fold-1 dies once its second checkpoint (step 20) is written; the second attempt resumes there
    killed = _run("launch/folds.sh", runs, *train, env=env | {"FOLDS": "0", "PASN_JAX_FAULT": "after_save:2"})
    assert "fold-1 stopped with status 137" in killed.stderr and "attempt 2 of 3" in killed.stdout
    assert f"resumed from {runs}/fold-1/checkpoints/20" in killed.stdout
    whole = _run("launch/folds.sh", runs, *train, env=env)
    assert "== fold-1: finished earlier" in whole.stdout and "all members finished" in whole.stdout
    for name in MEMBERS:
        assert max(int(n) for n in os.listdir(os.path.join(runs, name, "checkpoints"))) == 30, name

    members = [os.path.join(runs, name) for name in MEMBERS]
    report = _run(sys.executable, "-m", "pasn_jax.ensemble", "--workdirs", *members, "--out", f"{runs}/report")
    assert "Each member on its own validation videos" in report.stdout
    with open(f"{runs}/report/report.csv") as f:
        rows = list(csv.reader(f))
    assert [r[1] for r in rows if r[0] == "validation"] == MEMBERS
    assert [r[1] for r in rows if r[0] == "test"] == MEMBERS + ["members mean", "ensemble"]

    tree = os.path.join(smoke_cache, next(n for n in os.listdir(smoke_cache) if "test" in n), "tree")
    _run(sys.executable, "-m", "pasn_jax.ensemble", "--workdirs", *members, "--mode=predict", "--out", f"{runs}/test")
    given = _run(sys.executable, "-m", "pasn_jax.ensemble", "--workdirs", *members, "--mode=predict", "--root", tree,
                 "--videos", os.path.join(tree, "test_videos.txt"), "--out", f"{runs}/test_given")
    assert "6 members" in given.stdout  # the real-data form: a tree and its video list named
    assert open(f"{runs}/test_given/predictions.csv").read() == open(f"{runs}/test/predictions.csv").read()
    written = _run(sys.executable, "-m", "pasn_jax.submission", "write", "--predictions",
                   f"{runs}/test/predictions.csv", "--out", f"{runs}/submission")
    assert "frame counts: 2 from the last predicted frame" in written.stdout
    checked = _run(sys.executable, "-m", "pasn_jax.submission", "check", f"{runs}/submission")
    assert checked.stdout.startswith(f"ok: {runs}/submission")

    videos = open(os.path.join(tree, "test_videos.txt")).read().split()
    for folder, header in (("AU", "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"),
                           ("EXPR", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise"),
                           ("VA", "valence,arousal")):
        assert sorted(os.listdir(f"{runs}/submission/{folder}")) == sorted(f"{v}.txt" for v in videos)
        for video in videos:
            lines = open(f"{runs}/submission/{folder}/{video}.txt").read().splitlines()
            last = max(int(n[:5]) for n in os.listdir(os.path.join(tree, "cropped_aligned", video)))
            assert lines[0] == header and len(lines) == 1 + last, (folder, video)
