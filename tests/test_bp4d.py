"""BP4D: a tiny tree in the release's documented layout (AU_OCC CSVs with extra AU columns, headers `1` / `AU1` /
`au01`, 9 = unknown, varying zero padding; frames with a synthetic face photograph or none), converted through
MTCNN and read back from the shards with exact labels; every tally; one error line naming file:line for every bad
input and no `<split>.json` after a failed conversion; the synthetic generator's round trip."""

import csv
import glob
import hashlib
import json
import os

import numpy as np
import pytest
import simplejpeg

from pasn_jax import labels
from pasn_jax.data import bp4d, shards
from pasn_jax.data.synthetic import bp4d as synthetic_bp4d
from pasn_jax.data.synthetic.face import sample_identity
from pasn_jax.data.synthetic.frames import photograph

M = labels.AU_MISSING
FACE_SEEDS = (5, 7, 11)  # identities of sample_identity(default_rng([7, s])) that MTCNN finds at 64 px
# F001_T1: plain AU numbers, extra AUs (9, 27) and a frame column named "Frame"; BP4D's 12 coded AUs in order
F001_T1 = ("Frame,1,2,4,6,7,9,10,12,14,15,17,23,24,25,26,27\n"
           "2,1,0,9,1,0,1,1,1,1,0,1,0,0,9,9,5\n"  # AU4 unknown; AU9/14/17/25/26/27 dropped
           "3,9,9,9,9,9,0,9,9,1,9,1,9,9,0,0,0\n"  # every shared AU unknown: skipped
           "4,0,0,1,0,1,9,0,0,0,1,0,1,1,9,9,9\n"
           "6,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1\n")  # no image 6: skipped
# M001_T1: `AU1`/`au01` headers in another column order, CRLF line ends, a byte-order mark, a trailing blank line
M001_T1 = ("\ufeffframe,AU24,au01,AU02,AU04,AU06,AU07,AU10,AU12,AU14,AU15,AU17,AU23\r\n"
           "10,1,0,1,0,0,0,0,0,0,0,0,1\r\n"
           "11,0,1,1,1,1,1,1,1,1,1,1,0\r\n"  # its image shows no face: left out
           "\r\n")
EXPECTED = {  # (video, frame) -> ABAW AUs
    ("F001_T1", 2): (1, 0, M, 1, 0, 1, 1, 0, 0, 0, M, M),
    ("F001_T1", 4): (0, 0, 1, 0, 1, 0, 0, 1, 1, 1, M, M),
    ("M001_T1", 10): (0, 1, 0, 0, 0, 0, 0, 0, 1, 1, M, M),
}
# the images: F001/T1 frames 1 (uncoded), 2, 3, 4, 5 (uncoded) with zero padding varying; M001/T1 frames 10 and 11
# (no face); F001/T3 has an image but no AU_OCC file
IMAGES = {"F001/T1": ("01.jpg", "002.jpg", "3.jpg", "0004.jpg", "5.jpg"), "M001/T1": ("10.jpg", "011.jpg"),
          "F001/T3": ("1.jpg",)}


def _face_jpeg(path: str, k: int) -> None:
    identity = sample_identity(np.random.default_rng([7, FACE_SEEDS[k % len(FACE_SEEDS)]]))
    with open(path, "wb") as f:
        f.write(photograph(identity, np.zeros(labels.NUM_AUS), 64, np.random.default_rng([7, k])))


def _tree(root, files=None) -> str:
    root = str(root)
    for folder, names in IMAGES.items():
        os.makedirs(os.path.join(root, "Sequences", folder))
        for k, name in enumerate(names):
            path = os.path.join(root, "Sequences", folder, name)
            if name == "011.jpg":  # a flat grey frame: no face
                with open(path, "wb") as f:
                    f.write(simplejpeg.encode_jpeg(np.full((48, 48, 3), 128, np.uint8), colorspace="RGB"))
            else:
                _face_jpeg(path, k)
    occ = os.path.join(root, "AUCoding", "AU_OCC")
    os.makedirs(occ)
    for name, text in (files or {"F001_T1.csv": F001_T1, "M001_T1.csv": M001_T1}).items():
        with open(os.path.join(occ, name), "w", newline="") as f:
            f.write(text)
    return root


def _read_back(out: str, split: str) -> dict:
    source = shards.ShardSource(out, split)
    return {(r["video"], int(r["frame"])): r for r in (source[i] for i in range(len(source)))}


def test_hand_written_tree_gives_exact_labels_and_tallies(tmp_path):
    root = _tree(tmp_path / "bp4d")
    out = str(tmp_path / "out")
    result = bp4d.convert(root, out, num_shards=2, size=64, val_subjects=["M001"])
    assert set(result) == {"train", "val"}
    records = {**_read_back(out, "train"), **_read_back(out, "val")}
    assert set(records) == set(EXPECTED)
    for key, record in records.items():
        assert tuple(record["au"]) == EXPECTED[key]
        assert int(record["expr"]) == labels.EXPR_MISSING
        assert tuple(record["va"]) == (labels.VA_MISSING, labels.VA_MISSING)
        assert record["source"] == "bp4d"
        assert simplejpeg.decode_jpeg(record["image"]).shape == (64, 64, 3)
    assert {k[0] for k in _read_back(out, "val")} == {"M001_T1"}
    train, val = result["train"], result["val"]
    assert (train["sequences"], train["label_rows"], train["rows_unknown"], train["frames_without_image"]) == (1, 4, 1,
                                                                                                               1)
    assert train["images_without_label"] == 3  # frames 1 and 5 of F001/T1, and F001/T3 (no AU_OCC file)
    assert (train["num_records"], train["records_left_out"]) == (2, 0)
    assert (val["label_rows"], val["num_records"], val["records_left_out"], val["images_without_label"]) == (2, 1, 1,
                                                                                                            0)
    assert train["image_sizes"] == {"64x64": 2}
    line = bp4d.describe(train)
    assert "\n" not in line and "1 all unknown skipped" in line and "3 images without coded row" in line
    with open(os.path.join(out, "train.json")) as f:
        assert json.load(f)["rows_unknown"] == 1
    # without val_subjects every subject is in train
    assert set(bp4d.subject_splits(root)) == {"train"}
    assert len(bp4d.read_sequences(root, "train", bp4d.subject_splits(root)["train"]).records) == 4


HEADER = "frame,1,2,4,6,7,10,12,14,15,17,23,24\n"
ROW = "1,0,0,0,0,0,0,0,0,0,0,0,0\n"


@pytest.mark.parametrize("text,line,message", [
    ("frame,1,2,4,6,7,10,12,14,17,23,24\n" + "1,0,0,0,0,0,0,0,0,0,0,0\n", 1, "expected a column for AU15"),
    ("frame,1,2,4,6,7,x10,12,14,15,17,23,24\n", 1, "expected AU numbers (e.g. 1, AU1, au01)"),
    ("frame,1,AU1,2,4,6,7,10,12,14,15,17,23,24\n", 1, "expected each AU once, got AU1 twice"),
    ("", 1, "expected a header row"),
    (HEADER + ROW + "2,0,0,0,0,0,0,0,0,0,0,0\n", 3, "expected 13 comma-separated values as in the header, got 12"),
    (HEADER + ROW + "2,0,0,2,0,0,0,0,0,0,0,0,0\n", 3, "expected a frame number >= 1, then the codes 0, 1 or 9"),
    (HEADER + "x,0,0,0,0,0,0,0,0,0,0,0,0\n", 2, "got 'x,0,0"),
    (HEADER + "0,0,0,0,0,0,0,0,0,0,0,0,0\n", 2, "expected a frame number >= 1"),
    (HEADER + "1,0,0,0,0,0,,0,0,0,0,0,0\n", 2, "expected a frame number >= 1, then the codes"),
    (HEADER + ROW + ROW, 3, "expected each frame once, got frame 1 again"),
])
def test_bad_au_occ_gives_one_line_naming_file_and_line_and_no_split(tmp_path, text, line, message):
    # the bad file sorts last: the good one before it is parsed, yet nothing is written
    root = _tree(tmp_path / "bp4d", {"F001_T1.csv": F001_T1, "M001_T1.csv": text})
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.json").write_text("{}")  # an earlier conversion's claim goes too
    with pytest.raises(bp4d.BP4DError) as e:
        bp4d.convert(root, str(out))
    path = os.path.join(root, "AUCoding", "AU_OCC", "M001_T1.csv")
    assert str(e.value).startswith(f"{path}:{line}: ") and message in str(e.value)
    assert "\n" not in str(e.value)
    assert not glob.glob(str(out / "*.json")) and not glob.glob(str(out / "*.tfrecord"))


def test_layout_and_option_errors_name_what_is_missing(tmp_path):
    with pytest.raises(bp4d.BP4DError, match=r"AU_OCC: missing folder"):
        os.makedirs(tmp_path / "a" / "Sequences")
        bp4d.convert(str(tmp_path / "a"), str(tmp_path / "out"))
    with pytest.raises(bp4d.BP4DError, match=r"b.Sequences: missing folder"):
        os.makedirs(tmp_path / "b" / "AUCoding" / "AU_OCC")
        bp4d.convert(str(tmp_path / "b"), str(tmp_path / "out"))
    root = _tree(tmp_path / "c", {"F001T1.csv": HEADER + ROW})
    with pytest.raises(bp4d.BP4DError, match=r"F001T1.csv: expected a file name <subject>_<task>.csv"):
        bp4d.convert(root, str(tmp_path / "out"))
    root = _tree(tmp_path / "d")
    with pytest.raises(bp4d.BP4DError, match=r"val_subjects: no AU_OCC file .* for F099"):
        bp4d.convert(root, str(tmp_path / "out"), val_subjects=["M001", "F099"])
    folder = os.path.join(root, "Sequences", "F001", "T1")
    os.link(os.path.join(folder, "002.jpg"), os.path.join(folder, "2.jpg"))
    with pytest.raises(bp4d.BP4DError, match=r"T1.2.jpg: expected one image per frame, got frame 2 also in .*002.jpg"):
        bp4d.convert(root, str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out" / "train.json")


def _written_labels(root: str) -> dict:
    """(video, frame) -> ABAW AUs of every coded row with an image and a known shared AU, re-read with csv."""
    numbers = {"AU1": 1, "AU2": 2, "AU4": 4, "AU6": 6, "AU7": 7, "AU10": 10, "AU12": 12, "AU15": 15, "AU23": 23,
               "AU24": 24}
    expected = {}
    for path in sorted(glob.glob(os.path.join(root, "AUCoding", "AU_OCC", "*.csv"))):
        video = os.path.basename(path)[:-4]
        subject, task = video.split("_")
        frames = {int(os.path.basename(p)[:-4]) for p in glob.glob(os.path.join(root, "Sequences", subject, task,
                                                                                 "*.jpg"))}
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        column = {int(cell): k for k, cell in enumerate(rows[0]) if k}
        assert sorted(column) == list(range(1, 100))
        for row in rows[1:]:
            codes = {n: int(row[column[n]]) for n in column}
            assert all(codes[n] == 9 for n in column if n not in (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24))
            assert codes[14] in (0, 9) or codes[12] in (1, 9)  # AU14 only with AU12
            abaw = tuple({0: 0, 1: 1, 9: M}[codes[numbers[name]]] if name in numbers else M
                         for name in labels.AU_NAMES)
            if int(row[0]) in frames and any(v != M for v in abaw):
                expected[(video, int(row[0]))] = abaw
    return expected


def _tree_digest(root: str) -> str:
    digest = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
        if os.path.isfile(path) and not path.endswith(".json"):
            digest.update(path[len(root):].encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def test_synthetic_round_trip(tmp_path):
    root = str(tmp_path / "synthetic")
    marker = synthetic_bp4d.generate(root, seed=3)
    assert json.loads(open(os.path.join(root, "synthetic_bp4d.json")).read()) == marker
    assert marker["subject_names"] == ["F001", "M001"] and marker["sequences"] == 4
    assert marker["rows_unknown"] >= 1 and marker["frames_without_image"] >= 1 and marker["images_without_label"] >= 4
    synthetic_bp4d.generate(str(tmp_path / "again"), seed=3)
    assert _tree_digest(root) == _tree_digest(str(tmp_path / "again"))
    expected = _written_labels(root)
    out = str(tmp_path / "out")
    metadata = bp4d.convert(root, out, num_shards=2)["train"]
    assert metadata["source"] == "synthetic-bp4d"
    for key in ("sequences", "label_rows", "rows_unknown", "frames_without_image", "images_without_label"):
        assert metadata[key] == marker[key], key
    assert metadata["num_records"] + metadata["records_left_out"] == len(expected)
    records = _read_back(out, "train")
    assert records and set(records) <= set(expected)
    for key, record in records.items():
        assert tuple(record["au"]) == expected[key]
        assert simplejpeg.decode_jpeg(record["image"]).shape == (112, 112, 3)
    print(f"synthetic BP4D at {marker['size']} px: faces found in {metadata['num_records']}/{len(expected)} frames")
    assert bp4d.convert(root, str(tmp_path / "out2"), source="bp4d")["train"]["source"] == "bp4d"
    with pytest.raises(Exception, match="already exists"):
        synthetic_bp4d.generate(root, seed=3)
