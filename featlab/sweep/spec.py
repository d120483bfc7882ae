"""Sweep specs: a TOML file naming an experiment, a preset, fixed overrides and grids.

Example (``examples/emergence_seeds_gains.toml``)::

    experiment = "emergence"
    preset = "tiny"
    seeds = [0, 1, 2]                  # optional: a product over ``seed``
    plugins = []                       # optional: modules that register extra experiments

    [set]                              # fixed overrides, applied to every run
    "train.time" = 30

    [product]                          # cartesian product of these fields
    "data.gain" = [1.0, 3.0, 10.0]

    [zip]                              # lists of equal length, varied together
    "data.xi" = [[1, 3], [2, 6]]
    "model.K" = [4, 8]

    [executor]                         # defaults; the CLI flags override them
    kind = "local"                     # local | dask | slurm
    workers = 2
    retries = 1
    scheduler = ""                     # dask: address of a running scheduler ("" = local cluster)
    profile = ""                       # slurm: path to a dask-jobqueue TOML profile

Convention:
    The runs are the product ``seeds x product-grid x zip-rows`` applied on top of the preset
    and ``[set]``, de-duplicated by run hash (one folder, one run). Every config is validated before anything runs; a bad key or value raises
    :class:`~featlab.config.ConfigError` naming it (``product.data.gainz: unknown field``).
"""
from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, apply_overrides, config_hash, validate

__all__ = ["SweepSpec", "load_spec", "parse_spec", "expand"]

_TOP_KEYS = {"experiment", "preset", "seeds", "plugins", "set", "product", "zip", "executor"}
_EXECUTOR_KEYS = {"kind", "workers", "retries", "scheduler", "profile"}
_KINDS = ("local", "dask", "slurm")


@dataclass(frozen=True)
class SweepSpec:
    experiment: str
    preset: str = "tiny"
    seeds: tuple[int, ...] = ()
    plugins: tuple[str, ...] = ()
    set: dict = field(default_factory=dict)
    product: dict = field(default_factory=dict)
    zip: dict = field(default_factory=dict)
    executor: dict = field(default_factory=dict)


def _table(raw: dict, key: str) -> dict:
    v = raw.get(key, {})
    if not isinstance(v, dict):
        raise ConfigError(key, "must be a table ([" + key + "])", v)
    return v


def parse_spec(raw: dict) -> SweepSpec:
    """Check the structure of a parsed TOML document and build a :class:`SweepSpec`."""
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        k = sorted(unknown)[0]
        raise ConfigError(k, "unknown sweep key; allowed: " + ", ".join(sorted(_TOP_KEYS)))
    if "experiment" not in raw or not isinstance(raw["experiment"], str):
        raise ConfigError("experiment", "required: the experiment name (see `featlab list`)")
    seeds = raw.get("seeds", [])
    if not isinstance(seeds, list) or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ConfigError("seeds", "must be a list of integers >= 0", seeds)
    plugins = raw.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError("plugins", "must be a list of module names", plugins)
    product = _table(raw, "product")
    for k, v in product.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"product.{k}", "must be a non-empty list of values", v)
    zipped = _table(raw, "zip")
    lengths = {k: len(v) if isinstance(v, list) else -1 for k, v in zipped.items()}
    for k, n in lengths.items():
        if n <= 0:
            raise ConfigError(f"zip.{k}", "must be a non-empty list of values", zipped[k])
    if len(set(lengths.values())) > 1:
        k = sorted(lengths)[-1]
        raise ConfigError(f"zip.{k}", "all [zip] lists must have the same length "
                          f"(lengths: {', '.join(f'{a}={b}' for a, b in sorted(lengths.items()))})")
    ex = _table(raw, "executor")
    bad = set(ex) - _EXECUTOR_KEYS
    if bad:
        raise ConfigError("executor." + sorted(bad)[0], "unknown key; allowed: " + ", ".join(sorted(_EXECUTOR_KEYS)))
    if "kind" in ex and ex["kind"] not in _KINDS:
        raise ConfigError("executor.kind", "allowed: " + ", ".join(_KINDS), ex["kind"])
    for k in ("workers", "retries"):
        if k in ex and (not isinstance(ex[k], int) or ex[k] < (1 if k == "workers" else 0)):
            raise ConfigError(f"executor.{k}", "must be an integer >= " + ("1" if k == "workers" else "0"), ex[k])
    return SweepSpec(experiment=raw["experiment"], preset=str(raw.get("preset", "tiny")), seeds=tuple(seeds),
                     plugins=tuple(plugins), set=_table(raw, "set"), product=product, zip=zipped, executor=ex)


def read_toml(path: str | Path, field: str, what: str) -> dict:
    """Parse a TOML file; a missing file or bad TOML raises :class:`ConfigError` naming ``field``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(field, f"{what} file not found", str(path))
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(field, f"cannot read {what} file: {e.strerror}", str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(field, f"not UTF-8 text (TOML files are UTF-8): byte {raw[e.start]:#04x} "
                          f"at offset {e.start}", str(path)) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(field, f"not valid TOML: {e}", str(path)) from None


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a sweep TOML file."""
    return parse_spec(read_toml(path, "SPEC", "sweep spec"))


def _import_plugins(plugins: tuple[str, ...]) -> None:
    import importlib

    for p in plugins:
        try:
            importlib.import_module(p)
        except ImportError as e:
            raise ConfigError("plugins", f"cannot import {p!r}: {e}") from None


def expand(spec: SweepSpec) -> list[Any]:
    """Every config of the sweep, validated, in a deterministic order, one per run hash.

    Configs with the same :func:`~featlab.config.config_hash` (they differ only in fields
    that do not change results, e.g. ``marker_dir``) would share one run folder, so only the
    first of them is kept.
    """
    from ..experiments import get

    _import_plugins(spec.plugins)
    exp = get(spec.experiment)
    base = exp.preset(spec.preset)

    def _apply(cfg, overrides: dict, section: str):
        for k, v in overrides.items():
            try:
                cfg = apply_overrides(cfg, {k: v})
            except ConfigError as e:
                raise ConfigError(f"{section}.{e.field}", e.allowed) from None
        return cfg

    base = _apply(base, spec.set, "set")
    prod_keys = list(spec.product)
    prod_rows = list(itertools.product(*(spec.product[k] for k in prod_keys))) or [()]
    zip_keys = list(spec.zip)
    zip_rows = list(zip(*(spec.zip[k] for k in zip_keys))) if zip_keys else [()]
    seeds = spec.seeds or (None,)
    out, seen = [], set()
    for seed in seeds:
        for prow in prod_rows:
            for zrow in zip_rows:
                cfg = _apply(base, dict(zip(prod_keys, prow)), "product")
                cfg = _apply(cfg, dict(zip(zip_keys, zrow)), "zip")
                if seed is not None:
                    cfg = apply_overrides(cfg, {"seed": seed})
                validate(cfg)
                h = config_hash(cfg)
                if h not in seen:  # one run folder per hash: configs that differ only in
                    seen.add(h)    # non-semantic fields are the same run
                    out.append(cfg)
    return out
