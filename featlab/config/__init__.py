"""Configs: frozen dataclasses as the single source of truth (see :mod:`featlab.config.fields`).

Every experiment config derives from :class:`ExperimentConfig`, which carries the two fields
every run has: ``seed`` and ``device``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .fields import F, ConfigError, FieldInfo, iter_fields, sub
from .ops import (
    active_quirks,
    apply_overrides,
    coerce,
    config_hash,
    describe,
    from_dict,
    to_dict,
    validate,
)

__all__ = [
    "ExperimentConfig",
    "F",
    "sub",
    "ConfigError",
    "FieldInfo",
    "iter_fields",
    "active_quirks",
    "apply_overrides",
    "coerce",
    "config_hash",
    "describe",
    "from_dict",
    "to_dict",
    "validate",
]


_DEVICE = re.compile(r"(cpu|cuda(:[0-9]{1,2})?)", re.ASCII)


def _check_device(path: str, value: str) -> None:
    """``cpu``, ``cuda`` or ``cuda:N`` (ASCII digits, N < 100); availability is checked at run time."""
    if not isinstance(value, str) or not _DEVICE.fullmatch(value):
        raise ConfigError(path, "allowed: cpu, cuda, cuda:N", value)


@dataclass(frozen=True)
class ExperimentConfig:
    """Fields shared by every experiment config.

    Convention:
        A seed reproduces the same numbers on the same device type and the same CPU thread
        count; CPU and CUDA random streams differ (data for GPU runs are drawn on the GPU for
        speed).

    ``threads``: some torch CPU kernels split their sums by thread count (oneDNN convolutions
    and their gradients do; a plain ``sum`` or ``matmul`` did not in our check), so 1 and 2
    threads give results that differ in the last digits (cnfa's baseline 0.9322329 vs
    0.9322247), and differences can grow over a long training run. Making every kernel
    thread-independent is not in our hands. An explicit ``threads=N`` is therefore part
    of the run hash (``semantic="if-set"``) and reproduces bit for bit. ``None`` (the default)
    lets the runner choose a count that cannot oversubscribe this machine (see
    :func:`featlab.utils.threads.auto_threads`); that choice depends on the machine and its
    load, so it is recorded in ``config.json`` (``threads_used``) but kept out of the hash:
    the same config has the same hash everywhere, and its numbers agree across machines to
    floating-point rounding of the reductions, not bit for bit.
    """

    seed: int = F(0, "master seed; every random stream of the run is derived from it", ge=0, le=2 ** 64 - 1)
    device: str = F("cpu", "torch device: cpu, cuda or cuda:N (data are generated on it)", check=_check_device)
    threads: int | None = F(None, "torch/BLAS CPU threads of the run (None: chosen so that concurrent runs never "
                            "oversubscribe the cores; recorded as threads_used); an explicit count is hashed "
                            "and reproduces bit for bit", ge=1, le=1024, semantic="if-set")

    def check(self) -> None:
        """Cross-field rules of every config (none; the device syntax is a field rule, checked even
        when a subclass's ``check`` does not call ``super().check()``)."""
