"""FEC triplets: a tiny CSV in the dataset's documented layout and flat-colour images, converted to triplet shards
whose crops are checked by colour; majority vote and ties; one error line naming file:line for every bad input,
and no `<split>.json` after a failed conversion."""

import os

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from pasn_jax.data import fec, shards

RED, GREEN, BLUE, CYAN, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 255, 255), (255, 255, 255)
YELLOW, MAGENTA, ORANGE = (255, 255, 0), (255, 0, 255), (255, 128, 0)
FULL = "0,1,0,1"
LINES = [
    # line 1: face 3 is the odd one out (4 of 6 votes)
    (f"http://h/img/a.jpg,{FULL},http://h/img/b.jpg,{FULL},http://h/img/c.jpg,{FULL},ONE_CLASS_TRIPLET,"
     "r1,3,r2,3,r3,1,r4,3,r5,2,r6,3"),
    # line 2: the left and right halves of one image; a quoted URL with a comma; face 1 is odd
    ('http://h/img/d.jpg,0,0.5,0,1,http://h/img/d.jpg,0.5,1,0,1,"http://h/x/a,b.jpg",0,1,0,1,TWO_CLASS_TRIPLET,'
     "r1,1,r2,1,r3,1,r4,1,r5,2,r6,2"),
    # line 3: a tie, dropped
    (f"http://h/img/a.jpg,{FULL},http://h/img/b.jpg,{FULL},http://h/img/c.jpg,{FULL},THREE_CLASS_TRIPLET,"
     "r1,1,r2,1,r3,2,r4,2,r5,3,r6,3"),
    "",
    # line 5: a query string, quoted numbers, one annotator
    ('"http://h/img/e.jpg?size=large&x=1","0.0","1.0","0.0","1.0",http://h/img/a.jpg,0,1,0,1,'
     "http://h/img/c.jpg,0,1,0,1,THREE_CLASS_TRIPLET,r9,2"),
]


def _image(path, colours, size=24):
    """A JPEG of vertical bands of flat colours."""
    pixels = np.concatenate([np.full((size, size // len(colours), 3), c, np.uint8) for c in colours], axis=1)
    with open(path, "wb") as f:
        f.write(simplejpeg.encode_jpeg(pixels, quality=95, colorspace="RGB"))


@pytest.fixture
def tree(tmp_path):
    images = tmp_path / "images"
    os.makedirs(images / "sub")
    for name, colours in {"a.jpg": [RED], "b.jpg": [GREEN], "c.jpg": [BLUE], "e.jpg": [CYAN],
                          "a,b.jpg": [WHITE], "sub/other.jpg": [ORANGE]}.items():
        _image(images / name, colours)
    _image(images / "d.jpg", [YELLOW, MAGENTA], size=32)
    csv_path = tmp_path / "train.csv"
    csv_path.write_text("\n".join(LINES) + "\n")
    return str(csv_path), str(images), str(tmp_path / "out")


def _colours(record):
    return [tuple(simplejpeg.decode_jpeg(image).reshape(-1, 3).mean(0)) for image in record["images"]]


def _assert_colours(record, expected):
    for got, want in zip(_colours(record), expected, strict=True):
        assert np.abs(np.subtract(got, want)).max() < 12, (record["key"], got, want)


def test_odd_one_out_is_the_majority_answer():
    faces = (fec.Face("u", (0, 1, 0, 1)),) * 3
    for answers, odd in (((1, 1, 2),  0), ((3,), 2), ((1, 2), None), ((1, 1, 2, 2, 3), None), ((2, 3, 3, 1), 2)):
        assert fec.Triplet(faces, 1, answers, 1).odd_one_out() == odd


def test_conversion_writes_the_similar_faces_first_and_the_odd_one_last(tree, monkeypatch):
    csv_path, images, out = tree
    opened, real_open = [], Image.open
    monkeypatch.setattr(fec.Image, "open", lambda path, *a, **k: opened.append(path) or real_open(path, *a, **k))
    metadata = fec.convert(csv_path, images, out, "train", size=16, num_shards=2)
    assert sorted(opened) == sorted(set(opened)) and len(opened) == 6  # each image decoded once (a, c: twice used)
    assert (metadata["num_records"], metadata["record"], metadata["source"]) == (3, "triplet", "fec")
    assert (metadata["lines"], metadata["ties_dropped"], metadata["missing_images_skipped"]) == (4, 1, 0)
    assert metadata["triplet_types"] == {"1_class": 1, "2_class": 1, "3_class": 1}
    assert fec.describe(metadata) == ("train: 3 triplets (1 1-class, 1 2-class, 1 3-class) in 2 shards from 4 lines; "
                                      "1 ties dropped, 0 with missing images skipped")
    source = shards.ShardSource(out, "train")
    records = [source[i] for i in range(len(source))]
    assert [(r["key"], r["triplet_type"], r["source"]) for r in records] == [
        ("train.csv:1", 1, "fec"), ("train.csv:2", 2, "fec"), ("train.csv:5", 3, "fec")]
    assert all(simplejpeg.decode_jpeg_header(i)[:2] == (16, 16) for r in records for i in r["images"])
    _assert_colours(records[0], [RED, GREEN, BLUE])
    _assert_colours(records[1], [MAGENTA, WHITE, YELLOW])
    _assert_colours(records[2], [CYAN, BLUE, RED])


def test_parse_csv_reads_the_documented_columns(tree):
    triplets = fec.parse_csv(tree[0])
    assert [t.line for t in triplets] == [1, 2, 3, 5]
    assert triplets[1].faces[2] == fec.Face("http://h/x/a,b.jpg", (0.0, 1.0, 0.0, 1.0))
    assert triplets[1].faces[0].box == (0.0, 0.5, 0.0, 1.0) and triplets[3].answers == (2,)
    assert fec.MARGINS[triplets[0].triplet_type] == 0.1


@pytest.mark.parametrize("line,message", [
    (LINES[0].rsplit(",", 1)[0], "then one or more (annotator, answer) pairs, got 27 columns"),
    (LINES[0].split("ONE_CLASS")[0] + "ONE_CLASS_TRIPLET", "got 16 columns"),
    (LINES[1].replace("0,0.5,", "0,abc,", 1), "face 1: expected 4 box numbers, got 0,abc,0,1"),
    (LINES[1].replace("0,0.5,", "0,1.5,", 1), "face 1: expected a box (left, right, top, bottom) in [0, 1]"),
    (LINES[1].replace("0.5,1,0,1", "0.5,0.4,0,1", 1), "face 2: expected a box"),
    (LINES[0].replace("ONE_CLASS", "FOUR_CLASS"), "TWO_CLASS_TRIPLET, THREE_CLASS_TRIPLET, got 'FOUR_CLASS_TRIPLET'"),
    (LINES[0].replace("r5,2", "r5,4"), "expected annotations in 1..3 (the odd face), got 3,3,1,3,4,3"),
])
def test_malformed_line_names_file_and_line(tree, line, message):
    csv_path, images, out = tree
    with open(csv_path, "w") as f:
        f.write(LINES[0] + "\n" + line + "\n")
    with pytest.raises(fec.FECError) as e:
        fec.convert(csv_path, images, out, "train")
    assert str(e.value).startswith(f"{csv_path}:2: ") and message in str(e.value)
    assert "\n" not in str(e.value) and not os.path.exists(os.path.join(out, "train.json"))


def test_missing_image_names_file_and_line_and_leaves_no_split(tree):
    csv_path, images, out = tree
    fec.convert(csv_path, images, out, "train", size=16)
    os.remove(os.path.join(images, "c.jpg"))
    with pytest.raises(fec.FECError) as e:
        fec.convert(csv_path, images, out, "train", size=16)
    assert str(e.value) == (f"{csv_path}:1: face 3: image {os.path.join(images, 'c.jpg')} missing "
                            "(URL http://h/img/c.jpg)")
    assert not os.path.exists(os.path.join(out, "train.json"))
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    metadata = fec.convert(csv_path, images, out, "train", size=16, skip_missing=True)
    assert (metadata["num_records"], metadata["ties_dropped"], metadata["missing_images_skipped"]) == (1, 1, 2)
    assert shards.ShardSource(out, "train")[0]["key"] == "train.csv:2"


def test_undecodable_image_and_empty_box(tree):
    csv_path, images, out = tree
    with open(os.path.join(images, "b.jpg"), "wb") as f:
        f.write(b"not an image")
    with pytest.raises(fec.FECError) as e:
        fec.convert(csv_path, images, out, "train", size=16)
    assert str(e.value).startswith(f"{os.path.join(images, 'b.jpg')}: not a decodable image")
    assert str(e.value).endswith(f"needed by {csv_path}:1") and not os.path.exists(os.path.join(out, "train.json"))
    with open(csv_path, "w") as f:  # 0.01 of 24 px rounds to an empty box
        f.write(LINES[1] + "\n" + LINES[0].replace("a.jpg,0,1,", "a.jpg,0,0.01,", 1) + "\n")
    with pytest.raises(fec.FECError) as e:
        fec.convert(csv_path, images, out, "train", size=16)
    assert str(e.value).startswith(f"{csv_path}:2: face box (0.0, 0.01, 0.0, 1.0) is empty on the 24x24 image")


def test_url_map_overrides_the_file_name_rule(tree):
    csv_path, images, out = tree
    map_path = os.path.join(os.path.dirname(csv_path), "map.csv")
    with open(map_path, "w") as f:
        f.write(f"http://h/img/a.jpg,sub/other.jpg\nhttp://h/img/b.jpg,{os.path.join(images, 'e.jpg')}\n")
    paths = fec.image_paths(fec.parse_csv(csv_path), images, url_map=map_path)
    assert paths["http://h/img/a.jpg"] == os.path.join(images, "sub/other.jpg")
    assert paths["http://h/img/b.jpg"] == os.path.join(images, "e.jpg")
    assert paths["http://h/img/e.jpg?size=large&x=1"] == os.path.join(images, "e.jpg")  # not in the map
    assert paths["http://h/x/a,b.jpg"] == os.path.join(images, "a,b.jpg")
    fec.convert(csv_path, images, out, "train", url_map=map_path, size=16)
    source = shards.ShardSource(out, "train")
    _assert_colours(source[0], [ORANGE, CYAN, BLUE])
    _assert_colours(source[2], [CYAN, BLUE, ORANGE])
    with open(map_path, "w") as f:
        f.write("http://h/img/a.jpg\n")
    with pytest.raises(fec.FECError, match=f"^{map_path}:1: expected 'url,path', got 1 columns$"):
        fec.image_paths(fec.parse_csv(csv_path), images, url_map=map_path)


def test_a_face_repeated_within_a_triplet(tree):
    csv_path, images, out = tree
    with open(csv_path, "w") as f:
        f.write(LINES[0].replace("b.jpg", "a.jpg") + "\n" + LINES[4] + "\n")
    fec.convert(csv_path, images, out, "train", size=16)
    source = shards.ShardSource(out, "train")
    _assert_colours(source[0], [RED, RED, BLUE])
    _assert_colours(source[1], [CYAN, BLUE, RED])
