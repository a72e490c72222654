"""insightface face-recognition training sets (MS1MV3, Glint360K, CASIA-WebFace, ...: the data of the prior's
identity stage, paper §3.2) read and written without MXNet, and their streaming conversion to frame shards that
carry the identity.

Layout: `train.rec` (MXNet RecordIO, pasn_jax/data/recordio.py), `train.idx` (`key\\toffset` lines) and `property`
(`num_classes,height,width`). Record 0 has flag 2 and labels (A, B): images are records 1..A-1, records A..B-1
give each identity's (start, end) image records. An image's label is its identity. If record 0 has flag 0, every
key of the idx is an image.
"""

import functools
import os
from collections.abc import Iterable, Sequence

import numpy as np
import simplejpeg

from pasn_jax import labels
from pasn_jax.data import conversion
from pasn_jax.data.recordio import (FLOAT32_EXACT, RecordIOError, RecordWriter, pack_image, pack_labels, read_record,
                                    unpack)

REC_NAME, IDX_NAME, PROPERTY_NAME = "train.rec", "train.idx", "property"
_LAYOUT = f"an insightface training set folder holds {REC_NAME}, {IDX_NAME} and {PROPERTY_NAME}"


def write_identity_set(root: str, identities: Iterable[Iterable[bytes]], image_size: int) -> dict:
    """Writes the insightface layout into `root`: identity k's images labelled k (records 1..A-1), record 0 the
    header (A, B), records A..B-1 each identity's image range, then `property` (last: it marks the set whole).
    Streams the images; returns {num_identities, num_images}."""
    os.makedirs(root, exist_ok=True)
    rec_path, idx_path, property_path = (os.path.join(root, n) for n in (REC_NAME, IDX_NAME, PROPERTY_NAME))
    if os.path.exists(property_path):  # from here on the folder does not claim to hold a whole set
        os.remove(property_path)
    writer = RecordWriter(rec_path, idx_path)
    try:
        unknown_header = pack_labels([0, 0])  # record 0, rewritten in place once the counts are known
        header_offset = writer.write(0, unknown_header)
        ranges, key = [], 1
        for identity, images in enumerate(identities):
            start = key
            for image in images:
                writer.write(key, pack_image(identity, image, record_id=key))
                key += 1
            ranges.append((start, key))
        first, end = key, key + len(ranges)
        if end > FLOAT32_EXACT:
            raise RecordIOError(f"{rec_path}: {end} records: float32 labels hold record numbers up to "
                                f"{FLOAT32_EXACT} exactly")
        for k, (start, stop) in enumerate(ranges):
            writer.write(first + k, pack_labels([start, stop]))
        writer.rewrite(header_offset, unknown_header, pack_labels([first, end]))
        with open(property_path + ".tmp", "w") as f:
            f.write(f"{len(ranges)},{int(image_size)},{int(image_size)}\n")
    except BaseException:
        writer.abort()
        if os.path.exists(property_path + ".tmp"):
            os.remove(property_path + ".tmp")
        raise
    writer.commit()
    os.replace(property_path + ".tmp", property_path)
    return {"num_identities": len(ranges), "num_images": first - 1}


def read_property(path: str) -> tuple[int, int, int]:
    """(num_classes, height, width) of an insightface `property` file."""
    with open(path, errors="replace") as f:  # undecodable bytes show in the error below
        text = f.read().strip()
    fields = text.split(",")
    try:
        values = tuple(int(v) for v in fields)
    except ValueError:
        values = ()
    if len(values) != 3 or values[0] < 0 or min(values[1:]) < 1:
        raise RecordIOError(f"{path}:1: expected 'num_classes,height,width' (e.g. '85742,112,112'), got '{text}'")
    return values


def read_idx(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Keys and byte offsets of a RecordIO .idx (`key\\toffset` lines), both int64 [N] in file order."""
    keys, offsets = [], []
    with open(path, errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            fields = line.strip().split("\t")
            try:
                key, offset = (int(v) for v in fields)
            except ValueError:
                key = offset = -1
            if key < 0 or offset < 0:
                raise RecordIOError(f"{path}:{lineno}: expected 'key<TAB>offset' (two integers >= 0), "
                                    f"got '{line.strip()}'")
            keys.append(key)
            offsets.append(offset)
    return np.asarray(keys, np.int64), np.asarray(offsets, np.int64)


class IdentityRecords(Sequence):
    """Lazy random access to the images of an insightface training set folder: [i] -> (identity, image, key).

    Keeps only the idx in memory; reads each record with os.pread (thread safe; picklable: each process opens
    its own descriptor)."""

    def __init__(self, root: str):
        self.root = root
        self.rec_path, self.idx_path, self.property_path = (os.path.join(root, n)
                                                            for n in (REC_NAME, IDX_NAME, PROPERTY_NAME))
        for path in (self.rec_path, self.idx_path, self.property_path):
            if not os.path.isfile(path):
                raise RecordIOError(f"{path}: missing file ({_LAYOUT})")
        self.num_classes, height, width = read_property(self.property_path)
        self.image_size, self.image_shape = height, (height, width)
        keys, offsets = read_idx(self.idx_path)
        order = np.argsort(keys, kind="stable")
        self._keys, self._offsets = keys[order], offsets[order]
        duplicate = np.flatnonzero(np.diff(self._keys) == 0)
        if duplicate.size:
            raise RecordIOError(f"{self.idx_path}: key {self._keys[duplicate[0]]} listed twice")
        self._size = os.path.getsize(self.rec_path)
        self._fd, self._pid = None, None
        self._image_keys = self._image_keys_from_header(keys)

    def _image_keys_from_header(self, idx_keys: np.ndarray) -> np.ndarray:
        if not self._keys.size or self._keys[0] != 0:
            raise RecordIOError(f"{self.idx_path}: no record 0 (the header record of an insightface set)")
        flag, values, _ = unpack(self.payload(0), self._where(0))
        if flag == 0:
            return idx_keys
        first, end = (int(v) for v in values[:2]) if flag >= 2 else (0, 0)
        if flag < 2 or not 1 <= first <= end:
            raise RecordIOError(f"{self._where(0)}: header record expected labels (A, B) with 1 <= A <= B "
                                f"(images are records 1..A-1), got {values.tolist()}")
        image_keys = np.arange(1, first, dtype=np.int64)
        present = np.isin(image_keys, self._keys)
        if not present.all():
            raise RecordIOError(f"{self.idx_path}: no line for image record {image_keys[~present][0]} (the header "
                                f"record says images are records 1..{first - 1})")
        return image_keys

    def _where(self, key: int, offset: int | None = None) -> str:
        if offset is None:
            offset = int(self._offsets[np.searchsorted(self._keys, key)])
        return f"{self.rec_path}: record {key} at byte {offset}"

    def __getstate__(self):
        return {**self.__dict__, "_fd": None, "_pid": None}

    def _descriptor(self) -> int:
        if self._pid != os.getpid():  # a forked or spawned worker opens its own descriptor
            self._fd, self._pid = os.open(self.rec_path, os.O_RDONLY), os.getpid()
        return self._fd

    def payload(self, key: int) -> bytes:
        """The data of record `key` (multipart records joined), read with os.pread."""
        i = int(np.searchsorted(self._keys, key))
        if i == self._keys.size or self._keys[i] != key:
            raise RecordIOError(f"{self.idx_path}: no line for record {key}")
        start = int(self._offsets[i])
        return read_record(self._descriptor(), start, self._size, self._where(key, start))

    def __len__(self) -> int:
        return int(self._image_keys.size)

    def __getitem__(self, index: int) -> tuple[int, bytes, int]:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"image {index} out of range for {len(self)} images of {self.root}")
        key = int(self._image_keys[index])
        where = self._where(key)
        _, values, image = unpack(self.payload(key), where)
        label = float(values[0])
        if not (label.is_integer() and 0 <= label < self.num_classes):
            raise RecordIOError(f"{where}: label {label:g} is not an identity in [0, {self.num_classes}) "
                                f"({self.property_path} says {self.num_classes} classes)")
        return int(label), image, key

    def close(self, _close=os.close, _getpid=os.getpid) -> None:  # bound early, as in __del__
        if self._fd is not None and self._pid == _getpid():
            _close(self._fd)
        self._fd, self._pid = None, None

    def __del__(self, _getpid=os.getpid):  # bound early: module globals may be gone at interpreter exit
        if getattr(self, "_fd", None) is not None and self._pid == _getpid():
            self.close()


def _identity_example(rec_path: str, record: tuple[int, bytes, int]) -> tuple[dict, tuple[int, int]]:
    identity, image, key = record
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(image)
    except ValueError:
        raise RecordIOError(f"{rec_path}: record {key}: image is not a JPEG") from None
    return {"image": image, "video": f"identity_{identity:06d}", "frame": key,
            "au": [labels.AU_MISSING] * labels.NUM_AUS, "expr": labels.EXPR_MISSING,
            "va": [labels.VA_MISSING] * labels.NUM_VA, "identity": identity}, (height, width)


def convert_identities(root: str, out: str, *, num_shards: int = 8, source: str = "recordio",
                       workers: int = 0) -> dict:
    """Streams the images of an insightface training set folder into the frame shards of split 'train' (video
    `identity_<k>`, frame = record key, identity k, no affect labels); returns the split's metadata."""
    if num_shards < 1:
        raise RecordIOError(f"--num-shards must be >= 1, got {num_shards}")
    conversion.forget_split(out, "train")
    records = IdentityRecords(root)
    try:
        return conversion.write_split(out, "train", records, functools.partial(_identity_example, records.rec_path),
                                      num_shards=num_shards, source=source,
                                      counts={"num_classes": records.num_classes}, kind="frame", workers=workers)
    finally:
        records.close()
