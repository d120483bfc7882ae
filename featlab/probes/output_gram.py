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

from ._agop import AGOPMethod, _batches, _cotangents, _enter_probe_mode, _model_dtype_device, _vjp
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
    cast_dtype, device = _model_dtype_device(model)
    device = device or X.device
    method = AGOPMethod.SKETCH if outputs == "sketch" else AGOPMethod.AUTOGRAD_SUM
    deltas: dict[str, torch.Tensor] = {}
    K: dict[str, torch.Tensor] = {}
    c = 0

    def make_hook(name):
        def hook(_m, _a, out):
            if name in deltas:
                raise ValueError(f"layer {name!r} is called more than once per forward; K is ambiguous")
            deltas[name] = torch.zeros_like(out).requires_grad_(True)  # (B, ..., out)
            return out + deltas[name]
        return hook

    with contextlib.ExitStack() as stack:
        _enter_probe_mode(stack, model, force_eval)
        for name, m in zip(layers, mods):
            stack.callback(m.register_forward_hook(make_hook(name)).remove)
        for sl in _batches(X.shape[0], batch_size):
            xb = X[sl].to(device=device, dtype=cast_dtype or X.dtype)
            deltas.clear()
            out = model(xb).reshape(xb.shape[0], -1)  # (B, c)
            c = out.shape[1]
            missing = [name for name in layers if name not in deltas]
            if missing:
                raise ValueError(f"layers {missing} were not called in the forward pass")
            for V, _k, scale, last in _cotangents(out, method, chunk_size, n_sketch, generator):
                gs = _vjp(out, [deltas[name] for name in layers], V, retain=not last)
                for name, g in zip(layers, gs):
                    g = (g.detach().to(dtype) * scale)
                    g = g.reshape(-1, g.shape[-1]).cpu()  # (m·B·positions, out)
                    Kb = g.T @ g
                    K[name] = Kb if name not in K else K[name] + Kb
    return {name: K[name] / X.shape[0] for name in layers}, c
