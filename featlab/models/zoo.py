"""The model zoo: ``get(name, ...)`` builds any featlab architecture by name.

Convention:
    Every net takes ``(B, in_channels, input_size, input_size)`` images and returns logits
    ``(B, num_classes)``. Layers are addressed by ``named_modules()`` names (what every probe
    takes). VGG and ResNet parameter names follow torchvision; state dicts are loaded with
    ``torch.load(weights_only=True)`` only (:func:`load_state_dict_file`).
"""
from __future__ import annotations

import inspect
import os
from typing import Callable

import torch
from torch import nn

from .alexnet import AlexNet
from .efficientnet import EfficientNet
from .fc import FCNet
from .lenet import LeNet
from .resnet import ResNet
from .vanilla import VanillaCNN
from .vgg import VGG

__all__ = ["get", "available", "load_state_dict_file"]


def _vgg(cfg: str, bn: bool) -> Callable[..., nn.Module]:
    def build(**kw):
        return VGG(cfg, batch_norm=bn, **kw)
    build.__signature__ = _sig_without(VGG, "cfg", "batch_norm")  # type: ignore[attr-defined]
    return build


def _resnet(arch: str) -> Callable[..., nn.Module]:
    def build(**kw):
        return ResNet(arch, **kw)
    build.__signature__ = _sig_without(ResNet, "arch")  # type: ignore[attr-defined]
    return build


def _fc(depth: int) -> Callable[..., nn.Module]:
    def build(**kw):
        return FCNet(depth, **kw)
    build.__signature__ = _sig_without(FCNet, "depth")  # type: ignore[attr-defined]
    return build


def _sig_without(cls: type, *drop: str) -> inspect.Signature:
    sig = inspect.signature(cls.__init__)
    params = [p for n, p in sig.parameters.items() if n != "self" and n not in drop]
    return sig.replace(parameters=params)


_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "lenet": LeNet,
    "alexnet": AlexNet,
    "efficientnet_b0": EfficientNet,
    "vanilla": VanillaCNN,
    **{f"fc{L}": _fc(L) for L in (2, 4, 6)},
    **{f"{v}{s}": _vgg(v, s == "_bn") for v in ("vgg11", "vgg13", "vgg16", "vgg19") for s in ("", "_bn")},
    **{r: _resnet(r) for r in ("resnet18", "resnet34", "resnet50", "resnet101")},
}


def available() -> list[str]:
    """Sorted names accepted by :func:`get`."""
    return sorted(_REGISTRY)


def get(name: str, *, in_channels: int = 3, num_classes: int = 10, input_size: int = 32,
        generator: torch.Generator | None = None, **kw) -> nn.Module:
    """Build the zoo architecture ``name`` (see :func:`available`).

    Parameters
    ----------
    name : str
        e.g. "vanilla", "lenet", "alexnet", "vgg11", "vgg11_bn", "resnet18", "fc4".
    in_channels, num_classes, input_size : int
        Input ``(B, in_channels, input_size, input_size)``; output ``(B, num_classes)``.
        "vanilla" also takes ``input_size=(H, W)`` for rectangular images.
    generator : torch.Generator, optional
        Seeds the initialisation without touching the global RNG: one integer is drawn from
        it and the init runs under ``torch.random.fork_rng`` with that seed. None: the global
        RNG is used (PyTorch's default behaviour).
    **kw
        Architecture options, e.g. ``depth, width, kernel_size, stride, padding, bias, pool``
        for "vanilla", ``width`` for "fc*", ``variant="imagenet"`` for VGG/ResNet.

    Returns
    -------
    nn.Module on the CPU, in train mode.

    Raises
    ------
    ValueError
        Unknown name, unknown option, or an input size the architecture cannot take.
    """
    if name not in _REGISTRY:
        raise ValueError(f"name must be one of {available()}, got {name!r}")
    build = _REGISTRY[name]
    allowed = [p for p in inspect.signature(build).parameters if p != "self"]
    bad = [k for k in kw if k not in allowed]
    if bad:
        raise ValueError(f"{name}: unknown option(s) {bad}; allowed: {allowed}")
    kw.update(in_channels=in_channels, num_classes=num_classes, input_size=input_size)
    if generator is None:
        return build(**kw)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(**kw)


def load_state_dict_file(model: nn.Module, path: str | os.PathLike, *, strict: bool = True,
                         key: str | None = None) -> nn.Module:
    """Load a state dict from ``path`` into ``model`` safely and return the model.

    The file is read with ``torch.load(path, map_location="cpu", weights_only=True)`` (never
    executes code). DataParallel ``module.`` prefixes are stripped. If the file holds a dict
    wrapping the state dict (e.g. the reference's ``{'net': ..., 'acc': ...}``), pass
    ``key="net"``; with ``key=None`` the wrappers "state_dict", "net" and "model" are tried
    when the top level is not a state dict itself.
    """
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if key is not None:
        obj = obj[key]
    elif isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for k in ("state_dict", "net", "model"):
            if k in obj and isinstance(obj[k], dict):
                obj = obj[k]
                break
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}
    model.load_state_dict(sd, strict=strict)
    return model
