"""Per-node features by torch.fx tracing, as the reference's ``--by_layer 1`` (spec §3.6).

relativestability ``main.py`` takes every node of the traced graph (torchvision's feature
extractor naming: module nodes by their qualified path ``features.0``, function nodes by
their node name ``relu``, ``flatten``, ``add_1``) except the input ``x`` and ``size``,
``view``, ``squeeze``, ``dropout`` nodes and any name containing ``size``, ``sub``,
``floordiv``, ``numel`` or ``pow``. featlab rebuilds that list without torchvision.
"""
from __future__ import annotations

import builtins
import re

import torch
import torch.fx
from torch import nn

__all__ = ["fx_node_names", "fx_feature_extractor"]

_EXCLUDE_BASE = {"x", "size", "view", "squeeze", "dropout"}
_EXCLUDE_SUB = ("size", "sub", "floordiv", "numel", "pow")


def _named_nodes(gm: torch.fx.GraphModule) -> list[tuple[str, torch.fx.Node]]:
    """(name, node) of the reference's kept nodes, in graph order; repeated names get _k."""
    seen: dict[str, int] = {}
    out = []
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        if node.op == "call_function" and node.target is builtins.getattr:
            continue  # x.shape and friends: not features
        name = str(node.target) if node.op == "call_module" else node.name
        base = re.sub(r"_\d+$", "", name.split(".")[-1])
        if base in _EXCLUDE_BASE or any(s in name for s in _EXCLUDE_SUB):
            continue
        k = seen.get(name, 0)
        seen[name] = k + 1
        out.append((name if k == 0 else f"{name}_{k}", node))
    return out


def _maybe_clone(v):
    return v.clone() if isinstance(v, torch.Tensor) else v


def fx_node_names(model: nn.Module) -> list[str]:
    """Names of the nodes the reference probes, from ``torch.fx.symbolic_trace(model)``.

    Convention:
        call_module nodes are named by module path (``features.0``), other nodes by their
        fx node name (``relu``, ``flatten``, ``add_1``); graph order.
    """
    return [n for n, _ in _named_nodes(torch.fx.symbolic_trace(model))]


def fx_feature_extractor(model: nn.Module, names: list[str] | None = None, *,
                         clone: bool = True) -> torch.fx.GraphModule:
    """A GraphModule returning ``(output, {name: node value})`` for the named nodes.

    Parameters
    ----------
    model : nn.Module
        Traced with ``torch.fx.symbolic_trace``; submodules are shared, not copied.
    names : list of str, optional
        Subset of :func:`fx_node_names` (default: all of them).
    clone : bool
        Insert ``torch.clone`` right after each node, so a later in-place op (``ReLU(inplace=
        True)``) cannot overwrite the captured value. ``False`` reproduces the reference.
    """
    gm = torch.fx.symbolic_trace(model)
    nodes = dict(_named_nodes(gm))
    names = list(nodes) if names is None else list(names)
    missing = [n for n in names if n not in nodes]
    if missing:
        raise ValueError(f"unknown fx nodes {missing}; available: {list(nodes)}")
    graph = gm.graph
    out_node = next(n for n in graph.nodes if n.op == "output")
    captured = {}
    for n in names:
        node = nodes[n]
        if clone:
            with graph.inserting_after(node):
                captured[n] = graph.call_function(_maybe_clone, (node,))
        else:
            captured[n] = node
    orig = out_node.args[0]
    with graph.inserting_before(out_node):
        graph.output((orig, captured))
    graph.erase_node(out_node)
    graph.lint()
    gm.recompile()
    return gm
