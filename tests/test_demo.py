"""The README's demo (`make demo`: launch/demo.sh, the prior's two stages then PASN) and the PASN ablations
(README, "Demo results"): trained on synthetic people, each stage must score on unseen ones, far above chance.
(That train and evaluation people differ is tested with the generators, tests/test_synthetic.py and
tests/test_prior.py.) The no_streaming variant once lost VA for good (CCC 0: a tanh saturated by an unnormalised
random f_id, models/initialise.measure_identity_statistics).

Slow (minutes): the demo runs with `make test-slow` (CI runs it after `make test`), the ablations with
`make test-ablations`.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from runs import REPO, env_with_devices, run_main

# Floors on people never seen in training, far above chance (README, "Demo results": the trained prior's PASN
# 0.78 / 0.74 / 0.84, the random prior's 0.86 / 0.81 / 0.86; the prior's stages verify 0.965 and order 0.48 of the
# triplets, 0.45 on another seed, f_id's own embedding 0.31). Another CPU computes in another order and trains to
# other numbers, so a floor stays a little under the measured value: on a second machine the trained prior's PASN
# scored 0.74 / 0.72 / 0.82 and its DLN 0.51 (f_id's embedding 0.32), verification 0.969.
FLOORS = {"random_prior": (0.60, 0.60, 0.50), "trained_prior": (0.70, 0.65, 0.70)}  # AU F1, EXPR F1, mean CCC
MIN_VERIFICATION = 0.94  # chance 0.5
MIN_TRIPLET_ACCURACY = 0.40  # chance 1/3
MIN_TRIPLET_GAIN = 0.08  # over f_id's own embedding and an untrained tower


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("demo_cache"))


def _last_metrics(workdir: str) -> dict:
    eval_dir = os.path.join(workdir, "eval")
    with open(os.path.join(eval_dir, max(os.listdir(eval_dir), key=int), "metrics.json")) as f:
        return json.load(f)


def _check_pasn(m: dict, prior: str) -> None:
    min_au_f1, min_expr_f1, min_mean_ccc = FLOORS[prior]
    chance = m["chance"]
    assert m["au_f1"] >= min_au_f1 and m["au_f1"] > chance["au_all_ones"]["au_f1"] + 0.15
    assert m["expr_f1"] >= min_expr_f1 and m["expr_f1"] > chance["expr_majority"]["expr_f1"] + 0.2
    assert (m["ccc_v"] + m["ccc_a"]) / 2 >= min_mean_ccc


@pytest.mark.slow
def test_demo_script_trains_the_prior_then_pasn_on_unseen_people(demo_cache, tmp_path):
    runs = str(tmp_path / "runs")
    start = time.perf_counter()
    proc = subprocess.run(["launch/demo.sh", runs, f"--config.data.synthetic.cache_dir={demo_cache}"], cwd=REPO,
                          env={**env_with_devices(1, optimize=True), "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=3600)
    print(f"launch/demo.sh: {time.perf_counter() - start:.0f} s\n{proc.stdout[-4000:]}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    face_id, dln, pasn = (_last_metrics(os.path.join(runs, stage)) for stage in ("face_id", "dln", "pasn"))
    assert face_id["verify_accuracy"] >= MIN_VERIFICATION
    assert dln["dln_triplet_accuracy"] >= MIN_TRIPLET_ACCURACY
    assert dln["dln_triplet_accuracy"] > max(dln["f_id_triplet_accuracy"],
                                             dln["untrained_triplet_accuracy"]) + MIN_TRIPLET_GAIN
    assert "loaded into tower 'f_expr'" in proc.stdout and "loaded into tower 'f_id'" in proc.stdout
    # DLN (64 px) takes the 32-px f_id as it is: the ResNet pools globally, no fc to resize
    assert proc.stdout.count("trained at 32 px, used at 64 px (resnet50 pools globally") == 1
    assert "fc resized" not in proc.stdout
    _check_pasn(pasn, "trained_prior")

    # The README's report command (`make report`, here on the demo's PASN alone): its page and the Grad-CAM mass on
    # the expressive parts.
    report = subprocess.run([sys.executable, "-m", "pasn_jax.report", "--workdirs", os.path.join(runs, "pasn"),
                             "--names", "trained prior", "--out", os.path.join(runs, "report")], cwd=REPO,
                            env=env_with_devices(1), capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stdout + report.stderr
    with open(os.path.join(runs, "report", "figures.json")) as f:
        assert json.load(f)["parts_mass_ratio"]["trained prior"] > 0


@pytest.mark.ablation
@pytest.mark.parametrize("config", ["demo,random_prior", "demo,random_prior,no_streaming", "demo,no_prior"])
def test_ablation_reaches_the_thresholds_on_unseen_people(config, demo_cache, tmp_path):
    workdir = str(tmp_path / "run")
    start = time.perf_counter()
    proc = run_main([f"--config=configs/abaw.py:{config}", f"--workdir={workdir}",
                     f"--config.data.synthetic.cache_dir={demo_cache}"], timeout=3600, optimize=True)
    print(f"{config}: {time.perf_counter() - start:.0f} s\n{proc.stdout[-3000:]}")
    _check_pasn(_last_metrics(workdir), "random_prior")


def test_prior_seeds_script_skips_finished_runs_and_summarises_them(tmp_path):
    """launch/prior_seeds.sh (README, "Demo results"): every run already has its metrics, so none trains (PYTHON
    is this interpreter) and the table is mean ± sd over the seeds, computed here independently."""
    runs, scores = tmp_path / "runs", {}
    rng = np.random.default_rng(0)
    for variant in ("trained", "random", "no_prior"):
        for seed in (0, 1, 2):
            scores[variant, seed] = [float(v) for v in rng.uniform(0.2, 0.9, 3).round(4)]
            folder = runs / f"{variant}-s{seed}" / "eval" / "500"
            folder.mkdir(parents=True)
            (folder / "metrics.json").write_text(json.dumps(dict(zip(("s_au", "s_expr", "s_va"),
                                                                      scores[variant, seed]))))
    proc = subprocess.run(["launch/prior_seeds.sh", str(runs), str(tmp_path / "no_dln")], cwd=REPO,
                          env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "==" not in proc.stdout, proc.stdout  # nothing trained
    for variant in ("trained", "random", "no_prior"):
        values = np.array([scores[variant, s] for s in (0, 1, 2)])
        cells = " ".join(f"{m:7.3f} ± {d:.3f}" for m, d in zip(values.mean(0), values.std(0, ddof=1)))
        assert f"{variant:10s} {cells}" in proc.stdout, proc.stdout
