"""Configs: frozen dataclasses as the single source of truth (see :mod:`featlab.config.fields`).

Every experiment config derives from :class:`ExperimentConfig`, which carries the two fields
every run has: ``seed`` and ``device``.
"""
from __future__ import annotations

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


@dataclass(frozen=True)
class ExperimentConfig:
    """Fields shared by every experiment config.

    Convention:
        A seed reproduces the same numbers on the same device type; CPU and CUDA random
        streams differ (data for GPU runs are drawn on the GPU for speed).
    """

    seed: int = F(0, "master seed; every random stream of the run is derived from it", ge=0)
    device: str = F("cpu", "torch device: cpu, cuda or cuda:N (data are generated on it)")
    threads: int | None = F(None, "torch CPU threads for the run, restored afterwards (None: torch's "
                            "default); small nets often run faster on 1 thread", ge=1, semantic=False)

    def check(self) -> None:
        d = self.device
        if not (d == "cpu" or d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit())):
            raise ConfigError("device", "allowed: cpu, cuda, cuda:N", d)
