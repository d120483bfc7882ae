"""Devices and explicit random streams.

Convention:
    Every sampler in featlab takes an explicit ``torch.Generator`` *for the device it draws
    on*. :func:`make_generator` derives independent streams from one master seed and a stream
    name, so adding a stream never shifts another. A seed reproduces the same numbers on the
    same device type; CPU and CUDA streams differ.
"""
from __future__ import annotations

import hashlib

import torch

from ..config import ConfigError

__all__ = ["resolve_device", "derive_seed", "make_generator"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Return a usable ``torch.device``; ``cuda`` without a GPU raises :class:`ConfigError`."""
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError("device", "allowed: cpu, cuda, cuda:N", str(device)) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device", "CUDA is not available on this machine; use cpu", str(device))
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError("device", f"only {torch.cuda.device_count()} CUDA device(s) here", str(device))
    elif dev.type != "cpu":
        raise ConfigError("device", "allowed: cpu, cuda, cuda:N", str(device))
    return dev


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for the named ``stream`` of master ``seed`` (SHA-256 based, stable)."""
    h = hashlib.sha256(f"{int(seed)}/{stream}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def make_generator(seed: int, stream: str = "", device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded by :func:`derive_seed` (``stream=""``: ``seed``)."""
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(derive_seed(seed, stream) if stream else int(seed))
    return g
