"""DFEW reader: tiny hand-written trees in DFEW's documented layout, converted to shards whose records are read back
and checked label by label; every bad line gives one error line naming file and line and leaves no `<split>.json`;
clips without frames are counted; the synthetic DFEW-like tree converts to exactly what its files say."""

import hashlib
import json
import os

import numpy as np
import pytest
import simplejpeg

from pasn_jax.data import dfew, shards
from pasn_jax.data.synthetic import dfew as synthetic_dfew
from pasn_jax.data.synthetic.plan import SyntheticError

# DFEW's label order, written out independently of the module: label -> ABAW2 expression name
DFEW_LABELS = {1: "Happiness", 2: "Sadness", 3: "Neutral", 4: "Anger", 5: "Surprise", 6: "Disgust", 7: "Fear"}
ABAW = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")
NO_AU, NO_VA = [-1] * 12, [-5.0, -5.0]


def _jpeg(path, value, size=32):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.full((size, size, 3), value, np.uint8)
    with open(path, "wb") as f:
        f.write(simplejpeg.encode_jpeg(pixels, quality=90, colorspace="RGB"))


def _split_path(root, split, fold=1):
    return os.path.join(root, "EmoLabel_DataSplit", f"{split}(single-labeled)", f"set_{fold}.csv")


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write(text)


TRAIN = "video_name,label\n1,1\n00002,3\n7,7\n9,4\n"  # 7: no folder, 9: empty folder
TEST = "\ufeffvideo_name,label\r\n00003,5\r\n\r\n4,6\r\n"  # BOM, CRLF, a blank line


@pytest.fixture
def tree(tmp_path):
    """Fold 1 of a tiny DFEW tree; returns (root, out)."""
    root = str(tmp_path / "DFEW")
    _write(_split_path(root, "train"), TRAIN)
    _write(_split_path(root, "test"), TEST)
    clips = os.path.join(root, "Clip", "clip_224x224")
    for name in ("00001_00001.jpg", "00001_00002.jpg", "00001_00010.jpg"):  # sorted by number: 1, 2, 10
        _jpeg(os.path.join(clips, "00001", name), 10)
    for name in ("00003.jpg", "00001.JPG"):
        _jpeg(os.path.join(clips, "00002", name), 60)
    _jpeg(os.path.join(clips, "00002", "cover.jpg"), 0)  # no frame number: ignored, counted
    _write(os.path.join(clips, "00002", "notes.txt"), "not an image")
    for frame in (1, 2, 3):
        _jpeg(os.path.join(clips, "00003", f"{frame:05d}.jpg"), 120, size=48)
    _jpeg(os.path.join(clips, "00004", "00004_00005.jpg"), 180)
    os.makedirs(os.path.join(clips, "00009"))
    _jpeg(os.path.join(clips, "00005", "00001.jpg"), 240)  # listed in no split file of fold 1: ignored
    return root, str(tmp_path / "out")


def _records(out, split):
    source = shards.ShardSource(out, split)
    return [source[i] for i in range(len(source))]


def test_fold_converts_to_records_with_the_clip_label_on_every_frame(tree):
    root, out = tree
    metadata = dfew.convert(root, out, num_shards=2)
    assert sorted(metadata) == ["test", "train"]
    expected = {
        "train": [("00001", 1, "Happiness", 10), ("00001", 2, "Happiness", 10), ("00001", 10, "Happiness", 10),
                  ("00002", 1, "Neutral", 60), ("00002", 3, "Neutral", 60)],
        "test": [("00003", 1, "Surprise", 120), ("00003", 2, "Surprise", 120), ("00003", 3, "Surprise", 120),
                 ("00004", 5, "Disgust", 180)],
    }
    for split, rows in expected.items():
        records = _records(out, split)
        got = [(r["video"], r["frame"], ABAW[r["expr"]]) for r in records]
        assert got == [row[:3] for row in rows]
        for r, row in zip(records, rows):
            assert r["au"].tolist() == NO_AU and r["va"].tolist() == NO_VA
            assert (r["identity"], r["source"]) == (-1, "dfew")
            assert abs(float(simplejpeg.decode_jpeg(r["image"]).mean()) - row[3]) < 3
    train, test = metadata["train"], metadata["test"]
    assert (train["clips_listed"], train["clips_without_frames"], train["frames_found"]) == (4, 2, 5)
    assert (train["files_without_frame_number"], train["frames_not_sampled"], train["fold"]) == (1, 0, 1)
    assert (test["clips_listed"], test["clips_without_frames"], test["num_records"]) == (2, 0, 4)
    assert test["image_sizes"] == {"32x32": 1, "48x48": 3}
    assert train["label_file"] == os.path.join("EmoLabel_DataSplit", "train(single-labeled)", "set_1.csv")
    assert train["clip_expr_histogram"]["Happiness"] == 1 and train["expr_histogram"]["Happiness"] == 3
    assert dfew.describe(train) == ("train: 5 records from 2 videos in 2 shards; labelled AU 0, EXPR 5, VA 0; fold 1: "
                                    "4 clips listed, 2 without frames skipped, 1 images without frame number ignored")


def test_every_dfew_label_maps_to_its_abaw_expression(tmp_path):
    path = str(tmp_path / "set_1.csv")
    _write(path, "video_name,label\n" + "".join(f"{10 + k},{k}\n" for k in DFEW_LABELS))
    clips = dfew.parse_split_file(path)
    assert [(c.clip, c.label, c.line) for c in clips] == [(10 + k, k, k + 1) for k in DFEW_LABELS]
    assert {k: ABAW[dfew.labels.DFEW_TO_ABAW_EXPR[k]] for k in DFEW_LABELS} == DFEW_LABELS


def test_frames_per_clip_keeps_evenly_spaced_frames(tree):
    root, out = tree
    clip = os.path.join(root, "Clip", "clip_224x224", "00003")
    for frame in range(4, 11):
        _jpeg(os.path.join(clip, f"{frame:05d}.jpg"), 120, size=48)
    metadata = dfew.convert(root, out, num_shards=1, frames_per_clip=4)
    # 10 frames -> the centres of 4 quarters: indices 1, 3, 6, 8; a 1-frame clip keeps its frame
    assert [(r["video"], r["frame"]) for r in _records(out, "test")] == [
        ("00003", 2), ("00003", 4), ("00003", 7), ("00003", 9), ("00004", 5)]
    assert [(r["video"], r["frame"]) for r in _records(out, "train")] == [
        ("00001", 1), ("00001", 2), ("00001", 10), ("00002", 1), ("00002", 3)]
    assert (metadata["test"]["frames_found"], metadata["test"]["frames_not_sampled"]) == (11, 6)
    assert dfew.describe(metadata["test"]).endswith("0 without frames skipped, 6 frames left out by "
                                                    "--frames-per-clip 4")
    assert dfew.evenly_spaced(5, 0) == dfew.evenly_spaced(5, 9) == [0, 1, 2, 3, 4]
    assert dfew.evenly_spaced(16, 1) == [8]


@pytest.mark.parametrize("split,text,line,message", [
    ("train", "video_name,label\n1,0\n", 2, "expected a label in 1..7 (1 Happy, 2 Sad, 3 Neutral, 4 Angry, "
                                            "5 Surprise, 6 Disgust, 7 Fear), got '0'"),
    ("train", "video_name,label\n1,1\n2,8\n", 3, "expected a label in 1..7"),
    ("train", "video_name,label\n1,x\n", 2, "got 'x'"),
    ("train", "video_name,label\n1,1.0\n", 2, "expected a label in 1..7"),
    ("train", "video_name,label\nabc,1\n", 2, "expected a clip number (an integer >= 1), got 'abc'"),
    ("train", "video_name,label\n0,1\n", 2, "expected a clip number (an integer >= 1), got '0'"),
    ("train", "video_name,label\n1,1,2\n", 2, "expected 2 comma-separated values (video_name,label), got '1,1,2'"),
    ("train", "video_name,label\n1,1\n\n5\n", 4, "expected 2 comma-separated values"),
    ("train", "video_name,label\n1,1\n2,2\n00001,3\n", 4, "expected each clip once, got clip 1 again (first on "
                                                          "line 2)"),
    ("train", "name,label\n1,1\n", 1, "expected the header 'video_name,label', got 'name,label'"),
    ("train", "", 1, "expected the header 'video_name,label', got 'an empty file'"),
    ("test", "video_name,label\n3,1\n2,5\n", 3, "expected test clips outside fold 1's training file, got clip 2"),
])
def test_bad_line_names_file_and_line_and_writes_no_split(tree, split, text, line, message):
    root, out = tree
    dfew.convert(root, out, num_shards=1)  # an earlier conversion's claims are withdrawn by the failing one
    path = _split_path(root, split)
    _write(path, text)
    with pytest.raises(dfew.DFEWError) as e:
        dfew.convert(root, out, num_shards=1)
    assert str(e.value).startswith(f"{path}:{line}: ") and message in str(e.value), str(e.value)
    assert "\n" not in str(e.value)
    assert not os.path.exists(os.path.join(out, "train.json")) and not os.path.exists(os.path.join(out, "test.json"))


def test_missing_layout_and_bad_frames_are_named(tree):
    root, out = tree
    clips = os.path.join(root, "Clip", "clip_224x224")
    _jpeg(os.path.join(clips, "00001", "00001.jpg"), 10)  # frame 1 again (as 00001_00001.jpg)
    with pytest.raises(dfew.DFEWError, match=r"00001/00001_00001\.jpg: expected one image per frame, got frame 1 "
                                             r"again \(also 00001\.jpg\)$"):
        dfew.convert(root, out)
    os.remove(os.path.join(clips, "00001", "00001.jpg"))
    _jpeg(os.path.join(clips, "00003", "00000.jpg"), 10)
    with pytest.raises(dfew.DFEWError, match=r"00000\.jpg: expected a frame number >= 1"):
        dfew.convert(root, out)
    os.rename(clips, clips + "_moved")
    os.makedirs(os.path.join(root, "Clip", "original"))
    with pytest.raises(dfew.DFEWError) as e:
        dfew.convert(root, out)
    assert str(e.value).startswith(f"{clips}: missing folder") and "python -m pasn_jax.faces crop --out DIR" in str(
        e.value) and os.path.join("Clip", "original") in str(e.value)
    with pytest.raises(dfew.DFEWError, match=r"set_2\.csv: missing file"):
        dfew.convert(root, out, fold=2)
    for bad, message in ((dict(fold=6), "--fold must be one of 1..5, got 6"),
                         (dict(frames_per_clip=-1), "--frames-per-clip must be >= 0"),
                         (dict(num_shards=0), "--num-shards must be >= 1")):
        with pytest.raises(dfew.DFEWError, match=message):
            dfew.convert(root, out, **bad)
    assert not os.path.exists(out)


def _file_hashes(root):
    hashes = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if name != synthetic_dfew.MARKER_FILE:
                with open(os.path.join(folder, name), "rb") as f:
                    hashes[os.path.relpath(os.path.join(folder, name), root)] = hashlib.sha256(f.read()).hexdigest()
    return hashes


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("dfew") / "synthetic")
    synthetic_dfew.generate(root, clips=10, frames=8, size=48, seed=3)
    return root


def _read_split_files(root, fold):
    """Independent parse of the written split files: {split: {clip: dfew label}} and the clip spellings."""
    result, spellings = {}, []
    for split in ("train", "test"):
        with open(_split_path(root, split, fold)) as f:
            lines = f.read().splitlines()
        assert lines[0] == "video_name,label"
        result[split] = {}
        for line in lines[1:]:
            name, label = line.split(",")
            spellings.append(name)
            result[split][int(name)] = int(label)
    return result, spellings


def test_synthetic_tree_converts_to_the_labels_its_files_hold(synthetic_root, tmp_path):
    with open(os.path.join(synthetic_root, "synthetic_dfew.json")) as f:
        marker = json.load(f)
    assert (marker["generator"], marker["seed"], marker["clips"], marker["frames"]) == (
        "pasn_jax.data.synthetic.dfew", 3, 10, 8)
    plans = {p["clip"]: p for p in marker["clip_plans"]}
    clips = os.path.join(synthetic_root, "Clip", "clip_224x224")
    folders = set(os.listdir(clips))
    # the five folds: every listed clip in exactly one fold's test file and in the other four train files
    listed, test_fold, spellings = set(), {}, []
    for fold in range(1, 6):
        parsed, names = _read_split_files(synthetic_root, fold)
        spellings += names
        assert not set(parsed["train"]) & set(parsed["test"])
        listed |= set(parsed["train"]) | set(parsed["test"])
        for clip, label in parsed["test"].items():
            assert clip not in test_fold and plans[clip]["label"] == label
            assert DFEW_LABELS[label] == plans[clip]["expr_name"]
            test_fold[clip] = fold
    assert len(listed) == 10 and set(test_fold) == listed
    assert any(len(s) < 5 for s in spellings) and any(len(s) == 5 and s.startswith("0") for s in spellings)
    missing = [c for c in listed if f"{c:05d}" not in folders]
    unlisted = [name for name in folders if int(name) not in listed]
    assert len(missing) == 1 and len(unlisted) == 1 and marker["clips_without_frames"] == 1
    names = {n for folder in folders for n in os.listdir(os.path.join(clips, folder))}
    assert any("_" in n for n in names) and any("_" not in n for n in names)
    assert len(folders) == 10 and all(len(os.listdir(os.path.join(clips, folder))) == 8 for folder in folders)

    out = str(tmp_path / "out")
    metadata = dfew.convert(synthetic_root, out, num_shards=2, fold=2)
    parsed, _ = _read_split_files(synthetic_root, 2)
    for split in ("train", "test"):
        expected = [(f"{c:05d}", frame, DFEW_LABELS[parsed[split][c]]) for c in sorted(parsed[split])
                    if c not in missing for frame in range(1, 9)]
        records = _records(out, split)
        assert [(r["video"], r["frame"], ABAW[r["expr"]]) for r in records] == expected
        assert all(r["au"].tolist() == NO_AU and r["va"].tolist() == NO_VA for r in records)
        assert {r["source"] for r in records} == {"synthetic-dfew"}
        assert all(simplejpeg.decode_jpeg_header(r["image"])[:2] == (48, 48) for r in records)
        assert metadata[split]["clips_without_frames"] == sum(c in missing for c in parsed[split])
    assert metadata["train"]["clips_listed"] + metadata["test"]["clips_listed"] == 10
    assert dfew.convert(synthetic_root, out, num_shards=1, source="mine")["test"]["source"] == "mine"


def test_synthetic_generator_is_deterministic_and_ramps_the_expression(synthetic_root, tmp_path):
    again = str(tmp_path / "again")
    marker = synthetic_dfew.generate(again, clips=10, frames=8, size=48, seed=3)
    assert _file_hashes(again) == _file_hashes(synthetic_root)
    other = synthetic_dfew.generate(str(tmp_path / "other"), clips=10, frames=8, size=48, seed=4)
    assert [p["clip"] for p in other["clip_plans"]] != [p["clip"] for p in marker["clip_plans"]]
    expr, drawn, au = synthetic_dfew.clip_expression(3, 0, 8)
    assert au[0].sum() == 0 and (np.diff(au, axis=0) >= 0).all()  # from neutral, rising
    assert drawn.shape == (8, 12) and (drawn[-1] >= drawn[0] - synthetic_dfew.INACTIVE_JITTER).all()
    assert ABAW[expr] == marker["clip_plans"][0]["expr_name"]
    assert [n for n, on in zip(synthetic_dfew.labels.AU_NAMES, au[-1]) if on] == marker["clip_plans"][0]["apex_au"]
    with pytest.raises(SyntheticError, match="already exists"):
        synthetic_dfew.generate(again, clips=10, frames=8, size=48, seed=3)
    with pytest.raises(SyntheticError, match="--clips must be >= 5"):
        synthetic_dfew.generate(str(tmp_path / "small"), clips=4)
