"""A restricted unpickler for the CIFAR python archives: data only, never code.

Only these globals may be referenced by a pickle: numpy's ndarray reconstructor
(``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct``),
``numpy.ndarray``, ``numpy.dtype`` and ``_codecs.encode`` (how a Python 3 protocol-2 pickle
stores ``bytes``). Anything else (``os.system``, ``builtins.eval``, ...) raises
:class:`UnsafePickleError` *before* it is called. Python 2 pickles (the original CIFAR files)
are read with ``encoding="bytes"``, so dict keys are ``bytes`` (``b'data'``, ``b'labels'``).
"""
from __future__ import annotations

import codecs
import io
import pickle

import numpy as np

__all__ = ["safe_loads", "UnsafePickleError"]

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's _reconstruct, whatever its module

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
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
    """Unpickle ``data`` allowing only builtin containers/scalars and numpy arrays."""
    return _Restricted(io.BytesIO(data), encoding="bytes").load()
