"""Column sums and sum of squares of a (P, D) array in one read (the optional C kernel).

:func:`colsum_sumsq` returns ``(S1, S2)``: ``S1 = F.sum(0)`` (float64, shape (D,)) and
``S2 = (F * F).sum()`` (a Python float), both accumulated in float64, from a single pass over
``F``. It is the fast path of :func:`featlab.probes._stability.mean_sq_distance`; the kernel is
``featlab/probes/_moments.c``, built at install time as the optional extension
``featlab.probes._moments_c`` and called through ctypes (the GIL is released during the call).

Convention: the kernel serves CPU tensors of dtype float64 or float32 that are C-contiguous
once viewed as (P, D); for anything else, or where the extension was not built (no C compiler
at install time), :func:`colsum_sumsq` returns None and the caller uses its torch path.
``AVAILABLE`` says whether the kernel loaded. Setting ``FEATLAB_NO_C_KERNELS=1`` before import
disables it (to time or test the torch path).
"""
from __future__ import annotations

import ctypes
import importlib.util
import os

import torch

__all__ = ["AVAILABLE", "colsum_sumsq"]


def _load():
    if os.environ.get("FEATLAB_NO_C_KERNELS", "") not in ("", "0"):
        return None
    spec = importlib.util.find_spec(f"{__package__}._moments_c")
    if spec is None or not spec.origin:
        return None
    try:
        lib = ctypes.CDLL(spec.origin)
    except OSError:
        return None
    fns = {}
    for dtype, name in ((torch.float64, "featlab_moments_f64"), (torch.float32, "featlab_moments_f32")):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        fn.restype = ctypes.c_double
        fns[dtype] = fn
    return fns


_FNS = _load()
AVAILABLE = _FNS is not None


def colsum_sumsq(F: torch.Tensor) -> tuple[torch.Tensor, float] | None:
    """``(F.sum(0), (F * F).sum())`` in float64 from one read of ``F`` (P, D), or None.

    None when the kernel is unavailable, ``F`` is not on the CPU, not float32/float64, not
    two-dimensional, or not C-contiguous (the caller then takes its torch path).
    """
    if (_FNS is None or F.device.type != "cpu" or F.dim() != 2 or F.dtype not in _FNS
            or not F.is_contiguous() or F.requires_grad):
        return None
    P, D = F.shape
    S1 = torch.empty(D, dtype=torch.float64)
    S2 = _FNS[F.dtype](F.data_ptr(), P, D, S1.data_ptr())
    return S1, float(S2)
