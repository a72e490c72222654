"""CRC-32C (Castagnoli), as TFRecord frames its records with it: a vectorised numpy version, since the venv has no
native crc32c. `crc32c(b"123456789") == 0xE3069283`; `masked_crc32c` is TFRecord's masked form."""

import numpy as np

_CRC32C_POLY = 0x82F63B78  # Castagnoli polynomial, bit-reflected
_CRC_MASK_DELTA = 0xA282EAD8  # TFRecord's CRC masking constant
_LANE = 256  # bytes per lane of the vectorised crc32c below


def _crc_table() -> np.ndarray:
    """T[b]: the raw (zero-initialised) crc32c register after the single byte b. [256] uint32."""
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_CRC32C_POLY), table >> 1).astype(np.uint32)
    return table


_TABLE = _crc_table()
_TABLE_LIST = _TABLE.tolist()
_SHORT = 64  # inputs shorter than this (record headers) take the plain byte loop


def _shift_zeros(registers: np.ndarray, count: int) -> np.ndarray:
    """Raw crc32c registers after `count` more zero bytes (one step per byte; used only to build tables)."""
    r = registers.astype(np.uint32)
    for _ in range(count):
        r = _TABLE[r & 0xFF] ^ (r >> 8)
    return r


def _shift_tables(count: int) -> np.ndarray:
    """Tables S[j, v] = register (v << 8j) shifted by `count` zero bytes, built by doubling. [4, 256] uint32."""
    base = (np.arange(256, dtype=np.uint32)[None, :] << (8 * np.arange(4, dtype=np.uint32))[:, None])
    result = base.copy()  # identity (shift by 0)
    power = _shift_zeros(base, 1)  # shift by 1
    while count:
        if count & 1:
            result = _apply_shift(power, result)
        power = _apply_shift(power, power)
        count >>= 1
    return result


def _apply_shift(tables: np.ndarray, registers: np.ndarray) -> np.ndarray:
    """Applies the linear shift operator given by `tables` [4, 256] to uint32 registers of any shape."""
    r = registers.astype(np.uint32)
    return tables[0][r & 0xFF] ^ tables[1][(r >> 8) & 0xFF] ^ tables[2][(r >> 16) & 0xFF] ^ tables[3][r >> 24]


# _POSITION[c, b]: contribution of byte b at column c of a lane, i.e. followed by _LANE - 1 - c bytes.
_POSITION = np.empty((_LANE, 256), np.uint32)  # [_LANE, 256]
_POSITION[_LANE - 1] = _TABLE
for _c in range(_LANE - 2, -1, -1):
    _POSITION[_c] = _TABLE[_POSITION[_c + 1] & 0xFF] ^ (_POSITION[_c + 1] >> 8)
_COLUMNS = np.arange(_LANE)[None, :]  # [1, _LANE]
_ONE_LANE = _shift_tables(_LANE)
_lane_shifts = _shift_tables(0)[None]  # [q, 4, 256]: tables shifting a register by q * _LANE zero bytes


def _lane_shift_tables(count: int) -> np.ndarray:
    """Shift tables for 0 .. count - 1 lanes, extended on demand (thread safe: extends a local copy, publishes
    it). [count, 4, 256] uint32."""
    global _lane_shifts
    tables = _lane_shifts
    while len(tables) < count:
        tables = np.concatenate([tables, _apply_shift(_ONE_LANE, tables[-1])[None]])
    if len(tables) > len(_lane_shifts):
        _lane_shifts = tables
    return tables[:count]


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`, as TFRecord uses it; crc32c(b"123456789") == 0xE3069283.

    CRC is linear over GF(2): the initial value 0xFFFFFFFF equals XOR-ing the first four bytes with 0xFF, each
    byte's contribution depends only on its value and how many bytes follow it, so the bytes are gathered from
    position tables per 256-byte lane and the lanes are combined with precomputed shift operators.
    """
    n = len(data)
    if n < _SHORT:
        r = 0xFFFFFFFF
        for b in data:
            r = _TABLE_LIST[(r ^ b) & 0xFF] ^ (r >> 8)
        return r ^ 0xFFFFFFFF
    lanes = -(-n // _LANE)
    start = lanes * _LANE - n
    padded = np.zeros(lanes * _LANE, np.uint8)  # leading zero bytes leave a zero-initialised crc unchanged
    padded[start:] = np.frombuffer(data, np.uint8)
    padded[start:start + 4] ^= 0xFF
    grid = padded.reshape(lanes, _LANE)  # [lanes, _LANE]
    per_lane = np.bitwise_xor.reduce(_POSITION[_COLUMNS, grid], axis=1)  # [lanes]
    shifts = _lane_shift_tables(lanes)[::-1]  # lane q is followed by lanes - 1 - q lanes
    rows = np.arange(lanes)
    shifted = (shifts[rows, 0, per_lane & 0xFF] ^ shifts[rows, 1, (per_lane >> 8) & 0xFF]
               ^ shifts[rows, 2, (per_lane >> 16) & 0xFF] ^ shifts[rows, 3, per_lane >> 24])  # [lanes]
    return int(np.bitwise_xor.reduce(shifted)) ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _CRC_MASK_DELTA) & 0xFFFFFFFF
