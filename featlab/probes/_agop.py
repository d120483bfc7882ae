"""Average gradient outer product (AGOP) of a model w.r.t. its input or a layer's input.

G(f; X) = (1/n) Σ_p J_f(x_p)ᵀ J_f(x_p), summed over the c output units (spec agop_rfm §2).

Convention:
    X: (n, *shape); d = prod(shape); G is (d, d) in the row-major flatten order of ``shape``
    (for images (c, row, col)). Outputs f(x) are flattened to (n, c) (logits, never softmax).
    Mean over samples, sum over outputs. Accumulation in ``dtype`` (float64 by default); the
    forward runs in the model's own dtype (X is cast to the dtype of the model's first
    floating parameter). ``layer=`` takes the AGOP w.r.t. the *input* of the named module
    (``named_modules()`` path), i.e. h_ℓ in the NFA. The model is put in ``eval()`` and each
    module's mode restored afterwards; hooks are always removed.
"""
from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from .hooks import eval_mode, get_module, refuse_train_batchnorm

__all__ = ["AGOPMethod", "AGOPInfo", "agop"]


class AGOPMethod(enum.Enum):
    """How per-sample Jacobians are obtained.

    AUTOGRAD_SUM (default)
        In eval mode samples do not interact, so ∂/∂X of Σ_p f_k(x_p) stacks the per-sample
        gradients of output k. Cost per batch: 1 forward + c backward passes (default, a plain
        loop with ``retain_graph``), or c/chunk_size batched backwards with
        ``is_grads_batched`` (vmap over the backward: a multi-second first-call warm-up and,
        on CPU, no faster in our measurements); memory: one batch of activations plus
        (chunk, B, d) gradients. The most straightforward and reliable path. Wrong for
        batch-coupled layers (train-mode BatchNorm), which are refused.
    VMAP_JACREV
        ``torch.func.vmap(jacrev(f_single))``: true per-sample Jacobians (B, c, d). The oracle;
        memory grows like B·c·d plus vmapped activations; some modules (in-place ops, custom
        autograd functions, backward hooks) do not work under vmap.
    SKETCH
        Gaussian output probes v ~ N(0, I_c) drawn independently per sample:
        (1/m) Σ_j (Jᵀv_j)(Jᵀv_j)ᵀ is unbiased for JᵀJ. Cost: m backwards instead of c, so it
        pays for c ≫ m (1000 ImageNet classes). An *approximation*: results are labelled
        (``AGOPInfo.sketched``); centring is not supported.
    """

    AUTOGRAD_SUM = "autograd_sum"
    VMAP_JACREV = "vmap_jacrev"
    SKETCH = "sketch"


@dataclass(frozen=True)
class AGOPInfo:
    """What was computed: method, whether the output dimension was sketched, sizes."""

    method: str
    sketched: bool
    n_sketch: int | None
    n_samples: int
    n_outputs: int
    d: int
    centering: str | None


def _as_method(method) -> AGOPMethod:
    try:
        return AGOPMethod(method.value if isinstance(method, AGOPMethod) else str(method).lower())
    except ValueError:
        raise ValueError(f"method must be one of {[m.value for m in AGOPMethod]}, got {method!r}") from None


def _model_dtype_device(f) -> tuple[torch.dtype | None, torch.device | None]:
    if isinstance(f, nn.Module):
        for p in list(f.parameters()) + list(f.buffers()):
            if p.is_floating_point():
                return p.dtype, p.device
    return None, None


class _Accumulator:
    """Σ gᵀg (and the gradient sums needed for centring) over blocks of gradients."""

    def __init__(self, d: int, c: int, dtype: torch.dtype, device, centering: str | None):
        self.G = torch.zeros(d, d, dtype=dtype, device=device)  # (d, d)
        self.centering = centering
        self.S = torch.zeros(c, d, dtype=dtype, device=device) if centering else None  # (c, d)

    def add(self, g: torch.Tensor, k: torch.Tensor | None = None) -> None:
        """g: (m, B, d) gradients for outputs ``k`` (m,) (or sketch probes when k is None)."""
        g = g.to(self.G.dtype)
        flat = g.reshape(-1, g.shape[-1])  # (m·B, d)
        self.G += (flat.T @ flat).to(self.G.device)
        if self.S is not None:
            self.S.index_add_(0, k.to(self.S.device), g.sum(1).to(self.S.device))

    def result(self, n: int) -> torch.Tensor:
        G = self.G
        if self.centering == "pooled":
            s = self.S.sum(0)  # (d,)
            G = G - torch.outer(s, s) / (n * self.S.shape[0])
        elif self.centering == "per_class":
            G = G - self.S.T @ self.S / n
        return G / n


def _enter_probe_mode(stack: contextlib.ExitStack, module: nn.Module, force_eval: bool) -> None:
    """eval() for the duration of ``stack`` (modes restored), or refuse train-mode BatchNorm."""
    if force_eval:
        stack.enter_context(eval_mode(module))
    else:
        refuse_train_batchnorm(module)


def _batches(n: int, batch_size: int | None) -> Iterator[slice]:
    bs = n if batch_size is None else batch_size
    for i in range(0, n, bs):
        yield slice(i, min(n, i + bs))


class _LayerLeaf:
    """Hook that makes a layer's first input (``where="input"``, a forward pre-hook) or its
    output (``where="output"``, a forward hook) replaceable, e.g. by a fresh leaf.

    The leaf is stored in ``h``; the layer (or the rest of the network) receives ``h.clone()``
    when ``clone_leaf`` so that an in-place op (``ReLU(inplace=True)``) never touches the leaf.
    """

    def __init__(self, module: nn.Module, name: str, where: str = "input"):
        self.module, self.name, self.where = module, name, where
        self.replacement: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.clone_leaf = False
        self.calls = 0
        self.h: torch.Tensor | None = None

    def __enter__(self):
        if self.where == "input":
            self.handle = self.module.register_forward_pre_hook(self._pre_hook)
        else:
            self.handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    def _swap(self, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > 1:
            raise ValueError(f"layer {self.name!r} is called more than once per forward; "
                             "the gradient w.r.t. it is ambiguous")
        h = self.replacement(t) if self.replacement is not None else t
        self.h = h
        return h.clone() if self.clone_leaf else h

    def _pre_hook(self, _m, args):
        return (self._swap(args[0]),) + tuple(args[1:])

    def _hook(self, _m, _args, out):
        if isinstance(out, (tuple, list)):
            raise ValueError(f"layer {self.name!r} returns a tuple; a tensor output is needed")
        return self._swap(out)


def _forward_blocks(f, X, *, method: AGOPMethod, layer_in: _LayerLeaf | None, batch_size,
                    chunk_size, n_sketch, generator, cast_dtype, device):
    """Yield (g (m, B, *leaf_shape), k (m,) or None, c) for each batch of X."""
    n = X.shape[0]
    for sl in _batches(n, batch_size):
        xb = X[sl].to(device=device, dtype=cast_dtype or X.dtype)  # (B, *shape)
        B = xb.shape[0]
        if method is AGOPMethod.VMAP_JACREV:
            yield _jacrev_block(f, xb, layer_in, chunk_size)
            continue
        if layer_in is None:
            leaf = xb.detach().requires_grad_(True)
            out = f(leaf)
        else:
            layer_in.calls = 0
            layer_in.replacement = lambda h: h.detach().requires_grad_(True)
            layer_in.clone_leaf = True
            try:
                out = f(xb)
            finally:
                layer_in.replacement, layer_in.clone_leaf = None, False
            if layer_in.calls != 1:
                raise ValueError(f"layer {layer_in.name!r} was not called in the forward pass")
            leaf = layer_in.h
        out = out.reshape(B, -1)  # (B, c)
        c = out.shape[1]
        for V, k, scale, last in _cotangents(out, method, chunk_size, n_sketch, generator):
            (g,) = _vjp(out, [leaf], V, retain=not last)  # (m, B, *leaf_shape)
            yield (g if scale == 1.0 else g * scale), k, c


def _cotangents(out: torch.Tensor, method: AGOPMethod, chunk_size, n_sketch, generator):
    """Yield (V (m, B, c), k (m,) or None, scale, is_last) for the backward passes of one batch.

    One-hot cotangents for outputs k (chunks of ``chunk_size``), or Gaussian sketch probes with
    ``scale`` = 1/√m so that Σ (scale·Jᵀv)(scale·Jᵀv)ᵀ is the (1/m) sketch average.
    """
    B, c = out.shape
    step = chunk_size or 1
    if method is AGOPMethod.SKETCH:
        gdev = generator.device if generator is not None else out.device
        V = torch.randn(n_sketch, B, c, generator=generator, device=gdev, dtype=out.dtype).to(out.device)
        for j in range(0, n_sketch, step):
            yield V[j:j + step], None, n_sketch ** -0.5, j + step >= n_sketch
        return
    for k0 in range(0, c, step):
        ks = torch.arange(k0, min(c, k0 + step), device=out.device)
        E = torch.zeros(len(ks), B, c, dtype=out.dtype, device=out.device)  # (m, B, c)
        E[torch.arange(len(ks)), :, ks] = 1.0
        yield E, ks, 1.0, k0 + step >= c


def _vjp(out: torch.Tensor, leaves: list[torch.Tensor], V: torch.Tensor, retain: bool) -> list[torch.Tensor]:
    """Vector-Jacobian products for the m cotangents V (m, B, c) -> [(m, *leaf.shape)] per leaf."""
    if V.shape[0] == 1:
        gs = torch.autograd.grad(out, leaves, V[0], retain_graph=retain, allow_unused=True)
        return [(torch.zeros_like(x) if g is None else g).unsqueeze(0) for g, x in zip(gs, leaves)]
    gs = torch.autograd.grad(out, leaves, V, retain_graph=retain, is_grads_batched=True, allow_unused=True)
    return [torch.zeros((V.shape[0],) + x.shape, dtype=x.dtype, device=x.device) if g is None else g
            for g, x in zip(gs, leaves)]


def _output_grads(model: nn.Module, modules: list[tuple[str, nn.Module]], X: torch.Tensor, *, method: "AGOPMethod",
                  chunk_size, n_sketch, generator, batch_size, force_eval,
                  adjust: Callable[[str, torch.Tensor], torch.Tensor] | None = None) -> Iterator[tuple]:
    """Gradients of ⟨V, f(x)⟩ with respect to each module's output, per batch and cotangent chunk.

    ``modules``: (name, module) pairs, in the order the gradients are yielded. Yields
    ``(c, name, g, scale)``: c the flattened output size, g the detached gradient
    (m, B, *output shape) for one chunk V of ``_cotangents``, scale its weight. A zero tensor is
    added to each module's output by a forward hook (after ``adjust(name, out)``, e.g. a bias
    dropped) and differentiated; a module called twice per forward, or never, is a ValueError.
    Hooks and probe mode are undone when the generator finishes or is closed.
    """
    cast_dtype, device = _model_dtype_device(model)
    device = device or X.device
    names = [name for name, _ in modules]
    deltas: dict[str, torch.Tensor] = {}

    def make_hook(name):
        def hook(_m, _a, out):
            if name in deltas:
                raise ValueError(f"layer {name!r} is called more than once per forward; K is ambiguous")
            deltas[name] = torch.zeros_like(out).requires_grad_(True)
            if adjust is not None:
                out = adjust(name, out)
            return out + deltas[name]
        return hook

    with contextlib.ExitStack() as stack:
        _enter_probe_mode(stack, model, force_eval)
        for name, m in modules:
            stack.callback(m.register_forward_hook(make_hook(name)).remove)
        for sl in _batches(X.shape[0], batch_size):
            xb = X[sl].to(device=device, dtype=cast_dtype or X.dtype)
            deltas.clear()
            out = model(xb).reshape(xb.shape[0], -1)  # (B, c)
            missing = [name for name in names if name not in deltas]
            if missing:
                raise ValueError(f"layers {missing} were not called in the forward pass")
            for V, _k, scale, last in _cotangents(out, method, chunk_size, n_sketch, generator):
                gs = _vjp(out, [deltas[name] for name in names], V, retain=not last)
                for name, g in zip(names, gs):
                    yield out.shape[1], name, g.detach(), scale


def _jacrev_block(f, xb, layer_in: _LayerLeaf | None, chunk_size):
    from torch.func import jacrev, vmap

    if layer_in is None:
        def f_single(x):
            return f(x.unsqueeze(0)).reshape(-1)  # (c,)
        J = vmap(jacrev(f_single, chunk_size=chunk_size))(xb)  # (B, c, *shape)
    else:
        layer_in.calls = 0
        with torch.no_grad():
            f(xb)
        H = layer_in.h.detach()  # (B, *h_shape)

        def f_single(h, x):
            layer_in.calls = 0
            layer_in.replacement = lambda _: h.unsqueeze(0)
            try:
                return f(x.unsqueeze(0)).reshape(-1)
            finally:
                layer_in.replacement = None
        J = vmap(jacrev(f_single, chunk_size=chunk_size))(H, xb)  # (B, c, *h_shape)
    c = J.shape[1]
    J = J.transpose(0, 1)  # (c, B, *shape)
    return J, torch.arange(c, device=J.device), c


def agop(model_or_fn: nn.Module | Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor, *,
         method: AGOPMethod | str = AGOPMethod.AUTOGRAD_SUM, layer: str | None = None,
         batch_size: int | None = None, chunk_size: int | None = None, store_on: str = "cpu",
         centering: str | None = None, n_sketch: int | None = None,
         generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
         force_eval: bool = True, return_info: bool = False):
    """AGOP G = (1/n) Σ_p J(x_p)ᵀJ(x_p) of a model (or callable) over the samples ``X``.

    Parameters
    ----------
    model_or_fn : nn.Module or callable
        Maps a batch (B, *shape) to outputs (B, ...) flattened to (B, c).
    X : Tensor, shape (n, *shape)
    method : AGOPMethod or str
        See :class:`AGOPMethod`. Default ``AUTOGRAD_SUM``.
    layer : str, optional
        ``named_modules()`` name; the AGOP is taken w.r.t. that module's (first) input.
    batch_size : int, optional
        Samples per forward pass (memory knob; does not change the result). None = all.
    chunk_size : int, optional
        Outputs (or sketch probes) per backward: >1 uses ``is_grads_batched``; for
        VMAP_JACREV it is jacrev's ``chunk_size``. Memory knob only.
    store_on : {"cpu", "device"}
        Where the (d, d) accumulator lives.
    centering : {None, "pooled", "per_class"}
        Centre the per-(sample, output) gradients g_pk before the outer product: "pooled"
        subtracts the mean over all (p, k) (xRFM ``center_grads``: ``f_grads - mean(dim=0)``
        after merging output and sample dims); "per_class" subtracts each output's mean over
        samples. Both keep the 1/n normalisation.
    n_sketch : int, optional
        Number of Gaussian probes for ``SKETCH`` (required there).
    generator : torch.Generator, optional
        Draws the sketch probes (on its device).
    dtype : torch.dtype
        Accumulation dtype (default float64).
    force_eval : bool
        Put the model in eval mode (default). With False, train-mode BatchNorm is refused.
    return_info : bool
        Also return an :class:`AGOPInfo` (labels sketched results as approximate).

    Returns
    -------
    G : Tensor, shape (d, d)
        (and ``AGOPInfo`` when ``return_info``).
    """
    method = _as_method(method)
    if centering not in (None, "pooled", "per_class"):
        raise ValueError(f"centering must be None, 'pooled' or 'per_class', got {centering!r}")
    if store_on not in ("cpu", "device"):
        raise ValueError(f"store_on must be 'cpu' or 'device', got {store_on!r}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    if method is AGOPMethod.SKETCH:
        if not n_sketch or n_sketch < 1:
            raise ValueError(f"n_sketch must be a positive integer for method='sketch', got {n_sketch!r}")
        if centering is not None:
            raise ValueError("centering is not supported with method='sketch'")
    if X.ndim < 2 or X.shape[0] < 1:
        raise ValueError(f"X must have shape (n, *shape) with n >= 1, got {tuple(X.shape)}")
    if layer is not None and not isinstance(model_or_fn, nn.Module):
        raise ValueError("layer= needs an nn.Module model")
    cast_dtype, device = _model_dtype_device(model_or_fn)
    if not X.is_floating_point() and cast_dtype is None:
        cast_dtype = torch.get_default_dtype()
    device = device or X.device
    n = X.shape[0]

    module = model_or_fn if isinstance(model_or_fn, nn.Module) else None
    with contextlib.ExitStack() as stack:
        if module is not None:
            _enter_probe_mode(stack, module, force_eval)
        layer_in = None
        if layer is not None:
            layer_in = stack.enter_context(_LayerLeaf(get_module(module, layer), layer))
        acc = None
        for g, k, c in _forward_blocks(model_or_fn, X, method=method, layer_in=layer_in,
                                          batch_size=batch_size, chunk_size=chunk_size,
                                          n_sketch=n_sketch, generator=generator,
                                          cast_dtype=cast_dtype, device=device):
            g = g.reshape(g.shape[0], g.shape[1], -1)  # (m, B, d)
            d = g.shape[-1]
            if acc is None:
                acc_dev = "cpu" if store_on == "cpu" else g.device
                acc = _Accumulator(d, c, dtype, acc_dev, centering)
            acc.add(g.detach(), k)
    G = acc.result(n)
    if return_info:
        return G, AGOPInfo(method=method.value, sketched=method is AGOPMethod.SKETCH,
                           n_sketch=n_sketch if method is AGOPMethod.SKETCH else None,
                           n_samples=n, n_outputs=c, d=d, centering=centering)
    return G
