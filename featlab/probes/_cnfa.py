"""Convolutional neural feature ansatz (CNFA) per conv layer, always with its baselines (spec §5).

CNFM_ℓ = W̄ᵀW̄ ∝ G_ℓ^α, with G_ℓ = W̄ᵀK_ℓW̄ the patch-AGOP of the layer (:func:`patch_agop`) and
K_ℓ the Gram matrix of the gradients at the conv output.

Why baselines and nulls: G shares W̄ with the CNFM, so ρ(W̄ᵀW̄, W̄ᵀKW̄) is already high whenever K
is near-isotropic (K = c·I gives ρ = 1 for *any* W̄), trained or not. A trained ρ supports the
ansatz only if it beats

* the reference's baseline ``i_val`` = ρ(CNFM of a fresh default init, trained CNFM)
  (convrfm ``cnfa_verification/*_conv_nfa.py``; ``rho_fresh_trained``);
* the structural null "trained W̄ with the untrained network's K₀": ρ(W̄ᵀW̄, (W̄ᵀK₀W̄)^α)
  (``null_init_K``) — what the trained filters alone give without any learned K;
* the structural null "trained W̄ with K's spectrum on random eigenvectors":
  ρ(W̄ᵀW̄, (W̄ᵀQΛQᵀW̄)^α), Λ the eigenvalues of the trained K, Q Haar-random, mean over draws
  (``null_random_eigvecs``) — what K's anisotropy alone gives without its learned directions.

Convention:
    W̄ is the conv weight reshaped to (k_out, c_in·kh·kw) in (c_in, row, col) order; CNFMs are
    un-normalised W̄ᵀW̄ (scale is irrelevant to every metric here). ``alpha`` is applied to the
    AGOP by eigh with negative eigenvalues clipped (α = 1, the paper's proportionality, by
    default). "The untrained network" is the true init (``init_state``) when given, else the
    fresh initialisation (``fresh_model``); ``CNFARow.untrained_source`` says which. Every row
    carries the quantities above in its primary ``metric`` and, in ``variants``, in every metric
    of :data:`METRICS` (``pearson``, ``cosine``, ``pearson_offdiag``), plus the centred (W−W₀)
    versions when the true init is known. At α = 1 every correlation is computed in float64
    from the factored forms XᵀPX (k×k and k×D products, never a D×D matrix; equal to
    :func:`featlab.probes.correlation` of the explicit matrices, tested); for α ≠ 1 the D×D
    matrices are formed (products in the model's dtype, float64 results). Random eigenvectors
    are drawn from ``null_generator`` (None: a CPU generator seeded with 0, so rows are
    reproducible).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Mapping

import torch
from torch import nn

from ._correlation import METRICS, correlation
from ._nfa import matrix_power_psd
from ._patch_agop import _conv, conv_output_grams, sandwich
from .hooks import layer_names

__all__ = ["CNFARow", "CNFANulls", "cnfa", "cnfa_nulls", "cnfm", "cnfa_reference_layers", "QUANTITIES"]

#: The quantities of a CNFA row (keys of ``CNFARow.variants[metric]``).
QUANTITIES = ("rho_trained", "rho_untrained", "rho_init_trained", "rho_fresh_trained", "rho_fresh",
              "null_init_K", "null_random_eigvecs", "rho_centered", "null_centered_init_K",
              "null_centered_random_eigvecs")


@dataclass(frozen=True)
class CNFARow:
    """One conv layer's CNFA correlations, baselines and structural nulls (None where not computable).

    Attributes
    ----------
    layer : str
        ``named_modules()`` name.
    rho_trained : float
        ρ(CNFM_trained, G_trained^α): the reference's ``r_val``.
    rho_init_trained : float or None
        ρ(CNFM_init, CNFM_trained), W₀ the run's own init (needs ``init_state``).
    rho_untrained : float or None
        ρ(CNFM₀, G₀^α) of the untrained network (shares W̄₀ with its CNFM).
    rho_fresh : float or None
        ρ(CNFM_init, CNFM_fresh): two independent initialisations.
    rho_fresh_trained : float or None
        ρ(CNFM_fresh, CNFM_trained): the reference's baseline ``i_val`` (a fresh default init).
    rho_centered : float or None
        ρ((W−W₀)ᵀ(W−W₀), ((W−W₀)ᵀK(W−W₀))^α) with W₀ the true init (centred NFA).
    metric, alpha, n_images, sketched
        How the numbers were computed.
    null_init_K : float or None
        ρ(CNFM_trained, (W̄ᵀK₀W̄)^α), K₀ of the untrained network.
    null_random_eigvecs, null_random_eigvecs_sd : float or None
        Mean and standard deviation over draws of ρ(CNFM_trained, (W̄ᵀQΛQᵀW̄)^α).
    untrained_source : {"init", "fresh"} or None
        Which network K₀ and ``rho_untrained`` come from.
    drop_bias : bool
        Whether the reference quirk (bias left out of the patch network) was on.
    variants : dict
        {metric: {quantity: value}} for every metric of :data:`METRICS` and every name of
        :data:`QUANTITIES` (the centred ones need the true init).
    """

    layer: str
    rho_trained: float
    rho_init_trained: float | None
    rho_untrained: float | None
    rho_fresh: float | None
    rho_fresh_trained: float | None
    rho_centered: float | None
    metric: str
    alpha: float
    n_images: int
    sketched: bool
    null_init_K: float | None = None
    null_random_eigvecs: float | None = None
    null_random_eigvecs_sd: float | None = None
    untrained_source: str | None = None
    drop_bias: bool = False
    variants: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CNFANulls:
    """Structural nulls of one layer in one metric (see :func:`cnfa_nulls`)."""

    init_K: float | None
    random_eigvecs: float
    random_eigvecs_sd: float
    draws: tuple[float, ...]


def cnfm(model: nn.Module, layer: str) -> torch.Tensor:
    """W̄ᵀW̄ (c_in·kh·kw, c_in·kh·kw) of the conv ``layer``, float64 on the CPU."""
    W = _conv(model, layer).weight.detach().to("cpu", torch.float64)
    Wbar = W.reshape(W.shape[0], -1)  # (k_out, D)
    return Wbar.T @ Wbar


def cnfa_reference_layers(model: nn.Module) -> list[str]:
    """The conv layers the reference measures: the ``conv1`` of every residual block for ResNets
    (convrfm ``pretrained_conv_nfa.py`` patches only block conv1, skip path excluded), every
    ``nn.Conv2d`` otherwise (``vgg_conv_nfa.py``: all convs of ``features``)."""
    from ..models.resnet import ResNet, block_conv1_layers

    if isinstance(model, ResNet):
        return block_conv1_layers(model)
    return layer_names(model, (nn.Conv2d,))


def _haar(k: int, g: torch.Generator) -> torch.Tensor:
    """A Haar-random orthogonal (k, k) matrix, float64 (QR of a Gaussian, signs fixed)."""
    Z = torch.randn(k, k, generator=g, dtype=torch.float64)
    Q, R = torch.linalg.qr(Z)
    return Q * torch.sign(torch.diagonal(R))


class _Base:
    """X (k, d) in float64 with its k×k Gram S = XXᵀ and row sums X·1 (shared by every form on X)."""

    def __init__(self, X: torch.Tensor):
        self.X = X.detach().to("cpu", torch.float64).reshape(X.shape[0], -1)  # (k, d)
        self.S = self.X @ self.X.T  # (k, k)
        self.x1 = self.X.sum(1)  # (k,)


class _Form:
    """The d×d matrix XᵀPX (X (k, d), P (k, k) symmetric; P = None: the identity) kept in factored form.

    Correlations between two forms need only k×k and k×d products (:func:`_rho_forms`), never the
    d×d matrices: for VGG/ResNet layers (d up to 4608, k ≤ 512) that is ~10× fewer flops and no
    d×d memory. Everything is float64 on the CPU.
    """

    def __init__(self, X: torch.Tensor | _Base, P: torch.Tensor | None = None):
        self.base = X if isinstance(X, _Base) else _Base(X)
        Xd, S = self.base.X, self.base.S
        k = Xd.shape[0]
        self.P = torch.eye(k, dtype=torch.float64) if P is None else P.detach().to("cpu", torch.float64)
        PX = Xd if P is None else self.P @ Xd  # (k, d)
        self.diag = (Xd * PX).sum(0)  # (d,) diagonal of XᵀPX
        self.total = float(self.base.x1 @ self.P @ self.base.x1)  # sum of all entries
        self.sq = float(((self.P @ S) * (S @ self.P)).sum())  # ‖XᵀPX‖²_F = tr(P S P S)
        self.d = Xd.shape[1]

    def inner(self, other: "_Form") -> float:
        """⟨XᵀPX, YᵀQY⟩_F = tr(P T Q Tᵀ), T = X Yᵀ."""
        T = self.base.S if other.base is self.base else self.base.X @ other.base.X.T  # (k1, k2)
        return float(((self.P @ T) * (T @ other.P)).sum())


def _rho_forms(a: _Form, b: _Form, metrics) -> dict[str, float]:
    """The correlations of :func:`featlab.probes.correlation` between the d×d matrices of two forms."""
    ab, d = a.inner(b), a.d
    out = {}
    for m in metrics:
        if m == "cosine":
            num, va, vb = ab, a.sq, b.sq
        elif m == "pearson":
            n = d * d
            num, va, vb = ab - a.total * b.total / n, a.sq - a.total ** 2 / n, b.sq - b.total ** 2 / n
        elif m == "pearson_offdiag":
            n = d * d - d
            ta, tb = a.total - float(a.diag.sum()), b.total - float(b.diag.sum())
            num = ab - float(a.diag @ b.diag) - ta * tb / n
            va = a.sq - float(a.diag @ a.diag) - ta ** 2 / n
            vb = b.sq - float(b.diag @ b.diag) - tb ** 2 / n
        else:
            raise ValueError(f"metric must be one of {METRICS}, got {m!r}")
        den = (max(va, 0.0) * max(vb, 0.0)) ** 0.5
        out[m] = num / den if den > 0 else float("nan")
    return out


def _rho_all(A, B, metrics) -> dict[str, float]:
    return {m: correlation(A, B, m) for m in metrics}


class _Algebra:
    """ρ(XᵀPX, (YᵀQY)^α) for every metric: factored (:class:`_Form`) when α = 1, explicit d×d else."""

    def __init__(self, alpha: float, metrics):
        self.alpha, self.metrics = float(alpha), tuple(metrics)
        self._last: tuple | None = None  # (X, its _Base): the tensor is held, so identity is safe

    def mat(self, X: torch.Tensor, P: torch.Tensor | None = None, power: bool = False):
        if self.alpha == 1.0:
            if self._last is None or self._last[0] is not X:  # forms on the same tensor share its Gram
                self._last = (X, _Base(X))
            return _Form(self._last[1], P)
        X = X.detach().reshape(X.shape[0], -1)
        M = (X.T @ X).to("cpu", torch.float64) if P is None else sandwich(X, P).cpu()
        return matrix_power_psd(M, self.alpha) if power else M

    def rho(self, a, b) -> dict[str, float]:
        return _rho_forms(a, b, self.metrics) if self.alpha == 1.0 else _rho_all(a, b, self.metrics)


def cnfa_nulls(W: torch.Tensor, K: torch.Tensor, K_init: torch.Tensor | None = None, *, alpha: float = 1.0,
               metrics: Iterable[str] = METRICS, n_draws: int = 20,
               generator: torch.Generator | None = None) -> dict[str, CNFANulls]:
    """Structural nulls of the CNFA for one conv layer: what ρ(W̄ᵀW̄, (W̄ᵀKW̄)^α) gives without a learned K.

    Parameters
    ----------
    W : Tensor (k_out, c_in, kh, kw) or (k_out, D)
        The (trained) filters; pass W − W₀ for the centred variant.
    K : Tensor (k_out, k_out)
        Gram matrix of the gradients at the conv output of the trained network
        (:func:`featlab.probes._patch_agop.conv_output_grams`); only its eigenvalues are used.
    K_init : Tensor (k_out, k_out), optional
        K₀ of the untrained network (same images): gives ``init_K`` = ρ(W̄ᵀW̄, (W̄ᵀK₀W̄)^α).
    alpha : float
        Power on the AGOP-like matrix (1: no power).
    metrics : iterable of str
        Correlation metrics (:func:`featlab.probes.correlation`).
    n_draws : int
        Haar-random eigenbases Q; ``random_eigvecs`` is the mean of ρ(W̄ᵀW̄, (W̄ᵀQΛQᵀW̄)^α) over them.
    generator : torch.Generator, optional
        CPU generator for Q (None: seeded with 0).

    Returns
    -------
    dict
        {metric: :class:`CNFANulls`}.

    Convention:
        Λ = eigvalsh(K) clipped at 0. If K (or K₀) is c·I, ``init_K`` and every draw give
        ρ = 1 exactly for α = 1 (tested): such a K carries no information beyond W̄. At α = 1
        the correlations are computed from k×k and k×D products only (no D×D matrix).
    """
    metrics = tuple(metrics)
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws!r}")
    Wbar = W.detach().reshape(W.shape[0], -1)  # (k_out, D), model dtype
    if K.shape != (Wbar.shape[0], Wbar.shape[0]):
        raise ValueError(f"K must be ({Wbar.shape[0]}, {Wbar.shape[0]}), got {tuple(K.shape)}")
    alg = _Algebra(alpha, metrics)
    C = alg.mat(Wbar)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    init = alg.rho(C, alg.mat(Wbar, K_init, power=True)) if K_init is not None else None
    lam = torch.linalg.eigvalsh(K.to("cpu", torch.float64)).clamp_min(0)  # (k_out,)
    draws = []
    for _ in range(n_draws):
        Q = _haar(len(lam), g)
        draws.append(alg.rho(C, alg.mat(Wbar, (Q * lam) @ Q.T, power=True)))
    out = {}
    for m in metrics:
        v = torch.tensor([d[m] for d in draws], dtype=torch.float64)
        out[m] = CNFANulls(init_K=None if init is None else init[m], random_eigvecs=float(v.mean()),
                           random_eigvecs_sd=float(v.std()) if n_draws > 1 else 0.0,
                           draws=tuple(float(x) for x in v))
    return out


def _model_from(model: nn.Module, state: Mapping | nn.Module | Callable | None) -> nn.Module | None:
    if state is None:
        return None
    if isinstance(state, nn.Module):
        return state
    if callable(state):
        m = state()
        if not isinstance(m, nn.Module):
            raise ValueError("fresh_model must return an nn.Module")
        return m
    m = copy.deepcopy(model)
    m.load_state_dict(state)
    return m


def cnfa(model: nn.Module, X: torch.Tensor, *, layers: Iterable[str] | str | None = None,
         init_state: Mapping | None = None, fresh_model: Callable[[], nn.Module] | nn.Module | None = None,
         metric: str = "pearson", alpha: float = 1.0, centered: bool = True, outputs: str = "all",
         n_sketch: int | None = None, generator: torch.Generator | None = None,
         batch_size: int | None = None, chunk_size: int | None = None, drop_bias: bool = False,
         nulls: bool = True, n_null_draws: int = 20, null_generator: torch.Generator | None = None,
         return_matrices: bool = False, matrices_max_dim: int | None = None, cache: dict | None = None):
    """CNFA correlations per conv layer of ``model`` on the images ``X``, with baselines and nulls.

    Parameters
    ----------
    model : nn.Module
        The (trained) network.
    X : Tensor (n, C, H, W)
        Images for the patch-AGOP.
    layers : iterable of str or "reference", optional
        Conv layer names; default all ``nn.Conv2d`` modules in registration order;
        ``"reference"``: the reference's selection (:func:`cnfa_reference_layers`).
    init_state : mapping, optional
        ``state_dict`` of the same model at initialisation (the true W₀). Enables
        ``rho_init_trained``, ``rho_centered`` and (with ``fresh_model``) ``rho_fresh``; the
        untrained network is then this init.
    fresh_model : callable or nn.Module, optional
        An independent fresh initialisation of the architecture (or a factory returning one):
        gives the reference baseline ``rho_fresh_trained`` (``i_val``), and is the untrained
        network when ``init_state`` is None (pretrained weights).
    metric : {"pearson", "cosine", "pearson_offdiag"}
        The primary metric of the row's fields (all metrics are in ``variants``).
    alpha : float
        Power on the AGOP (default 1).
    centered : bool
        Also compute the centred (W−W₀) variants when ``init_state`` is given.
    outputs, n_sketch, generator, batch_size, chunk_size, drop_bias
        Forwarded to the patch-AGOP (:func:`featlab.probes.patch_agop`).
    nulls : bool
        Compute the structural nulls (:func:`cnfa_nulls`, ``n_null_draws`` draws from
        ``null_generator``).
    cache : dict, optional
        A dict owned by the caller; the untrained network's K's are stored in it and reused
        by later calls with the same ``X``, ``init_state``/``fresh_model`` and layers.
    return_matrices : bool
        Also return {layer: {"cnfm", "agop", "cnfm_init", "agop_init"}} (float64 CPU tensors),
        for layers of patch dimension ≤ ``matrices_max_dim`` (None: all).

    Returns
    -------
    list of CNFARow (and the matrices dict when ``return_matrices``).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    if layers == "reference":
        layers = cnfa_reference_layers(model)
    layers = list(layers) if layers is not None else layer_names(model, (nn.Conv2d,))
    if not layers:
        raise ValueError("model has no nn.Conv2d layers; pass layers= explicitly")
    init = _model_from(model, init_state)
    fresh = _model_from(model, fresh_model)
    untrained = init if init is not None else fresh
    source = "init" if init is not None else ("fresh" if fresh is not None else None)
    kw = dict(outputs=outputs, n_sketch=n_sketch, generator=generator, batch_size=batch_size,
              chunk_size=chunk_size, drop_bias=drop_bias)

    def W_of(m, name):
        return _conv(m, name).weight.detach()

    Ks, _ = conv_output_grams(model, layers, X, **kw)  # one set of backward passes for all layers
    K0s = None
    if untrained is not None:
        key = (source, tuple(layers))
        if cache is not None and key in cache:
            K0s = cache[key]
        else:
            K0s, _ = conv_output_grams(untrained, layers, X, **kw)
            if cache is not None:
                cache[key] = K0s
    g_null = null_generator if null_generator is not None else torch.Generator().manual_seed(0)
    alg = _Algebra(alpha, METRICS)
    rows, mats = [], {}
    for name in layers:
        W = W_of(model, name)
        k_out = W.shape[0]
        Wbar = W.reshape(k_out, -1)  # (k_out, D)
        K = Ks[name]
        D = Wbar.shape[1]
        q: dict[str, dict[str, float | None]] = {m: dict.fromkeys(QUANTITIES) for m in METRICS}

        def put(key, a, b):
            for m, v in alg.rho(a, b).items():
                q[m][key] = v

        C = alg.mat(Wbar)
        put("rho_trained", C, alg.mat(Wbar, K, power=True))
        if untrained is not None:
            W0 = W_of(untrained, name).reshape(k_out, -1)
            C0 = alg.mat(W0)
            put("rho_untrained", C0, alg.mat(W0, K0s[name], power=True))
        if init is not None:
            put("rho_init_trained", C0, C)
        if fresh is not None:
            Cf = alg.mat(W_of(fresh, name).reshape(k_out, -1))
            put("rho_fresh_trained", Cf, C)
            if init is not None:
                put("rho_fresh", C0, Cf)
        sd = None
        if nulls:
            nl = cnfa_nulls(W, K, K0s[name] if K0s is not None else None, alpha=alpha, n_draws=n_null_draws,
                            generator=g_null)
            for mt, v in nl.items():
                q[mt]["null_init_K"], q[mt]["null_random_eigvecs"] = v.init_K, v.random_eigvecs
            sd = nl[metric].random_eigvecs_sd
        dW = (W - W_of(init, name)).reshape(k_out, -1) if init is not None and centered else None  # (k_out, D)
        if dW is not None and bool(dW.any()):  # undefined (None, not NaN) while W = W0, e.g. at init
            put("rho_centered", alg.mat(dW), alg.mat(dW, K, power=True))
            if nulls:
                nl = cnfa_nulls(dW, K, K0s[name], alpha=alpha, n_draws=n_null_draws, generator=g_null)
                for mt, v in nl.items():
                    q[mt]["null_centered_init_K"] = v.init_K
                    q[mt]["null_centered_random_eigvecs"] = v.random_eigvecs
        p = q[metric]
        rows.append(CNFARow(layer=name, rho_trained=p["rho_trained"], rho_init_trained=p["rho_init_trained"],
                            rho_untrained=p["rho_untrained"], rho_fresh=p["rho_fresh"],
                            rho_fresh_trained=p["rho_fresh_trained"], rho_centered=p["rho_centered"],
                            metric=metric, alpha=float(alpha), n_images=int(X.shape[0]),
                            sketched=outputs == "sketch", null_init_K=p["null_init_K"],
                            null_random_eigvecs=p["null_random_eigvecs"], null_random_eigvecs_sd=sd,
                            untrained_source=source, drop_bias=bool(drop_bias), variants=q))
        if return_matrices and (matrices_max_dim is None or D <= matrices_max_dim):
            mats[name] = {"cnfm": cnfm(model, name), "agop": sandwich(Wbar, K).cpu()}
            if untrained is not None:
                mats[name].update(cnfm_init=cnfm(untrained, name),
                                  agop_init=sandwich(W_of(untrained, name).reshape(k_out, -1), K0s[name]).cpu())
    return (rows, mats) if return_matrices else rows
