"""The public surface is deliberate: every subpackage's exports equal tests/api_surface.txt.

Regenerate after a deliberate change with ``python tests/test_api_surface.py --write``.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
import types
from pathlib import Path

import featlab

SURFACE = Path(__file__).with_name("api_surface.txt")
PACKAGES = ["config", "data", "diffeo", "experiments", "kernels", "models", "probes", "report", "runs",
            "sweep", "theory", "train", "utils"]


def current_surface() -> list[str]:
    names = []
    for pkg in PACKAGES:
        mod = importlib.import_module(f"featlab.{pkg}")
        names += [f"featlab.{pkg}.{n}" for n in getattr(mod, "__all__", [])]
    return sorted(names)


def test_api_surface_matches_checked_in_list():
    expected = [ln.strip() for ln in SURFACE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert current_surface() == expected


def test_every_export_resolves_and_is_not_shadowed_by_a_submodule():
    # import every submodule first: this is what binds submodules onto their package
    for pkg in PACKAGES:
        mod = importlib.import_module(f"featlab.{pkg}")
        for info in pkgutil.iter_modules(mod.__path__):
            importlib.import_module(f"featlab.{pkg}.{info.name}")
    for name in current_surface():
        pkg, attr = name.rsplit(".", 1)
        obj = getattr(importlib.import_module(pkg), attr)
        assert not isinstance(obj, types.ModuleType), f"{name} is shadowed by a submodule of the same name"


if __name__ == "__main__" and "--write" in sys.argv:
    SURFACE.write_text("# featlab public API (tests/test_api_surface.py --write)\n" + "\n".join(current_surface()) + "\n")
    print(f"wrote {SURFACE}")
