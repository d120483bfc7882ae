"""The run index: a table of runs rebuilt by scanning run directories (no shared database).

Each row holds ``experiment``, ``hash``, ``status``, ``seed``, ``device``, every config field
flattened to dotted paths (``data.gain``), every scalar summary number (prefixed ``summary.``
only when it clashes with a config field) and ``path``. Unreadable folders are rows with
status ``unreadable`` and a ``problem`` (see :mod:`featlab.runs.rundir`).
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterable

from ..config import ConfigError
from .rundir import STATUS_UNREADABLE, RunDir, iter_runs

__all__ = ["index_runs", "filter_rows", "format_rows", "flatten"]


def flatten(d: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}} -> {"a.b": 1}``; lists are kept as values."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _row(rd: RunDir) -> dict:
    info = rd.inspect()
    meta = info.meta
    if info.status == STATUS_UNREADABLE:
        exp = meta.get("experiment") if isinstance(meta.get("experiment"), str) and meta.get("experiment") \
            else rd.path.parent.name
        return {"experiment": exp, "hash": rd.path.name, "status": STATUS_UNREADABLE, "seed": None,
                "device": None, "problem": info.problem, "path": str(rd.path)}
    row: dict[str, Any] = {"experiment": meta.get("experiment", rd.path.parent.name),
                           "hash": meta.get("hash", rd.path.name), "status": info.status,
                           "seed": meta.get("seed"), "device": meta.get("device")}
    cfg = flatten(meta.get("config", {}))
    cfg.pop("seed", None)
    cfg.pop("device", None)
    row.update(cfg)
    for k, v in info.summary.items():
        if k == "experiment" or isinstance(v, (dict, list)):
            continue
        row[f"summary.{k}" if k in row else k] = v
    row["path"] = str(rd.path)
    return row


def index_runs(root: str | Path) -> list[dict]:
    """One row per run directory under ``root`` (sorted by experiment, then path).

    A folder that cannot be read gets a row with status ``unreadable``, its reason in
    ``problem`` and its experiment taken from ``config.json`` when that much is readable
    (else from the parent folder's name); reading never raises for a folder's content.
    """
    rows = [_row(rd) for rd in iter_runs(root)]
    return sorted(rows, key=lambda r: (r["experiment"], r["path"]))


def _matches(value: Any, wanted: str) -> bool:
    if isinstance(value, list):
        return ",".join(map(str, value)) == wanted.strip("[]() ").replace(" ", "")
    if isinstance(value, bool):
        return str(value).lower() == wanted.lower()
    try:
        return float(value) == float(wanted)
    except (TypeError, ValueError):
        return str(value) == wanted


def filter_rows(rows: list[dict], where: Iterable[str]) -> list[dict]:
    """Keep rows matching every ``field=value`` (numbers compare numerically).

    An unknown field raises :class:`ConfigError` naming it.
    """
    for cond in where:
        if "=" not in cond:
            raise ConfigError("--where", "conditions are written field=value", cond)
        key, wanted = cond.split("=", 1)
        if rows and not any(key in r for r in rows):
            import difflib

            known = sorted({k for r in rows for k in r})
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(close)}?" if close else \
                "see the columns of `featlab runs --format csv`"
            raise ConfigError(f"--where {key}", f"unknown field; {hint}")
        rows = [r for r in rows if key in r and _matches(r[key], wanted)]
    return rows


def _varying(rows: list[dict]) -> list[str]:
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    fixed = {"experiment", "hash", "status", "seed", "path", "device", "problem"}
    return [k for k in keys if k not in fixed and len({json.dumps(r.get(k), default=str) for r in rows}) > 1]


def format_rows(rows: list[dict], fmt: str = "table") -> str:
    """Render rows as an aligned ``table`` (varying columns only), ``csv`` or ``json``."""
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str)
    if fmt == "csv":
        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
        return buf.getvalue()
    if fmt != "table":
        raise ConfigError("--format", "allowed: table, csv, json", fmt)
    if not rows:
        return "no runs found"

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, list):
            return ",".join(map(str, v))
        return "" if v is None else str(v)

    blocks = []
    for exp in dict.fromkeys(r["experiment"] for r in rows):
        group = [r for r in rows if r["experiment"] == exp]
        cols = ["experiment", "hash", "status", "seed"] + _varying(group)
        if any(r.get("problem") for r in group) and "problem" not in cols:
            cols.append("problem")
        table = [cols] + [[cell(r.get(c)) for c in cols] for r in group]
        widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
        blocks.append("\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table))
    return "\n\n".join(blocks)
