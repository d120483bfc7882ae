"""Operations on configs: validate, override from strings, (de)serialise, hash, quirks.

Conventions
-----------
- ``--set a.b=v`` addresses nested fields by dotted path and coerces ``v`` by the field's
  annotated type: ``bool`` (true/false/1/0/yes/no), ``int`` (``1e4`` accepted when
  integral), ``float``, ``str``, ``X | None`` (``none``/``null``), ``tuple[T, ...]``
  (``1,3`` or ``[1, 3]``).
- The run hash is the first 12 hex digits of SHA-256 of the canonical JSON (sorted keys,
  compact separators) of the semantic fields; fields declared ``semantic=False`` are left out.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from typing import Any, Iterable

from .fields import ConfigError, iter_fields

__all__ = [
    "validate",
    "apply_overrides",
    "to_dict",
    "from_dict",
    "config_hash",
    "active_quirks",
    "coerce",
    "describe",
]

_TRUE = {"true", "1", "yes", "on", "y"}
_FALSE = {"false", "0", "no", "off", "n"}


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "none"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _split_list(text: str) -> list[str]:
    text = text.strip()
    if text[:1] in "[(" and text[-1:] in "])":
        text = text[1:-1]
    return [t.strip() for t in text.split(",") if t.strip() != ""]


def coerce(path: str, tp: Any, value: Any) -> Any:
    """Convert ``value`` (a string from the CLI, or a JSON value) to the annotated type ``tp``.

    Raises :class:`ConfigError` naming ``path`` and the expected type.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(path, a, value)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(path, "expected " + " or ".join(_type_name(a) for a in args), value)
    if origin is typing.Literal:
        for a in args:
            if value == a or (isinstance(value, str) and str(a) == value):
                return a
        raise ConfigError(path, f"allowed: {', '.join(map(str, args))}", value)
    if origin in (tuple, list):
        items = _split_list(value) if isinstance(value, str) else list(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(f"{path}[{i}]", args[0], v) for i, v in enumerate(items))
        if args and len(args) != len(items):
            raise ConfigError(path, f"expected {len(args)} comma-separated values", value)
        if not args:
            return tuple(items)
        return tuple(coerce(f"{path}[{i}]", a, v) for i, (a, v) in enumerate(zip(args, items)))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(path, "expected a boolean (true/false)", value)
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(path, "expected an integer", value)
        if isinstance(value, int):
            return value
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(path, "expected an integer", value) from None
        if not math.isfinite(f) or f != int(f):
            raise ConfigError(path, "expected an integer", value)
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(path, "expected a number", value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(path, "expected a number", value) from None
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(path, "expected a string", value)
    return value


def _check_leaf(path: str, value: Any, meta: dict) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(path, "allowed: " + ", ".join(map(str, choices)), value)
    bounds = [(meta.get("ge"), ">=", lambda v, b: v >= b), (meta.get("gt"), ">", lambda v, b: v > b),
              (meta.get("le"), "<=", lambda v, b: v <= b), (meta.get("lt"), "<", lambda v, b: v < b)]
    vals = value if isinstance(value, tuple) else (value,)
    for v in vals:
        if v is None or isinstance(v, str):
            continue
        if isinstance(v, float) and math.isnan(v):
            raise ConfigError(path, "must be a number, not NaN", value)
        for b, op, ok in bounds:
            if b is not None and not ok(v, b):
                rng = ", ".join(f"{o} {x}" for x, o, _ in bounds if x is not None)
                raise ConfigError(path, f"must be {rng}", value)


def validate(cfg: Any) -> Any:
    """Check every field's type, choices and range, then the config's own ``check()`` hooks.

    Nested configs may define ``check(self)`` for cross-field rules; it raises
    :class:`ConfigError` with the dotted field name. Returns ``cfg`` unchanged.
    """
    for info in iter_fields(cfg):
        coerced = coerce(info.path, info.type, info.value)
        if coerced != info.value or type(coerced) is not type(info.value):
            if not (isinstance(info.value, int) and isinstance(coerced, float) and coerced == info.value):
                raise ConfigError(info.path, f"expected {_type_name(info.type)}", info.value)
        _check_leaf(info.path, info.value, info.meta)

    def _hooks(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v) and not isinstance(v, type):
                _hooks(v, prefix + f.name + ".")
        check = getattr(obj, "check", None)
        if callable(check):
            try:
                check()
            except ConfigError as e:
                if prefix and not e.field.startswith(prefix):
                    raise ConfigError(prefix + e.field, e.allowed) from None
                raise

    _hooks(cfg, "")
    return cfg


def _known_paths(cfg: Any) -> list[str]:
    return [i.path for i in iter_fields(cfg)]


def _replace_path(cfg: Any, parts: list[str], value: Any, full: str) -> Any:
    hints = typing.get_type_hints(type(cfg))
    names = {f.name: f for f in dataclasses.fields(cfg)}
    head = parts[0]
    if head not in names:
        raise KeyError(full)
    current = getattr(cfg, head)
    if len(parts) == 1:
        if dataclasses.is_dataclass(current):
            raise ConfigError(full, "is a group of fields; set one of its fields (e.g. "
                              f"{full}.{dataclasses.fields(current)[0].name}=...)")
        new = coerce(full, hints[head], value)
        _check_leaf(full, new, dict(names[head].metadata))
        return dataclasses.replace(cfg, **{head: new})
    if not (dataclasses.is_dataclass(current) and not isinstance(current, type)):
        raise KeyError(full)
    return dataclasses.replace(cfg, **{head: _replace_path(current, parts[1:], value, full)})


def apply_overrides(cfg: Any, overrides: Iterable[str] | dict) -> Any:
    """Return a copy of ``cfg`` with ``field=value`` overrides applied (dotted paths).

    An unknown field raises :class:`ConfigError` listing the closest known fields; a bad value
    raises it with the allowed values or range. ``overrides`` may be a list of ``"a.b=v"``
    strings or a mapping ``{"a.b": v}``.

    A field that was renamed is listed in the config class's ``RENAMED`` mapping (old dotted
    path -> new dotted path); setting the old name raises :class:`ConfigError` pointing to the
    new one, so a stale script fails loudly instead of silently doing nothing.
    """
    renamed = getattr(type(cfg), "RENAMED", None) or {}
    items = overrides.items() if isinstance(overrides, dict) else []
    if not isinstance(overrides, dict):
        parsed = []
        for item in overrides:
            if "=" not in item:
                raise ConfigError(str(item), "overrides are written field=value")
            k, v = item.split("=", 1)
            parsed.append((k.strip(), v))
        items = parsed
    for key, value in items:
        if key in renamed:
            raise ConfigError(key, f"renamed: use {renamed[key]}")
        try:
            cfg = _replace_path(cfg, key.split("."), value, key)
        except KeyError:
            import difflib

            known = _known_paths(cfg)
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else "known fields: " + ", ".join(known)
            raise ConfigError(key, f"unknown field; {hint}") from None
    return cfg


def to_dict(cfg: Any, semantic_only: bool = False) -> dict:
    """Nested plain-JSON dict of a config (tuples become lists)."""
    out: dict = {}
    for f in dataclasses.fields(cfg):
        if semantic_only and not f.metadata.get("semantic", True):
            continue
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            out[f.name] = to_dict(v, semantic_only)
        elif isinstance(v, tuple):
            out[f.name] = list(v)
        else:
            out[f.name] = v
    return out


def from_dict(cls: type, data: dict) -> Any:
    """Rebuild a config of class ``cls`` from :func:`to_dict` output (unknown keys refused)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls)}
    for k, v in data.items():
        if k not in names:
            raise ConfigError(k, f"unknown field of {cls.__name__}")
        tp = hints[k]
        if dataclasses.is_dataclass(tp):
            kwargs[k] = from_dict(tp, v)
        else:
            kwargs[k] = coerce(k, tp, v)
    return cls(**kwargs)


def config_hash(cfg: Any, n: int = 12) -> str:
    """First ``n`` hex digits of SHA-256 of the canonical JSON of the semantic fields."""
    text = json.dumps(to_dict(cfg, semantic_only=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def active_quirks(cfg: Any) -> list[str]:
    """``["path=value", ...]`` for every reference quirk switched on in ``cfg``."""
    out = []
    for info in iter_fields(cfg):
        q = info.meta.get("quirk")
        if q is None:
            continue
        qs = q if isinstance(q, tuple) else (q,)
        if info.value in qs:
            out.append(f"{info.path}={info.value}")
    return out


def describe(cfg: Any) -> list[dict]:
    """One row per leaf field: path, type, value, allowed values/range, tag, doc, quirk."""
    rows = []
    for info in iter_fields(cfg):
        m = info.meta
        allowed = ""
        if m.get("choices"):
            allowed = "{" + ", ".join(map(str, m["choices"])) + "}"
        else:
            parts = [f"{o} {m[k]}" for k, o in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
                     if m.get(k) is not None]
            allowed = ", ".join(parts)
        rows.append({
            "path": info.path,
            "type": _type_name(info.type),
            "value": info.value,
            "allowed": allowed,
            "tag": m.get("tag", ""),
            "doc": m.get("doc", ""),
            "quirk": m.get("quirk"),
        })
    return rows
