"""Addressing layers by module path, capturing activations, and eval-mode guards.

Convention:
    Layers are addressed by their ``named_modules()`` names (``"features.3"``); ``""`` is the
    model itself. :func:`capture` registers forward hooks and always removes them in
    ``finally:``; captured outputs are *cloned* at capture time, so an in-place ReLU that runs
    later cannot overwrite them (``clone=False`` reproduces the reference's overwritten
    captures). :func:`eval_mode` forces ``eval()`` and restores each module's previous mode.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

__all__ = ["get_module", "capture", "eval_mode", "layer_names", "refuse_train_batchnorm"]


def get_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` in ``model.named_modules()``.

    Raises ``KeyError`` with the available names when it does not exist.
    """
    modules = dict(model.named_modules())
    if name not in modules:
        avail = ", ".join(n for n in modules if n) or "(none)"
        raise KeyError(f"layer {name!r} not found; available: {avail}")
    return modules[name]


def layer_names(model: nn.Module, types: tuple[type, ...] | None = None) -> list[str]:
    """Names of the submodules (optionally only those of ``types``), in registration order."""
    return [n for n, m in model.named_modules() if n and (types is None or isinstance(m, types))]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode for the block; restore each module's mode afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.train(training)


def refuse_train_batchnorm(model: nn.Module) -> None:
    """Raise ``ValueError`` if a BatchNorm layer is in train mode (batch-coupled samples)."""
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            raise ValueError(f"layer {name!r} is a BatchNorm in train mode, which couples samples; "
                             "call model.eval() (probes use eval mode by default)")


@contextlib.contextmanager
def capture(model: nn.Module, names: Iterable[str], *, clone: bool = True,
            transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Iterator[dict]:
    """Record the outputs of the named layers during the forward passes inside the block.

    ``with capture(model, ["features.0", "features.3"]) as cache: model(x)`` fills
    ``cache[name]`` with a list of the outputs of each call (one entry per forward pass).
    Outputs are detached and cloned (unless ``clone=False``), then passed through
    ``transform`` if given. Hooks are removed on exit, even on error.
    """
    names = list(names)
    cache: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    handles = []

    def make_hook(n: str):
        def hook(_m, _inp, out):
            t = out[0] if isinstance(out, (tuple, list)) else out
            t = t.detach()
            if clone:
                t = t.clone()
            if transform is not None:
                t = transform(t)
            cache[n].append(t)

        return hook

    try:
        for n in names:
            handles.append(get_module(model, n).register_forward_hook(make_hook(n)))
        yield cache
    finally:
        for h in handles:
            h.remove()
