"""Writes {name: np.ndarray} as `torch.save` does in its zip format, without PyTorch.

The pickle names `torch._utils._rebuild_tensor_v2` and `torch.FloatStorage` (etc.) as globals
and refers to each tensor's storage by a persistent id, exactly as PyTorch >= 1.6 writes it;
it is written by a pickler that emits those names without importing them.
"""

import io
import pickle
import zipfile

import numpy as np

_STORAGE_TYPES = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage"}


class _Global:
    """A global name, written as GLOBAL opcode `module name` (what PyTorch's pickle holds)."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle only reduces callables
        raise NotImplementedError


class _Tensor:
    def __init__(self, key, array):
        self.key, self.array = key, array


class _Pickler(pickle._Pickler):
    dispatch = dict(pickle._Pickler.dispatch)

    def _save_global_name(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    dispatch[_Global] = _save_global_name

    def persistent_id(self, obj):
        if isinstance(obj, tuple) and obj and obj[0] == "storage":
            return obj
        return None

    def reducer_override(self, obj):
        if not isinstance(obj, _Tensor):
            return NotImplemented
        array = obj.array
        storage_type = _Global("torch", _STORAGE_TYPES[array.dtype])
        storage = ("storage", storage_type, obj.key, "cpu", array.size)
        stride = tuple(s // array.itemsize for s in array.strides)
        rebuild = _Global("torch._utils", "_rebuild_tensor_v2")
        return rebuild, (storage, 0, array.shape, stride, False, {})


def save_zip(path, arrays, archive="archive"):
    """Writes `arrays` ({name: C-contiguous np.ndarray}) as a zip-format `torch.save` file."""
    tensors = {
        name: _Tensor(str(index), np.ascontiguousarray(array))
        for index, (name, array) in enumerate(arrays.items())
    }
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump(tensors)
    with zipfile.ZipFile(path, "w") as f:
        f.writestr(f"{archive}/data.pkl", buffer.getvalue())
        for tensor in tensors.values():
            f.writestr(f"{archive}/data/{tensor.key}", tensor.array.tobytes())
