"""Patch-AGOP of a conv layer (spec agop_rfm §4): the AGOP w.r.t. independent input patches.

G_ℓ = (1/n) Σ_p Σ_(i,j) Σ_k ∇_{u_ij} f_k(x_p) ∇_{u_ij} f_k(x_p)ᵀ, with u_ij the patch of the
layer's input at output position (i, j), each patch an independent variable.

Convention:
    The layer is an ``nn.Conv2d`` addressed by its ``named_modules()`` name, weight W of shape
    (k_out, c_in, kh, kw), W̄ = W.reshape(k_out, c_in·kh·kw). G is (c_in·kh·kw, c_in·kh·kw) in
    W̄'s flatten order (c_in, row, col) — the order of ``F.unfold`` — so the CNFM W̄ᵀW̄ and G
    are directly comparable. Patches use the layer's own kernel size, stride and padding
    (any ``padding_mode``); the conv bias and everything after the conv are "the rest of the
    network"; a skip path around the conv (ResNet) is excluded (it does not depend on u_ij).
    Mean over images (the reference sums; irrelevant for correlations), sum over outputs.
    Precision: the per-batch products (K from ∂f/∂o, and W̄ᵀKW̄) run in the model's own dtype,
    and the sums over batches accumulate in ``dtype`` (float64 by default); a float64 model is
    float64 throughout, a float32 model's G carries the float32 error of its own gradients
    (≈ 1e-6 relative, tested). ``drop_bias=True`` is the reference quirk of convrfm
    ``PatchConvLayer`` (``cnfa_verification/*_conv_nfa.py``): the measured conv's bias is left
    out of the patch network, which changes G whenever the rest of the network is nonlinear.
    groups > 1 and dilation > 1 raise NotImplementedError.
"""
from __future__ import annotations

import contextlib
import enum

import torch
import torch.nn.functional as F
from torch import nn

from ._agop import (
    AGOPInfo,
    AGOPMethod,
    _batches,
    _enter_probe_mode,
    _LayerLeaf,
    _model_dtype_device,
    _output_grads,
)
from .hooks import get_module

__all__ = ["PatchAGOPMethod", "patch_agop", "unfold_patches", "conv_output_gram", "conv_output_grams",
           "sandwich"]


class PatchAGOPMethod(enum.Enum):
    """How the patch-AGOP is computed.

    FAST (default)
        The identity ∇_{u_ij} f_k = W̄ᵀ ∂f_k/∂o_ij gives G = W̄ᵀ K W̄ with
        K = (1/n) Σ_p Σ_ij Σ_k (∂f_k/∂o_ij)(∂f_k/∂o_ij)ᵀ (k_out × k_out). ∂f/∂o is taken w.r.t. the
        conv output made a leaf by a forward hook (equivalent to adding a zero δ with
        ``requires_grad``; the backward stops at the conv). Cost: 1 forward + c backwards per
        batch through the rest of the network; memory k_out·H_out·W_out per image; no
        unfolding. Supports a Gaussian output sketch (``outputs="sketch"``).
    ORACLE
        Literal spec §4: unfold the (padded) layer input into an independent patch tensor
        (n, H_out, W_out, c_in·kh·kw), re-implement the conv as an einsum with W̄ plus bias, run
        the rest of the network, and take ``vmap(jacrev)`` w.r.t. the patches. Memory
        c·H_out·W_out·c_in·kh·kw per image (× q² the fast path's); slow. For tests only.
    """

    FAST = "fast"
    ORACLE = "oracle"


def _conv(model: nn.Module, layer: str) -> nn.Conv2d:
    conv = get_module(model, layer)
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(f"layer {layer!r} must be an nn.Conv2d, got {type(conv).__name__}")
    if conv.groups != 1:
        raise NotImplementedError(f"layer {layer!r} has groups={conv.groups}; only groups=1 is supported")
    if tuple(conv.dilation) != (1, 1):
        raise NotImplementedError(f"layer {layer!r} has dilation={conv.dilation}; only 1 is supported")
    return conv


def unfold_patches(h: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """Patches u_ij of the layer input ``h`` (B, c_in, H, W) -> (B, H_out, W_out, c_in·kh·kw).

    Convention:
        u_ij = vec(pad(h)[:, s·i : s·i+kh, s·j : s·j+kw]) in (c_in, row, col) order, the flatten
        order of the conv weight; padding as the conv does it (``padding_mode`` honoured,
        ``"same"`` included), so ``einsum(u, W̄) + b`` equals ``conv(h)``.
    """
    pad = conv._reversed_padding_repeated_twice  # (left, right, top, bottom), as F.pad wants
    if any(pad):
        mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
        h = F.pad(h, pad, mode=mode)
    kh, kw = conv.kernel_size
    B, _, Hp, Wp = h.shape
    Ho, Wo = (Hp - kh) // conv.stride[0] + 1, (Wp - kw) // conv.stride[1] + 1
    u = F.unfold(h, (kh, kw), stride=conv.stride)  # (B, D, Ho·Wo)
    return u.transpose(1, 2).reshape(B, Ho, Wo, -1)  # (B, Ho, Wo, D)


def _check(outputs, n_sketch, batch_size, chunk_size, store_on):
    if outputs not in ("all", "sketch"):
        raise ValueError(f"outputs must be 'all' or 'sketch', got {outputs!r}")
    if outputs == "sketch" and (not n_sketch or n_sketch < 1):
        raise ValueError(f"n_sketch must be a positive integer for outputs='sketch', got {n_sketch!r}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    if store_on not in ("cpu", "device"):
        raise ValueError(f"store_on must be 'cpu' or 'device', got {store_on!r}")


_BLOCK = 512  # columns per block of the symmetric product (GEMMs stay large; ~(b+1)/2b of the flops)


def sandwich(Wbar: torch.Tensor, K: torch.Tensor, *, dtype: torch.dtype = torch.float64,
             block: int = _BLOCK) -> torch.Tensor:
    """G = W̄ᵀ K W̄ (d, d) for W̄ (k, d) and a symmetric K (k, k), exploiting the symmetry of G.

    Convention:
        The products run in W̄'s dtype on W̄'s device (K is cast to it); the result is returned
        in ``dtype``. B = K W̄ is formed once; G is assembled from the blocks G_ij = W̄_iᵀ B_j,
        j ≥ i, over column blocks of ``block`` columns and mirrored, so for d ≫ ``block`` it
        costs about half of the plain ``W̄.T @ K @ W̄`` (which it equals up to rounding); G is
        exactly symmetric (diagonal blocks symmetrised).
    """
    ct = Wbar.dtype
    B = K.to(Wbar.device, ct) @ Wbar  # (k, d)
    d = Wbar.shape[1]
    G = torch.empty(d, d, dtype=dtype, device=Wbar.device)
    edges = list(range(0, d, block)) + [d]
    for a, b in zip(edges[:-1], edges[1:]):
        Gab = Wbar[:, a:b].T @ B[:, a:]  # (b-a, d-a): the upper block row, from the diagonal block on
        D = Gab[:, :b - a]
        G[a:b, a:b] = (D + D.T) / 2  # the diagonal block, exactly symmetric
        G[a:b, b:] = Gab[:, b - a:]
        G[b:, a:b] = Gab[:, b - a:].T
    return G


def _biased(conv: nn.Conv2d, drop_bias: bool) -> bool:
    return drop_bias and conv.bias is not None


def conv_output_gram(model: nn.Module, layer: str, X: torch.Tensor, *, outputs: str = "all",
                     n_sketch: int | None = None, batch_size: int | None = None,
                     chunk_size: int | None = None, store_on: str = "cpu",
                     generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
                     force_eval: bool = True, drop_bias: bool = False) -> tuple[torch.Tensor, int]:
    """K = (1/n) Σ_p Σ_ij Σ_k (∂f_k/∂o_ij)(∂f_k/∂o_ij)ᵀ, (k_out, k_out), and the number of outputs c.

    o_ij is the conv output at position (i, j) (bias included unless ``drop_bias``); arguments
    as :func:`patch_agop`. The single-layer case of :func:`conv_output_grams`.
    """
    Ks, c = conv_output_grams(model, [layer], X, outputs=outputs, n_sketch=n_sketch, batch_size=batch_size,
                              chunk_size=chunk_size, store_on=store_on, generator=generator, dtype=dtype,
                              force_eval=force_eval, drop_bias=drop_bias)
    return Ks[layer], c


def conv_output_grams(model: nn.Module, layers: list[str], X: torch.Tensor, *, outputs: str = "all",
                      n_sketch: int | None = None, batch_size: int | None = None,
                      chunk_size: int | None = None, store_on: str = "cpu",
                      generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
                      force_eval: bool = True, drop_bias: bool = False) -> tuple[dict[str, torch.Tensor], int]:
    """K of several conv layers from the same backward passes: ({layer: (k_out, k_out)}, c).

    A forward hook adds a zero tensor δ_ℓ (``requires_grad``) to each conv's output, so one
    backward per output (or cotangent chunk) yields ∂f/∂o_ℓ for every layer at once; the cost
    is that of the earliest layer alone. Equal to :func:`conv_output_gram` per layer.

    ``drop_bias=True`` (reference quirk) removes each measured conv's bias from the forward
    pass; as in the reference only the measured layer loses its bias, so every biased layer
    then gets a pass of its own (bias-free layers still share one).
    """
    _check(outputs, n_sketch, batch_size, chunk_size, store_on)
    layers = list(layers)
    convs = {name: _conv(model, name) for name in layers}
    groups = [[n for n in layers if not _biased(convs[n], drop_bias)]]
    groups += [[n] for n in layers if _biased(convs[n], drop_bias)]
    K: dict[str, torch.Tensor] = {}
    c = None
    for group in (g for g in groups if g):
        Kg, c = _grams(model, group, convs, X, outputs=outputs, n_sketch=n_sketch, batch_size=batch_size,
                       chunk_size=chunk_size, store_on=store_on, generator=generator, dtype=dtype,
                       force_eval=force_eval, drop_bias=drop_bias)
        K.update(Kg)
    return {name: K[name] for name in layers}, c


def _grams(model, layers, convs, X, *, outputs, n_sketch, batch_size, chunk_size, store_on, generator, dtype,
           force_eval, drop_bias):
    method = AGOPMethod.SKETCH if outputs == "sketch" else AGOPMethod.AUTOGRAD_SUM
    K: dict[str, torch.Tensor] = {}
    c = None
    biases = {name: convs[name].bias.detach() for name in layers if _biased(convs[name], drop_bias)}

    def drop_bias_of(name, out):  # the reference's bias-free patch layer
        return out - biases[name][:, None, None] if name in biases else out

    grads = _output_grads(model, [(name, convs[name]) for name in layers], X, method=method, chunk_size=chunk_size,
                          n_sketch=n_sketch, generator=generator, batch_size=batch_size, force_eval=force_eval,
                          adjust=drop_bias_of)
    with contextlib.closing(grads):
        for c, name, g, scale in grads:  # g: (m, B, k_out, Ho, Wo)
            gk = (g if scale == 1.0 else g * scale).reshape(g.shape[0] * g.shape[1], g.shape[2], -1)
            Kb = torch.bmm(gk, gk.transpose(1, 2)).sum(0).to(dtype)  # (k_out, k_out), model dtype
            Kb = Kb.cpu() if store_on == "cpu" else Kb
            K[name] = Kb if name not in K else K[name] + Kb.to(K[name].device)
    return {name: K[name] / X.shape[0] for name in layers}, c


def _oracle(model, layer, X, *, batch_size, chunk_size, dtype, force_eval, store_on, drop_bias=False):
    from torch.func import jacrev, vmap

    conv = _conv(model, layer)
    cast_dtype, device = _model_dtype_device(model)
    device = device or X.device
    G, c = None, None
    with contextlib.ExitStack() as stack:
        _enter_probe_mode(stack, model, force_eval)
        inp = stack.enter_context(_LayerLeaf(conv, layer, where="input"))
        Wbar = conv.weight.detach().reshape(conv.out_channels, -1)  # (k_out, D)
        b = conv.bias.detach() if conv.bias is not None and not drop_bias else None
        for sl in _batches(X.shape[0], batch_size):
            xb = X[sl].to(device=device, dtype=cast_dtype or X.dtype)
            inp.calls = 0
            with torch.no_grad():
                model(xb)
            U = unfold_patches(inp.h.detach(), conv)  # (B, Ho, Wo, D)

            def f_single(u, x):
                def swap(_m, _a, _out):
                    o = torch.einsum("hwd,kd->khw", u, Wbar)  # (k_out, Ho, Wo)
                    if b is not None:
                        o = o + b[:, None, None]
                    return o.unsqueeze(0)

                inp.calls = 0
                handle = conv.register_forward_hook(swap)
                try:
                    return model(x.unsqueeze(0)).reshape(-1)  # (c,)
                finally:
                    handle.remove()

            J = vmap(jacrev(f_single, chunk_size=chunk_size))(U, xb)  # (B, c, Ho, Wo, D)
            c = J.shape[1]
            flat = J.detach().to(dtype).reshape(-1, J.shape[-1])  # (B·c·Ho·Wo, D)
            Gb = flat.T @ flat
            Gb = Gb.cpu() if store_on == "cpu" else Gb
            G = Gb if G is None else G + Gb.to(G.device)
    return G / X.shape[0], c


def patch_agop(model: nn.Module, layer: str, X: torch.Tensor, *,
               method: PatchAGOPMethod | str = PatchAGOPMethod.FAST, outputs: str = "all",
               n_sketch: int | None = None, batch_size: int | None = None, chunk_size: int | None = None,
               store_on: str = "cpu", generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float64, force_eval: bool = True, drop_bias: bool = False,
               return_info: bool = False):
    """Patch-AGOP of the conv layer ``layer`` over the images ``X`` (n, c, H, W).

    Parameters
    ----------
    model : nn.Module
    layer : str
        ``named_modules()`` name of an ``nn.Conv2d`` (groups=1, dilation=1).
    X : Tensor (n, C, H, W)
        Model inputs.
    method : PatchAGOPMethod or str
        ``"fast"`` (W̄ᵀKW̄, default) or ``"oracle"`` (unfold + vmap(jacrev)); see the enum.
    outputs : {"all", "sketch"}
        Exact sum over all c outputs, or an unbiased Gaussian sketch with ``n_sketch`` probes
        (fast only; an approximation, labelled in ``AGOPInfo.sketched``).
    n_sketch, generator
        Probes and their generator for ``outputs="sketch"``.
    batch_size, chunk_size, store_on
        Memory knobs (images per forward, outputs per batched backward / jacrev chunk, where the
        accumulator lives); they never change the result.
    dtype : torch.dtype
        Accumulation and result dtype (float64); per-batch products run in the model's dtype.
    force_eval : bool
        eval() for the call (modes restored); with False, train-mode BatchNorm is refused.
    drop_bias : bool
        Reference quirk (convrfm ``PatchConvLayer``): leave the layer's bias out of the patch
        network. Default False: the bias is part of "the rest of the network".
    return_info : bool
        Also return an :class:`AGOPInfo`.

    Returns
    -------
    G : Tensor (c_in·kh·kw, c_in·kh·kw)
        In the conv weight's flatten order (c_in, row, col).
    """
    try:
        method = PatchAGOPMethod(method.value if isinstance(method, PatchAGOPMethod) else str(method).lower())
    except ValueError:
        raise ValueError(f"method must be one of {[m.value for m in PatchAGOPMethod]}, got {method!r}") from None
    _check(outputs, n_sketch, batch_size, chunk_size, store_on)
    conv = _conv(model, layer)
    if method is PatchAGOPMethod.ORACLE:
        if outputs != "all":
            raise ValueError("outputs='sketch' is only available with method='fast'")
        G, c = _oracle(model, layer, X, batch_size=batch_size, chunk_size=chunk_size, dtype=dtype,
                       force_eval=force_eval, store_on=store_on, drop_bias=drop_bias)
    else:
        K, c = conv_output_gram(model, layer, X, outputs=outputs, n_sketch=n_sketch, batch_size=batch_size,
                                chunk_size=chunk_size, store_on=store_on, generator=generator,
                                dtype=dtype, force_eval=force_eval, drop_bias=drop_bias)
        Wbar = conv.weight.detach().reshape(conv.out_channels, -1)  # (k_out, D), model dtype
        G = sandwich(Wbar, K, dtype=dtype).to(K.device)  # (D, D)
    if return_info:
        sk = outputs == "sketch"
        return G, AGOPInfo(method=method.value, sketched=sk, n_sketch=n_sketch if sk else None,
                           n_samples=X.shape[0], n_outputs=c, d=G.shape[0], centering=None)
    return G
