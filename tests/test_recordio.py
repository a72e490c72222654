"""insightface RecordIO sets without MXNet: the reader against records built by hand from the documented format,
dmlc's multipart cutting, the round trip to frame shards, verification .bin files read with nothing executed, and
one error line naming the file and record for every bad input."""

import collections
import os
import pickle
import pickletools
import struct
from pathlib import Path

import numpy as np
import pytest
import simplejpeg

from pasn_jax.data import insightface, recordio, shards, verification_bin

MAGIC = struct.pack("<I", 0xCED7230A)


def _jpeg(colour, size=16) -> bytes:
    return simplejpeg.encode_jpeg(np.full((size, size, 3), colour, np.uint8), quality=90)


def _part(cflag: int, data: bytes) -> bytes:
    """One RecordIO part as the format documents it: magic, (cflag << 29) | length, data (unpadded)."""
    return MAGIC + struct.pack("<I", (cflag << 29) | len(data)) + data


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _write_folder(root, records, property_text="2,16,16", idx_lines=None):
    """A training set folder from (key, raw record bytes) written in order; returns {key: offset}."""
    os.makedirs(root, exist_ok=True)
    offsets, position = {}, 0
    with open(os.path.join(root, "train.rec"), "wb") as f:
        for key, raw in records:
            offsets[key] = position
            f.write(raw)
            position += len(raw)
    with open(os.path.join(root, "train.idx"), "w") as f:
        f.write(idx_lines if idx_lines is not None else "".join(f"{k}\t{o}\n" for k, o in offsets.items()))
    with open(os.path.join(root, "property"), "w") as f:
        f.write(property_text + "\n")
    return offsets


def _identities():
    """Three identities of 2, 1 and 3 images of distinct colours; the last image carries the magic number at a
    4-aligned offset of its payload (after the JPEG's end), so it is written in parts."""
    colours = [[(255, 0, 0), (0, 255, 0)], [(0, 0, 255)], [(255, 255, 0), (0, 255, 255), (255, 0, 255)]]
    images = [[_jpeg(c) for c in person] for person in colours]
    last = images[2][2]
    images[2][2] = last + b"\0" * (-len(last) % 4) + MAGIC + b"tail"  # the payload's header is 24 bytes: aligned
    return images


def test_reader_reads_records_built_by_hand(tmp_path):
    image0, blob = _jpeg((10, 20, 30)), b"ABCD" + MAGIC + b"xyz"
    header = struct.pack("<IfQQ", 2, 0.0, 0, 0) + struct.pack("<2f", 3, 5)  # images 1..2, identities 3..4
    one = struct.pack("<IfQQ", 0, 0.0, 1, 0) + image0  # flag 0: the label is the identity
    two = struct.pack("<IfQQ", 2, 0.0, 2, 0) + struct.pack("<2f", 1, 7) + blob  # flag 2: label[0] is
    split = 24 + 8 + 4  # the magic sits at this aligned offset of record two: parts 1 and 3, magic dropped
    two_raw = _pad(_part(1, two[:split]) + _part(3, two[split + 4:]))
    ranges = [struct.pack("<IfQQ", 2, 0.0, 0, 0) + struct.pack("<2f", a, b) for a, b in ((1, 2), (2, 3))]
    _write_folder(tmp_path, [(0, _pad(_part(0, header))), (1, _pad(_part(0, one))), (2, two_raw),
                             (3, _pad(_part(0, ranges[0]))), (4, _pad(_part(0, ranges[1])))])
    records = insightface.IdentityRecords(str(tmp_path))
    assert (len(records), records.num_classes, records.image_size) == (2, 2, 16)
    assert list(records) == [(0, image0, 1), (1, blob, 2)]
    assert records.payload(2) == two
    flag, values, rest = recordio.unpack(records.payload(4), "r4")
    assert (flag, values.tolist(), rest) == (2, [2.0, 3.0], b"")


def test_writer_cuts_parts_as_dmlc_does(tmp_path):
    cut = b"abcd" + MAGIC + b"efgh" + MAGIC + MAGIC + b"ijk"  # aligned magics at 4, 12 and 16
    whole = b"x" + MAGIC + b"yz"  # an unaligned magic is not cut
    image = recordio.pack_image(0, _jpeg((1, 2, 3)))
    n = recordio.write_records(str(tmp_path / "train.rec"), str(tmp_path / "train.idx"),
                               [(0, image), (5, cut), (7, whole)])
    expected_cut = (_part(1, b"abcd") + _part(2, b"efgh") + _part(2, b"") + _part(3, b"ijk") + b"\0")
    expected = _pad(_part(0, image)) + expected_cut + _part(0, whole) + b"\0"  # 7 data bytes: padded to 8
    assert n == 3 and (tmp_path / "train.rec").read_bytes() == expected
    offsets = [0, len(_pad(_part(0, image))), len(_pad(_part(0, image))) + len(expected_cut)]
    assert (tmp_path / "train.idx").read_text() == "".join(f"{k}\t{o}\n" for k, o in zip((0, 5, 7), offsets))
    assert sorted(os.listdir(tmp_path)) == ["train.idx", "train.rec"]  # no temporaries left
    (tmp_path / "property").write_text("1,16,16\n")
    records = insightface.IdentityRecords(str(tmp_path))  # record 0 has flag 0: every key is an image
    assert len(records) == 3 and records.payload(5) == cut and records.payload(7) == whole


def test_pack_and_unpack():
    assert recordio.pack_image(4, b"jpg", 9) == struct.pack("<IfQQ", 0, 4.0, 9, 0) + b"jpg"
    labelled = struct.pack("<IfQQ", 2, 0.0, 0, 0) + struct.pack("<2f", 1, 2.5) + b"x"
    assert recordio.pack_labels([1, 2.5], b"x") == labelled
    flag, values, rest = recordio.unpack(recordio.pack_labels([3, 4], b"img"), "here")
    assert (flag, values.dtype, values.tolist(), rest) == (2, np.float32, [3.0, 4.0], b"img")
    with pytest.raises(recordio.RecordIOError, match="^here: header says 3 labels, the payload holds only 2$"):
        recordio.unpack(struct.pack("<IfQQ", 3, 0.0, 0, 0) + b"\0" * 8, "here")


def test_round_trip_to_frame_shards(tmp_path):
    people = _identities()
    root, out = str(tmp_path / "set"), str(tmp_path / "shards")
    assert insightface.write_identity_set(root, iter(people), 16) == {"num_identities": 3, "num_images": 6}
    assert sorted(os.listdir(root)) == ["property", "train.idx", "train.rec"]
    assert (tmp_path / "set" / "property").read_text() == "3,16,16\n"
    records = insightface.IdentityRecords(root)
    expected = [(k, image) for k, person in enumerate(people) for image in person]
    assert [(r[0], r[1]) for r in records] == expected and [r[2] for r in records] == list(range(1, 7))
    # record 0 says (A, B) = (7, 10); records 7..9 give each identity's image range
    assert recordio.unpack(records.payload(0), "r0")[1].tolist() == [7.0, 10.0]
    assert [recordio.unpack(records.payload(k), "r")[1].tolist() for k in (7, 8, 9)] == [[1, 3], [3, 4], [4, 7]]
    assert (tmp_path / "set" / "train.rec").read_bytes().count(_part(1, b"")[:4]) > 10  # the last image has parts

    metadata = insightface.convert_identities(root, out, num_shards=2)
    assert (metadata["num_records"], metadata["num_identities"], metadata["num_classes"]) == (6, 3, 3)
    assert metadata["record"] == "frame" and metadata["image_sizes"] == {"16x16": 6}
    source = shards.ShardSource(out, "train")
    got = [source[i] for i in range(len(source))]
    assert [(r["identity"], r["image"]) for r in got] == expected
    assert [(r["video"], r["frame"]) for r in got] == [(f"identity_{k:06d}", i + 1) for i, (k, _) in
                                                       enumerate(expected)]
    assert all(r["au"].tolist() == [-1] * 12 and r["expr"] == -1 and r["va"].tolist() == [-5.0, -5.0]
               and r["source"] == "recordio" for r in got)


def _error(excinfo, *parts):
    message = str(excinfo.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, message
    return message


def test_bad_records_name_the_file_and_record(tmp_path):
    root = str(tmp_path / "set")
    insightface.write_identity_set(root, _identities(), 16)
    rec = os.path.join(root, "train.rec")
    offsets = dict(line.split("\t") for line in Path(root, "train.idx").read_text().splitlines())
    original = Path(rec).read_bytes()

    with open(rec, "r+b") as f:  # bad magic at image record 2
        f.seek(int(offsets["2"]))
        f.write(b"\0\0\0\0")
    with pytest.raises(recordio.RecordIOError) as e:
        insightface.IdentityRecords(root)[1]
    _error(e, rec, "record 2", "bad magic 0x00000000", "expected 0xCED7230A")

    with open(rec, "wb") as f:  # truncated in the middle of image record 6
        f.write(original[:int(offsets["6"]) + 20])
    with pytest.raises(recordio.RecordIOError) as e:
        insightface.IdentityRecords(root)[5]
    _error(e, rec, "record 6", "truncated")

    broken = bytearray(original)  # record 4 made to start with a last part (cflag 3)
    broken[int(offsets["4"]) + 7] |= 3 << 5
    Path(rec).write_bytes(bytes(broken))
    with pytest.raises(recordio.RecordIOError) as e:
        insightface.IdentityRecords(root)[3]
    _error(e, rec, "record 4", "multipart sequence broken", "cflag 3")

    Path(rec).write_bytes(original)
    (tmp_path / "set" / "property").write_text("2,16,16\n")  # identity 2 is outside [0, 2)
    with pytest.raises(recordio.RecordIOError) as e:
        insightface.IdentityRecords(root)[3]
    _error(e, rec, "record 4", "label 2 is not an identity in [0, 2)")


@pytest.mark.parametrize("name,text,parts", [
    ("property", "85742,112\n", ["property:1:", "expected 'num_classes,height,width'", "got '85742,112'"]),
    ("property", "a,b,c\n", ["property:1:", "expected 'num_classes,height,width'"]),
    ("train.idx", "0\t0\n1 40\n", ["train.idx:2:", "expected 'key<TAB>offset'", "got '1 40'"]),
    ("train.idx", "0\t0\n1\t-3\n", ["train.idx:2:", "expected 'key<TAB>offset'"]),
    ("train.idx", "0\t0\n0\t40\n", ["train.idx:", "key 0 listed twice"]),
])
def test_bad_property_or_idx_line(tmp_path, name, text, parts):
    root = str(tmp_path / "set")
    insightface.write_identity_set(root, _identities(), 16)
    (tmp_path / "set" / name).write_text(text)
    with pytest.raises(recordio.RecordIOError) as e:
        insightface.IdentityRecords(root)
    _error(e, os.path.join(root, name), *parts)


def test_missing_file(tmp_path):
    insightface.write_identity_set(str(tmp_path), _identities(), 16)
    os.remove(tmp_path / "train.idx")
    with pytest.raises(recordio.RecordIOError) as e:
        insightface.IdentityRecords(str(tmp_path))
    _error(e, str(tmp_path / "train.idx"), "missing file")


def test_failed_conversion_leaves_no_split_json(tmp_path):
    root, bad, out = str(tmp_path / "set"), str(tmp_path / "bad"), str(tmp_path / "shards")
    insightface.write_identity_set(root, _identities(), 16)
    insightface.convert_identities(root, out, num_shards=2)
    assert os.path.isfile(os.path.join(out, "train.json"))
    people = _identities()
    people[1].append(b"not a jpeg")  # record 4
    insightface.write_identity_set(bad, people, 16)
    with pytest.raises(recordio.RecordIOError) as e:
        insightface.convert_identities(bad, out, num_shards=2)
    _error(e, os.path.join(bad, "train.rec"), "record 4", "not a JPEG")
    assert not os.path.exists(os.path.join(out, "train.json"))
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    with pytest.raises(shards.ShardError):
        shards.ShardSource(out, "train")


def test_verification_bin_round_trip(tmp_path):
    images, issame = [_jpeg((i * 40, 0, 0)) for i in range(4)] + [b"s" * 300, b"t"], [True, False, True]
    path = str(tmp_path / "lfw.bin")
    verification_bin.write_bin(path, images, issame)
    assert os.listdir(tmp_path) == ["lfw.bin"]
    data = Path(path).read_bytes()
    ops = [op.name for op, _, _ in pickletools.genops(data)]
    assert ops[0] == "PROTO" and not {"GLOBAL", "STACK_GLOBAL", "REDUCE"} & set(ops)  # as Python 2 wrote it
    assert pickle.loads(data, encoding="bytes") == (images, issame)  # insightface's own loader reads it
    got_images, got_issame = verification_bin.read_bin(path)
    assert got_images == images and got_issame.dtype == bool and got_issame.tolist() == issame
    with open(path, "wb") as f:  # a Python 3 pickle (protocol 4: bytes need no global) reads too
        pickle.dump((images, issame), f, protocol=4)
    assert verification_bin.read_bin(path)[0] == images


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _hand_built_exploit(marker) -> bytes:
    """A protocol 2 pickle written opcode by opcode: GLOBAL os.system, its argument, REDUCE (would run it)."""
    command = f"touch {marker}".encode()
    return b"\x80\x02cos\nsystem\nX" + struct.pack("<I", len(command)) + command + b"\x85R."


@pytest.mark.parametrize("make,refused", [
    (lambda m: pickle.dumps((collections.OrderedDict(a=b"x"), [True]), protocol=4), "collections.OrderedDict"),
    (lambda m: pickle.dumps(([b"a", b"b"], np.array([True])), protocol=4), "numpy"),
    (lambda m: pickle.dumps(([b"a", b"b"], [_Exploit(m)]), protocol=4), "system"),
    (lambda m: pickle.dumps(_Exploit(m), protocol=2), "system"),
    (_hand_built_exploit, "os.system"),
    # Python 3's protocol 2 pickles bytes through the global _codecs.encode: refused too (write_bin avoids it)
    (lambda m: pickle.dumps(([b"a", b"b"], [True]), protocol=2), "_codecs.encode"),
])
def test_bin_needing_a_global_is_refused_and_nothing_runs(tmp_path, make, refused):
    marker, path = tmp_path / "executed", str(tmp_path / "evil.bin")
    data = make(marker)
    assert any(op.name in ("GLOBAL", "STACK_GLOBAL") for op, _, _ in pickletools.genops(data))
    Path(path).write_bytes(data)
    with pytest.raises(verification_bin.VerificationSetError) as e:
        verification_bin.read_bin(path)
    _error(e, path, "refused to load the global", refused)
    assert not marker.exists()


def test_hand_built_exploit_would_run_under_plain_pickle(tmp_path):
    """The control for the test above: the same bytes do run a command under an unrestricted unpickler."""
    marker = tmp_path / "executed"
    pickle.loads(_hand_built_exploit(marker))
    assert marker.exists()


@pytest.mark.parametrize("value,parts", [
    ([b"a", b"b"], ["expected a pickled 2-tuple", "got list"]),
    (([b"a", b"b", b"c"], [True]), ["expected 2N images for N pairs, got 3 images and 1 pairs"]),
    (([b"a", "b"], [True]), ["not a list of bytes"]),
    (([b"a", b"b"], [1]), ["not a list of booleans"]),
])
def test_bin_of_wrong_structure(tmp_path, value, parts):
    path = str(tmp_path / "cfp_fp.bin")
    with open(path, "wb") as f:
        pickle.dump(value, f, protocol=4)
    with pytest.raises(verification_bin.VerificationSetError) as e:
        verification_bin.read_bin(path)
    _error(e, path, *parts)
    Path(path).write_bytes(b"\x80\x02]q\x00")  # cut short
    with pytest.raises(verification_bin.VerificationSetError) as e:
        verification_bin.read_bin(path)
    _error(e, path, "not a readable pickle")


def test_interrupted_write_leaves_no_set(tmp_path):
    def people():
        yield [_jpeg((1, 1, 1))]
        raise RuntimeError("source failed")

    insightface.write_identity_set(str(tmp_path), _identities(), 16)  # an earlier whole set is no longer claimed
    with pytest.raises(RuntimeError, match="source failed"):
        insightface.write_identity_set(str(tmp_path), people(), 16)
    assert "property" not in os.listdir(tmp_path) and not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
