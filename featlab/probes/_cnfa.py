"""Convolutional neural feature ansatz (CNFA) per conv layer, always with its baselines (spec §5).

CNFM_ℓ = W̄ᵀW̄ ∝ G_ℓ^α, with G_ℓ the patch-AGOP of the layer (:func:`patch_agop`).

Convention:
    W̄ is the conv weight reshaped to (k_out, c_in·kh·kw) in (c_in, row, col) order; CNFMs are
    un-normalised W̄ᵀW̄ (scale is irrelevant to every metric here). ``alpha`` is applied to the
    AGOP by eigh with negative eigenvalues clipped (α = 1, the paper's proportionality, by
    default). Every row carries the four ρ of spec §5 and the metric, α, n_images and whether
    the outputs were sketched; a CNFA value is never reported without its baselines.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Mapping

import torch
from torch import nn

from ._correlation import correlation
from ._nfa import matrix_power_psd
from ._patch_agop import _conv, conv_output_grams
from .hooks import layer_names

__all__ = ["CNFARow", "cnfa", "cnfm"]


@dataclass(frozen=True)
class CNFARow:
    """One conv layer's CNFA correlations and baselines (None where not computable).

    Attributes
    ----------
    layer : str
        ``named_modules()`` name.
    rho_trained : float
        ρ(CNFM_trained, G_trained^α): the reference's ``r_val``.
    rho_init_trained : float or None
        ρ(CNFM_init, CNFM_trained): the reference's ``i_val`` (own-init baseline).
    rho_untrained : float or None
        ρ(CNFM_init, G_init^α): the ansatz in the untrained network (shares W̄ with its CNFM).
    rho_fresh : float or None
        ρ(CNFM_init, CNFM_fresh): two independent initialisations (fresh-init baseline).
    rho_fresh_trained : float or None
        ρ(CNFM_fresh, CNFM_trained): the reference's ``i_val`` when the true init is unknown.
    rho_centered : float or None
        ρ((W−W₀)ᵀ(W−W₀), (W−W₀)ᵀK(W−W₀)) with W₀ the true init (centred NFA).
    metric, alpha, n_images, sketched
        How the numbers were computed.
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

    def to_dict(self) -> dict:
        return asdict(self)


def cnfm(model: nn.Module, layer: str) -> torch.Tensor:
    """W̄ᵀW̄ (c_in·kh·kw, c_in·kh·kw) of the conv ``layer``, float64 on the CPU."""
    W = _conv(model, layer).weight.detach().to("cpu", torch.float64)
    Wbar = W.reshape(W.shape[0], -1)  # (k_out, D)
    return Wbar.T @ Wbar


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


def cnfa(model: nn.Module, X: torch.Tensor, *, layers: Iterable[str] | None = None,
         init_state: Mapping | None = None, fresh_model: Callable[[], nn.Module] | nn.Module | None = None,
         metric: str = "pearson", alpha: float = 1.0, centered: bool = True, outputs: str = "all",
         n_sketch: int | None = None, generator: torch.Generator | None = None,
         batch_size: int | None = None, chunk_size: int | None = None,
         return_matrices: bool = False, cache: dict | None = None):
    """CNFA correlations per conv layer of ``model`` on the images ``X``, with baselines.

    Parameters
    ----------
    model : nn.Module
        The (trained) network.
    X : Tensor (n, C, H, W)
        Images for the patch-AGOP.
    layers : iterable of str, optional
        Conv layer names; default all ``nn.Conv2d`` modules in registration order.
    init_state : mapping, optional
        ``state_dict`` of the same model at initialisation (the true W₀). Enables
        ``rho_init_trained``, ``rho_untrained``, ``rho_centered`` and (with ``fresh_model``)
        ``rho_fresh``.
    fresh_model : callable or nn.Module, optional
        An independent fresh initialisation of the architecture (or a factory returning one).
    metric : {"pearson", "cosine", "pearson_offdiag"}
    alpha : float
        Power on the AGOP (default 1).
    centered : bool
        Also compute the centred (W−W₀) variant when ``init_state`` is given.
    outputs, n_sketch, generator, batch_size, chunk_size
        Forwarded to the patch-AGOP (:func:`featlab.probes.patch_agop`).
    cache : dict, optional
        A dict owned by the caller; the init network's patch-AGOPs are stored in it and reused
        by later calls with the same ``X``, ``init_state`` and layers (e.g. over training).
    return_matrices : bool
        Also return {layer: {"cnfm", "agop", "cnfm_init", "agop_init"}} (float64 CPU tensors).

    Returns
    -------
    list of CNFARow (and the matrices dict when ``return_matrices``).
    """
    if metric not in ("pearson", "cosine", "pearson_offdiag"):
        raise ValueError(f"metric must be 'pearson', 'cosine' or 'pearson_offdiag', got {metric!r}")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    layers = list(layers) if layers is not None else layer_names(model, (nn.Conv2d,))
    if not layers:
        raise ValueError("model has no nn.Conv2d layers; pass layers= explicitly")
    init = _model_from(model, init_state)
    fresh = _model_from(model, fresh_model)
    kw = dict(outputs=outputs, n_sketch=n_sketch, generator=generator, batch_size=batch_size,
              chunk_size=chunk_size)

    def agops_and_Ks(m: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        Ks, _ = conv_output_grams(m, layers, X, **kw)  # one set of backward passes for all layers
        res = {}
        for name in layers:
            K = Ks[name].cpu()
            Wbar = _conv(m, name).weight.detach().to("cpu", torch.float64).reshape(K.shape[0], -1)
            res[name] = (Wbar.T @ K @ Wbar, K)
        return res

    trained = agops_and_Ks(model)
    if init is not None:
        key = ("init", tuple(layers))
        if cache is not None and key in cache:
            init_res = cache[key]
        else:
            init_res = agops_and_Ks(init)
            if cache is not None:
                cache[key] = init_res
    rows, mats = [], {}
    for name in layers:
        C = cnfm(model, name)
        G, K = trained[name]
        rho = lambda A, B: correlation(A, B, metric)  # noqa: E731
        Ga = matrix_power_psd(G, alpha)
        r_init = r_untr = r_fresh = r_fresh_tr = r_cent = None
        m = {"cnfm": C, "agop": G}
        if init is not None:
            C0 = cnfm(init, name)
            G0, _ = init_res[name]
            r_init = rho(C0, C)
            r_untr = rho(C0, matrix_power_psd(G0, alpha))
            m.update(cnfm_init=C0, agop_init=G0)
            if centered:
                W = _conv(model, name).weight.detach().to("cpu", torch.float64)
                W0 = _conv(init, name).weight.detach().to("cpu", torch.float64)
                dW = (W - W0).reshape(W.shape[0], -1)  # (k_out, D)
                # undefined (None, not NaN) while W = W0, e.g. at initialisation
                r_cent = rho(dW.T @ dW, matrix_power_psd(dW.T @ K @ dW, alpha)) if bool(dW.any()) else None
        if fresh is not None:
            Cf = cnfm(fresh, name)
            r_fresh_tr = rho(Cf, C)
            if init is not None:
                r_fresh = rho(C0, Cf)
        rows.append(CNFARow(layer=name, rho_trained=rho(C, Ga), rho_init_trained=r_init,
                            rho_untrained=r_untr, rho_fresh=r_fresh, rho_fresh_trained=r_fresh_tr,
                            rho_centered=r_cent, metric=metric, alpha=float(alpha),
                            n_images=int(X.shape[0]), sketched=outputs == "sketch"))
        mats[name] = m
    return (rows, mats) if return_matrices else rows
