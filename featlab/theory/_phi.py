"""The localisation amplifier phi(a) of Lufkin, Saxe & Grant (spec emergence.md §6.2).

    phi(a) = E_X[ X * erf( X a / (sqrt(2) sqrt(1 - a^2)) ) ]

for a unit-variance, symmetric single-site marginal X. It acts elementwise on the vector of
correlations a = Sigma_1 w / sqrt(w^T Sigma_1 w) in the effective single-neuron dynamics
(:mod:`featlab.theory.effective_dynamics`).

Closed forms: Gaussian phi = sqrt(2/pi) a (Stein's lemma); binary (+-1) phi =
erf(a / sqrt(2 (1 - a^2))). NLGP and Kur(k) marginals use quadrature. Third-order Taylor:
phi ~ sqrt(2/pi) [a - (kappa - 3) a^3 / 6].

Quadrature scheme [design]. Every marginal here is X = Q(|V|) * sign(V) with V uniform on
(-1, 1) and Q the quantile function of |X|, so for even h, E[h(X)] = int_0^1 h(Q(v)) dv. We
integrate over v with composite Gauss-Legendre on panels that are geometrically refined
towards both v = 0 and v = 1. This is used instead of plain Gauss-Hermite over the latent z
because (i) at large NLGP gain erf(g z / sqrt 2) jumps within |z| ~ 1/g, which Hermite nodes
do not resolve, and (ii) Kur(k) has power-law tails, which are an integrable endpoint
singularity at v = 1 here. The mass left out (v > 1 - 1e-15) is below 1e-15 * sup|h| for
bounded h. Convergence is checked in the tests by doubling the panel count.
"""
from __future__ import annotations

import math
from enum import Enum
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
from scipy import special

__all__ = [
    "Marginal", "phi", "phi_gaussian", "phi_binary", "phi_nlgp", "phi_kur", "phi_taylor",
    "marginal_kurtosis", "amplifier", "A_MAX",
]

A_MAX = 1.0 - 1e-12  # |a| is clipped here: phi has a sqrt(1 - a) cusp at a = +-1 (spec §6.2)
_SQRT_2_PI = math.sqrt(2.0 / math.pi)


class Marginal(str, Enum):
    """Single-site marginals for which phi is available.

    GAUSSIAN: closed form, linear (no localisation). BINARY: closed form (NLGP g -> inf, Ising).
    NLGP: quadrature, needs ``gain`` and ``gain_convention``. KUR: NORTA Kur(k) marginal,
    quadrature, needs ``k`` > 2. TAYLOR: third-order expansion, needs ``kappa``.
    """

    GAUSSIAN = "gaussian"
    BINARY = "binary"
    NLGP = "nlgp"
    KUR = "kur"
    TAYLOR = "taylor"


# ----------------------------------------------------------------------------- quadrature
@lru_cache(maxsize=8)
def _v_rule(n_panels: int = 30, order: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes v in (0, 1), s = 1 - v (computed without cancellation) and weights for dv."""
    x, w = np.polynomial.legendre.leggauss(order)
    lo = np.concatenate([[0.0], np.geomspace(1e-14, 0.5, n_panels)])  # edges in v near 0
    hi = np.concatenate([[0.0], np.geomspace(1e-15, 0.5, n_panels)])  # edges in s near 0 (v near 1)
    vs, ss, ws = [], [], []
    for a, b in zip(lo[:-1], lo[1:]):
        v = 0.5 * (b - a) * x + 0.5 * (b + a)
        vs.append(v), ss.append(1.0 - v), ws.append(0.5 * (b - a) * w)
    for a, b in zip(hi[1:-1], hi[2:]):  # skip s in (0, 1e-15): the left-out tail
        s = 0.5 * (b - a) * x + 0.5 * (b + a)
        vs.append(1.0 - s), ss.append(s), ws.append(0.5 * (b - a) * w)
    return np.concatenate(vs), np.concatenate(ss), np.concatenate(ws)


def _latent_z(v: np.ndarray, s: np.ndarray) -> np.ndarray:
    """|Z| quantile: z with P(|Z| <= z) = v, accurate at both ends."""
    return np.where(v < 0.5, math.sqrt(2.0) * special.erfinv(np.minimum(v, 0.5)),
                    -special.ndtri(np.maximum(s, 1e-300) / 2))


def _original_gain(gain: float, gain_convention: str) -> float:
    if gain_convention not in ("original", "followup"):
        raise ValueError(f"gain_convention must be 'original' or 'followup', got {gain_convention!r}")
    if not gain > 0:
        raise ValueError(f"gain must be > 0, got {gain!r}")
    return float(gain) * (math.sqrt(2.0) if gain_convention == "followup" else 1.0)


@lru_cache(maxsize=64)
def _abs_x_nodes(marginal: str, param: float, n_panels: int) -> tuple[np.ndarray, np.ndarray]:
    """(|X| at the nodes, weights), X standardised to unit variance (NLGP: same rule)."""
    v, s, w = _v_rule(n_panels)
    if marginal == "nlgp":
        x = special.erf(param * _latent_z(v, s) / math.sqrt(2.0))  # |erf(g z / sqrt2)|, original conv.
    elif marginal == "kur":
        k = param
        log_v = np.where(v < 0.5, np.log(np.maximum(v, 1e-300)), np.log1p(-np.minimum(s, 0.5)))
        one_minus_vk = -np.expm1(k * log_v)  # 1 - v^k without cancellation near v = 1
        x = v / one_minus_vk ** (1.0 / k)
        # exact variance B(3/k, 1-2/k)/k: the left-out tail s < 1e-15 matters for x^2 as k -> 2
        return x / math.sqrt(special.beta(3 / k, 1 - 2 / k) / k), w
    else:  # pragma: no cover - guarded by callers
        raise ValueError(marginal)
    x = x / math.sqrt(float(np.sum(w * x * x)))
    return x, w


def _check_k(k: float) -> float:
    if k is None or not k > 2:
        raise ValueError(f"k must be > 2 (finite variance) for the Kur(k) marginal, got {k!r}")
    return float(k)


# ----------------------------------------------------------------------------- phi variants
def _as_tensor(a) -> torch.Tensor:
    """Theory computes in float64 (spec README convention 10): every input is promoted."""
    return a.to(torch.float64) if torch.is_tensor(a) else torch.as_tensor(a, dtype=torch.float64)


def _marginal(marginal) -> Marginal:
    try:
        return Marginal(marginal)
    except ValueError:
        raise ValueError(f"marginal must be one of {', '.join(m.value for m in Marginal)}, "
                         f"got {marginal!r}") from None


def _c_of_a(a: torch.Tensor) -> torch.Tensor:
    a = a.clamp(-A_MAX, A_MAX)
    return a / (math.sqrt(2.0) * torch.sqrt(1.0 - a * a))


def phi_gaussian(a) -> torch.Tensor:
    """phi for a standard Gaussian marginal: sqrt(2/pi) * a (exact, by Stein's lemma).

    Parameters
    ----------
    a : tensor, any shape
        Correlations, |a| <= 1.
    """
    return _SQRT_2_PI * _as_tensor(a)


def phi_binary(a) -> torch.Tensor:
    """phi for a +-1 marginal: erf(a / sqrt(2 (1 - a^2))), |a| clipped at 1 - 1e-12."""
    return torch.special.erf(_c_of_a(_as_tensor(a)))


def _phi_quadrature(a: torch.Tensor, xabs: np.ndarray, w: np.ndarray) -> torch.Tensor:
    X = torch.as_tensor(xabs, dtype=a.dtype, device=a.device)  # (Q,)
    W = torch.as_tensor(w, dtype=a.dtype, device=a.device)  # (Q,)
    c = _c_of_a(a).reshape(-1, 1)  # (m, 1)
    out = (torch.special.erf(c * X) * X * W).sum(-1)  # even integrand: E = int_0^1 dv
    return out.reshape(a.shape)


def phi_nlgp(a, gain: float, gain_convention: str = "original", *, n_panels: int = 30) -> torch.Tensor:
    """phi for the NLGP marginal x = erf(g z / sqrt 2) / sqrt(gamma(g)) by quadrature.

    Convention:
        gain_convention="original": x = erf(g z/sqrt2)/sqrt(gamma(g)); "followup":
        x = erf(g_f z)/Z(g_f), i.e. g = sqrt(2) g_f. The marginal is standardised to unit
        variance by the same quadrature (exact variance).

    Parameters
    ----------
    a : tensor, any shape
        Correlations; |a| is clipped at 1 - 1e-12.
    gain : float
        g > 0 in ``gain_convention``.
    n_panels : int
        Panels per end of the v-quadrature (20 Gauss-Legendre nodes each).
    """
    g = _original_gain(gain, gain_convention)
    x, w = _abs_x_nodes("nlgp", g, n_panels)
    return _phi_quadrature(_as_tensor(a), x, w)


def phi_kur(a, k: float, *, n_panels: int = 30) -> torch.Tensor:
    """phi for the unit-variance NORTA Kur(k) marginal, F^-1(u) = v / (1 - |v|^k)^(1/k), v = 2u-1.

    Heavy-tailed (P(|X| > x) ~ x^-k): kurtosis > 3 for k > 4 near 4, infinite for k <= 4;
    sub-Gaussian (-> uniform) as k -> inf. Requires k > 2.
    """
    k = _check_k(k)
    x, w = _abs_x_nodes("kur", k, n_panels)
    return _phi_quadrature(_as_tensor(a), x, w)


def phi_taylor(a, kappa: float, taylor_prefactor: str = "exact") -> torch.Tensor:
    """Third-order expansion phi ~ sqrt(2/pi) [a - (kappa - 3) a^3 / 6]; error O(a^5).

    Parameters
    ----------
    kappa : float
        Marginal kurtosis E[X^4] (Gaussian: 3).
    taylor_prefactor : {"exact", "reference"}
        "reference" (compat quirk, spec §9 #14) reproduces LSG ``figures/fig3a.py``, which
        drops sqrt(2/pi) on the cubic term: sqrt(2/pi) a - (kappa - 3) a^3 / 6.
    """
    if taylor_prefactor not in ("exact", "reference"):
        raise ValueError(f"taylor_prefactor must be 'exact' or 'reference', got {taylor_prefactor!r}")
    a = _as_tensor(a)
    cubic = (kappa - 3.0) * a ** 3 / 6.0
    if taylor_prefactor == "exact":
        return _SQRT_2_PI * (a - cubic)
    return _SQRT_2_PI * a - cubic


def marginal_kurtosis(marginal: str | Marginal, *, gain: float | None = None,
                      gain_convention: str = "original", k: float | None = None,
                      n_panels: int = 30) -> float:
    """Kurtosis E[X^4] / E[X^2]^2 of a unit-variance marginal (Gaussian 3, binary 1).

    NLGP: by the v-quadrature. Kur(k): closed form B(5/k, 1-4/k) k / B(3/k, 1-2/k)^2 from
    E|V|^p/(1-|V|^k)^(p/k) = B((p+1)/k, 1-p/k)/k; ``inf`` for k <= 4.
    """
    m = _marginal(marginal)
    if m is Marginal.GAUSSIAN:
        return 3.0
    if m is Marginal.BINARY:
        return 1.0
    if m is Marginal.NLGP:
        x, w = _abs_x_nodes("nlgp", _original_gain(gain, gain_convention), n_panels)
        return float(np.sum(w * x ** 4))  # unit variance already
    if m is Marginal.KUR:
        k = _check_k(k)
        if k <= 4:
            return math.inf
        m2 = special.beta(3 / k, 1 - 2 / k) / k
        m4 = special.beta(5 / k, 1 - 4 / k) / k
        return float(m4 / m2 ** 2)
    raise ValueError(f"marginal must be one of gaussian, binary, nlgp, kur, got {marginal!r}")


def phi(a, marginal: str | Marginal = "gaussian", *, gain: float | None = None,
        gain_convention: str = "original", k: float | None = None, kappa: float | None = None,
        taylor_prefactor: str = "exact") -> torch.Tensor:
    """The amplifier phi(a) = E[X erf(X a / (sqrt2 sqrt(1 - a^2)))], elementwise.

    Convention:
        X has zero mean, unit variance and a symmetric law; a is the correlation vector
        Sigma_1 w / sqrt(w^T Sigma_1 w) with |a| <= 1 (clipped at 1 - 1e-12). phi is odd in a,
        phi'(0) = sqrt(2/pi) for every unit-variance marginal. NLGP gains follow
        ``gain_convention`` (original: erf(g z/sqrt2); followup: erf(g_f z), g = sqrt2 g_f).

    Parameters
    ----------
    a : tensor or array, any shape
    marginal : {"gaussian", "binary", "nlgp", "kur", "taylor"}
        See :class:`Marginal`. ``nlgp`` needs ``gain``; ``kur`` needs ``k``; ``taylor`` needs
        ``kappa`` (and honours the ``taylor_prefactor`` quirk).

    Returns
    -------
    tensor, same shape as ``a``, float64.
    """
    m = _marginal(marginal)
    if m is Marginal.GAUSSIAN:
        return phi_gaussian(a)
    if m is Marginal.BINARY:
        return phi_binary(a)
    if m is Marginal.NLGP:
        if gain is None:
            raise ValueError("gain is required for marginal='nlgp'")
        return phi_nlgp(a, gain, gain_convention)
    if m is Marginal.KUR:
        return phi_kur(a, k)
    if kappa is None:
        raise ValueError("kappa is required for marginal='taylor'")
    return phi_taylor(a, kappa, taylor_prefactor)


class _Tabulated:
    """phi interpolated linearly in theta = arcsin(a), where the sqrt(1 - a) cusp is smooth."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], n_grid: int):
        self.theta = torch.linspace(-math.pi / 2, math.pi / 2, n_grid, dtype=torch.float64)
        self.values = fn(torch.sin(self.theta))
        self.h = math.pi / (n_grid - 1)

    def __call__(self, a: torch.Tensor) -> torch.Tensor:
        if self.values.device != a.device:
            self.theta, self.values = self.theta.to(a.device), self.values.to(a.device)
        a = _as_tensor(a)
        t = (torch.asin(a.clamp(-1.0, 1.0)) + math.pi / 2) / self.h
        i = t.floor().clamp(0, len(self.values) - 2).long()
        f = (t - i).to(self.values.dtype)
        return self.values[i] * (1 - f) + self.values[i + 1] * f


def amplifier(marginal: str | Marginal = "gaussian", *, tabulate: int | None = 4001,
              **params) -> Callable[[torch.Tensor], torch.Tensor]:
    """``phi`` with its parameters bound, as a callable ``a -> phi(a)`` for the ODE.

    Quadrature marginals (nlgp, kur) are tabulated on ``tabulate`` points uniform in
    theta = arcsin(a) and interpolated linearly (error O(1/n^2); 4001 points gives ~1e-7),
    because each quadrature call costs ~1200 erf evaluations per entry. Closed forms are
    never tabulated. ``tabulate=None`` always uses the quadrature.
    """
    m = _marginal(marginal)

    def fn(a):
        return phi(a, m, **params)

    fn(torch.zeros(1, dtype=torch.float64))  # validate the parameters now
    if m in (Marginal.NLGP, Marginal.KUR) and tabulate:
        return _Tabulated(fn, tabulate)
    return fn
