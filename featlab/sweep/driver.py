"""The sweep driver: idempotent, retrying, executor-agnostic.

1. Expand the spec into validated configs (nothing runs if one is bad).
2. Configs whose run directory is ``DONE`` are *skipped*; the others are submitted.
3. Each worker runs :func:`run_one`, which writes only its own run directory.
4. A failed run (an exception, divergence, or a worker that died while running it) is
   retried up to ``retries`` times; its traceback stays in its ``FAILED`` record and in the
   result table. Only the run a dead worker held is charged an attempt; queued runs are not.
   Two sweeps (or a sweep and a manual run) that share a config never run it at once: the
   second waits for the folder's lock, then skips the run if it ended DONE.
5. The sweep ends with a table of done / skipped / failed, also written as JSON to
   ``OUT/<experiment>/sweep-<spec-hash>.json``.

Re-running a killed sweep therefore finishes only what is missing, and a second invocation of
a finished sweep skips everything.
"""
from __future__ import annotations

import hashlib
import json
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import config_hash, to_dict
from ..runs import RunDir, run_path
from ..utils import Progress, atomic_write_json
from .executors import open_executor
from .spec import SweepSpec, _import_plugins, expand

__all__ = ["run_one", "run_sweep", "SweepResult", "SweepRow"]


def run_one(experiment: str, cfg_dict: dict, out: str, plugins: tuple[str, ...] = (),
            preset: str | None = None, workers: int | None = None) -> dict:
    """Run one config in a worker process; never raises for a failed run.

    ``preset`` (the spec's) is recorded in config.json with the fields overridden relative to it.

    Waits while another process holds the run folder's lock, then skips it if that run ended
    DONE. ``workers``: runs of this sweep executing at once on this machine, so that each run
    picks ``cores // workers`` threads at most (``None``: the thread count of the Dask worker
    this runs in, else 1).

    Returns ``{"status": "done"|"skipped"|"failed", "path": ..., "error": traceback or ""}``.
    """
    from ..config import from_dict
    from ..experiments import get
    from ..runs import RunFailed, execute

    _import_plugins(tuple(plugins))
    exp = get(experiment)
    cfg = from_dict(exp.config, cfg_dict)
    try:
        res = execute(exp, cfg, out, quiet=True, preset=preset, wait=None, workers=workers or _dask_threads())
        return {"status": "skipped" if res.skipped else "done", "path": str(res.path), "error": ""}
    except RunFailed as e:
        return {"status": "failed", "path": str(e.rundir.path), "error": e.rundir.read_failure().get("traceback", str(e))}
    except Exception:  # noqa: BLE001 - reported to the driver, which may retry
        return {"status": "failed", "path": str(run_path(out, experiment, cfg)), "error": traceback.format_exc()}


def _dask_threads() -> int:
    """Tasks a Dask worker runs at once (its thread count), or 1 outside Dask."""
    try:
        from distributed import get_worker

        w = get_worker()
        return int(getattr(w, "nthreads", None) or getattr(w.state, "nthreads", 1))
    except Exception:  # noqa: BLE001 - not in a Dask worker, or an older API
        return 1


@dataclass
class SweepRow:
    hash: str
    path: str
    status: str = "pending"  # done | skipped | failed
    attempts: int = 0
    error: str = ""


@dataclass
class SweepResult:
    experiment: str
    rows: list[SweepRow] = field(default_factory=list)
    elapsed: float = 0.0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.rows)

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0

    def table(self) -> str:
        lines = [f"sweep {self.experiment}: {len(self.rows)} runs in {self.elapsed:.1f}s -- "
                 f"done {self.count('done')}, skipped {self.count('skipped')}, failed {self.count('failed')}"]
        lines.append(f"{'hash':<14}{'status':<9}{'tries':<7}path")
        for r in self.rows:
            lines.append(f"{r.hash:<14}{r.status:<9}{r.attempts:<7}{r.path}")
            if r.error:
                last = [ln for ln in r.error.strip().splitlines() if ln.strip()][-1:]
                lines.append(f"{'':<14}error: {last[0] if last else ''}")
        return "\n".join(lines)


def _spec_hash(spec: SweepSpec) -> str:
    text = json.dumps({"experiment": spec.experiment, "preset": spec.preset, "seeds": list(spec.seeds),
                       "set": spec.set, "product": spec.product, "zip": spec.zip}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_sweep(spec: SweepSpec, out: str | Path = "runs", *, kind: str | None = None, workers: int | None = None,
              retries: int | None = None, scheduler: str | None = None, profile: str | None = None,
              on_submitted: Callable[[Any], None] | None = None) -> SweepResult:
    """Run every config of ``spec`` that is not DONE yet; see the module docstring.

    CLI flags (``kind``, ``workers``, ...) override the spec's ``[executor]`` table.
    ``on_submitted(executor)`` is called once after the first submissions (tests use it to
    kill a worker mid-sweep).
    """
    ex_cfg = dict(spec.executor)
    kind = kind or ex_cfg.get("kind", "local")
    workers = workers or ex_cfg.get("workers", 2)
    retries = ex_cfg.get("retries", 1) if retries is None else retries
    scheduler = scheduler if scheduler is not None else ex_cfg.get("scheduler", "")
    profile = profile if profile is not None else ex_cfg.get("profile", "")

    t0 = time.perf_counter()
    out = Path(out)
    cfgs = expand(spec)
    if cfgs:
        from ..runs.runner import _prepare_parent

        _prepare_parent(run_path(out, spec.experiment, cfgs[0]))  # a bad --out: ConfigError, nothing runs
    result = SweepResult(spec.experiment)
    todo: list[tuple[SweepRow, Any]] = []
    for cfg in cfgs:
        rd = RunDir(run_path(out, spec.experiment, cfg))
        row = SweepRow(hash=config_hash(cfg), path=str(rd.path))
        result.rows.append(row)
        if rd.is_done():
            row.status = "skipped"
        else:
            todo.append((row, cfg))

    # runs of this sweep at once on one machine (for the thread choice); None: ask the Dask worker
    per_host = workers if kind == "local" or (kind == "dask" and not scheduler) else None
    with Progress(len(cfgs), desc=f"sweep {spec.experiment}", unit="run") as bar:
        bar.update(len(cfgs) - len(todo))
        if todo:
            with open_executor(kind, workers, scheduler, profile) as ex:
                futures: dict[Future, tuple[SweepRow, Any]] = {}

                def submit(row: SweepRow, cfg: Any) -> None:
                    row.attempts += 1
                    fut = ex.submit(run_one, spec.experiment, to_dict(cfg), str(out), spec.plugins,
                                    spec.preset, per_host)
                    futures[fut] = (row, cfg)

                for row, cfg in todo:
                    submit(row, cfg)
                if on_submitted is not None:
                    on_submitted(ex)
                while futures:
                    done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
                    for fut in done:
                        row, cfg = futures.pop(fut)
                        try:
                            res = fut.result()
                        except BaseException:  # noqa: BLE001 - its worker died, or the task was lost
                            res = {"status": "failed", "path": row.path, "error": traceback.format_exc()}
                        if res["status"] == "failed" and row.attempts <= retries:
                            submit(row, cfg)
                            continue
                        row.status = "done" if res["status"] in ("done", "skipped") else "failed"
                        row.error = res.get("error", "")
                        bar.update(1, failed=result.count("failed"))
    result.elapsed = time.perf_counter() - t0
    atomic_write_json(out / spec.experiment / f"sweep-{_spec_hash(spec)}.json",
                      {"experiment": spec.experiment, "elapsed_s": round(result.elapsed, 3),
                       "rows": [r.__dict__ for r in result.rows]})
    return result
