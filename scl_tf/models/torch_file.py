"""Reads PyTorch state dicts with the standard library and NumPy alone (PyTorch is no dependency).

Both formats of `torch.save`:
- legacy (before PyTorch 1.6): five pickles one after the other (magic number, protocol
  version, system info, the object, the list of storage keys), then each storage's raw bytes
  after an 8-byte element count, in the order of that list;
- zip (PyTorch 1.6 on): `ARCHIVE/data.pkl` holds the object, `ARCHIVE/data/KEY` each storage.
In both, a tensor is pickled as a call of `torch._utils._rebuild_tensor_v2(storage, offset,
size, stride, ...)` whose storage is a persistent id `("storage", StorageType, key, device,
numel)`. Only those names (and `collections.OrderedDict`) are accepted from the pickle: a file
naming any other global is refused, so reading a file runs none of its code.
"""

import collections
import os
import pickle
import zipfile
from typing import NamedTuple

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchFileError(ValueError):
    """The file is not a readable PyTorch state dict; the message names it."""


class _StorageRef(NamedTuple):
    key: str
    dtype: type
    numel: int


class _TensorRef(NamedTuple):
    storage: _StorageRef
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage, offset, size, stride, *unused):
    return _TensorRef(storage, offset, tuple(size), tuple(stride))


class _StorageType(NamedTuple):
    dtype: type


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        kind, storage_type, key, _device, numel, *_ = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return _StorageRef(str(key), storage_type.dtype, int(numel))


def _tensor_array(ref, buffers):
    """A `_TensorRef` -> np.ndarray (a copy), from its storage's bytes."""
    flat = np.frombuffer(buffers[ref.storage.key], dtype=ref.storage.dtype)
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[ref.offset :], ref.size, tuple(step * itemsize for step in ref.stride)
    )
    return np.array(view)


def _legacy_buffers(f, keys, refs):
    """Reads the storages after a legacy file's pickles: {key: bytes}."""
    sizes = {ref.storage.key: ref.storage for ref in refs}
    buffers = {}
    for key in keys:
        count = int.from_bytes(f.read(8), "little")
        storage = sizes.get(key)
        nbytes = count * (np.dtype(storage.dtype).itemsize if storage else 1)
        data = f.read(nbytes)
        if storage is None or count != storage.numel or len(data) != nbytes:
            raise TorchFileError(f"storage {key} is truncated or inconsistent")
        buffers[key] = data
    return buffers


def _read_legacy(path):
    with open(path, "rb") as f:
        if _Unpickler(f).load() != _LEGACY_MAGIC:
            raise TorchFileError("not a PyTorch file (wrong magic number)")
        _Unpickler(f).load()  # protocol version
        _Unpickler(f).load()  # system info
        state = _Unpickler(f).load()
        keys = _Unpickler(f).load()
        refs = [value for value in state.values() if isinstance(value, _TensorRef)]
        return state, _legacy_buffers(f, keys, refs)


def _read_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickle_name = next((name for name in names if name.endswith("/data.pkl")), None)
        if pickle_name is None:
            raise TorchFileError("zip file without data.pkl")
        root = pickle_name[: -len("data.pkl")]
        with archive.open(pickle_name) as f:
            state = _Unpickler(f).load()
        refs = [value for value in state.values() if isinstance(value, _TensorRef)]
        buffers = {ref.storage.key: archive.read(f"{root}data/{ref.storage.key}") for ref in refs}
        return state, buffers


def read_state_dict(path):
    """Reads a PyTorch state dict saved by `torch.save`, in either format.

    A checkpoint dict with a `"state_dict"` entry is unwrapped.

    Returns:
        {name: np.ndarray} in the file's order, each array in its stored dtype and shape.

    Raises:
        FileNotFoundError: no such file.
        TorchFileError: anything else: not a PyTorch file, truncated, or a pickle that names
            globals other than tensors and storages.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    reader = _read_zip if zipfile.is_zipfile(path) else _read_legacy
    try:
        state, buffers = reader(path)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise TorchFileError("the file holds no state dict")
        return {
            name: _tensor_array(value, buffers)
            for name, value in state.items()
            if isinstance(value, _TensorRef)
        }
    except (TorchFileError, pickle.UnpicklingError, EOFError, KeyError, ValueError) as err:
        raise TorchFileError(f"{path}: not a readable PyTorch state dict ({err})") from None
