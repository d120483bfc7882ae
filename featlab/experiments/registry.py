"""The experiment registry.

An experiment is one module of :mod:`featlab.experiments` that reads like the paper's methods
section and ends with a call to :func:`register`::

    EXPERIMENT = register(Experiment(
        name="emergence",
        summary="FC net on NLGP vs its Gaussian clone: localised receptive fields (IG 2022)",
        config=EmergenceConfig,
        presets={"tiny": tiny, "paper": paper},   # functions returning a config
        run=run,                                  # run(cfg, ctx) -> summary dict
    ))

Presets are functions returning ``dataclasses.replace(EmergenceConfig(), ...)``: a small diff
from the defaults. Modules are discovered automatically (every non-underscore module of the
package), so adding an experiment touches no shared file.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..config import ConfigError

__all__ = ["Experiment", "Claim", "register", "get", "names", "all_experiments"]


@dataclass(frozen=True)
class Claim:
    """A headline claim of a paper, checked against a run's summary (used by the report).

    ``check(summary) -> (measured: str, verdict: bool | None)``; ``None`` means not measurable
    from this run. The criterion is fixed from the paper before any result is looked at and is
    never loosened to make a preset pass.

    ``reference`` is the paper's own value where the paper gives one (with where it was read,
    e.g. ``"IPR ≈ 0.055 (read from PNAS Fig. 1D)"``); ``""`` when the paper gives none.
    ``value(summary) -> float | None`` is the one measured number the criterion is judged on
    (e.g. ipr_nlgp / baseline); the report shows its median and spread over the seeds of a
    group of runs. ``None`` (the default) when the claim has no single number.
    """

    text: str
    source: str
    criterion: str
    check: Callable[[dict], tuple[str, bool | None]]
    reference: str = ""
    value: Callable[[dict], float | None] | None = None


@dataclass(frozen=True)
class Experiment:
    name: str
    summary: str
    config: type
    presets: Mapping[str, Callable[[], Any]]
    run: Callable[[Any, Any], dict]
    claims: tuple[Claim, ...] = field(default=())
    default_preset: str = "tiny"
    #: presets whose runs count as paper scale in the report; every other preset is a smoke-scale
    #: run, labelled as such and never mixed into the tally of paper-scale runs.
    paper_presets: tuple[str, ...] = ("paper",)

    def scale(self, preset: str | None) -> str:
        """``"paper"`` for a preset in :attr:`paper_presets`, else ``"smoke"``."""
        return "paper" if preset in self.paper_presets else "smoke"

    def preset(self, name: str | None = None) -> Any:
        name = self.default_preset if name is None else name  # "" is a bad name, not the default
        if name not in self.presets:
            raise ConfigError("preset", did_you_mean(name, self.presets) + "allowed: " + ", ".join(self.presets), name)
        return self.presets[name]()


_REGISTRY: dict[str, Experiment] = {}
_LOADED = False


def register(exp: Experiment) -> Experiment:
    """Add ``exp`` to the registry (re-registering the same name replaces it) and return it."""
    _REGISTRY[exp.name] = exp
    return exp


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    from .. import experiments as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.name.startswith("_") and mod.name != "registry":
            importlib.import_module(f"{pkg.__name__}.{mod.name}")
    _LOADED = True


def all_experiments() -> dict[str, Experiment]:
    """Every registered experiment, by name, in sorted order."""
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def names() -> list[str]:
    return list(all_experiments())


def get(name: str) -> Experiment:
    """The experiment called ``name``; an unknown name raises :class:`ConfigError` (with a "did you mean")."""
    exps = all_experiments()
    if name not in exps:
        raise ConfigError("experiment", did_you_mean(name, exps) + "allowed: " + ", ".join(exps), name)
    return exps[name]


def did_you_mean(word: str, choices: Any) -> str:
    """``"did you mean X? "`` for the closest of ``choices`` to ``word`` (difflib), else ``""``."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=2, cutoff=0.6)
    return f"did you mean {' or '.join(close)}? " if close else ""
