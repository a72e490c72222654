"""Face-verification pair sets in insightface's `.bin` format (`lfw.bin`, `cfp_fp.bin`, `agedb_30.bin`, and the
synthetic `verify.bin`): a Python 2 pickle of (2N encoded images, N booleans: pair i is images 2i and 2i + 1, the
same person or not). Read with an unpickler that loads no global, so no code from the file runs."""

import os
import pickle
import struct
from collections.abc import Sequence

import numpy as np


class VerificationSetError(ValueError):
    """A verification `.bin` file that cannot be read as one; the message names the file."""


class _NoGlobals(pickle.Unpickler):
    """Loads only what needs no global (bytes, str, lists, tuples, booleans, numbers): nothing is executed."""

    def __init__(self, file, path: str):
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module, name):
        raise VerificationSetError(f"{self._path}: refused to load the global {module}.{name} (a verification set "
                                   "holds only encoded images and booleans; nothing in it is executed)")

    def persistent_load(self, pid):
        raise VerificationSetError(f"{self._path}: refused a persistent id (a verification set holds none)")


def read_bin(path: str) -> tuple[list[bytes], np.ndarray]:
    """(2N encoded images, issame bool [N]) of an insightface verification set; pair i is images 2i and 2i+1."""
    if not os.path.isfile(path):
        raise VerificationSetError(f"{path}: missing file")
    try:
        with open(path, "rb") as f:
            loaded = _NoGlobals(f, path).load()
    except VerificationSetError:
        raise
    except Exception as e:  # a malformed pickle raises many kinds (UnpicklingError, EOFError, KeyError, ...)
        raise VerificationSetError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None
    expected = "a pickled 2-tuple (list of 2N image bytes, list of N booleans)"
    if not isinstance(loaded, tuple) or len(loaded) != 2:
        raise VerificationSetError(f"{path}: expected {expected}, got {type(loaded).__name__}")
    images, issame = loaded
    if not isinstance(images, (list, tuple)) or not all(isinstance(b, bytes) for b in images):
        raise VerificationSetError(f"{path}: expected {expected}; the first item is not a list of bytes")
    if not isinstance(issame, (list, tuple)) or not all(isinstance(s, bool) for s in issame):
        raise VerificationSetError(f"{path}: expected {expected}; the second item is not a list of booleans")
    if len(images) != 2 * len(issame):
        raise VerificationSetError(f"{path}: expected 2N images for N pairs, got {len(images)} images and "
                            f"{len(issame)} pairs")
    return list(images), np.asarray(issame, bool).reshape(-1)


def write_bin(path: str, images: Sequence[bytes], issame: Sequence[bool]) -> None:
    """Writes a verification set as Python 2's `pickle.dump((images, issame), f, protocol=2)` did (strings as
    BINSTRING, no globals: Python 3's protocol 2 would need `_codecs.encode` for bytes), temp name then rename."""
    if len(images) != 2 * len(issame):
        raise VerificationSetError(f"{path}: expected 2N images for N pairs, got {len(images)} images and "
                            f"{len(issame)} pairs")
    with open(path + ".tmp", "wb") as f:
        f.write(b"\x80\x02")  # PROTO 2
        for values, encode in ((images, _binstring), (issame, lambda v: b"\x88" if v else b"\x89")):
            f.write(b"]")  # EMPTY_LIST
            for start in range(0, len(values), 1000):  # MARK items APPENDS, in batches as pickle writes them
                f.write(b"(" + b"".join(encode(v) for v in values[start:start + 1000]) + b"e")
        f.write(b"\x86.")  # TUPLE2, STOP
    os.replace(path + ".tmp", path)


def _binstring(value: bytes) -> bytes:
    value = bytes(value)
    if len(value) < 256:
        return b"U" + bytes([len(value)]) + value  # SHORT_BINSTRING
    return b"T" + struct.pack("<i", len(value)) + value  # BINSTRING
