"""Config fields: frozen dataclasses with documented, validated fields.

Every experiment config is a frozen dataclass built from :func:`F` (a leaf field) and
:func:`sub` (a nested config). A field's metadata carries its documentation, its allowed
values (``choices``) or range (``ge``/``gt``/``le``/``lt``), its provenance tag
(``[code]``, ``[design]``, ...) and, for reference quirks, the value(s) that switch the quirk
on. For tuples it also carries the allowed ``length``; ``choices`` and bounds then apply to each
element. A float must be finite unless the field says ``finite=False``. Validation, ``--set``
coercion, hashing and the ``featlab list --fields`` table all read this metadata, so the
dataclass is the single source of truth.

Example::

    @dataclass(frozen=True)
    class DataConfig:
        L: int = F(20, "linear size, in sites", ge=2)
        boundary: str = F("periodic", "latent-field boundary", choices=("periodic", "open"))
        clone_formula: str = F("exact", "clone covariance formula",
                               choices=("exact", "reference"), quirk="reference")
"""
from __future__ import annotations

import dataclasses
from dataclasses import MISSING, field
from typing import Any, Iterable

__all__ = ["ConfigError", "F", "sub", "iter_fields", "FieldInfo"]


class ConfigError(ValueError):
    """A bad config value. The message is one line: the field's dotted name, then what is allowed.

    The CLI prints it as ``featlab: error: <message>`` and exits with status 2.
    """

    def __init__(self, field_name: str, allowed: str, value: Any = MISSING):
        self.field = field_name
        self.allowed = allowed
        got = "" if value is MISSING else f" (got {value!r})"
        super().__init__(f"{field_name}: {allowed}{got}")


def F(
    default: Any = MISSING,
    doc: str = "",
    *,
    default_factory: Any = MISSING,
    choices: Iterable[Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    tag: str = "[design]",
    quirk: Any = None,
    semantic: bool | str = True,
    cost: str = "",
    length: int | tuple[int, int | None] | None = None,
    finite: bool = True,
    check: Any = None,
):
    """A documented config leaf field.

    Parameters
    ----------
    default, default_factory
        As for :func:`dataclasses.field`. Mutable defaults are refused: use tuples.
    doc
        One or two sentences: meaning, units and convention.
    choices
        Allowed values (each element, for tuples). A value outside them raises
        :class:`ConfigError`.
    ge, gt, le, lt
        Inclusive/exclusive bounds for numbers (each element, for tuples).
    length
        Tuples only: the exact number of elements (``2``) or a range ``(lo, hi)`` with
        ``hi=None`` for no upper limit. Default for ``tuple[T, ...]``: at least one element
        (``(1, None)``); write ``length=(0, None)`` where an empty tuple means something.
    finite
        Floats (and float elements) must be finite unless ``finite=False``; NaN is always
        refused.
    check
        Optional ``check(path, value) -> None`` raising ``ConfigError(path, ...)``, for a rule
        about this one field that needs code (e.g. the device syntax). Unlike a config's
        ``check()`` method it cannot be skipped by a subclass, and it runs on ``--set`` too.
    tag
        Provenance: ``[code]``, ``[paper]``, ``[derived]``, ``[design]``...
    quirk
        The value (or tuple of values) of this field that reproduces a reference quirk. When
        the field holds it, the quirk is *active*: it is recorded in ``config.json``, figure
        captions and the report. Defaults are never quirks.
    semantic
        False for fields that do not change results (verbosity, paths): they are left out of
        the run hash. ``"if-set"``: hashed only when not ``None`` (``threads``: an explicit
        count is part of the run's identity, the automatic choice is not).
    cost
        Optional note on time or memory cost.
    """
    if isinstance(default, (list, dict, set)):
        raise TypeError("config defaults must be immutable: use a tuple")
    if semantic not in (True, False, "if-set"):
        raise TypeError("semantic must be True, False or 'if-set'")
    meta = {
        "doc": doc,
        "choices": tuple(choices) if choices is not None else None,
        "ge": ge,
        "gt": gt,
        "le": le,
        "lt": lt,
        "tag": tag,
        "quirk": quirk,
        "semantic": semantic,
        "cost": cost,
        "length": length,
        "finite": finite,
        "check": check,
    }
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def sub(cls: type, doc: str = ""):
    """A nested config (itself a frozen dataclass), addressed as ``name.field`` in ``--set``."""
    return field(default_factory=cls, metadata={"doc": doc, "semantic": True, "nested": True})


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One leaf field of a (possibly nested) config, as seen by validation and docs."""

    path: str
    type: Any
    value: Any
    default: Any
    meta: dict


def iter_fields(cfg: Any, prefix: str = ""):
    """Yield :class:`FieldInfo` for every leaf field of ``cfg``, depth first, dotted paths."""
    import typing

    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from iter_fields(value, prefix=path + ".")
            continue
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = MISSING
        yield FieldInfo(path, hints.get(f.name, Any), value, default, dict(f.metadata))
