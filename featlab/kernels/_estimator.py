"""scikit-learn plumbing shared by featlab's kernel machines (spec agop_rfm.md §6, STYLE lesson 14).

Every kernel machine derives from ``sklearn.base.BaseEstimator`` through :class:`KernelEstimatorMixin`,
which adds: declarative parameter checks (one-line ``ValueError`` naming the argument), input
validation (NaN/inf, sparse, complex, dimensionality and feature count refused with a clear
message, via ``sklearn.utils.validation.validate_data`` for array-likes and the same rules in torch
for tensors, so CUDA tensors never leave the device), the working dtype and device, and the
conversion of results back to the caller's array type.

Convention:
    Two families share this code.
    * scikit-learn estimators (``RFMRegressor``, ``RFMClassifier``, ``ConvRFMRegressor``,
      ``ConvRFMClassifier``, ``DeepConvRFMClassifier``): numpy in, numpy out; fitted arrays are
      numpy arrays; classification follows scikit-learn (``decision_function`` > 0 is class 1).
    * torch-native estimators (``RFM``, ``ConvRFM``, ``DeepConvRFM``, ``_torch_native = True``):
      the historical API kept for existing code: fitted arrays are tensors on the working device,
      a tensor X gives tensor outputs, the task is inferred from y's dtype.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["Constraint", "KernelEstimatorMixin", "to_tensor", "resolve_generator", "to_numpy"]


class Constraint:
    """A predicate with a human description, e.g. ``Constraint(lambda v: v > 0, "> 0")``."""

    def __init__(self, check: Callable[[Any], bool], text: str):
        self.check, self.text = check, text


def _same(a: Any, b: Any) -> bool:
    try:
        return (bool(a == b) and type(a) is type(b)) or a is b
    except Exception:
        return a is b


def to_numpy(A: Any) -> np.ndarray:
    """Tensor (any device) or array-like -> numpy array (no copy for CPU tensors and arrays)."""
    if isinstance(A, torch.Tensor):
        return A.detach().cpu().numpy()
    return np.asarray(A)


def to_tensor(X: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """numpy array / tensor / nested list -> tensor of ``dtype`` on ``device``.

    A read-only numpy array (e.g. a memmap) is copied, never wrapped (torch cannot wrap it safely).
    """
    if isinstance(X, torch.Tensor):
        return X.detach().to(device=device, dtype=dtype)
    A = np.asarray(X)
    if not A.flags.writeable:
        A = A.copy()
    return torch.as_tensor(A, dtype=dtype, device=device)


def resolve_generator(random_state: Any, device: torch.device = torch.device("cpu")) -> torch.Generator:
    """``None`` -> a freshly seeded generator; int -> seeded; numpy RandomState/Generator -> seeded
    from one draw of it; a torch.Generator is used as given."""
    if isinstance(random_state, torch.Generator):
        return random_state
    g = torch.Generator(device=device)
    if random_state is None:
        g.seed()
    elif isinstance(random_state, np.random.RandomState):
        g.manual_seed(int(random_state.randint(2**31 - 1)))
    elif isinstance(random_state, np.random.Generator):
        g.manual_seed(int(random_state.integers(2**31 - 1)))
    else:
        g.manual_seed(int(random_state))
    return g


class KernelEstimatorMixin:
    """Validation, dtype/device and output conventions of featlab's kernel machines (see module doc).

    Subclasses list ``_constraints`` (name -> allowed values tuple, or a :class:`Constraint`),
    checked at ``fit`` time. (scikit-learn's own ``_parameter_constraints`` format is private API;
    featlab keeps its own, so ``_validate_params`` is overridden here.)
    """

    _constraints: dict[str, Any] = {}
    _torch_native = False  # True: tensor attributes and tensor-in/tensor-out (RFM, ConvRFM, DeepConvRFM)

    # --- parameters ---------------------------------------------------------------------------
    def _validate_params(self) -> None:
        for name, allowed in self._constraints.items():
            v = getattr(self, name)
            if isinstance(allowed, Constraint):
                try:
                    ok = bool(allowed.check(v))
                except Exception:
                    ok = False
                text = allowed.text
            else:
                ok = any(_same(v, a) for a in allowed)
                text = ", ".join(map(repr, allowed))
            if not ok:
                raise ValueError(f"{name}={v!r} is not allowed; allowed: {text}")

    def _torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32

    def _resolve_device(self, X: Any) -> torch.device:
        if self.device is not None:
            return torch.device(self.device)
        return X.device if isinstance(X, torch.Tensor) else torch.device("cpu")

    # --- input --------------------------------------------------------------------------------
    def _flatten_input(self, X: Any, reset: bool) -> Any:
        """Hook: bring X to 2-D (n, n_features) before validation (images are flattened here)."""
        return X

    def _check_X(self, X: Any, *, reset: bool, device: torch.device | None = None,
                 min_samples: int = 1) -> torch.Tensor:
        """Validated 2-D X as a tensor of the working dtype on the working device.

        Refuses sparse input (TypeError), complex, NaN/inf, non-2-D input, fewer than
        ``min_samples`` rows and (``reset=False``) a feature count that differs from
        ``n_features_in_`` (ValueError). ``reset=True`` sets ``n_features_in_``.
        """
        dt = self._torch_dtype()
        X = self._flatten_input(X, reset)
        if not isinstance(X, torch.Tensor):
            A = validate_data(self, X, reset=reset, accept_sparse=False, ensure_all_finite=True,
                              dtype=np.float64 if dt == torch.float64 else np.float32,
                              ensure_min_samples=min_samples)
            return to_tensor(A, dt, device or torch.device("cpu"))
        name = type(self).__name__
        if X.layout != torch.strided:
            raise TypeError(f"X is a sparse tensor, but {name} needs dense data; use X.to_dense()")
        if X.is_complex():
            raise ValueError("Complex data not supported")
        if X.ndim != 2:
            raise ValueError(f"Expected a 2-D X (n_samples, n_features), got shape {tuple(X.shape)}")
        if X.shape[0] < min_samples:
            raise ValueError(f"Found array with {X.shape[0]} sample(s) (shape={tuple(X.shape)}) while a "
                             f"minimum of {min_samples} is required by {name}.")
        if X.shape[1] < 1:
            raise ValueError(f"Found array with 0 feature(s) (shape={tuple(X.shape)}) while a minimum of 1 "
                             f"is required by {name}.")
        X = X.detach().to(device=device or X.device, dtype=dt)
        if not bool(torch.isfinite(X).all()):
            raise ValueError("Input X contains NaN or infinity.")
        if reset:
            self.n_features_in_ = X.shape[1]
            self.__dict__.pop("feature_names_in_", None)
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {name} is expecting "
                             f"{self.n_features_in_} features as input.")
        return X

    # --- output -------------------------------------------------------------------------------
    def _store(self, T: Any) -> Any:
        """A fitted array as kept on the estimator: a tensor (torch-native) or a numpy array."""
        if self._torch_native or not isinstance(T, torch.Tensor):
            return T
        return T.detach().cpu().numpy()

    def _load(self, A: Any, device: torch.device) -> torch.Tensor:
        """A stored fitted array as a tensor on ``device`` (no copy when it already lives there)."""
        if isinstance(A, torch.Tensor):
            return A.to(device)
        return torch.from_numpy(A if A.flags.writeable else A.copy()).to(device)

    def _out(self, T: torch.Tensor, X: Any) -> Any:
        """A result for the caller: a tensor if torch-native and X was a tensor, else numpy."""
        if self._torch_native and isinstance(X, torch.Tensor):
            return T
        return T.detach().cpu().numpy()

    def _check_fitted(self) -> None:
        check_is_fitted(self)
