"""K of linear layers: the AGOP with respect to a layer's *output*, from one set of backwards.

For ``o = W h + b`` the chain rule gives ∂f/∂h = Wᵀ ∂f/∂o, so the AGOP with respect to the
layer's input is G = Wᵀ K W with K = (1/n) Σ_p Σ_k (∂f_k/∂o)(∂f_k/∂o)ᵀ (out × out). K is small
(out², not in²), the same object as the patch-AGOP's K for convs
(:func:`featlab.probes._patch_agop.conv_output_grams`), and what the structural nulls of the
NFA need (trained W with another K).

Convention:
    Layers are ``nn.Linear`` modules by ``named_modules()`` name, each called once per
    forward. Outputs o of shape (B, out) or (B, ..., out): extra positions (tokens) are summed,
    like the patch-AGOP's positions, so for 2-D inputs Wᵀ K W equals
    ``agop(model, X, layer=name)`` exactly. Mean over samples, sum over the model's outputs
    (or an unbiased Gaussian sketch of them, ``outputs="sketch"``); float64 accumulation on
    the CPU. The model is in eval mode during the call (modes restored).
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from ._agop import AGOPMethod, _output_grads
from .hooks import get_module

__all__ = ["linear_output_grams"]


def linear_output_grams(model: nn.Module, layers: list[str], X: torch.Tensor, *, outputs: str = "all",
                        n_sketch: int | None = None, batch_size: int | None = None,
                        chunk_size: int | None = None, generator: torch.Generator | None = None,
                        dtype: torch.dtype = torch.float64,
                        force_eval: bool = True) -> tuple[dict[str, torch.Tensor], int]:
    """``({layer: K (out, out)}, c)`` for the named linear layers, from shared backward passes.

    Parameters
    ----------
    model : nn.Module
    layers : list of str
        ``nn.Linear`` names.
    X : Tensor (n, ...)
        Model inputs.
    outputs : {"all", "sketch"}
        Exact sum over the c outputs, or ``n_sketch`` Gaussian probes (unbiased; labelled).
    batch_size, chunk_size
        Memory knobs (samples per forward; cotangents per batched backward); never change K.
    generator : torch.Generator, optional
        Draws the sketch probes.

    Returns
    -------
    dict of (out, out) float64 CPU tensors, and the number of model outputs c.
    """
    if outputs not in ("all", "sketch"):
        raise ValueError(f"outputs must be 'all' or 'sketch', got {outputs!r}")
    if outputs == "sketch" and (not n_sketch or n_sketch < 1):
        raise ValueError(f"n_sketch must be a positive integer for outputs='sketch', got {n_sketch!r}")
    mods = [get_module(model, name) for name in layers]
    for name, m in zip(layers, mods):
        if not isinstance(m, nn.Linear):
            raise ValueError(f"layer {name!r} must be an nn.Linear, got {type(m).__name__}")
    method = AGOPMethod.SKETCH if outputs == "sketch" else AGOPMethod.AUTOGRAD_SUM
    K: dict[str, torch.Tensor] = {}
    c = 0
    grads = _output_grads(model, list(zip(layers, mods)), X, method=method, chunk_size=chunk_size, n_sketch=n_sketch,
                          generator=generator, batch_size=batch_size, force_eval=force_eval)
    with contextlib.closing(grads):
        for c, name, g, scale in grads:
            g = (g.to(dtype) * scale).reshape(-1, g.shape[-1]).cpu()  # (m·B·positions, out)
            Kb = g.T @ g
            K[name] = Kb if name not in K else K[name] + Kb
    return {name: K[name] / X.shape[0] for name in layers}, c
