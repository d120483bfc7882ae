"""What the report says, before any HTML: runs read defensively, grouped, claims judged over seeds.

Groups
------
Runs are grouped by experiment, then by the preset recorded in ``config.json``, then by the
fields overridden relative to that preset, **seed excluded** (also ``device``, ``threads`` and
every field declared ``semantic=False``, which change where or how visibly a run executes,
not what it measures). Runs written before
the preset was recorded form groups by their whole config (seed, device, threads excluded)
and are labelled "preset not recorded".

Each group has a **scale**:

- ``paper``: a preset in ``Experiment.paper_presets`` with no override other than the
  recipe-neutral ones (:data:`NEUTRAL`: seed, device, threads, n_seeds, a data folder
  ``*.root``). Only these groups enter the paper-scale tally;
- ``paper, modified``: a paper preset with any other field overridden (e.g. a shorter
  training): shown, labelled, never in the paper-scale tally;
- ``smoke``: every other preset (``tiny``...): seconds-long runs that check the code path.
  Their verdicts are labelled *smoke scale* and kept out of the paper-scale tally;
- ``unknown``: the preset was not recorded.

Seeds
-----
A group's samples are its DONE runs' **seed views**. A run that holds one seed is one view.
A run that batches ``S`` seeds (its summary has per-seed lists ``key`` next to
``key_median`` and ``key_spread``) gives ``S`` views; in view ``i`` every such ``key`` and
``key_median`` is the ``i``-th entry of the list and ``key_spread`` is ``[x_i, x_i]``.

Convention (verdict of a group over several seeds):
    The criterion is checked once, on the **seed-median summary**: every numeric entry is the
    median over the group's seed views (non-finite values and ``None`` ignored; booleans by
    majority; ``*_spread`` entries become [min, max] over the views; anything else is taken
    from the latest run). ``Claim.value`` is evaluated on every view and reported as its
    median and [min, max] with the number of seeds; per-view verdicts are reported as "holds
    in k of n seeds". With one seed, the verdict is that seed's check. A group with no DONE
    run is "not run"; a check that raises or returns ``None`` is "undecided" (the summary lacks
    the number, the claim does not apply, or the measurement cannot decide it, e.g. an interval
    too wide; the "measured" column says which).
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runs import RunDir
from ..runs.index import flatten
from ..runs.rundir import iter_runs

__all__ = ["RunInfo", "Group", "scan", "group_runs", "seed_views", "median_summary", "evaluate_claims",
           "NEUTRAL", "VERDICTS"]

VERDICTS = {True: "holds", False: "does not hold", None: "undecided"}
#: fields left out of the grouping key (where a run executes, not what it measures)
_PLACEMENT = ("seed", "device", "threads")
#: overrides that keep a paper preset at paper scale
NEUTRAL = ("seed", "device", "threads", "n_seeds")


@dataclass
class RunInfo:
    """One run folder as the report sees it (every field filled defensively)."""

    path: Path
    experiment: str
    hash: str
    status: str
    meta: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    failure: dict = field(default_factory=dict)
    error: str = ""  # why the folder could not be read (status "unreadable")

    @property
    def seed(self) -> Any:
        return self.meta.get("seed")

    @property
    def started(self) -> str:
        return str(self.meta.get("started") or "")

    @property
    def preset(self) -> str | None:
        return self.meta.get("preset")

    @property
    def overrides(self) -> dict | None:
        ov = self.meta.get("overrides")
        return ov if isinstance(ov, dict) else None

    @property
    def config(self) -> dict:
        cfg = self.meta.get("config")
        return flatten(cfg) if isinstance(cfg, dict) else {}

    @property
    def page(self) -> str:
        return f"{_slug(self.experiment)}--{_slug(self.path.name)}.html"


@dataclass
class Group:
    experiment: str
    preset: str | None
    overrides: dict            # grouping overrides (seed, device, threads removed); {} for none
    scale: str                 # paper | paper, modified | smoke | unknown
    runs: list[RunInfo] = field(default_factory=list)   # latest first

    @property
    def done(self) -> list[RunInfo]:
        return [r for r in self.runs if r.status == "done"]

    @property
    def label(self) -> str:
        if self.preset is None:  # the whole config is the key: name it by a short digest
            import hashlib

            digest = hashlib.sha256(json.dumps(self.overrides, sort_keys=True, default=str).encode()).hexdigest()
            return f"preset not recorded · config {digest[:8]}"
        ov = ", ".join(f"{k}={_short(v)}" for k, v in self.overrides.items()) or "no overrides"
        return f"preset {self.preset} · {ov}"

    @property
    def slug(self) -> str:
        return _slug(f"{self.preset}-{json.dumps(self.overrides, sort_keys=True, default=str)}")[:80]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name))


def _short(v: Any) -> str:
    text = ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------------------- reading


def _read(rd: RunDir) -> RunInfo:
    """A :class:`RunInfo` for ``rd``; never raises (a bad folder becomes status "unreadable")."""
    exp, h = rd.path.parent.name, rd.path.name
    try:
        meta = rd.read_config()
        if not isinstance(meta, dict):
            raise ValueError("config.json is not a JSON object")
    except Exception as e:  # noqa: BLE001 - one bad folder never breaks the report
        return RunInfo(rd.path, exp, h, "unreadable", error=f"config.json: {type(e).__name__}: {e}")
    info = RunInfo(rd.path, str(meta.get("experiment") or exp), str(meta.get("hash") or h), "unreadable", meta)
    try:
        info.status = str(rd.status())
    except Exception as e:  # noqa: BLE001
        info.error = f"status: {type(e).__name__}: {e}"
        return info
    if info.status == "done":
        try:
            s = rd.read_summary()
            info.summary = s if isinstance(s, dict) else {}
            if not isinstance(s, dict):
                raise ValueError("summary.json is not a JSON object")
        except Exception as e:  # noqa: BLE001
            info.status, info.error = "unreadable", f"summary.json: {type(e).__name__}: {e}"
    elif info.status == "failed":
        try:
            f = rd.read_failure()
            info.failure = f if isinstance(f, dict) else {"message": str(f)}
        except Exception as e:  # noqa: BLE001
            info.failure = {"reason": "unknown", "message": f"FAILED unreadable: {type(e).__name__}: {e}"}
    elif info.status == "unreadable" and not info.error:
        info.error = rd.problem() or "the run store marks this folder unreadable"
    return info


def scan(root: str | Path) -> list[RunInfo]:
    """Every run folder under ``root`` (none if it does not exist), unreadable ones included."""
    root = Path(root)
    if not root.exists():
        return []
    out = []
    try:
        dirs = list(iter_runs(root))
    except Exception:  # noqa: BLE001 - fall back to a plain walk
        dirs = [RunDir(p.parent) for p in sorted(root.rglob("config.json")) if p.parent.name != "figures"]
    for rd in dirs:
        out.append(_read(rd))
    return out


def figures(run: RunInfo) -> list[tuple[Path, str]]:
    """``(png, caption)`` for the run's figures: regular files inside the run folder only."""
    rd = RunDir(run.path)
    try:
        paths = rd.figure_paths()
    except Exception:  # noqa: BLE001
        return []
    try:
        caps = rd.captions()
        caps = caps if isinstance(caps, dict) else {}
    except Exception:  # noqa: BLE001
        caps = {}
    inside = run.path.resolve()
    out = []
    for p in paths:
        try:
            if p.suffix != ".png" or p.is_symlink() or not p.is_file() or inside not in p.resolve().parents:
                continue
        except OSError:
            continue
        out.append((p, str(caps.get(p.stem, ""))))
    return out


# ---------------------------------------------------------------------------- grouping


def _is_neutral(key: str) -> bool:
    return key in NEUTRAL or key == "root" or key.endswith(".root")


def _ignored(exp: Any) -> set[str]:
    """Fields left out of a group's key: seed, device, threads and every non-semantic field."""
    out = set(_PLACEMENT)
    if exp is not None:
        try:
            from ..config import iter_fields

            out |= {i.path for i in iter_fields(exp.preset()) if not i.meta.get("semantic", True)}
        except Exception:  # noqa: BLE001 - a broken preset must not break the report
            pass
    return out


def _group_key(run: RunInfo, ignored: set[str]) -> tuple[str | None, dict]:
    ov = run.overrides
    if run.preset is None or ov is None:  # legacy run: group by its whole config
        return None, {k: v for k, v in run.config.items() if k not in ignored}
    return run.preset, {k: v for k, v in sorted(ov.items()) if k not in ignored}


def _scale(exp: Any, run: RunInfo, overrides: dict) -> str:
    if run.preset is None or run.overrides is None:
        return "unknown"
    scale = exp.scale(run.preset) if exp is not None else str(run.meta.get("scale") or "smoke")
    if scale == "paper" and any(not _is_neutral(k) for k in overrides):
        return "paper, modified"
    return scale


_SCALE_ORDER = {"paper": 0, "paper, modified": 1, "smoke": 2, "unknown": 3}


def group_runs(runs: list[RunInfo], exp: Any = None) -> list[Group]:
    """Groups of the (readable) runs of one experiment: paper scale first, then modified, smoke, unknown."""
    groups: dict[str, Group] = {}
    ignored = _ignored(exp)
    for r in sorted(runs, key=lambda r: r.started, reverse=True):
        if r.status == "unreadable":
            continue
        preset, ov = _group_key(r, ignored)
        key = json.dumps([preset, ov], sort_keys=True, default=str)
        if key not in groups:
            groups[key] = Group(r.experiment, preset, ov, _scale(exp, r, ov))
        groups[key].runs.append(r)
    return sorted(groups.values(), key=lambda g: (_SCALE_ORDER.get(g.scale, 9), str(g.preset),
                                                  -len(g.done), g.label))


# ---------------------------------------------------------------------------- seeds and claims


def seed_views(summary: dict) -> list[dict]:
    """Per-seed summaries of one run (see the module docstring); ``[summary]`` for a one-seed run."""
    batched = [k for k, v in summary.items() if isinstance(v, list) and f"{k}_median" in summary]
    lengths = {len(summary[k]) for k in batched}
    if not batched or len(lengths) != 1 or 0 in lengths:
        return [summary]
    views = []
    for i in range(lengths.pop()):
        v = dict(summary)
        for k in batched:
            x = summary[k][i]
            v[k], v[f"{k}_median"], v[f"{k}_spread"] = x, x, [x, x]
        views.append(v)
    return views


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def median_summary(views: list[dict]) -> dict:
    """The seed-median summary of ``views`` (latest first); see the module docstring."""
    if len(views) == 1:
        return dict(views[0])
    keys: list[str] = []
    for v in views:
        keys += [k for k in v if k not in keys]
    out: dict = {}
    for k in keys:
        vals = [v.get(k) for v in views if k in v]
        if k.endswith("_spread") and all(isinstance(x, list) and len(x) == 2 for x in vals):
            lo = [_num(x[0]) for x in vals if _num(x[0]) is not None]
            hi = [_num(x[1]) for x in vals if _num(x[1]) is not None]
            out[k] = [min(lo) if lo else None, max(hi) if hi else None]
        elif all(isinstance(x, bool) for x in vals):
            out[k] = sum(vals) * 2 > len(vals)
        elif all(x is None or isinstance(x, (int, float)) and not isinstance(x, bool) for x in vals):
            nums = [_num(x) for x in vals if _num(x) is not None]
            out[k] = statistics.median(nums) if nums else None
        else:
            out[k] = vals[0]
    return out


def _safe_check(claim: Any, summary: dict) -> tuple[str, bool | None]:
    try:
        measured, verdict = claim.check(summary)
    except Exception as e:  # noqa: BLE001 - a summary without the key: undecided
        return f"n/a ({type(e).__name__})", None
    return str(measured), (None if verdict is None else bool(verdict))


def _safe_value(claim: Any, summary: dict) -> float | None:
    if getattr(claim, "value", None) is None:
        return None
    try:
        return _num(claim.value(summary))
    except Exception:  # noqa: BLE001
        return None


def evaluate_claims(exp: Any, summaries: list[dict]) -> list[dict]:
    """Judge ``exp.claims`` on the summaries of one group's DONE runs (latest first).

    Each row: ``text``, ``source``, ``criterion``, ``reference`` (the paper's value),
    ``median``, ``spread`` ([min, max]) and ``n_values`` of ``Claim.value`` over the seed views,
    ``n_seeds``, ``measured`` and ``verdict`` (the check on the seed-median summary: holds /
    does not hold / undecided; "not run" without DONE runs) and ``seeds_holding``
    ("k of n seeds" over the views whose check decided).
    """
    views = [v for s in summaries for v in seed_views(s)]
    med = median_summary(views) if views else {}
    rows = []
    for claim in getattr(exp, "claims", ()) or ():
        row = {"text": claim.text, "source": claim.source, "criterion": claim.criterion,
               "reference": getattr(claim, "reference", "") or "", "n_seeds": len(views),
               "median": None, "spread": None, "n_values": 0, "measured": "", "verdict": "not run",
               "seeds_holding": ""}
        if views:
            vals = [x for x in (_safe_value(claim, v) for v in views) if x is not None]
            if vals:
                row.update(median=statistics.median(vals), spread=[min(vals), max(vals)], n_values=len(vals))
            measured, verdict = _safe_check(claim, med)
            row.update(measured=measured, verdict=VERDICTS[verdict])
            per = [_safe_check(claim, v)[1] for v in views]
            decided = [p for p in per if p is not None]
            if decided and len(views) > 1:
                row["seeds_holding"] = f"{sum(decided)} of {len(decided)} seeds"
        rows.append(row)
    return rows
