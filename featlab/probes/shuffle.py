"""Channel shuffling: keep every spatial kernel, randomise the routing between channels (spec §4).

relativestability ``utils::load_net_from_run`` (``--shuffle_channels 1``): for every conv weight
W (C_out, C_in, k, k), W <- W[:, pi] with one random permutation pi of the input channels per
layer, shared by all output filters. Channel pooling is destroyed, spatial pooling is kept.
"""
from __future__ import annotations

import copy
from enum import Enum

import torch
from torch import nn

__all__ = ["ShuffleMode", "shuffle_channels", "permute_channels"]


class ShuffleMode(str, Enum):
    """Which channel axes are permuted.

    IN: input channels only (``--shuffle_channels 1``, the paper's protocol).
    IN_OUT_REFERENCE: also the output channels, W[pi'] (``--shuffle_channels 2``), *without*
        permuting the biases or BN statistics that follow: compat only, it breaks the
        alignment of each filter with its bias / BN channel.
    """

    IN = "in"
    IN_OUT_REFERENCE = "in_out_reference"


def _conv_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    # conv weights are the parameters with >= 3 dims (the reference: 4-D, i.e. Conv2d)
    return [(n, p) for n, p in model.named_parameters() if p.ndim >= 3]


def permute_channels(model: nn.Module, perms: dict[str, tuple[torch.Tensor | None, torch.Tensor | None]]
                     ) -> nn.Module:
    """Return a copy of ``model`` with W <- W[pi_out][:, pi_in] for each named conv weight.

    ``perms`` maps a parameter name to ``(pi_in, pi_out)``; either may be None (no permutation).
    """
    new = copy.deepcopy(model)
    params = dict(new.named_parameters())
    with torch.no_grad():
        for name, (p_in, p_out) in perms.items():
            if name not in params:
                raise ValueError(f"perms names an unknown parameter {name!r}")
            W = params[name]
            Wn = W
            if p_in is not None:
                Wn = Wn[:, p_in.to(W.device)]
            if p_out is not None:
                Wn = Wn[p_out.to(W.device)]
            W.copy_(Wn)
    return new


def shuffle_channels(model: nn.Module, generator: torch.Generator | None = None,
                     mode: str = "in") -> nn.Module:
    """A copy of ``model`` whose conv weights have randomly permuted input channels.

    Parameters
    ----------
    model : nn.Module
        Left unchanged.
    generator : torch.Generator, optional
        Draws one ``randperm(C_in)`` per conv weight (then ``randperm(C_out)`` in
        "in_out_reference" mode), in ``named_parameters()`` order, on its device.
    mode : {"in", "in_out_reference"}
        See :class:`ShuffleMode`.

    Returns
    -------
    nn.Module, a deep copy.

    Convention:
        Conv weights are the parameters with ndim >= 3, laid out (C_out, C_in, *kernel);
        W <- W[:, pi] with one pi per layer shared by all output filters. Biases, BatchNorm
        and linear layers are untouched. Grouped convs permute within their C_in/groups slots.
    """
    try:
        m = ShuffleMode(mode)
    except ValueError:
        raise ValueError(f"mode must be one of 'in', 'in_out_reference'; got {mode!r}") from None
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    perms = {}
    for name, W in _conv_weights(model):
        p_in = torch.randperm(W.shape[1], generator=generator, device=generator.device)
        p_out = (torch.randperm(W.shape[0], generator=generator, device=generator.device)
                 if m is ShuffleMode.IN_OUT_REFERENCE else None)
        perms[name] = (p_in, p_out)
    return permute_channels(model, perms)
