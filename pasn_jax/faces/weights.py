"""The MTCNN weights of the `mtcnn` package (MIT, `mtcnn/assets/weights/{pnet,rnet,onet}.lz4`), read without
importing that package (its modules import TensorFlow) and without running code from the files.

Each file is an lz4-compressed joblib dump of a list of numpy arrays (Keras `get_weights()` order). A joblib dump
is a pickle stream in which each array is a `joblib.numpy_pickle.NumpyArrayWrapper` object that stands for it, its
raw bytes following the wrapper's BUILD opcode. The unpickler below admits only that wrapper, `numpy.ndarray` (as
the wrapper's subclass field) and `numpy.dtype`, and reads the array bytes the way joblib does.
"""

import importlib.util
import io
import os
import pickle

import lz4.frame
import numpy as np

NETWORKS = ("pnet", "rnet", "onet")
_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_ALLOWED = {_WRAPPER, ("numpy", "ndarray"), ("numpy", "dtype")}


class WeightsError(ValueError):
    """A weights file is missing, malformed or holds something other than numeric arrays; the message names it."""


class _ArrayWrapper:
    """Stands for joblib's NumpyArrayWrapper: BUILD fills its fields (shape, order, dtype, ...)."""


class _SafeUnpickler(pickle._Unpickler):  # the Python unpickler: its BUILD opcode can be intercepted, as joblib does
    def __init__(self, stream: io.BytesIO, path: str):
        super().__init__(stream)
        self._stream, self._path = stream, path
        self.dispatch = dict(pickle._Unpickler.dispatch)
        self.dispatch[pickle.BUILD[0]] = _SafeUnpickler._load_build

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise WeightsError(f"{self._path}: refusing the pickled global '{module}.{name}' (allowed: numpy arrays "
                               f"as joblib.numpy_pickle.NumpyArrayWrapper, numpy.ndarray, numpy.dtype)")
        if (module, name) == _WRAPPER:
            return _ArrayWrapper
        return np.ndarray if name == "ndarray" else np.dtype

    def persistent_load(self, pid):
        raise WeightsError(f"{self._path}: refusing a persistent id in the pickle stream")

    def _load_build(self):
        pickle._Unpickler.load_build(self)
        if isinstance(self.stack[-1], _ArrayWrapper):
            self.stack[-1] = self._read_array(self.stack[-1])

    def _read_array(self, wrapper: _ArrayWrapper) -> np.ndarray:
        fields = vars(wrapper)
        dtype, shape, order = fields.get("dtype"), fields.get("shape"), fields.get("order", "C")
        if fields.get("subclass") is not np.ndarray or not isinstance(dtype, np.dtype) or dtype.hasobject \
                or not isinstance(shape, tuple) or order not in ("C", "F"):
            raise WeightsError(f"{self._path}: an array entry is not a plain numeric numpy array ({fields})")
        if fields.get("numpy_array_alignment_bytes") is not None:  # 1 byte: the padding length, then the padding
            self._stream.read(self._stream.read(1)[0])
        count = int(np.prod(shape, dtype=np.int64))
        data = self._stream.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise WeightsError(f"{self._path}: truncated array data (shape {list(shape)}, dtype {dtype})")
        array = np.frombuffer(data, dtype=dtype, count=count)
        array = array.reshape(shape[::-1]).T if order == "F" else array.reshape(shape)
        return np.ascontiguousarray(array.astype(dtype.newbyteorder("=")))


def read_arrays(path: str) -> list[np.ndarray]:
    """The list of arrays in one lz4-compressed joblib file, read without executing code from it."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise WeightsError(f"{path}: cannot read ({e.strerror})") from None
    try:
        stream = io.BytesIO(lz4.frame.decompress(raw))
    except RuntimeError:
        raise WeightsError(f"{path}: not an lz4 frame") from None
    try:
        value = _SafeUnpickler(stream, path).load()
    except (pickle.UnpicklingError, EOFError, IndexError, KeyError, TypeError) as e:
        raise WeightsError(f"{path}: not a joblib dump of numpy arrays ({type(e).__name__}: {e})") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(a, np.ndarray) for a in value):
        raise WeightsError(f"{path}: expected a list of numpy arrays, got {type(value).__name__}")
    return list(value)


def weights_dir() -> str:
    """`mtcnn/assets/weights` of the installed `mtcnn` package, located without importing it."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("the 'mtcnn' package (which ships the MTCNN weights) is not installed: "
                           "pip install mtcnn==1.0.0 (TensorFlow is not needed)")
    return os.path.join(next(iter(spec.submodule_search_locations)), "assets", "weights")


def load_all(folder: str | None = None) -> dict[str, list[np.ndarray]]:
    """{'pnet' | 'rnet' | 'onet': list of arrays} from `folder` (default: the mtcnn package's)."""
    folder = weights_dir() if folder is None else folder
    return {name: read_arrays(os.path.join(folder, f"{name}.lz4")) for name in NETWORKS}
