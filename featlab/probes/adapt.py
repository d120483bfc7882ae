"""Fitting a user's model and inputs to the probes: input checks and the ``output=`` selector.

Probes want a batch tensor in, a logits tensor out. Models in the wild return dicts
(``{"logits": ..., "features": ...}``), tuples (``(logits, aux)``) or dataclass-like objects,
and inputs arrive as NumPy arrays, uint8 images or float64 tensors. :func:`prepare_inputs`
turns the last into what the model expects or says in one line why it cannot;
:func:`select_output` / :func:`output_selected` pick the tensor the probes differentiate.

Convention:
    ``output`` is a dotted path applied to the model's return value: each part is a dict key,
    an attribute name or an integer index (``"logits"``, ``"0"``, ``"out.logits"``). ``None``
    means the model already returns a tensor. The selection is installed as a forward hook on
    the root module (removed on exit), so every probe and every layer name
    (``named_modules()``) is unchanged. Inputs are cast to the dtype of the model's first
    floating parameter and moved to its device; integer inputs are refused (convert them,
    e.g. ``x.float() / 255``), NumPy arrays are refused (``torch.from_numpy``).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

__all__ = ["select_output", "output_selected", "traced_with_output", "prepare_inputs", "model_dtype_device",
           "describe_output", "frozen_params"]


def model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """dtype and device of the model's first floating parameter or buffer (float32/CPU if none)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype, t.device
    return torch.get_default_dtype(), torch.device("cpu")


def describe_output(out: Any) -> str:
    """A short description of a model's return value, for error messages."""
    if isinstance(out, torch.Tensor):
        return f"a tensor of shape {tuple(out.shape)}"
    if isinstance(out, dict):
        return "a dict with keys " + ", ".join(map(repr, out))
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)} items"
    return f"a {type(out).__name__}"


def select_output(out: Any, output: str | None) -> torch.Tensor:
    """The tensor at ``output`` (dotted path, see module Convention) inside ``out``."""
    if output is None or output == "":
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"the model returns {describe_output(out)}; choose the tensor to probe "
                             "with output= (e.g. output='logits' or output='0')")
        return out
    cur = out
    for part in output.split("."):
        if isinstance(cur, dict):
            if part not in cur:
                raise ValueError(f"output={output!r}: no key {part!r} in {describe_output(cur)}")
            cur = cur[part]
        elif isinstance(cur, (tuple, list)):
            if not part.lstrip("-").isdigit() or not -len(cur) <= int(part) < len(cur):
                raise ValueError(f"output={output!r}: {part!r} is not an index of {describe_output(cur)}")
            cur = cur[int(part)]
        elif hasattr(cur, part):
            cur = getattr(cur, part)
        else:
            raise ValueError(f"output={output!r}: cannot take {part!r} of {describe_output(cur)}")
    if not isinstance(cur, torch.Tensor):
        raise ValueError(f"output={output!r} selects {describe_output(cur)}, not a tensor")
    return cur


@contextlib.contextmanager
def output_selected(model: nn.Module, output: str | None) -> Iterator[nn.Module]:
    """Inside the block, ``model(x)`` returns ``select_output(model's output, output)``.

    A no-op for ``output=None``. Implemented as a forward hook on the root module, removed on
    exit, so submodule names and hooks on layers are untouched.
    """
    if output is None or output == "":
        yield model
        return
    handle = model.register_forward_hook(lambda _m, _a, out: select_output(out, output))
    try:
        yield model
    finally:
        handle.remove()


def traced_with_output(model: nn.Module, output: str | None) -> nn.Module:
    """``model`` itself for ``output=None``; else its ``torch.fx`` trace returning the selection.

    The GraphModule keeps the model's submodules under the same names and its fx nodes keep
    their names, so :func:`featlab.probes.stability` with ``layer_source="fx"`` reads the same
    features; the selection is appended to the graph as getitem/getattr nodes.
    """
    import operator

    import torch.fx

    if output is None or output == "":
        return model
    gm = torch.fx.symbolic_trace(model)
    graph = gm.graph
    out_node = next(n for n in graph.nodes if n.op == "output")
    cur = out_node.args[0]
    with graph.inserting_before(out_node):
        for part in output.split("."):
            if isinstance(cur, dict):  # a dict literal in the graph: take the entry's node directly
                cur = cur[part]
            elif isinstance(cur, (tuple, list)):
                cur = cur[int(part)]
            elif part.lstrip("-").isdigit():
                cur = graph.call_function(operator.getitem, (cur, int(part)))
            else:
                cur = graph.call_function(_get, (cur, part))
        graph.output(cur)
    graph.erase_node(out_node)
    graph.lint()
    gm.recompile()
    return gm


def _get(obj, part: str):
    return obj[part] if isinstance(obj, dict) else getattr(obj, part)


@contextlib.contextmanager
def frozen_params(*models: nn.Module | None) -> Iterator[None]:
    """``requires_grad=False`` on every parameter of ``models`` for the block, restored after.

    Gradients w.r.t. inputs or activations (AGOPs) never need the weights' gradients; with the
    weights frozen the forward pass saves only what the input gradient needs (a conv keeps its
    weight, not its input; a final linear layer's AGOP records no graph below it), which cuts
    the memory of an AGOP pass and never changes its value.
    """
    saved = [(p, p.requires_grad) for m in models if m is not None for p in m.parameters()]
    try:
        for p, _ in saved:
            p.requires_grad_(False)
        yield
    finally:
        for p, rg in saved:
            p.requires_grad_(rg)


def prepare_inputs(model: nn.Module, X: Any, *, what: str = "X") -> torch.Tensor:
    """``X`` as a floating tensor in the model's dtype, on the model's device.

    Raises ``TypeError`` (one line, naming ``what``) for NumPy arrays, non-tensors and integer
    or boolean tensors, and ``ValueError`` for fewer than 2 dims.
    """
    if isinstance(X, np.ndarray):
        raise TypeError(f"{what} is a numpy array; pass torch.from_numpy({what}) (float images "
                        "(N, C, H, W), scaled as the model was trained)")
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(X).__name__}")
    if not X.is_floating_point():
        raise TypeError(f"{what} has dtype {X.dtype}; probes need floating inputs (e.g. "
                        f"{what}.float() / 255 for uint8 images)")
    if X.ndim < 2:
        raise ValueError(f"{what} must have shape (N, ...), got {tuple(X.shape)}")
    dtype, device = model_dtype_device(model)
    return X.detach().to(device=device, dtype=dtype)
