"""AffectNet reader: tiny file lists in the release layout with flat-colour JPEG/PNG images, converted to shards whose
labels and crops are checked by reading the records back; every odd code and VA value; one error line naming
file:line for every bad input and no `<split>.json` after a failed conversion; the synthetic generator's tree
converts to exactly the labels it wrote."""

import csv
import json
import os

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from pasn_jax.data import affectnet, shards
from pasn_jax.data.synthetic import affectnet as synthetic

RED, GREEN, BLUE, WHITE, YELLOW, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (255, 255, 0), (0,) * 3
HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,"
          "arousal")
LM = "1.5;2.5;3.5;4.5"  # landmarks: x;y;... (unused)
TRAIN = [  # line 1 is the header
    f"1/a.jpg,24,0,24,40,{LM},1,0.5,-0.25",  # 2: Happy on the green right half
    f"1/b.png,0,0,40,40,{LM},7,-0.3,0.2",  # 3: Contempt: no EXPR, VA kept
    f"2/c.jpg,0,0,40,40,{LM},0,-2,-2",  # 4: Neutral, VA unannotated
    f"2/d.jpg,0,0,40,40,{LM},8,0.1,0.1",  # 5: None: dropped
    f"2/d.jpg,0,0,40,40,{LM},9,-2,-2",  # 6: Uncertain: dropped
    f"2/d.jpg,0,0,40,40,{LM},10,-2,-2",  # 7: No-Face: dropped
    f"3/gone.jpg,0,0,10,10,{LM},2,0.1,0.1",  # 8: image missing
    f"2/e.jpg,-10,20,30,40,{LM},6,-0.6,-0.7",  # 9: Anger, box clipped to the yellow bottom half
    f"2/f.jpg,50,0,10,10,{LM},5,0.2,0.2",  # 10: box right of the 40 px image: left out when cropping
    f"2/c.jpg,0,0,0,40,{LM},3,0.2,0.2",  # 11: zero width: empty box
    f"1/b.png,0,0,40,40,{LM},7,-2,-2",  # 12: Contempt without VA: no label left
]
VAL = [f"2/c.jpg,0,0,40,40,{LM},{code},0.{code},-0.{code}" for code in range(7)]  # no header line (real copies)


def _write_image(path, bands, size=(40, 40), fmt="JPEG", mode="RGB"):
    """Horizontal (rows) bands of flat colours, size = (width, height)."""
    width, height = size
    rows = np.array_split(np.arange(height), len(bands))
    pixels = np.zeros((height, width, 3), np.uint8)
    for r, colour in zip(rows, bands):
        pixels[r] = colour
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).convert(mode).save(path, format=fmt, quality=95)


def _lists(root, train=TRAIN, val=VAL, train_header=HEADER, newline="\n"):
    lists = os.path.join(root, "Manually_Annotated_file_lists")
    os.makedirs(lists, exist_ok=True)
    paths = {}
    for split, name, lines in (("train", "training.csv", [train_header] + train), ("val", "validation.csv", val)):
        paths[split] = os.path.join(lists, name)
        if lines is not None:
            with open(paths[split], "w", newline="") as f:
                f.write(newline.join(lines) + newline)
    return paths


@pytest.fixture
def root(tmp_path):
    images = tmp_path / "affectnet" / "Manually_Annotated_Images"
    left_right = np.zeros((40, 48, 3), np.uint8)
    left_right[:, :24], left_right[:, 24:] = RED, GREEN
    os.makedirs(images / "1")
    Image.fromarray(left_right).save(images / "1" / "a.jpg", quality=95)
    _write_image(str(images / "1" / "b.png"), [BLUE], fmt="PNG", mode="RGBA")
    for name, bands in {"c.jpg": [WHITE], "d.jpg": [WHITE], "e.jpg": [BLACK, YELLOW], "f.jpg": [WHITE]}.items():
        _write_image(str(images / "2" / name), bands)
    return str(tmp_path / "affectnet")


def _records(out, split):
    source = shards.ShardSource(out, split)
    return [source[i] for i in range(len(source))]


def _labels(records):
    return [(r["video"], r["expr"], tuple(np.round(r["va"].astype(float), 4))) for r in records]


def _colour(record):
    return simplejpeg.decode_jpeg(record["image"]).reshape(-1, 3).mean(0)


def test_conversion_maps_codes_va_and_crops(root, tmp_path):
    _lists(root)
    out = str(tmp_path / "out")
    metadata = affectnet.convert(root, out, num_shards=2, size=16)
    train = _records(out, "train")
    assert _labels(train) == [("1/a.jpg", 4, (0.5, -0.25)), ("1/b.png", -1, (-0.3, 0.2)),
                              ("2/c.jpg", 0, (-5.0, -5.0)), ("2/e.jpg", 1, (-0.6, -0.7))]
    for record, colour in zip(train, (GREEN, BLUE, WHITE, YELLOW)):
        assert np.abs(_colour(record) - colour).max() < 12, (record["video"], _colour(record))
        assert (record["frame"], record["identity"], record["source"]) == (1, -1, "affectnet")
        assert record["au"].tolist() == [-1] * 12
        assert simplejpeg.decode_jpeg_header(record["image"])[:2] == (16, 16)
    m = metadata["train"]
    assert (m["rows"], m["num_records"], m["records_left_out"]) == (11, 4, 1)
    assert m["dropped"] == {"none": 1, "uncertain": 1, "no_face": 1}
    assert (m["missing_images"], m["empty_boxes"], m["contempt"], m["va_unannotated"], m["va_out_of_range"],
            m["unlabelled"]) == (1, 1, 2, 2, 0, 1)
    assert m["labelled"] == {"au": 0, "expr": 3, "va": 3}
    assert affectnet.describe(m) == (
        "train: 4 records from 4 videos in 2 shards; labelled AU 0, EXPR 3, VA 3; of 11 rows dropped 1 None, "
        "1 Uncertain, 1 No-Face, 1 with missing image, 2 empty face boxes, 1 without label; 2 Contempt (no EXPR), "
        "2 VA -2, 0 VA outside va_range")
    # validation.csv has no header line: read in the release's column order; codes 0..6 -> ABAW2 classes
    assert _labels(_records(out, "val")) == [("2/c.jpg", e, (c / 10, -c / 10)) for c, e in
                                             enumerate((0, 4, 5, 6, 3, 2, 1))]
    assert metadata["val"]["rows"] == 7 and metadata["val"]["source"] == "affectnet"


def test_va_range_filter_keeps_expr(root, tmp_path):
    _lists(root, val=None)
    out = str(tmp_path / "out")
    m = affectnet.convert(root, out, num_shards=1, size=16, va_range=(-1, -0.25))["train"]
    assert _labels(_records(out, "train")) == [("1/a.jpg", 4, (-5.0, -5.0)), ("2/c.jpg", 0, (-5.0, -5.0)),
                                               ("2/e.jpg", 1, (-0.6, -0.7))]
    # out of range: a, b and f (whose box is only found empty when cropping); b is left with no label
    assert (m["va_out_of_range"], m["unlabelled"], list(m["va_range"])) == (3, 2, [-1.0, -0.25])
    assert not os.path.exists(os.path.join(out, "val.json"))  # validation.csv absent: only train
    assert "VA outside va_range [-1, -0.25]" in affectnet.describe(m)


def test_header_picks_columns_by_name_bom_crlf_and_large_jpeg(root, tmp_path):
    order = [5, 8, 0, 6, 1, 2, 3, 4, 7]  # a permutation of the columns
    names = HEADER.split(",")
    big = os.path.join(root, "Manually_Annotated_Images", "9", "big.jpg")
    pixels = np.zeros((400, 400, 3), np.uint8)
    pixels[:, :200], pixels[:, 200:] = RED, GREEN
    os.makedirs(os.path.dirname(big))
    Image.fromarray(pixels).save(big, quality=95)
    rows = [f"9/big.jpg,210,10,180,380,{LM},3,0.25,0.75".split(",")]  # shrinks by > 2: decoded at reduced scale
    train = [",".join(row[i] for i in order) for row in rows]
    _lists(root, train=train, val=None, train_header="\ufeff" + ",".join(names[i] for i in order), newline="\r\n")
    out = str(tmp_path / "out")
    affectnet.convert(root, out, num_shards=1, size=16)
    (record,) = _records(out, "train")
    assert _labels([record]) == [("9/big.jpg", 6, (0.25, 0.75))]
    assert np.abs(_colour(record) - GREEN).max() < 12


BAD_LINES = [
    (f"1/a.jpg,0,0,10,10,{LM},11,0,0", "expected an expression code in 0..10, got '11'"),
    (f"1/a.jpg,0,0,10,10,{LM},x,0,0", "expected an expression code in 0..10, got 'x'"),
    (f"1/a.jpg,0,0,10,10,{LM},1,1.5,0", "expected valence and arousal in [-1, 1] or -2, got '1.5,0'"),
    (f"1/a.jpg,0,0,10,10,{LM},1,0,nan", "expected valence and arousal in [-1, 1] or -2, got '0,nan'"),
    (f"1/a.jpg,0,0,10,10,{LM},1,-3,-2", "expected valence and arousal in [-1, 1] or -2, got '-3,-2'"),
    (f"1/a.jpg,0,0,ten,10,{LM},1,0,0", "expected 4 box numbers"),
    (f"1/a.jpg,0,0,10,10,{LM},1,0", "expected 9 comma-separated fields, got 8"),
    (f"../a.jpg,0,0,10,10,{LM},1,0,0", "expected a relative image path"),
]


@pytest.mark.parametrize("line, message", BAD_LINES + [("header", "expected a header naming the columns")])
@pytest.mark.parametrize("bad_split", ["train", "val"])
def test_bad_line_is_one_error_naming_file_and_line_and_writes_nothing(root, tmp_path, line, message, bad_split):
    out = str(tmp_path / "out")
    _lists(root)
    affectnet.convert(root, out, num_shards=1, size=16)  # an earlier, whole conversion
    assert os.path.exists(os.path.join(out, "train.json")) and os.path.exists(os.path.join(out, "val.json"))
    good = [f"1/a.jpg,24,0,24,40,{LM},1,0.5,-0.25"]
    if line == "header":
        train_header, lineno = HEADER.replace("valence", "valance"), 1
        lines = good if bad_split == "train" else VAL
    else:
        train_header, lineno = HEADER, 3 if bad_split == "train" else 2
        lines = good + [line] + good if bad_split == "train" else VAL[:1] + [line]
    if line == "header" and bad_split == "val":  # a header with a misspelt column in validation.csv
        paths = _lists(root, train=good, val=[HEADER.replace("arousal", "arousel")] + VAL)
    elif bad_split == "train":
        paths = _lists(root, train=lines, train_header=train_header)
    else:
        paths = _lists(root, train=good, val=lines)
    with pytest.raises(affectnet.AffectNetError) as error:
        affectnet.convert(root, out, num_shards=1, size=16)
    text = str(error.value)
    assert "\n" not in text and text.startswith(f"{paths[bad_split]}:{lineno}: ") and message in text, text
    assert not os.path.exists(os.path.join(out, "train.json")) and not os.path.exists(os.path.join(out, "val.json"))


def test_missing_layout_undecodable_image_and_options(root, tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(affectnet.AffectNetError, match="Manually_Annotated_file_lists: missing folder"):
        affectnet.convert(root, out)
    os.makedirs(os.path.join(root, "Manually_Annotated_file_lists"))
    with pytest.raises(affectnet.AffectNetError, match=r"file_lists: missing files \(expected training.csv and/or "
                                                       r"validation.csv\)"):
        affectnet.convert(root, out)
    with pytest.raises(affectnet.AffectNetError, match="va-range"):
        affectnet.convert(root, out, va_range=(0.5, -0.5))
    bad = os.path.join(root, "Manually_Annotated_Images", "2", "d.jpg")
    with open(bad, "wb") as f:
        f.write(b"not an image")
    paths = _lists(root, train=[f"2/d.jpg,0,0,40,40,{LM},1,0,0"], val=None)
    with pytest.raises(affectnet.AffectNetError) as error:
        affectnet.convert(root, out, num_shards=1, size=16)
    assert str(error.value).startswith(f"{bad}: not a decodable image") and f"{paths['train']}:2" in str(error.value)
    assert not os.path.exists(os.path.join(out, "train.json"))


def _read_csv(path):
    """(line, row dict) of a file list, read independently of the reader (the generator writes a header)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return [(reader.line_num, row) for row in reader]


def test_synthetic_tree_converts_to_the_labels_it_wrote(tmp_path):
    root, out = str(tmp_path / "syn"), str(tmp_path / "out")
    marker = synthetic.generate(root, images=24, val_images=8, size=48, seed=3)
    assert (marker["generator"], marker["seed"], marker["images"], marker["val_images"]) == \
        ("pasn_jax.data.synthetic.affectnet", 3, 24, 8)
    with open(os.path.join(root, "synthetic_affectnet.json")) as f:
        assert json.load(f) == marker
    plans = synthetic.plan_images(24, 8, 48, 3)
    metadata = affectnet.convert(root, out, num_shards=2, size=48)
    images_dir = os.path.join(root, "Manually_Annotated_Images")
    abaw = {0: 0, 1: 4, 2: 5, 3: 6, 4: 3, 5: 2, 6: 1}
    for split, name in (("train", "training.csv"), ("val", "validation.csv")):
        rows = _read_csv(os.path.join(root, "Manually_Annotated_file_lists", name))
        split_plans = [p for p in plans if p.split == split]
        assert [r["subDirectory_filePath"] for _, r in rows] == [p.path for p in split_plans]
        assert [int(r["expression"]) for _, r in rows] == [p.code for p in split_plans]
        assert [(float(r["valence"]), float(r["arousal"])) for _, r in rows] == [p.va for p in split_plans]
        expected, codes = [], [int(r["expression"]) for _, r in rows]
        for (_, r), p in zip(rows, split_plans):
            box = tuple(int(r[k]) for k in ("face_x", "face_y", "face_width", "face_height"))
            assert box == p.box and box[2:] == (48, 48)
            points = np.array(r["facial_landmarks"].split(";"), float).reshape(68, 2)
            assert np.all((points >= box[:2]) & (points <= np.add(box[:2], box[2:])))
            exists = os.path.isfile(os.path.join(images_dir, *r["subDirectory_filePath"].split("/")))
            assert exists != p.missing
            code, va = int(r["expression"]), (float(r["valence"]), float(r["arousal"]))
            assert all(-1 <= v <= 1 for v in va) or va == (-2.0, -2.0)
            if code >= 8 or not exists or (code == 7 and va[0] == -2):
                continue
            expected.append((r["subDirectory_filePath"], abaw.get(code, -1), (-5.0, -5.0) if va[0] == -2 else va))
        records = _records(out, split)
        assert _labels(records) == expected
        assert {r["source"] for r in records} == {"synthetic-affectnet"}
        m = metadata[split]
        assert m["rows"] == len(rows) == marker["counts"][split]["rows"]
        assert m["missing_images"] == marker["counts"][split]["missing_images"] == 1
        assert [codes.count(c) for c in range(11)] == list(marker["counts"][split]["codes"].values())
        assert all(c in codes for c in (7, 8, 9, 10)) and any(p.png and not p.missing for p in split_plans)
        assert any(p.va == (-2.0, -2.0) and p.code < 7 for p in split_plans)
        assert m["num_records"] == len(expected) and m["records_left_out"] == 0 and m["empty_boxes"] == 0
    # the crop is the face the box names: the source image's box region, as converted
    first = next(p for p in plans if not p.missing and p.code < 7)
    (record,) = [r for r in _records(out, first.split) if r["video"] == first.path]
    with Image.open(os.path.join(images_dir, *first.path.split("/"))) as image:
        x, y, w, h = first.box
        region = np.asarray(image.convert("RGB"), np.float32)[y:y + h, x:x + w]
    assert np.abs(simplejpeg.decode_jpeg(record["image"]).astype(np.float32) - region).mean() < 8


def test_synthetic_generator_is_deterministic_and_atomic(tmp_path):
    def tree(path):
        files = {}
        for folder, _, names in os.walk(path):
            for name in names:
                if name != "synthetic_affectnet.json":
                    with open(os.path.join(folder, name), "rb") as f:
                        files[os.path.relpath(os.path.join(folder, name), path)] = f.read()
        return files

    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        synthetic.generate(str(tmp_path / name), images=8, val_images=6, size=32, seed=seed)
    assert tree(tmp_path / "a") == tree(tmp_path / "b") != tree(tmp_path / "c")
    with pytest.raises(ValueError, match="already exists"):
        synthetic.generate(str(tmp_path / "a"), images=8, val_images=6, size=32, seed=1)
    with pytest.raises(ValueError, match="--images"):
        synthetic.generate(str(tmp_path / "d"), images=0, size=32)
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "c"]
