"""TFRecord shards with a random-access offset index (ARCHITECTURE.md, "Shard record contract").

A shard is a TFRecord file: per record `uint64 length | masked crc32c(length) | data | masked crc32c(data)`,
where data is a serialized tf.train.Example (tensorflow-datasets' bundled proto, no TensorFlow needed). Next to
each shard `<shard>.index` holds the byte offsets of its records plus the file size as little-endian uint64
[num_records + 1], so record i is one `os.pread` (safe under grain's reader threads). `<split>.json` is written
last and names every shard with its record count and size: a shard folder without it is not whole.

Two kinds of record (the split's `record` in `<split>.json`; "frame" when absent):
- frame: image (JPEG bytes), video, frame (1-based), au [12], expr, va [2], identity (the person's class index for
  face-identity training, -1 when unknown; absent in shards written before it existed), source (the dataset:
  `affwild2`, `bp4d`, `dfew`, `affectnet`, `recordio`; `synthetic` or `synthetic-<dataset>` for the generator's
  sets; `pseudo` for pseudo labels, pasn_jax/pseudo.py). Labels follow Aff-Wild2's spaces whatever the dataset: a
  dataset without some AU, or without a task, carries the sentinels there (per AU, not per row).
- triplet (expression similarity, FEC): images (3 JPEGs: the two most similar faces first, the odd one out last),
  triplet_type (how many expression classes the three show: 1, 2 or 3), key (where the triplet came from, e.g.
  `train.csv:12`), source.
"""

import json
import os
import struct
from collections.abc import Iterable, Mapping

import numpy as np
from tensorflow_datasets.proto import tf_example_pb2

from pasn_jax import labels, paths
from pasn_jax.data.crc32c import masked_crc32c

_HEADER = struct.Struct("<Q")
FORMAT_VERSION = 2  # 2: frames carry `identity`; triplet records
IDENTITY_UNKNOWN = -1
RECORD_KINDS = ("frame", "triplet")


class ShardError(ValueError):
    """A shard folder, shard or record that is missing, truncated or corrupt; the message names it."""


def frame_record(data: bytes) -> bytes:
    """TFRecord framing of one serialized record."""
    header = _HEADER.pack(len(data))
    return b"".join((header, struct.pack("<I", masked_crc32c(header)), data,
                     struct.pack("<I", masked_crc32c(data))))


def unframe_record(framed: bytes, where: str) -> bytes:
    """Checks the framing and both CRCs of one record read from a shard; `where` names it in errors."""
    if len(framed) < 16:
        raise ShardError(f"{where}: truncated record ({len(framed)} bytes, a record needs at least 16)")
    header = framed[:8]
    (length,) = _HEADER.unpack(header)
    if struct.unpack("<I", framed[8:12])[0] != masked_crc32c(header):
        raise ShardError(f"{where}: length CRC mismatch (corrupt record header)")
    if length + 16 != len(framed):
        raise ShardError(f"{where}: record length {length} does not match its index extent {len(framed) - 16}")
    data = framed[12:12 + length]
    if struct.unpack("<I", framed[12 + length:])[0] != masked_crc32c(data):
        raise ShardError(f"{where}: data CRC mismatch (corrupt record)")
    return data


def encode_example(record: Mapping) -> bytes:
    """Serializes one frame record (keys image, video, frame, au, expr, va, source; identity optional, -1 if
    absent)."""
    example = tf_example_pb2.Example()
    feature = example.features.feature
    feature["image"].bytes_list.value.append(record["image"])
    feature["video"].bytes_list.value.append(record["video"].encode())
    feature["frame"].int64_list.value.append(int(record["frame"]))
    feature["au"].int64_list.value.extend(int(v) for v in record["au"])
    feature["expr"].int64_list.value.append(int(record["expr"]))
    feature["va"].float_list.value.extend(float(v) for v in record["va"])
    feature["identity"].int64_list.value.append(int(record.get("identity", IDENTITY_UNKNOWN)))
    feature["source"].bytes_list.value.append(record["source"].encode())
    return example.SerializeToString(deterministic=True)  # features in key order: the same bytes in every process


def decode_example(data: bytes, where: str) -> dict:
    """Parses one serialized frame record into {image: bytes, video: str, frame: int, au: int32[12], expr: int,
    va: float32[2], identity: int, source: str}."""
    try:
        feature = tf_example_pb2.Example.FromString(data).features.feature
        record = {
            "image": feature["image"].bytes_list.value[0],
            "video": feature["video"].bytes_list.value[0].decode(),
            "frame": int(feature["frame"].int64_list.value[0]),
            "au": np.asarray(feature["au"].int64_list.value, np.int32),
            "expr": int(feature["expr"].int64_list.value[0]),
            "va": np.asarray(feature["va"].float_list.value, np.float32),
            "identity": int(feature["identity"].int64_list.value[0]) if "identity" in feature else IDENTITY_UNKNOWN,
            "source": feature["source"].bytes_list.value[0].decode(),
        }
    except (IndexError, UnicodeDecodeError, ValueError) as e:  # protobuf's DecodeError is a ValueError
        raise ShardError(f"{where}: not a valid record of the shard contract ({e})") from None
    if record["au"].shape != (labels.NUM_AUS,) or record["va"].shape != (len(labels.VA_NAMES),):
        raise ShardError(f"{where}: expected au[{labels.NUM_AUS}] and va[2], got au{list(record['au'].shape)} "
                         f"and va{list(record['va'].shape)}")
    return record


def encode_triplet(record: Mapping) -> bytes:
    """Serializes one triplet record (keys images: 3 JPEGs, the odd one out last; triplet_type; key; source)."""
    example = tf_example_pb2.Example()
    feature = example.features.feature
    feature["images"].bytes_list.value.extend(record["images"])
    feature["triplet_type"].int64_list.value.append(int(record["triplet_type"]))
    feature["key"].bytes_list.value.append(record["key"].encode())
    feature["source"].bytes_list.value.append(record["source"].encode())
    return example.SerializeToString(deterministic=True)  # features in key order: the same bytes in every process


def decode_triplet(data: bytes, where: str) -> dict:
    """Parses one serialized triplet record into {images: [3 bytes], triplet_type: int, key: str, source: str}."""
    try:
        feature = tf_example_pb2.Example.FromString(data).features.feature
        record = {"images": list(feature["images"].bytes_list.value),
                  "triplet_type": int(feature["triplet_type"].int64_list.value[0]),
                  "key": feature["key"].bytes_list.value[0].decode(),
                  "source": feature["source"].bytes_list.value[0].decode()}
    except (IndexError, UnicodeDecodeError, ValueError) as e:
        raise ShardError(f"{where}: not a valid triplet record ({e})") from None
    if len(record["images"]) != 3 or record["triplet_type"] not in (1, 2, 3):
        raise ShardError(f"{where}: expected 3 images and a triplet type in 1..3, got {len(record['images'])} "
                         f"images and type {record['triplet_type']}")
    return record


_ENCODERS = {"frame": encode_example, "triplet": encode_triplet}
_DECODERS = {"frame": decode_example, "triplet": decode_triplet}


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def write_shard(path: str, records: Iterable[Mapping], kind: str = "frame") -> dict:
    """Writes one shard of `kind` records and its index under temporary names, then renames them; returns its
    metadata entry."""
    encode = _ENCODERS[kind]
    offsets = [0]
    tmp, tmp_index = path + ".tmp", path + ".index.tmp"
    with open(tmp, "wb") as f:
        for record in records:
            framed = frame_record(encode(record))
            f.write(framed)
            offsets.append(offsets[-1] + len(framed))
    with open(tmp_index, "wb") as f:
        f.write(np.asarray(offsets, "<u8").tobytes())
    os.replace(tmp_index, path + ".index")
    os.replace(tmp, path)
    return {"file": os.path.basename(path), "index": os.path.basename(path) + ".index",
            "num_records": len(offsets) - 1, "bytes": offsets[-1]}


def write_metadata(data_dir: str, split: str, metadata: Mapping) -> str:
    """Writes `<split>.json` (last, atomically: its presence marks the split's shards as whole)."""
    path = os.path.join(data_dir, f"{split}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(metadata, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)
    return path


def read_metadata(data_dir: str, split: str) -> dict:
    """The `<split>.json` of a shard folder."""
    path = paths.join(data_dir, f"{split}.json")
    if not paths.path(path).is_file():
        raise ShardError(f"{path}: missing; the folder holds no complete '{split}' shards "
                         "(run `python -m pasn_jax.data.convert` first)")
    try:
        metadata = json.loads(paths.path(path).read_text())
    except json.JSONDecodeError as e:
        raise ShardError(f"{path}: not valid JSON ({e})") from None
    for key in ("num_records", "shards"):
        if key not in metadata:
            raise ShardError(f"{path}: missing key '{key}'")
    for i, entry in enumerate(metadata["shards"]):
        for key in ("file", "index", "num_records", "bytes"):
            if not isinstance(entry, dict) or key not in entry:
                raise ShardError(f"{path}: shards[{i}] lacks the key '{key}'")
    return metadata


def record_kind(metadata: Mapping, path: str = "metadata") -> str:
    """The kind of record a split holds ('frame' or 'triplet')."""
    kind = metadata.get("record", "frame")
    if kind not in RECORD_KINDS:
        raise ShardError(f"{path}: record kind {kind!r} is not one of {', '.join(RECORD_KINDS)}")
    return kind


class ShardSource:
    """grain RandomAccessDataSource over all shards of a split, in stored order.

    Opens files lazily per process (picklable for grain workers); reads with os.pread (thread safe), or, for shards
    on an object store (gs://), with one ranged read per record (pasn_jax/paths.py); checks
    every record's CRCs. source[i] -> dict record (decode_example or decode_triplet, by the split's record kind),
    with `where` naming its shard file and record number for errors about its contents.
    """

    def __init__(self, data_dir: str, split: str):
        self._data_dir = data_dir
        self._split = split
        metadata = read_metadata(data_dir, split)
        self.kind = record_kind(metadata, paths.join(data_dir, f"{split}.json"))
        self._shards = [paths.join(data_dir, s["file"]) for s in metadata["shards"]]
        self._remote = paths.is_remote(data_dir)
        counts = [int(s["num_records"]) for s in metadata["shards"]]
        self._starts = np.cumsum([0] + counts)  # [num_shards + 1]: global index of each shard's first record
        self._offsets = []
        for path, entry in zip(self._shards, metadata["shards"]):
            self._offsets.append(self._load_index(path, entry))
        self._fds: dict[int, int] = {}
        self._pid = None

    @staticmethod
    def _load_index(path: str, entry: Mapping) -> np.ndarray:
        index_path = paths.join(paths.path(path).parent, entry["index"])
        for p in (path, index_path):
            if not paths.path(p).is_file():
                raise ShardError(f"{p}: missing shard file")
        data = paths.path(index_path).read_bytes()
        offsets = np.frombuffer(data[:len(data) // 8 * 8], "<u8")
        n = int(entry["num_records"])
        if offsets.shape != (n + 1,) or offsets[0] != 0 or np.any(np.diff(offsets.astype(np.int64)) < 16):
            raise ShardError(f"{index_path}: expected {n + 1} increasing offsets for {n} records")
        size = paths.size(path)
        if size != int(offsets[-1]) or size != int(entry["bytes"]):
            raise ShardError(f"{path}: truncated or overwritten shard ({size} bytes, index and metadata say "
                             f"{int(offsets[-1])} and {int(entry['bytes'])})")
        return offsets

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __repr__(self) -> str:
        return f"ShardSource({self._data_dir!r}, {self._split!r}, {len(self)} records)"

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fds"], state["_pid"] = {}, None
        return state

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():  # a forked or spawned worker opens its own descriptors
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(shard)
        if fd is None:  # two reader threads may race here: keep one descriptor, close the other
            opened = os.open(self._shards[shard], os.O_RDONLY)
            fd = self._fds.setdefault(shard, opened)
            if fd != opened:
                os.close(opened)
        return fd

    def locate(self, index: int) -> tuple[int, int]:
        """(shard number, record number within the shard) of global record `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"record {index} out of range for {len(self)} records of split '{self._split}'")
        shard = int(np.searchsorted(self._starts, index, side="right")) - 1
        return shard, index - int(self._starts[shard])

    def __getitem__(self, index: int) -> dict:
        shard, k = self.locate(int(index))
        where = f"{self._shards[shard]}: record {k}"
        start, stop = int(self._offsets[shard][k]), int(self._offsets[shard][k + 1])
        if self._remote:
            framed = paths.read_range(self._shards[shard], start, stop)
        else:
            framed = os.pread(self._fd(shard), stop - start, start)  # one read, no shared file position
        return {**_DECODERS[self.kind](unframe_record(framed, where), where), "where": where}

    def close(self, _close=os.close):
        for fd in self._fds.values():
            _close(fd)
        self._fds = {}

    def __del__(self, _getpid=os.getpid):  # bound early: module globals may be gone at interpreter exit
        if getattr(self, "_pid", None) == _getpid():
            self.close()
