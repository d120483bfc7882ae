"""The two-class discrimination task (spec emergence.md §3): a balanced mixture of two data models.

Convention:
    Labels c ∈ {0, 1}, int64, iid uniform. Class c is drawn from ``model{c}``; by convention
    class 0 is the *short*-ξ model and class 1 the long-ξ one (sgoldt/conv_emerge
    ``tasks.Mixture``: ξ = (0.1, 0.5) extensive). Targets (:func:`targets`):
    ``"original"`` (sgoldt/conv_emerge ``conv_emerge_online.preprocess``): y = +1 for class 0,
    −1 for class 1 — the scalar s of the outputs [s, −s], MSE (s − y)², class 0 iff s ≥ 0
    (the argmax of [s, −s]; torch's argmax picks index 0 on the tie s = 0);
    ``"followup"`` (leonlufkin/Localization): y ∈ {0, 1} with y = 1 for class 1 (the longer ξ),
    loss (ŷ − y)², accuracy 1[ŷ > 0.5].
"""
from __future__ import annotations

import warnings

import torch

__all__ = ["Mixture", "targets"]


def _corr_length(model) -> float | None:
    lat = getattr(model, "latent", None)
    if lat is not None and hasattr(lat, "xi_eff"):
        return float(lat.xi_eff)
    xi = getattr(model, "xi_eff", getattr(model, "xi", None))
    return float(xi) if isinstance(xi, (int, float)) else None


class Mixture:
    """Balanced mixture of ``model0`` (class 0, short ξ) and ``model1`` (class 1, long ξ).

    Parameters
    ----------
    model0, model1
        Data models with ``.sample(n, generator, dtype=...)``, equal ``L`` and ``dim``.

    Attributes
    ----------
    models : tuple
    D, L, dim : int

    Convention:
        See the module docstring. ``sample`` draws the labels first, then all class-0 samples,
        then all class-1 samples, from the same generator (on its device). A warning is
        issued if model0's correlation length exceeds model1's (reversed class convention).
    """

    def __init__(self, model0, model1):
        if (model0.L, model0.dim) != (model1.L, model1.dim):
            raise ValueError(f"model0 and model1 must have the same L and dim, got "
                             f"({model0.L}, {model0.dim}) and ({model1.L}, {model1.dim})")
        self.models = (model0, model1)
        self.L, self.dim, self.D = model0.L, model0.dim, model0.L**model0.dim
        x0, x1 = _corr_length(model0), _corr_length(model1)
        if x0 is not None and x1 is not None and x0 > x1:
            warnings.warn(f"Mixture: class 0 has the longer correlation length ({x0} > {x1}); "
                          "the convention is class 0 = short ξ", stacklevel=2)

    def sample(self, n: int, generator: torch.Generator | None = None, *,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, c): x (n, L) or (n, L, L) in ``dtype``, c (n,) int64 in {0, 1}."""
        dev = torch.device("cpu") if generator is None else generator.device
        c = torch.randint(0, 2, (int(n),), generator=generator, device=dev)
        x = torch.empty((int(n),) + (self.L,) * self.dim, dtype=dtype, device=dev)
        for k, m in enumerate(self.models):
            idx = (c == k).nonzero().squeeze(1)
            if idx.numel():
                x[idx] = m.sample(idx.numel(), generator, dtype=dtype).to(device=dev)
        return x, c

    def covariance(self, c: int) -> torch.Tensor:
        """Σ_c: the realised covariance of class ``c`` (D, D) float64."""
        if c not in (0, 1):
            raise ValueError(f"c must be 0 or 1, got {c!r}")
        return self.models[c].covariance()


def targets(c: torch.Tensor, convention: str = "original", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Regression targets for labels ``c`` (int, {0, 1}).

    Parameters
    ----------
    c : Tensor (n,) int64
    convention : {"original", "followup"}
        ``"original"``: y = +1 for class 0, −1 for class 1. ``"followup"``: y = c
        (1 for the long-ξ class 1).
    dtype : torch.dtype

    Returns
    -------
    Tensor (n,) of ``dtype`` on c's device.
    """
    if convention == "original":
        return (1 - 2 * c).to(dtype)
    if convention == "followup":
        return c.to(dtype)
    raise ValueError(f"convention must be 'original' or 'followup', got {convention!r}")
