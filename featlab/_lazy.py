"""Lazy public surfaces: ``featlab.data.NLGP`` imports ``featlab.data.nlgp`` on first use.

Each subpackage lists its deliberate public names in ``_EXPORTS`` (name -> submodule); the
list is compared with ``tests/api_surface.txt`` by ``tests/test_api_surface.py``.

A submodule must not share its name with an exported attribute: importing ``pkg.agop`` binds
the *module* to ``pkg.agop`` and would shadow the exported function. Such modules get a leading
underscore (``featlab/probes/_agop.py`` exports ``agop``); the API-surface test checks that no
exported name resolves to a module.
"""
from __future__ import annotations

import importlib
from typing import Callable


def attach(package: str, exports: dict[str, str]) -> tuple[Callable, Callable, list[str]]:
    """Return ``(__getattr__, __dir__, __all__)`` for ``package`` exporting ``exports``."""

    def __getattr__(name: str):
        if name in exports:
            mod = importlib.import_module(f"{package}.{exports[name]}")
            return getattr(mod, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(exports)

    return __getattr__, __dir__, sorted(exports)
