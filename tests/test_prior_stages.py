"""The prior's two stages and PASN on them, end to end through the README's commands for real data ("The prior on
real data") on the smoke sizes (paper §3.2): an insightface RecordIO set and an FEC tree (the synthetic ones,
written in those datasets' layouts) converted by `python -m pasn_jax.data.convert`, then face identity (ArcFace)
-> DLN (f_expr from f_id, f_id frozen) -> PASN taking both towers from DLN. Each stage evaluates (verification,
triplet accuracy, the ABAW table); the frozen tower leaves each stage as it came.
Slow-marked (three trainings, minutes on 2 cores): run by CI (`make test-slow`)."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from runs import REPO, env_with_devices, max_abs_difference, run_main

from pasn_jax import checkpointing
from pasn_jax.data import fec
from pasn_jax.data.synthetic import identities, triplets

pytestmark = pytest.mark.slow


def _convert(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "pasn_jax.data.convert", *args], cwd=REPO,
                          env=env_with_devices(1), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """{stage: (workdir, stdout)} of the three smoke stages, chained as launch/demo.sh chains the demo's, on data
    converted by the README's commands."""
    root = tmp_path_factory.mktemp("stages")
    identities.generate(str(root / "ms1m"), identities=12, images=4, held_out=6, pairs=40, size=48, seed=0)
    printed = _convert("insightface", "--root", str(root / "ms1m"), "--out", str(root / "ms1m_shards"),
                       "--num-shards", "2")
    assert printed.splitlines()[:2] == ["train: 48 images of 12 identities (12 classes) in 2 shards",
                                        "verification sets copied: verify.bin"]
    fec_root = root / "FEC"
    triplets.generate(str(fec_root), people=12, images=3, test_people=6, train_triplets=24, test_triplets=12, size=48,
                      seed=0)
    for split, csv_name in triplets.CSV_FILES.items():
        _convert("fec", "--csv", str(fec_root / csv_name), "--images", str(fec_root / triplets.IMAGES_DIR),
                 "--out", str(root / "fec_shards"), "--split", split, "--size", "48")
    shards = "--config.data.source=shards"
    runs = {}
    for name, config, link in (
            ("face_id", "configs/face_id.py:smoke", [shards, f"--config.data.dir={root / 'ms1m_shards'}"]),
            ("dln", "configs/dln.py:smoke", [shards, f"--config.data.dir={root / 'fec_shards'}",
                                             f"--config.model.weights.f_id={root / 'face_id'}"]),
            ("pasn", "configs/abaw.py:smoke", [f"--config.data.synthetic.cache_dir={root / 'cache'}",
                                               f"--config.model.prior_from={root / 'dln'}"])):
        workdir = str(root / name)
        runs[name] = workdir, run_main([f"--config={config}", f"--workdir={workdir}", *link]).stdout
    return runs


def _metrics(workdir: str) -> dict:
    last = max(os.listdir(os.path.join(workdir, "eval")), key=int)
    with open(os.path.join(workdir, "eval", last, "metrics.json")) as f:
        return json.load(f)


def test_face_identity_stage_is_scored_by_verification(stages):
    workdir, stdout = stages["face_id"]
    m = _metrics(workdir)
    assert "Face verification at step 20" in stdout and m["pairs"] == 40 and m["chance"] == {"accuracy": 0.5}
    assert 0.0 <= m["verify_accuracy"] <= 1.0 and f"{m['verify_accuracy']:.4f}" in stdout


def test_dln_starts_from_the_identity_tower_and_keeps_it(stages):
    identity, _ = checkpointing.read_variables(stages["face_id"][0])
    variables, step = checkpointing.read_variables(stages["dln"][0])
    assert step == 10
    for collection in ("params", "batch_stats"):
        assert max_abs_difference(variables[collection]["prior"]["f_id"], identity[collection]["backbone"]) == 0.0
    moved = max_abs_difference(variables["params"]["prior"]["f_expr"], identity["params"]["backbone"])
    assert moved > 0  # f_expr started from f_id (checked in tests/test_initialise.py) and trained away from it
    m = _metrics(stages["dln"][0])
    assert set(m) >= {"dln_triplet_accuracy", "f_id_triplet_accuracy", "untrained_triplet_accuracy"}
    assert m["triplets"] == 12 and "f_id's own embedding" in stages["dln"][1]


def test_pasn_takes_both_towers_of_dln(stages):
    prior, _ = checkpointing.read_variables(stages["dln"][0])
    variables, step = checkpointing.read_variables(stages["pasn"][0])
    assert step == 20
    assert max_abs_difference(variables["params"]["prior"]["f_id"], prior["params"]["prior"]["f_id"]) == 0.0
    assert "loaded into tower 'f_expr'" in stages["pasn"][1] and "ABAW2 metrics at step 20" in stages["pasn"][1]
    assert np.isfinite(_metrics(stages["pasn"][0])["s_au"])


def test_triplet_reference_scores_pasn_and_dln_on_the_same_triplets(stages):
    """benchmarks/triplet_reference.py: a PASN's outputs as embeddings, and the DLN's own score equal to its eval."""
    dln = stages["dln"][0]
    proc = subprocess.run([sys.executable, "-m", "benchmarks.triplet_reference", "--pasn", stages["pasn"][0],
                           "--dln", dln, "--data-dir", os.path.join(os.path.dirname(dln), "fec_shards"),
                           "--labels", os.path.join(os.path.dirname(dln), "FEC")],
                          cwd=REPO, env=env_with_devices(1), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "triplet prediction accuracy on 12 test triplets" in proc.stdout, proc.stdout
    for name in ("PASN AU probabilities", "PASN expression probabilities", "PASN AU + expression probabilities"):
        assert re.search(re.escape(name) + r".*: all [01]\.\d{3}", proc.stdout), proc.stdout
    # the renderer's intensities name the odd face exactly where the raters' majority agrees with them
    kept = [t for t in fec.parse_csv(os.path.join(os.path.dirname(dln), "FEC", triplets.CSV_FILES["test"]))
            if t.odd_one_out() is not None]
    truth = {f"{p:05d}_{k:02d}.jpg": face[2] for p in range(12, 18) for k, face in
             enumerate(triplets.person_faces(0, p, 3, 48))}
    agree = np.mean([t.odd_one_out() == triplets.odd_one_out(np.stack([truth[fec.file_name(f.url)] for f in t.faces]))
                     for t in kept])
    assert re.search(rf"renderer AU intensities: all {agree:.3f}", proc.stdout), proc.stdout
    for name in ("renderer AU occurrence", "renderer expression one-hot"):
        assert re.search(re.escape(name) + r".*: all [01]\.\d{3}", proc.stdout), proc.stdout
    mine = re.search(r"DLN embedding .*, step 10\): all ([01]\.\d{3})", proc.stdout)
    assert mine and float(mine.group(1)) == round(_metrics(dln)["dln_triplet_accuracy"], 3), proc.stdout
