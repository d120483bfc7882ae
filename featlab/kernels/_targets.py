"""Targets of the kernel machines: y -> the (n, c) matrix the ridge solve fits, and back.

Convention:
    Kernel ridge regression fits Y (n, c) with the MSE loss (spec §6); classification uses
    indicator targets, so every task is a regression on a 0/1 (or real) matrix.

    kind         y                              Y (n, c)                    decision f(x)          label
    continuous   float (n,) or (n, k)           y as (n, 1) / (n, k)        -                      f
    binary       2 labels, (n,)                 one 0/1 column (class 1)    f - 1/2, shape (n,)     classes_[f > 1/2]
    multiclass   K >= 3 labels, (n,)            one-hot (n, K)              f, shape (n, K)         classes_[argmax f]
    multilabel   0/1 indicator (n, k)           y itself                    f - 1/2, shape (n, k)   f > 1/2

    The decision column is 1/2-shifted where the label is a threshold at 1/2, so that
    ``decision_function > 0`` <=> class 1 (scikit-learn's convention); ``predict`` is computed
    from the decision, so the two always agree. A column-vector y (n, 1) of labels is read as
    (n,) with scikit-learn's DataConversionWarning. Multi-output multiclass y is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_array, column_or_1d

from ._estimator import to_numpy

__all__ = ["Targets", "encode_regression", "encode_classification"]


@dataclass
class Targets:
    """How y was encoded: ``kind`` (see module doc), ``classes`` (labels; multilabel: arange(k)),
    ``y_dtype`` (dtype of the labels for multilabel predictions), ``one_d`` (regression y was 1-D)."""

    kind: str
    classes: np.ndarray | None = None
    y_dtype: Any = None
    one_d: bool = False

    @property
    def is_classifier(self) -> bool:
        return self.kind != "continuous"

    def encode(self, y: Any, n: int | None = None) -> np.ndarray:
        """y (labels or values) -> Y (n, c) float64 with this encoding (used for eval_set too)."""
        y = to_numpy(y)
        if n is not None and len(y) != n:
            raise ValueError(f"X and y have inconsistent numbers of samples: {n} != {len(y)}")
        if self.kind == "continuous":
            return np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        if self.kind == "multilabel":
            y = np.asarray(y)
            if y.ndim != 2 or y.shape[1] != len(self.classes):
                raise ValueError(f"y: expected a (n, {len(self.classes)}) label indicator, got shape {y.shape}")
            return y.astype(np.float64)
        y = column_or_1d(y, warn=True) if np.ndim(y) == 2 else np.asarray(y)
        idx = np.searchsorted(self.classes, y)
        idx = np.clip(idx, 0, len(self.classes) - 1)
        if not np.array_equal(self.classes[idx], y):
            raise ValueError(f"y contains labels not seen in fit: {sorted(set(np.unique(y)) - set(self.classes))}")
        if self.kind == "binary":
            return idx[:, None].astype(np.float64)
        return np.eye(len(self.classes))[idx]

    def decision(self, F: torch.Tensor) -> torch.Tensor:
        """Raw outputs F (n, c) -> scikit-learn decision values (see module doc)."""
        if self.kind == "binary":
            return F[:, 0] - 0.5
        if self.kind == "multilabel":
            return F - 0.5
        return F

    def label_index(self, F: torch.Tensor) -> torch.Tensor:
        """Raw outputs F (n, c) -> label indices (n,) or the 0/1 matrix (n, k) for multilabel."""
        D = self.decision(F)
        if self.kind == "multiclass":
            return D.argmax(1)
        return (D > 0).long()

    def labels(self, F: torch.Tensor) -> np.ndarray:
        """Raw outputs F (n, c) -> predicted labels as numpy (classes_ values; multilabel 0/1)."""
        idx = self.label_index(F).cpu().numpy()
        if self.kind == "multilabel":
            return idx.astype(self.y_dtype)
        return self.classes[idx]


def encode_regression(y: Any, n: int) -> tuple[np.ndarray, Targets]:
    """Float targets (n,) or (n, k); NaN/inf refused."""
    y = check_array(to_numpy(y), ensure_2d=False, dtype=np.float64, ensure_all_finite=True, input_name="y")
    if y.ndim > 2:
        raise ValueError(f"y must have shape (n,) or (n, k), got {y.shape}")
    t = Targets("continuous", one_d=y.ndim == 1)
    return t.encode(y, n), t


def encode_classification(y: Any, n: int, name: str, *, multilabel: bool = True) -> tuple[np.ndarray, Targets]:
    """Labels (n,) (or a column vector), or a multilabel indicator (n, k) when ``multilabel``."""
    y = to_numpy(y)
    if y.dtype.kind in "fc":
        y = check_array(y, ensure_2d=False, dtype=None, ensure_all_finite=True, input_name="y")
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    check_classification_targets(y)
    kind = type_of_target(y, input_name="y")
    if kind == "multilabel-indicator":
        if not multilabel:
            raise ValueError(f"y has shape {y.shape}: {name} takes one label per sample (y of shape (n,))")
        t = Targets("multilabel", classes=np.arange(y.shape[1]), y_dtype=y.dtype)
        return t.encode(y, n), t
    if kind not in ("binary", "multiclass"):
        raise ValueError(f"y of type {kind!r} is not supported by {name}: pass labels of shape (n,)"
                         + (" or a 0/1 indicator (n, k)" if multilabel else ""))
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"y has 1 class ({classes[0]!r}); {name} needs at least 2 classes")
    t = Targets("binary" if len(classes) == 2 else "multiclass", classes=classes)
    return t.encode(y, n), t
