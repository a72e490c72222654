"""`--mode=eval`: restores a checkpoint, predicts every val frame once, and its files agree with each other."""

import json
import os
import shutil

import numpy as np
from runs import SMOKE_STEPS, run_main, smoke_args

from pasn_jax import metrics
from pasn_jax.data import pipeline
from pasn_jax.data.source import resolve_data_dir
from pasn_jax.predictions import PREDICTED_COLUMNS, read_predictions


def _eval(workdir, cache, *overrides):
    return run_main(smoke_args(workdir, cache, "--mode=eval", *overrides))


def test_eval_files_agree_and_cover_every_val_frame(smoke_cache, smoke_run):
    workdir, _ = smoke_run
    proc = _eval(workdir, smoke_cache)
    assert f"ABAW2 metrics at step {SMOKE_STEPS} on val" in proc.stdout
    out = os.path.join(workdir, "eval", str(SMOKE_STEPS))
    with open(os.path.join(out, "metrics.json")) as f:
        saved = json.load(f)
    p = read_predictions(os.path.join(out, "predictions.csv"))

    # Every record of the val split, once, in stored order.
    from configs import abaw
    config = abaw.get_config("smoke")
    config.data.synthetic.cache_dir = smoke_cache
    data_dir = resolve_data_dir(config.data)
    assert len(p["frame"]) == saved["frames"] == pipeline.num_records(data_dir, "val")
    assert len(set(zip(p["video"], p["frame"]))) == len(p["frame"])

    # metrics.json is abaw_metrics of the CSV's own columns.
    recomputed = metrics.abaw_metrics(p["au_prob"], p["au"], p["expr_prob"], p["expr"], p["va_pred"], p["va"])
    for key, value in recomputed.items():
        np.testing.assert_allclose(saved[key], value, rtol=1e-6, atol=1e-6, err_msg=key)

    # The table printed is the file's numbers.
    assert f"{saved['au_f1']:.4f}" in proc.stdout and f"{saved['s_va']:.4f}" in proc.stdout


def test_eval_of_an_earlier_step_and_of_a_missing_one(smoke_cache, smoke_run):
    workdir, _ = smoke_run
    proc = _eval(workdir, smoke_cache, "--config.eval.step=150")
    assert "ABAW2 metrics at step 150 on val" in proc.stdout
    assert os.path.exists(os.path.join(workdir, "eval", "150", "predictions.csv"))
    missing = run_main(smoke_args(workdir, smoke_cache, "--mode=eval", "--config.eval.step=7"), check=False)
    assert missing.returncode == 1
    assert "no checkpoint at step 7" in missing.stderr.strip().splitlines()[-1]


def test_predict_on_a_tree_without_annotations_matches_eval_on_test(smoke_cache, smoke_run, tmp_path):
    """--mode=predict reads only cropped_aligned/ and a video list: its numbers are eval's on the same frames."""
    workdir = str(tmp_path / "run")  # a copy: its predict/ and eval/<step>/test/ stay out of the shared run
    shutil.copytree(smoke_run[0], workdir)
    from configs import abaw
    config = abaw.get_config("smoke")
    config.data.synthetic.cache_dir = smoke_cache
    source_tree = os.path.join(os.path.dirname(resolve_data_dir(config.data)), "tree")
    videos = open(os.path.join(source_tree, "test_videos.txt")).read().split()
    root = tmp_path / "abaw_test"
    for video in videos:
        shutil.copytree(os.path.join(source_tree, "cropped_aligned", video), root / "cropped_aligned" / video)
    (tmp_path / "videos.txt").write_text("\n".join(reversed(videos)) + "\n")
    proc = run_main(smoke_args(workdir, smoke_cache, "--mode=predict", f"--config.predict.root={root}",
                               f"--config.predict.videos={tmp_path / 'videos.txt'}"))
    path = os.path.join(workdir, "predict", str(SMOKE_STEPS), "predictions.csv")
    images = sum(len(os.listdir(root / "cropped_aligned" / v)) for v in videos)
    assert f"wrote {path}: {images} frames of {len(videos)} videos" in proc.stdout
    assert open(path).readline().strip().split(",") == PREDICTED_COLUMNS  # no label columns
    predicted = read_predictions(path)
    assert sorted(set(predicted["video"])) == sorted(videos) and len(predicted["frame"]) == images

    held_out = os.path.join(workdir, "eval", str(SMOKE_STEPS), "metrics.json")
    val_scores = open(held_out).read()
    proc = run_main(smoke_args(workdir, smoke_cache, "--mode=eval", "--config.eval.split=test"))
    # another split's evaluation nests under the step: the validation scores training wrote stay as they were
    assert f"wrote {os.path.join(workdir, 'eval', str(SMOKE_STEPS), 'test')}" in proc.stdout
    assert open(held_out).read() == val_scores and json.loads(val_scores)["split"] == "val"
    scored = read_predictions(os.path.join(workdir, "eval", str(SMOKE_STEPS), "test", "predictions.csv"))
    at = {(v, f): i for i, (v, f) in enumerate(zip(predicted["video"], predicted["frame"]))}
    rows = [at[(v, f)] for v, f in zip(scored["video"], scored["frame"])]  # labelled frames have images
    assert 0 < len(rows) < images  # the tree also holds images without label lines
    for key in ("au_prob", "expr_prob", "va_pred"):
        np.testing.assert_allclose(predicted[key][rows], scored[key], atol=1e-6, err_msg=key)

    bad = run_main(smoke_args(workdir, smoke_cache, "--mode=predict", f"--config.predict.root={tmp_path}"),
                   check=False)
    assert bad.returncode == 1
    assert f"error: {tmp_path}/cropped_aligned: missing folder" in bad.stderr
