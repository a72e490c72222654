"""TFRecord shards: crc32c, framing against an independent writer, the record contract, random access, and
detection of truncated, bit-flipped and half-written shards."""

import json
import os
import shutil
import subprocess
import sys

import google_crc32c
import numpy as np
import pytest
from tensorboardX.record_writer import RecordWriter
from tensorflow_datasets.proto import tf_example_pb2

from pasn_jax.data import affwild2, convert, crc32c, shards
from pasn_jax.data.synthetic import tree as synthetic
from pasn_jax.data.synthetic.prepare import prepare_synthetic
from runs import REPO


def _crc32c_bitwise(data: bytes) -> int:
    """Reference CRC-32C, one bit at a time (RFC 3720)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _mask(crc: int) -> int:
    """TFRecord's mask, written out: rotate right by 15 bits, add 0xA282EAD8, modulo 2**32."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def test_crc32c_check_value_and_bitwise_reference():
    assert crc32c.crc32c(b"123456789") == 0xE3069283
    assert crc32c.crc32c(b"") == 0
    rng = np.random.default_rng(0)
    for n in [0, 1, 3, 4, 5, 8, 63, 64, 65, 255, 256, 257, 1000, 4096, 9000, 20_001, *rng.integers(2, 3000, 5)]:
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert crc32c.crc32c(data) == _crc32c_bitwise(data), n
        assert crc32c.masked_crc32c(data) == _mask(_crc32c_bitwise(data)), n


def test_masked_crc32c_hand_computed():
    # 0xE3069283 rotated right by 15 bits is 0x2507C60D; + 0xA282EAD8 is 0xC78AB0E5 (mod 2**32)
    assert crc32c.masked_crc32c(b"123456789") == 0xC78AB0E5
    assert crc32c.masked_crc32c(b"") == 0xA282EAD8  # crc 0: only the delta
    assert _crc32c_bitwise(b"\xff" * 4) == 0xFFFFFFFF
    assert crc32c.masked_crc32c(b"\xff" * 4) == 0xA282EAD7  # rotation 0xFFFFFFFF: the sum wraps past 32 bits


def test_crc32c_runs_the_c_extension():
    assert google_crc32c.implementation == "c"
    assert crc32c.crc32c is google_crc32c.value
    # without the extension google-crc32c falls back to pure Python with a warning; crc32c.py refuses instead
    code = "import sys; sys.modules['google_crc32c.cext'] = None; import pasn_jax.data.crc32c"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "ImportError: google-crc32c could not load its C extension" in proc.stderr


def test_framing_matches_tensorboardx_record_writer(tmp_path):
    payloads = [b"", b"x", bytes(range(256)) * 20]
    path = str(tmp_path / "tbx.tfrecord")
    writer = RecordWriter(path)
    for p in payloads:
        writer.write(p)
    writer.close()
    with open(path, "rb") as f:
        assert f.read() == b"".join(shards.frame_record(p) for p in payloads)
    for p in payloads:
        assert shards.unframe_record(shards.frame_record(p), "r") == p


def test_example_follows_the_record_contract():
    record = {"image": b"\xff\xd8jpeg", "video": "10-60-1280x720_right", "frame": 42,
              "au": (0, 1, -1, 0, 1, 0, 0, 0, 1, 0, 0, 1), "expr": 6, "va": (0.25, -5.0), "source": "synthetic"}
    data = shards.encode_example(record)
    feature = tf_example_pb2.Example.FromString(data).features.feature
    assert feature["image"].bytes_list.value == [b"\xff\xd8jpeg"]
    assert feature["video"].bytes_list.value == [b"10-60-1280x720_right"]
    assert feature["frame"].int64_list.value == [42]
    assert list(feature["au"].int64_list.value) == list(record["au"])
    assert feature["expr"].int64_list.value == [6]
    assert list(feature["va"].float_list.value) == [0.25, -5.0]
    assert feature["source"].bytes_list.value == [b"synthetic"]
    back = shards.decode_example(data, "r")
    assert back["video"] == record["video"] and back["frame"] == 42 and back["expr"] == 6
    np.testing.assert_array_equal(back["au"], record["au"])
    np.testing.assert_array_equal(back["va"], np.float32(record["va"]))


def test_source_reads_every_record_as_the_reader_gave_it(synthetic_tree, synthetic_shards):
    for split in affwild2.SPLIT_SETS:
        expected = affwild2.read_split(synthetic_tree, split).records
        source = shards.ShardSource(synthetic_shards, split)
        metadata = shards.read_metadata(synthetic_shards, split)
        assert len(source) == len(expected) == metadata["num_records"]
        assert sum(s["num_records"] for s in metadata["shards"]) == len(expected)
        for i in [0, len(expected) // 2, len(expected) - 1]:
            got, want = source[i], expected[i]
            with open(want.image_path, "rb") as f:
                assert got["image"] == f.read()
            assert (got["video"], got["frame"], int(got["expr"])) == (want.video, want.frame, want.expr)
            assert tuple(got["au"]) == want.au
            np.testing.assert_array_equal(got["va"], np.float32(want.va))
            assert got["source"] == "synthetic"
        with pytest.raises(IndexError):
            source[len(source)]


def _copy(src: str, dst) -> str:
    out = str(dst / "shards")
    shutil.copytree(src, out)
    return out


def test_truncated_shard_is_detected(synthetic_shards, tmp_path):
    data_dir = _copy(synthetic_shards, tmp_path)
    path = os.path.join(data_dir, shards.shard_name("train", 1, 3))
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 10)
    with pytest.raises(shards.ShardError, match=r"train-00001-of-00003\.tfrecord: truncated"):
        shards.ShardSource(data_dir, "train")


def test_bit_flip_is_detected_naming_shard_and_record(synthetic_shards, tmp_path):
    data_dir = _copy(synthetic_shards, tmp_path)
    path = os.path.join(data_dir, shards.shard_name("train", 2, 3))
    offsets = np.fromfile(path + ".index", "<u8")
    with open(path, "r+b") as f:  # one bit inside the data of record 3, then one in the length of record 5
        for position in (int(offsets[3]) + 40, int(offsets[5]) + 2):
            f.seek(position)
            byte = f.read(1)[0]
            f.seek(position)
            f.write(bytes([byte ^ 0x10]))
    source = shards.ShardSource(data_dir, "train")
    counts = [s["num_records"] for s in shards.read_metadata(data_dir, "train")["shards"]]
    first = counts[0] + counts[1]  # global index of shard 2's record 0
    assert source.locate(first + 3) == (2, 3)
    with pytest.raises(shards.ShardError, match=r"train-00002-of-00003\.tfrecord: record 3: data CRC mismatch"):
        source[first + 3]
    with pytest.raises(shards.ShardError, match=r"train-00002-of-00003\.tfrecord: record 5: length CRC mismatch"):
        source[first + 5]
    assert source[first + 4]["frame"] >= 1  # neighbours still read


def test_missing_metadata_and_missing_shard(synthetic_shards, tmp_path):
    with pytest.raises(shards.ShardError, match=r"val\.json: missing"):
        shards.read_metadata(str(tmp_path), "val")
    data_dir = _copy(synthetic_shards, tmp_path)
    os.remove(os.path.join(data_dir, shards.shard_name("val", 0, 3)))
    with pytest.raises(shards.ShardError, match=r"val-00000-of-00003\.tfrecord: missing shard file"):
        shards.ShardSource(data_dir, "val")


def test_interrupted_write_leaves_no_whole_looking_shard(tmp_path):
    def records():
        yield {"image": b"a", "video": "v", "frame": 1, "au": [0] * 12, "expr": 0, "va": (0.0, 0.0), "source": "s"}
        raise KeyboardInterrupt

    path = str(tmp_path / shards.shard_name("train", 0, 1))
    with pytest.raises(KeyboardInterrupt):
        shards.write_shard(path, records())
    assert sorted(os.listdir(tmp_path)) == [shards.shard_name("train", 0, 1) + ".tmp"]
    with pytest.raises(shards.ShardError):
        shards.read_metadata(str(tmp_path), "train")


def test_convert_counts_source_and_stale_shards(synthetic_tree, tmp_path, capsys):
    tree = str(tmp_path / "tree")
    shutil.copytree(synthetic_tree, tree)
    out = str(tmp_path / "shards")
    assert convert.main(["affwild2", "--root", tree, "--out", out, "--num-shards", "4"]) == 0
    printed = capsys.readouterr().out
    for split in affwild2.SPLIT_SETS:
        metadata = shards.read_metadata(out, split)
        read = affwild2.read_split(tree, split)
        assert metadata["source"] == "synthetic"
        assert metadata["num_records"] == len(read.records)
        assert metadata["frames_without_image"] == read.frames_without_image
        assert metadata["labelled"]["expr"] == sum(r.expr != -1 for r in read.records)
        assert metadata["labelled"]["va"] == sum(-5.0 not in r.va for r in read.records)
        assert metadata["labelled"]["au"] == sum(r.au != (-1,) * 12 for r in read.records)
        assert sum(metadata["expr_histogram"].values()) == metadata["labelled"]["expr"]
        assert (f"{split}: {len(read.records)} records from {metadata['num_videos']} videos in 4 shards; "
                f"labelled AU {metadata['labelled']['au']}, EXPR {metadata['labelled']['expr']}, "
                f"VA {metadata['labelled']['va']}") in printed
    os.remove(os.path.join(tree, "synthetic_affwild2.json"))
    affwild2.convert(tree, out, num_shards=2)
    assert sorted(f for f in os.listdir(out) if f.startswith("val-")) == [
        "val-00000-of-00002.tfrecord", "val-00000-of-00002.tfrecord.index",
        "val-00001-of-00002.tfrecord", "val-00001-of-00002.tfrecord.index"]
    assert shards.ShardSource(out, "val")[0]["source"] == "affwild2"
    with open(os.path.join(out, "val.json")) as f:
        assert json.load(f)["source"] == "affwild2"


def test_prepare_synthetic_is_idempotent_and_atomic(tmp_path, capsys):
    kwargs = dict(videos=3, frames=8, size=32, seed=5, num_shards=2)
    first = prepare_synthetic(str(tmp_path), **kwargs)
    assert "rendered" in capsys.readouterr().out
    name = f"synthetic-v{synthetic.GENERATOR_VERSION}-3videos-8frames-32px-seed5-2shards"
    assert os.path.basename(os.path.dirname(first)) == name
    stamp = os.path.getmtime(os.path.join(first, "train.json"))
    assert prepare_synthetic(str(tmp_path), **kwargs) == first
    assert "using" in capsys.readouterr().out
    assert os.path.getmtime(os.path.join(first, "train.json")) == stamp
    assert sorted(os.listdir(tmp_path)) == [name]
    assert shards.ShardSource(first, "val")[0]["source"] == "synthetic"


def test_a_record_serialises_to_the_same_bytes_in_every_process():
    """Protobuf maps serialise in hash order unless asked otherwise: two interpreters with different hash seeds
    (e.g. two conversions, or a conversion's worker processes) must write the same bytes."""
    import subprocess
    import sys
    code = ("import hashlib; from pasn_jax.data import shards; print(hashlib.sha256(shards.encode_example("
            "{'image': b'x', 'video': 'v', 'frame': 1, 'au': [0] * 12, 'expr': 2, 'va': [0.5, -0.5], 'source': 's'})"
            " + shards.encode_triplet({'images': [b'a', b'b', b'c'], 'triplet_type': 2, 'key': 'k', 'source': 's'}))"
            ".hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2)}
    assert len(digests) == 1


def test_a_split_of_very_many_videos_keeps_no_video_table(monkeypatch):
    """One "video" per image (AffectNet) would make `<split>.json` tens of MB: past the limit the table is left out,
    the counts stay."""
    from pasn_jax.data import conversion
    monkeypatch.setattr(conversion, "VIDEO_TABLE_LIMIT", 2)
    statistics = conversion.FrameStatistics()
    record = {"au": [0] * 12, "expr": 1, "va": [0.0, 0.0]}
    for name in ("a", "b"):
        statistics.add({**record, "video": name}, (8, 8))
    assert set(statistics.summary()["videos"]) == {"a", "b"}
    statistics.add({**record, "video": "c"}, (8, 8))
    summary = statistics.summary()
    assert "videos" not in summary and summary["num_videos"] == 3 and summary["labelled"]["expr"] == 3
