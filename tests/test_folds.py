"""Folds (paper §4.3.1): video-disjoint, _left/_right and a subject's videos together, stable, balanced, and the
records each fold's train and val read."""

import json
import os
import shutil

import ml_collections
import numpy as np
import pytest

from pasn_jax.data import folds, shards


def _counts(n: int, rng) -> dict:
    return {f"{i}-30-640x360": {t: int(rng.integers(50, 500)) for t in ("au", "expr", "va")} for i in range(n)}


def test_clips_and_subjects_stay_together_every_video_once_and_stable():
    rng = np.random.default_rng(0)
    counts = _counts(40, rng)
    counts |= {"7-pair_left": {"au": 300, "expr": 0, "va": 10}, "7-pair_right": {"au": 10, "expr": 200, "va": 0}}
    subjects = {"3-30-640x360": "ann", "5-30-640x360": "ann", "11-30-640x360": "ann", "9-30-640x360": "bob",
                "7-pair": "bob"}  # a subject given by a clip's base name covers both halves
    fold_of = folds.assign_folds(counts, seed=0, subjects=subjects)
    assert sorted(fold_of) == sorted(counts)
    assert set(fold_of.values()) == set(range(folds.NUM_FOLDS))
    assert fold_of["7-pair_left"] == fold_of["7-pair_right"] == fold_of["9-30-640x360"]
    assert fold_of["3-30-640x360"] == fold_of["5-30-640x360"] == fold_of["11-30-640x360"]
    assert folds.assign_folds(counts, seed=0, subjects=subjects) == fold_of  # stable across runs
    assert folds.assign_folds(dict(reversed(counts.items())), seed=0, subjects=subjects) == fold_of


def test_folds_are_balanced_in_labelled_frames_per_task():
    counts = _counts(120, np.random.default_rng(1))
    fold_of = folds.assign_folds(counts, seed=3)
    for task in ("au", "expr", "va"):
        per_fold = np.array([sum(c[task] for v, c in counts.items() if fold_of[v] == k)
                             for k in range(folds.NUM_FOLDS)])
        assert per_fold.max() / per_fold.min() < 1.1, (task, per_fold)
    equal = {v: {"au": 100, "expr": 100, "va": 100} for v in counts}
    assert folds.assign_folds(equal, seed=3) != folds.assign_folds(equal, seed=4)  # the seed draws among equals


def _frames(source) -> list[tuple[str, int]]:
    return [(source[i]["video"], source[i]["frame"]) for i in range(len(source))]


def test_fold_sources_partition_train_and_val(synthetic_shards):
    pooled = set(_frames(shards.ShardSource(synthetic_shards, "train")) +
                 _frames(shards.ShardSource(synthetic_shards, "val")))
    test = _frames(shards.ShardSource(synthetic_shards, "test"))
    seen = []
    for k in range(folds.NUM_FOLDS):
        config = ml_collections.ConfigDict(dict(fold=k, fold_seed=0, subjects=""))
        val, train = (_frames(folds.split_source(synthetic_shards, s, config)) for s in ("val", "train"))
        assert val and set(val).isdisjoint(train) and set(val) | set(train) == pooled
        assert {v for v, _ in val}.isdisjoint({v for v, _ in train})
        assert _frames(folds.split_source(synthetic_shards, "test", config)) == test
        seen += val
    assert sorted(seen) == sorted(pooled)  # every labelled frame in exactly one validation fold
    with pytest.raises(folds.FoldError, match=r"config.data.fold: expected -1 .* or 0..4, got 5"):
        folds.split_source(synthetic_shards, "val", ml_collections.ConfigDict(dict(fold=5)))


def test_video_table_from_metadata_equals_a_scan(synthetic_shards, tmp_path):
    old = str(tmp_path / "old")
    shutil.copytree(synthetic_shards, old)
    for split in ("train", "val"):
        path = os.path.join(old, f"{split}.json")
        with open(path) as f:
            metadata = json.load(f)
        del metadata["videos"]  # as written before the table existed
        with open(path, "w") as f:
            json.dump(metadata, f)
        assert folds.video_table(old, split) == folds.video_table(synthetic_shards, split)


def test_cli_lists_folds_and_reads_subjects(synthetic_shards, tmp_path, capsys):
    subjects = tmp_path / "subjects.csv"
    subjects.write_text("video,subject\n1-30-1920x1080,x\n")
    out = str(tmp_path / "folds.csv")
    assert folds.main(["--data_dir", synthetic_shards, "--subjects", str(subjects), "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "in 5 folds" in printed and f"wrote {out}" in printed
    rows = [line.split(",") for line in open(out).read().split()]
    assert rows[0] == ["video", "split", "fold"] and {r[2] for r in rows[1:]} == {"0", "1", "2", "3", "4"}
    subjects.write_text("video,subject\nonly-a-video\n")
    assert folds.main(["--data_dir", synthetic_shards, "--subjects", str(subjects)]) == 1
    assert f"error: {subjects}:2: expected 'video,subject', got 'only-a-video'" in capsys.readouterr().err
