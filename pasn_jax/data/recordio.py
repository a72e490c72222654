"""MXNet's RecordIO read and written without MXNet: the container of insightface's face-recognition training sets.

dmlc RecordIO: per record `uint32 magic 0xCED7230A | uint32 (cflag << 29) | length | data | zero pad to 4`. A
record whose data holds the magic at a 4-aligned offset is cut there into parts (cflag 1 first, 2 middle, 3 last;
the magic bytes are dropped and put back by the reader). MXNet's image payload: `struct 'IfQQ'` (flag, label, id,
id2); when flag > 0, `flag` float32 labels follow (the header's label is 0); then the JPEG bytes.

"""

import os
import struct
from collections.abc import Iterable, Sequence

import numpy as np


MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_PART_HEADER = struct.Struct("<II")  # magic, lrecord
_LENGTH_MASK = (1 << 29) - 1
_IR_HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2
FLOAT32_EXACT = 1 << 24  # labels are float32: integers above this are not exact


class RecordIOError(ValueError):
    """Bad RecordIO or verification-set input; the message names the file, the record and what was expected."""


def _parts(data: bytes) -> list[tuple[int, bytes]]:
    """(cflag, bytes) parts of one record as dmlc's writer cuts them at each 4-aligned magic."""
    parts, start = [], 0
    for i in range(0, len(data) // 4 * 4, 4):
        if data[i:i + 4] == _MAGIC_BYTES:
            parts.append((1 if start == 0 else 2, data[start:i]))
            start = i + 4
    parts.append((3 if start else 0, data[start:]))
    return parts


def encode_record(data: bytes, where: str = "record") -> bytes:
    """The bytes of one record in a .rec file: its parts with headers, zero padded to a multiple of 4."""
    if len(data) > _LENGTH_MASK:
        raise RecordIOError(f"{where}: {len(data)} bytes, over the RecordIO limit of {_LENGTH_MASK} per record")
    out = []
    for cflag, part in _parts(data):
        out += [_PART_HEADER.pack(MAGIC, (cflag << 29) | len(part)), part]
    out.append(b"\0" * (-len(data) % 4))
    return b"".join(out)


class RecordWriter:
    """Writes a .rec and its .idx under temporary names; `commit` renames them, `abort` removes them."""

    def __init__(self, rec_path: str, idx_path: str):
        self.paths = [(rec_path + ".tmp", rec_path), (idx_path + ".tmp", idx_path)]
        self.rec = open(rec_path + ".tmp", "wb")
        self.idx = open(idx_path + ".tmp", "w")
        self.count = 0

    def write(self, key: int, payload: bytes) -> int:
        if int(key) < 0:
            raise RecordIOError(f"{self.paths[0][1]}: record key {key} is negative (keys are integers >= 0)")
        offset = self.rec.tell()
        self.rec.write(encode_record(payload, f"{self.paths[0][1]}: record {key}"))
        self.idx.write(f"{int(key)}\t{offset}\n")
        self.count += 1
        return offset

    def rewrite(self, offset: int, replaces: bytes, payload: bytes) -> None:
        """Overwrites the record at `offset` (holding `replaces`) with a payload of the same encoded length."""
        encoded = encode_record(payload)
        if len(encoded) != len(encode_record(replaces)):
            raise RecordIOError(f"{self.paths[0][1]}: record at byte {offset} would change length when rewritten")
        end = self.rec.tell()
        self.rec.seek(offset)
        self.rec.write(encoded)
        self.rec.seek(end)

    def commit(self) -> None:
        self.rec.close()
        self.idx.close()
        for tmp, path in reversed(self.paths):  # the .idx, then the .rec
            os.replace(tmp, path)

    def abort(self) -> None:
        self.rec.close()
        self.idx.close()
        for tmp, _ in self.paths:
            if os.path.exists(tmp):
                os.remove(tmp)


def write_records(rec_path: str, idx_path: str, records: Iterable[tuple[int, bytes]]) -> int:
    """Writes (key, payload) records as a .rec and its .idx (dmlc's multipart cutting), under temporary names
    renamed at the end; returns the number of records."""
    writer = RecordWriter(rec_path, idx_path)
    try:
        for key, payload in records:
            writer.write(key, payload)
    except BaseException:
        writer.abort()
        raise
    writer.commit()
    return writer.count


def pack_image(identity: int, image: bytes, record_id: int = 0) -> bytes:
    """An image record's payload: flag 0, the identity as the float label, then the image bytes."""
    return _IR_HEADER.pack(0, float(identity), int(record_id), 0) + bytes(image)


def pack_labels(labels_: Sequence[float], payload: bytes = b"") -> bytes:
    """A payload with flag = len(labels) float32 labels after the header (whose label is 0), then `payload`."""
    values = np.asarray(labels_, "<f4").reshape(-1)
    return _IR_HEADER.pack(values.size, 0.0, 0, 0) + values.tobytes() + bytes(payload)


def unpack(payload: bytes, where: str) -> tuple[int, np.ndarray, bytes]:
    """(flag, labels float32 [max(flag, 1)], image bytes) of one record's payload; `where` names it in errors."""
    if len(payload) < _IR_HEADER.size:
        raise RecordIOError(f"{where}: {len(payload)}-byte payload is shorter than the {_IR_HEADER.size}-byte "
                            "image record header (flag, label, id, id2)")
    flag, label, _, _ = _IR_HEADER.unpack_from(payload)
    if flag == 0:
        return 0, np.array([label], np.float32), payload[_IR_HEADER.size:]
    end = _IR_HEADER.size + 4 * flag
    if len(payload) < end:
        raise RecordIOError(f"{where}: header says {flag} labels, the payload holds only "
                            f"{(len(payload) - _IR_HEADER.size) // 4}")
    return flag, np.frombuffer(payload, "<f4", flag, _IR_HEADER.size).astype(np.float32), payload[end:]


def read_record(fd: int, offset: int, file_size: int, where: str) -> bytes:
    """The data of the record whose first part starts at byte `offset` of an open .rec file of `file_size` bytes
    (multipart records joined), read with os.pread (thread safe); `where` names the record in errors."""
    position, parts, previous = offset, [], None
    while True:
        header = os.pread(fd, _PART_HEADER.size, position)
        if len(header) < _PART_HEADER.size:
            raise RecordIOError(f"{where}: truncated: part header at byte {position} runs past the end of the "
                                f"file ({file_size} bytes)")
        magic, lrecord = _PART_HEADER.unpack(header)
        if magic != MAGIC:
            raise RecordIOError(f"{where}: bad magic 0x{magic:08X} at byte {position} (expected 0x{MAGIC:08X}: "
                                f"a wrong offset in the index or not a RecordIO file)")
        cflag, length = lrecord >> 29, lrecord & _LENGTH_MASK
        if (previous is None) != (cflag in (0, 1)):
            expected = "0 (whole) or 1 (first part)" if previous is None else "2 (middle) or 3 (last part)"
            raise RecordIOError(f"{where}: multipart sequence broken: part at byte {position} has cflag {cflag}, "
                                f"expected {expected}")
        data_start = position + _PART_HEADER.size
        if data_start + length > file_size:
            raise RecordIOError(f"{where}: truncated: {length} data bytes from byte {data_start} run past the "
                                f"end of the file ({file_size} bytes)")
        parts.append(os.pread(fd, length, data_start))
        if cflag in (0, 3):
            return _MAGIC_BYTES.join(parts)
        previous, position = cflag, data_start + length + (-length % 4)
