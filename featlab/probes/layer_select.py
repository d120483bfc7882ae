"""Which layers to probe: automatic choices, reused modules, and the torch.fx fallback.

Hooks address a layer by its module, so a module *called more than once* per forward pass
(one ``self.relu`` applied twice, as in torchvision's BasicBlock) cannot be told apart from
itself: its two outputs land on the same hook. :func:`call_counts` finds such modules with
one forward pass; :func:`fx_layer_map` then names every call by its ``torch.fx`` node
(``layer1.0.relu`` and ``layer1.0.relu_1``) and every block by the node that computes its
output, so :func:`featlab.probes.stability` can read them with ``layer_source="fx"``.

Convention:
    Automatic layers, in ``named_modules()`` order, each called exactly once per forward:
    ``convs`` = every ``nn.Conv2d`` with ``groups == 1`` and ``dilation == 1`` (what the
    patch-AGOP supports); ``linears`` = every ``nn.Linear``; ``blocks`` = the modules that
    make up the network's top-level sequence: the root's children, with ``nn.Sequential`` /
    ``nn.ModuleList`` containers opened recursively, minus ``Identity``, ``Flatten`` and
    ``Dropout`` (for a ResNet: the stem, every residual block, the pooling and the head); a
    wrapper holding a single network is opened to that network's blocks.
"""
from __future__ import annotations

import re
from typing import Iterable

import torch
import torch.fx
from torch import nn

__all__ = ["call_counts", "auto_layers", "block_names", "fx_layer_map", "feature_numel", "CONTAINERS"]

CONTAINERS = (nn.Sequential, nn.ModuleList)
_SKIP = (nn.Identity, nn.Flatten, nn.Dropout, nn.Dropout2d)


def call_counts(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """How many times each named submodule runs in one forward pass of ``x`` (no grad, eval)."""
    from .hooks import eval_mode

    counts = {n: 0 for n, _ in model.named_modules() if n}
    handles = []

    def hook(name):
        def f(_m, _a):
            counts[name] += 1
        return f

    try:
        for n, m in model.named_modules():
            if n:
                handles.append(m.register_forward_pre_hook(hook(n)))
        with torch.no_grad(), eval_mode(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return counts


def feature_numel(model: nn.Module, x: torch.Tensor, names: list[str], source: str = "modules") -> dict[str, int]:
    """Elements per input of each named feature (module output, or fx node with ``source="fx"``),
    from one no-grad forward pass of ``x`` (a batch of one is enough)."""
    from .hooks import capture, eval_mode

    with torch.no_grad(), eval_mode(model):
        if source == "fx":
            from .fx_nodes import fx_feature_extractor

            _, feats = fx_feature_extractor(model, names, clone=False)(x)
            return {n: int(feats[n][0].numel()) if isinstance(feats[n], torch.Tensor) else 0 for n in names}
        with capture(model, names, clone=False) as cache:
            model(x)
    return {n: int(cache[n][0][0].numel()) if cache[n] else 0 for n in names}


def block_names(model: nn.Module) -> list[str]:
    """The top-level sequence of blocks (see module Convention), in registration order.

    A wrapper whose only block is the real network (``self.net``, a LightningModule) is opened:
    the blocks are then those of the wrapped module, named ``net.<block>``.
    """
    def walk(mod: nn.Module, prefix: str) -> list[str]:
        out: list[str] = []
        for name, child in mod.named_children():
            path = f"{prefix}{name}"
            if isinstance(child, CONTAINERS):
                out += walk(child, path + ".")
            elif not isinstance(child, _SKIP):
                out.append(path)
        return out

    out = walk(model, "")
    while len(out) == 1 and list(model.get_submodule(out[0]).children()):
        out = walk(model.get_submodule(out[0]), out[0] + ".")
    return out


def auto_layers(model: nn.Module, kind: str, counts: dict[str, int] | None = None,
                within: Iterable[str] | None = None) -> list[str]:
    """Automatic layers of ``kind`` in {"convs", "linears", "blocks"} (module Convention).

    ``counts`` (from :func:`call_counts`) drops modules not called exactly once; ``within``
    restricts the choice to the given names (a user's list).
    """
    mods = dict(model.named_modules())
    if kind == "convs":
        names = [n for n, m in mods.items() if n and isinstance(m, nn.Conv2d) and m.groups == 1
                 and tuple(m.dilation) == (1, 1)]
    elif kind == "linears":
        names = [n for n, m in mods.items() if n and isinstance(m, nn.Linear)]
    elif kind == "blocks":
        names = block_names(model)
    else:
        raise ValueError(f"kind must be 'convs', 'linears' or 'blocks', got {kind!r}")
    if within is not None:
        keep = set(within)
        names = [n for n in names if n in keep]
    if counts is not None:
        names = [n for n in names if counts.get(n, 0) == 1]
    return names


def fx_layer_map(model: nn.Module, names: Iterable[str]) -> dict[str, list[str]]:
    """Map module names to the ``torch.fx`` feature names that read them.

    A leaf module maps to the feature name of each of its calls (one name when it runs once;
    ``relu``, ``relu_1`` when reused). A module with children (a block) maps to the single
    node that computes its output: the last node of the graph inside that module's scope.
    Raises ``ValueError`` naming the model if it cannot be traced.
    """
    from .fx_nodes import _named_nodes

    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as e:  # noqa: BLE001 - tracing errors come in many types
        raise ValueError(f"{type(model).__name__} cannot be traced by torch.fx "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    named = _named_nodes(gm)
    out: dict[str, list[str]] = {}
    for name in names:
        hits = []
        for feat, node in named:
            stack = node.meta.get("nn_module_stack") or {}
            paths = [v[0] if isinstance(v, tuple) else str(k) for k, v in stack.items()]
            paths = [re.sub(r"@\d+$", "", p) for p in paths]
            if name in paths:
                hits.append((feat, node))
        if not hits:
            raise ValueError(f"layer {name!r} has no node in the fx graph of {type(model).__name__}")
        leaf = not list(dict(model.named_modules())[name].children())
        if leaf:
            out[name] = [f for f, n in hits if n.op == "call_module" and str(n.target) == name] or [hits[-1][0]]
        else:
            out[name] = [hits[-1][0]]
    return out
