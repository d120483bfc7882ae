"""Probe inputs from a NumPy ``.npz`` file, read without pickle.

Convention:
    The file holds an array of inputs under ``x_key`` (default ``"x"``) and, optionally, integer
    labels under ``y_key`` (default ``"y"``). It is opened with ``np.load(allow_pickle=False)``,
    so object arrays (which would need pickle) are refused. Inputs keep their shape ``(N, ...)``:
    ``(N, C, H, W)`` images, ``(N, H, W)`` single-channel images (a channel axis is added when
    ``add_channel``) or ``(N, D)`` vectors. ``uint8`` inputs are divided by 255 (pixels in
    [0, 1]); other numeric inputs are converted to float32 as they are. Labels become int64.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np
import torch

__all__ = ["load_npz"]


def load_npz(path: str | os.PathLike, *, x_key: str = "x", y_key: str | None = "y",
             add_channel: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(X, y)`` from an ``.npz`` file; ``y`` is None when ``y_key`` is absent or None.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not an npz archive, a missing ``x_key``, object arrays, non-numeric inputs, or labels
        that are not integers aligned with the inputs (one-line messages).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"npz file not found: {path!r}")
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path!r} is not a readable .npz archive: {e}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{path!r} holds a single array; save inputs with np.savez(path, x=..., y=...)")
    with z:
        if x_key not in z.files:
            raise ValueError(f"{path!r} has no array {x_key!r}; arrays: {', '.join(z.files) or '(none)'}")
        try:
            x = z[x_key]
            y = z[y_key] if y_key is not None and y_key in z.files else None
        except ValueError as e:  # object arrays need pickle
            raise ValueError(f"{path!r}: {e} (object arrays are refused)") from None
    if x.dtype.kind not in "uif" or x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"{path!r}: {x_key!r} must be a numeric array (N, ...) with N >= 1, "
                         f"got dtype {x.dtype} shape {x.shape}")
    X = torch.from_numpy(np.ascontiguousarray(x))
    X = X.float() / 255.0 if x.dtype == np.uint8 else X.float()
    if add_channel and X.ndim == 3:
        X = X[:, None]  # (N, 1, H, W)
    Y = None
    if y is not None:
        if y.dtype.kind not in "iu" or y.shape != (x.shape[0],):
            raise ValueError(f"{path!r}: {y_key!r} must be {x.shape[0]} integer labels, "
                             f"got dtype {y.dtype} shape {y.shape}")
        Y = torch.from_numpy(y.astype(np.int64))
    return X, Y
