"""Reading ``torch.save`` files (zip archives with a ``data.pkl`` pickle) without running their code:
the reference's files hold only plain data and numpy scalars, so exactly those globals resolve and
everything else, persistent references included, is refused. (``torch.load(weights_only=True)``
refuses the numpy scalars under torch >= 2.6.)
"""
from __future__ import annotations

import importlib
import io
import pickle
import zipfile
import zlib
from typing import Any

from ..errors import DrkitError

#: the only globals a reference file may name: numpy scalars are pickled as
#: ``multiarray.scalar(dtype, bytes)`` and their dtypes as ``numpy.dtype(...)``
_ALLOWED = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype"),
            ("numpy.dtypes", "Float64DType"), ("numpy.dtypes", "Float32DType"), ("numpy.dtypes", "Int64DType"),
            ("numpy.dtypes", "Int32DType"), ("numpy.dtypes", "BoolDType"), ("builtins", "set"),
            ("builtins", "frozenset"), ("builtins", "complex"), ("collections", "OrderedDict")}


class UnsafePickle(DrkitError):
    """The pickle names something other than plain data."""


class _DataOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise UnsafePickle(f"refuses to load {module}.{name}: only plain data (lists, dicts, numbers, "
                               "numpy scalars) is accepted")
        return getattr(importlib.import_module(module), name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickle("refuses persistent references (tensors or storages): expected plain data")


def loads_data(data: bytes) -> Any:
    """Unpickle plain data only (see the module docstring)."""
    try:
        return _DataOnly(io.BytesIO(data)).load()
    except UnsafePickle:
        raise
    except Exception as exc:  # truncated or foreign bytes: many exception types, one meaning
        raise UnsafePickle(f"is not a readable pickle ({type(exc).__name__}: {exc})") from exc


def load_torch_save(data: bytes, name: str) -> Any:
    """The object in a ``torch.save`` file's bytes, plain data only; ``name`` goes into every refusal."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            pkl = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(pkl) != 1:
                raise DrkitError(f"{name}: not a torch.save file (no single data.pkl in the archive)")
            payload = z.read(pkl[0])
    except zipfile.BadZipFile:
        raise DrkitError(f"{name}: not a zip-format torch.save file (legacy or joblib files are not read: "
                         "re-save them with torch>=1.6)") from None
    except (OSError, EOFError, ValueError, KeyError, RuntimeError, zlib.error, NotImplementedError) as exc:
        raise DrkitError(f"{name}: a damaged zip archive ({type(exc).__name__}: {exc})") from None
    try:
        return loads_data(payload)
    except UnsafePickle as exc:
        raise UnsafePickle(f"{name}: {exc}") from None
