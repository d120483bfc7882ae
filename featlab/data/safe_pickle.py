"""A restricted unpickler for the CIFAR python archives: data only, never code.

Only these globals may be referenced by a pickle: numpy's ndarray reconstructor
(``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct``),
``numpy.ndarray``, ``numpy.dtype`` and ``_codecs.encode`` (how a Python 3 protocol-2 pickle
stores ``bytes``). Anything else (``os.system``, ``builtins.eval``, ...) raises
:class:`UnsafePickleError` *before* it is called.

Memory is bounded by the file: ``numpy.ndarray`` is handed out as a non-callable token that
``_reconstruct`` accepts only with numpy's empty placeholder shape ``(0,)``; the array's real
shape then comes with its data bytes (``__setstate__`` refuses a buffer of the wrong size).
So a small pickle cannot call ``ndarray((2e10,), u1)`` to allocate uninitialised memory.
Callers bound the pickle's own size before reading it (:mod:`featlab.data.images`), and bytes
after the pickle are refused. Python 2 pickles (the original CIFAR files)
are read with ``encoding="bytes"``, so dict keys are ``bytes`` (``b'data'``, ``b'labels'``).
"""
from __future__ import annotations

import codecs
import io
import pickle

import numpy as np

__all__ = ["safe_loads", "UnsafePickleError"]

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's _reconstruct, whatever its module



class _NDArrayToken:
    """Stands for ``numpy.ndarray`` inside a pickle; calling it is refused."""

    def __call__(self, *args, **kwargs):
        raise UnsafePickleError("refusing to call numpy.ndarray directly from a data pickle")


_NDARRAY = _NDArrayToken()


def _safe_reconstruct(subtype, shape, dtype):
    if subtype is not _NDARRAY or tuple(shape) != (0,):
        raise UnsafePickleError("refusing numpy _reconstruct with arguments other than (ndarray, (0,), dtype)")
    return _RECONSTRUCT(np.ndarray, (0,), dtype)


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle referenced a global outside the allow-list."""


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refusing to load global {module}.{name} from a data pickle "
                                    "(only numpy arrays and builtin containers are allowed)") from None


def safe_loads(data: bytes) -> object:
    """Unpickle ``data`` allowing only builtin containers/scalars and numpy arrays.

    ``data`` must be exactly one pickle: bytes after its STOP opcode raise
    ``pickle.UnpicklingError`` (a file with something appended is not the file we expect).
    """
    buf = io.BytesIO(data)
    obj = _Restricted(buf, encoding="bytes").load()
    rest = len(data) - buf.tell()
    if rest:
        raise pickle.UnpicklingError(f"{rest} trailing bytes after the pickle")
    return obj
