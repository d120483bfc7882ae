"""Operations on configs: validate, override from strings, (de)serialise, hash, quirks.

Conventions
-----------
- ``--set a.b=v`` addresses nested fields by dotted path and coerces ``v`` by the field's
  annotated type: ``bool`` (true/false/1/0/yes/no), ``int`` (``1e4`` accepted when
  integral), ``float``, ``str``, ``X | None`` (``none``/``null``), ``tuple[T, ...]``
  (``1,3`` or ``[1, 3]``).
- ``int`` coercion is exact at any size (``--seed 9007199254740993`` stays ...993).
- Floats must be finite unless the field says ``finite=False``; a variadic tuple field holds at
  least one value unless its ``length`` says otherwise; ``choices`` and bounds of a tuple
  field apply to each element.
- The run hash is the first 12 hex digits of SHA-256 of the canonical JSON (sorted keys,
  compact separators) of the semantic fields; fields declared ``semantic=False`` are left out,
  and ``semantic="if-set"`` fields are left out while they are ``None``.
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
        return _coerce_int(path, value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(path, "expected a number", value)
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(path, "expected a number", value) from None
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(path, "expected a string", value)
    return value


def _coerce_int(path: str, value: Any) -> int:
    """Exact integer coercion: ``"9007199254740993"`` stays exact (never through float).

    ``"1e4"`` and ``"2.0"`` are accepted when integral (parsed as decimals, so exact at any
    size); a float *value* (from JSON/TOML) only up to 2**53, where floats are still exact.
    """
    import decimal

    if isinstance(value, bool):
        raise ConfigError(path, "expected an integer", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) <= 2 ** 53:
            return int(value)
        raise ConfigError(path, "expected an integer (write integers above 2**53 in full)", value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            d = decimal.Decimal(text)
        except decimal.InvalidOperation:
            raise ConfigError(path, "expected an integer", value) from None
        if d.is_finite() and d == d.to_integral_value() and abs(d.adjusted()) < 100:
            return int(d)
    raise ConfigError(path, "expected an integer", value)


def _tuple_type(tp: Any) -> Any:
    """The tuple annotation inside ``tp`` (``tuple[float, ...] | None`` -> ``tuple[float, ...]``)."""
    if typing.get_origin(tp) in (tuple, list):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for a in typing.get_args(tp):
            if typing.get_origin(a) in (tuple, list):
                return a
    return None


def _length_range(tp: Any, meta: dict) -> tuple[int, int | None] | None:
    length = meta.get("length")
    if isinstance(length, int):
        return (length, length)
    if length is not None:
        return (int(length[0]), None if length[1] is None else int(length[1]))
    tt = _tuple_type(tp)
    if tt is not None and len(typing.get_args(tt)) == 2 and typing.get_args(tt)[1] is Ellipsis:
        return (1, None)  # variadic tuples: at least one element unless the field says otherwise
    return None


def _describe_length(rng: tuple[int, int | None]) -> str:
    lo, hi = rng
    if lo == hi:
        return f"exactly {lo} value{'s' if lo != 1 else ''}"
    if hi is None:
        return f"at least {lo} value{'s' if lo != 1 else ''}"
    return f"{lo} to {hi} values"


def _check_leaf(path: str, value: Any, meta: dict, tp: Any = None) -> None:
    """Choices, bounds, finiteness, tuple length and the field's own ``check`` for one value."""
    is_tuple = isinstance(value, tuple)
    if is_tuple:
        rng = _length_range(tp, meta)
        if rng is not None and not (rng[0] <= len(value) and (rng[1] is None or len(value) <= rng[1])):
            raise ConfigError(path, f"expected {_describe_length(rng)} (comma-separated)", value)
    choices = meta.get("choices")
    vals = value if is_tuple else (value,)
    if choices is not None:
        for v in vals:
            if v not in choices:
                each = "each value " if is_tuple else ""
                raise ConfigError(path, f"{each}allowed: " + ", ".join(map(str, choices)), value)
    bounds = [(meta.get("ge"), ">=", lambda v, b: v >= b), (meta.get("gt"), ">", lambda v, b: v > b),
              (meta.get("le"), "<=", lambda v, b: v <= b), (meta.get("lt"), "<", lambda v, b: v < b)]
    for v in vals:
        if v is None or isinstance(v, (str, bool)):
            continue
        if isinstance(v, float) and math.isnan(v):
            raise ConfigError(path, "must be a number, not NaN", value)
        if isinstance(v, float) and math.isinf(v) and meta.get("finite", True):
            raise ConfigError(path, "must be finite", value)
        for b, op, ok in bounds:
            if b is not None and not ok(v, b):
                rng_txt = ", ".join(f"{o} {x}" for x, o, _ in bounds if x is not None)
                raise ConfigError(path, f"must be {rng_txt}", value)
    check = meta.get("check")
    if check is not None:
        check(path, value)


def _own_checks(cls: type) -> list:
    """Every ``check`` defined along the MRO, base class first, each function once."""
    seen, out = set(), []
    for klass in reversed(cls.__mro__):
        fn = klass.__dict__.get("check")
        if callable(fn) and fn not in seen:
            seen.add(fn)
            out.append(fn)
    return out


def validate(cfg: Any) -> Any:
    """Check every field's type, choices, range, finiteness and length, then the ``check()`` hooks.

    Nested configs may define ``check(self)`` for cross-field rules; it raises
    :class:`ConfigError` with the dotted field name. Every ``check`` along the class hierarchy
    runs (base class first), so a subclass that defines its own ``check`` without calling
    ``super().check()`` does not skip its parent's rules. Returns ``cfg`` unchanged.
    """
    for info in iter_fields(cfg):
        coerced = coerce(info.path, info.type, info.value)
        if coerced != info.value or type(coerced) is not type(info.value):
            if not (isinstance(info.value, int) and isinstance(coerced, float) and coerced == info.value):
                raise ConfigError(info.path, f"expected {_type_name(info.type)}", info.value)
        _check_leaf(info.path, info.value, info.meta, info.type)

    def _hooks(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v) and not isinstance(v, type):
                _hooks(v, prefix + f.name + ".")
        for check in _own_checks(type(obj)):
            try:
                check(obj)
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
        _check_leaf(full, new, dict(names[head].metadata), hints[head])
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
        v = getattr(cfg, f.name)
        semantic = f.metadata.get("semantic", True)
        if semantic_only and (semantic is False or (semantic == "if-set" and v is None)):
            continue
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
        rng = _length_range(info.type, m) if isinstance(info.value, tuple) or _tuple_type(info.type) else None
        if rng is not None:
            allowed = (allowed + "; " if allowed else "") + _describe_length(rng)
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
