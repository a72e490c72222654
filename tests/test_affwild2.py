"""Aff-Wild2 reader: records equal an independent parse of the text files; every bad input gives one error
line naming the file and line."""

import json
import os

import pytest
from conftest import TINY_SHARDS

from pasn_jax.data import affwild2, convert


def test_records_carry_every_label_of_the_text_files(synthetic_tree, expected_labels):
    for split in affwild2.SPLIT_SETS:
        read = affwild2.read_split(synthetic_tree, split)
        got = {(r.video, r.frame): (r.au, r.expr, r.va) for r in read.records}
        assert got == expected_labels[split]
        assert [(r.video, r.frame) for r in read.records] == sorted(got)
        for r in read.records:
            assert r.image_path == os.path.join(synthetic_tree, "cropped_aligned", r.video, f"{r.frame:05d}.jpg")


def test_gap_counts(synthetic_tree):
    with open(os.path.join(synthetic_tree, "synthetic_affwild2.json")) as f:
        marker = json.load(f)
    reads = [affwild2.read_split(synthetic_tree, s) for s in affwild2.SPLIT_SETS]
    assert sum(r.frames_without_image for r in reads) == marker["faceless_frames"] > 0
    assert sum(r.images_without_label for r in reads) == marker["images_without_label"] > 0
    assert sum(len(r.records) for r in reads) + marker["images_without_label"] == marker["images"]
    for read in reads:
        assert read.videos == sorted(marker["splits"][read.split])
    # the tree holds every gap of Aff-Wild2: videos outside some task set, sentinel runs, two-person clips
    assert any(len(sets) < 3 for sets in marker["task_sets"].values())
    records = [r for read in reads for r in read.records]
    assert any(r.au == (-1,) * 12 for r in records) and any(r.expr == -1 for r in records)
    assert any(r.video.endswith("_left") for r in records) and any(r.video.endswith("_right") for r in records)


def _tree(root, au="AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26\n" + "0,1,0,0,0,0,0,0,0,0,0,-1\n" * 2,
          expr="Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\n4\n-1\n", va="valence,arousal\n0.5,-5\n-5,-5\n"):
    """A one-video tree with two frames (images 00001 and 00002) in every Train_Set; returns the file paths."""
    paths = {}
    for task, task_set in affwild2.TASK_SETS.items():
        for split_set in affwild2.SPLIT_SETS.values():
            os.makedirs(os.path.join(root, "annotations", task_set, split_set))
        paths[task] = os.path.join(root, "annotations", task_set, "Train_Set", "v.txt")
        with open(paths[task], "w", newline="") as f:
            f.write({"au": au, "expr": expr, "va": va}[task])
    os.makedirs(os.path.join(root, "cropped_aligned", "v"))
    for frame in (1, 2):
        open(os.path.join(root, "cropped_aligned", "v", f"{frame:05d}.jpg"), "wb").close()
    return paths


def test_real_format_variants_are_read(tmp_path):
    _tree(tmp_path, expr="\ufeffNeutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\r\n4\r\n-1\r\n\r\n")
    read = affwild2.read_split(str(tmp_path), "train")
    assert [(r.frame, r.expr, r.va) for r in read.records] == [(1, 4, (0.5, -5.0)), (2, -1, (-5.0, -5.0))]
    assert read.records[0].au == (0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, -1)
    assert affwild2.read_split(str(tmp_path), "val").records == []


HEADER_AU = "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26\n"


@pytest.mark.parametrize("task,text,line,message", [
    ("au", "AU1,AU2\n" + "0\n", 1, "expected the header 'AU1,AU2,AU4"),
    ("expr", "", 1, "expected the header 'Neutral,Anger"),
    ("au", HEADER_AU + "0,0,0,0,0,0,0,0,0,0,0\n", 2, "expected 12 comma-separated values, got 11"),
    ("au", HEADER_AU + "0,0,0,0,0,0,0,0,0,0,0,0\n\n0,0,0,0,0,0,0,0,0,0,0,0\n", 3, "expected 12 comma-separated"),
    ("au", HEADER_AU + "0,0,0,0,0,0,0,0,0,0,0,0\n0,2,0,0,0,0,0,0,0,0,0,0\n", 3, "expected 12 integers in {0, 1, -1}"),
    ("au", HEADER_AU + "0,x,0,0,0,0,0,0,0,0,0,0\n", 2, "expected 12 integers in {0, 1, -1}, got '0,x,0"),
    ("expr", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\n7\n", 2, "expected one integer in -1..6"),
    ("expr", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\n1,2\n", 2, "expected 1 comma-separated"),
    ("va", "valence,arousal\n0.2,1.5\n", 2, "expected 2 numbers in [-1, 1] or -5, got '0.2,1.5'"),
    ("va", "valence,arousal\nnan,0\n", 2, "expected 2 numbers in [-1, 1] or -5"),
    ("va", "valence,arousal\n0.1,abc\n", 2, "expected 2 numbers in [-1, 1] or -5"),
    ("va", "valence,arousal\n-4,0\n", 2, "expected 2 numbers in [-1, 1] or -5"),
])
def test_bad_annotation_gives_one_line_naming_file_and_line(tmp_path, task, text, line, message):
    paths = _tree(tmp_path)
    with open(paths[task], "w") as f:
        f.write(text)
    with pytest.raises(affwild2.AffWild2Error) as error:
        affwild2.read_split(str(tmp_path), "train")
    assert str(error.value).startswith(f"{paths[task]}:{line}: {message}")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("folder", [os.path.join("annotations", "VA_Set", "Validation_Set"), "annotations",
                                    "cropped_aligned"])
def test_missing_folder_is_named(tmp_path, folder, capsys):
    _tree(tmp_path)
    os.rename(os.path.join(tmp_path, folder), os.path.join(tmp_path, "moved"))
    with pytest.raises(affwild2.AffWild2Error) as error:
        affwild2.read_split(str(tmp_path), "train")
    assert str(error.value).startswith(f"{os.path.join(tmp_path, folder)}: missing folder")
    assert convert.main(["affwild2", "--root", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "missing folder" in err


def test_cli_reports_a_bad_line_without_traceback(tmp_path, capsys):
    paths = _tree(tmp_path, expr="Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\n9\n")
    assert convert.main(["affwild2", "--root", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == f"error: {paths['expr']}:2: expected one integer in -1..6, got '9'\n"


def test_workers_write_the_same_shards_and_progress_has_an_eta(synthetic_tree, synthetic_shards, tmp_path, capsys):
    """Converting in 2 worker processes gives byte-identical shards; a slow conversion prints done/total and an ETA
    (every 0 s here)."""
    out = str(tmp_path / "workers")
    affwild2.convert(synthetic_tree, out, num_shards=TINY_SHARDS, workers=2, progress_every=0.0)
    printed = capsys.readouterr().err
    assert "ETA" in printed and "records/s" in printed and "workers/train: " in printed
    names = sorted(n for n in os.listdir(synthetic_shards) if n.endswith((".tfrecord", ".index", ".json")))
    assert names == sorted(n for n in os.listdir(out) if n.endswith((".tfrecord", ".index", ".json")))
    for name in names:
        with open(os.path.join(out, name), "rb") as a, open(os.path.join(synthetic_shards, name), "rb") as b:
            assert a.read() == b.read(), name
