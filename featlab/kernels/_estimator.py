"""The scikit-learn estimator contract without depending on scikit-learn (STYLE lesson 14).

``__init__`` stores parameters verbatim; :meth:`get_params` reads them back by signature, so
``sklearn.base.clone`` and ``set_params`` work. Validation is declarative: each subclass lists
``_parameter_constraints`` (name -> allowed values tuple, or a predicate with a description),
checked at ``fit`` time with a one-line ``ValueError`` naming the argument.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np
import torch

__all__ = ["BaseKernelEstimator", "Constraint", "to_tensor", "resolve_generator"]


class Constraint:
    """A predicate with a human description, e.g. ``Constraint(lambda v: v > 0, "> 0")``."""

    def __init__(self, check: Callable[[Any], bool], text: str):
        self.check, self.text = check, text


class BaseKernelEstimator:
    """get_params / set_params / repr / parameter validation for featlab's kernel machines."""

    _parameter_constraints: dict[str, Any] = {}

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters as stored (``deep`` is accepted for scikit-learn)."""
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any):
        """Set constructor parameters; unknown names raise ``ValueError``. Returns self."""
        valid = set(self._param_names())
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"{k}: unknown parameter of {type(self).__name__}; allowed: {sorted(valid)}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        diff = [f"{k}={v!r}" for k, v in self.get_params().items()
                if sig.parameters[k].default is inspect.Parameter.empty or
                not _same(v, sig.parameters[k].default)]
        return f"{type(self).__name__}({', '.join(diff)})"

    def _validate_params(self) -> None:
        for name, allowed in self._parameter_constraints.items():
            v = getattr(self, name)
            if isinstance(allowed, Constraint):
                ok = allowed.check(v)
                text = allowed.text
            else:
                ok = any(_same(v, a) for a in allowed)
                text = ", ".join(map(repr, allowed))
            if not ok:
                raise ValueError(f"{name}={v!r} is not allowed; allowed: {text}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "alpha_"):
            raise AttributeError(f"this {type(self).__name__} is not fitted yet; call fit first")


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b) or (a is b)
    except Exception:
        return a is b


def to_tensor(X: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """numpy array / tensor / nested list -> tensor of ``dtype`` on ``device``."""
    if isinstance(X, torch.Tensor):
        return X.detach().to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(X), dtype=dtype, device=device)


def resolve_generator(random_state: Any, device: torch.device) -> torch.Generator:
    """``None`` -> a freshly seeded generator; int -> seeded; a Generator is used as given."""
    if isinstance(random_state, torch.Generator):
        return random_state
    g = torch.Generator(device=device)
    if random_state is None:
        g.seed()
    else:
        g.manual_seed(int(random_state))
    return g
