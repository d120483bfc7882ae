"""Run one experiment config into its run directory, safely.

Order of events (see :mod:`featlab.runs.rundir` for the layout):

1. Validate the config (and let the experiment's ``resolve`` fill in file hashes), resolve the
   device. A bad value raises
   :class:`~featlab.config.ConfigError` *before anything is written*.
2. ``OUT/<experiment>/<hash12>/``: if it is ``DONE`` and ``force`` is off, skip it. Any other
   existing directory (killed, crashed, diverged, or forced) is cleared and redone.
3. Write ``config.json`` first (with the preset, its scale and the overridden fields, see
   :func:`provenance`), then run, appending metrics and saving arrays and figures.
   ``cfg.threads`` (when set) fixes torch's CPU thread count for the run; it is restored after.
4. On NaN/inf (:class:`DivergenceError`), an exception or Ctrl-C, write ``FAILED`` with the
   reason and traceback, log it, and re-raise: no ``DONE``.
5. Write ``summary.json``, then ``DONE`` by atomic rename.
"""
from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, active_quirks, config_hash, to_dict, validate
from ..utils import atomic_write_json, atomic_write_text, resolve_device
from ..utils.progress import TqdmHandler
from .context import DivergenceError, RunContext
from .rundir import STATUS_DONE, RunDir

__all__ = ["execute", "RunResult", "RunFailed", "run_path", "provenance"]


class RunFailed(RuntimeError):
    """A run stopped without DONE; ``.rundir`` holds the FAILED record."""

    def __init__(self, message: str, rundir: RunDir, reason: str):
        super().__init__(message)
        self.rundir = rundir
        self.reason = reason


@dataclass
class RunResult:
    rundir: RunDir
    summary: dict
    skipped: bool
    elapsed: float

    @property
    def path(self) -> Path:
        return self.rundir.path


def run_path(out: str | Path, experiment: str, cfg: Any) -> Path:
    """``out/<experiment>/<config-hash-12>``."""
    return Path(out) / experiment / config_hash(cfg)


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if r.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return r.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def _logger(rundir: RunDir, quiet: bool) -> tuple[logging.Logger, list[logging.Handler]]:
    log = logging.getLogger(f"featlab.run.{rundir.path.parent.name}.{rundir.path.name}")
    log.setLevel(logging.INFO)
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    fh = logging.FileHandler(rundir.log)
    fh.setFormatter(fmt)
    handlers: list[logging.Handler] = [fh]
    if not quiet:
        sh = TqdmHandler(sys.stderr)  # log lines printed above a live progress bar, never through it
        sh.setFormatter(fmt)
        handlers.append(sh)
    for h in handlers:
        log.addHandler(h)
    return log, handlers


def provenance(exp: Any, cfg: Any, preset: str | None) -> dict:
    """``{"preset", "scale", "overrides"}`` recorded in config.json (see :func:`execute`).

    Convention:
        ``overrides`` maps every dotted field path whose value differs from the preset's own
        config to its value in ``cfg`` (seed, device and threads included; ``{}`` = the preset
        as it is); ``None`` when the preset is unknown. Without ``preset``, a config equal to
        a preset in every field but seed, device and threads is taken as that preset; any other
        config has no preset (nothing is guessed). ``scale`` is ``exp.scale(preset)``: "paper"
        for a preset in ``exp.paper_presets``, else "smoke".
    """
    from .index import flatten

    if preset is None:  # a config equal to a preset but for where it runs is that preset (no guessing)
        import dataclasses

        place = {k: getattr(cfg, k) for k in ("seed", "device", "threads") if hasattr(cfg, k)}
        preset = next((n for n, f in exp.presets.items() if dataclasses.replace(f(), **place) == cfg), None)
    overrides = None
    if preset is not None:
        if preset not in exp.presets:
            raise ConfigError("preset", "allowed: " + ", ".join(exp.presets), preset)
        base, now = flatten(to_dict(exp.preset(preset))), flatten(to_dict(cfg))
        overrides = {k: v for k, v in now.items() if base.get(k, object()) != v}
    return {"preset": preset, "scale": exp.scale(preset), "overrides": overrides}


def execute(experiment: str | Any, cfg: Any | None = None, out: str | Path = "runs", *,
            force: bool = False, quiet: bool = False, preset: str | None = None) -> RunResult:
    """Run ``experiment`` with ``cfg`` (default: the preset ``preset``, else the default one) under ``out``.

    ``preset`` names the preset ``cfg`` was built from; config.json then records it with the
    fields overridden relative to it and its scale (:func:`provenance`), and every figure
    caption says so. Returns a :class:`RunResult`; ``skipped`` is True when a DONE run was
    found. Raises :class:`~featlab.config.ConfigError` for bad configs (nothing written) and
    :class:`RunFailed` when the run stops without DONE.
    """
    from ..experiments import get

    exp = get(experiment) if isinstance(experiment, str) else experiment
    if cfg is None:
        preset = preset or exp.default_preset
        cfg = exp.preset(preset)
    if not isinstance(cfg, exp.config):
        raise TypeError(f"{exp.name} expects a {exp.config.__name__}, got {type(cfg).__name__}")
    validate(cfg)
    if exp.resolve is not None:  # e.g. hash the files the config names (part of the run hash)
        cfg = validate(exp.resolve(cfg))
    prov = provenance(exp, cfg, preset)
    device = resolve_device(cfg.device)

    rundir = RunDir(run_path(out, exp.name, cfg))
    if rundir.status() == STATUS_DONE and not force:
        return RunResult(rundir, rundir.read_summary(), skipped=True, elapsed=0.0)
    if rundir.path.exists():
        shutil.rmtree(rundir.path)
    rundir.path.mkdir(parents=True)

    quirks = active_quirks(cfg)
    atomic_write_json(rundir.config, run_meta(exp.name, cfg, rundir, device, prov))
    log, handlers = _logger(rundir, quiet)
    ctx = RunContext(rundir, cfg, device, log, quirks, provenance=prov)
    t0 = time.perf_counter()
    log.info("run %s -> %s", exp.name, rundir.path)
    if quirks:
        log.info("reference quirks active: %s", ", ".join(quirks))
    n_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        summary = exp.run(cfg, ctx) or {}
        summary = {"experiment": exp.name, **summary}
        elapsed = time.perf_counter() - t0
        summary.setdefault("elapsed_s", round(elapsed, 3))
        atomic_write_json(rundir.summary, summary)
        log.info("done in %.1fs", elapsed)
        atomic_write_text(rundir.done, time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
        return RunResult(rundir, summary, skipped=False, elapsed=elapsed)
    except BaseException as e:  # noqa: BLE001 - every way out must leave a FAILED record
        reason = ("diverged" if isinstance(e, DivergenceError)
                  else "interrupted" if isinstance(e, KeyboardInterrupt) else "error")
        msg = f"{type(e).__name__}: {e}"
        atomic_write_json(rundir.failed, {"reason": reason, "message": msg, "traceback": traceback.format_exc(),
                                          "elapsed_s": round(time.perf_counter() - t0, 3)})
        log.error("run stopped (%s): %s", reason, msg)
        if isinstance(e, KeyboardInterrupt):
            raise
        raise RunFailed(f"{exp.name} {reason}: {msg} (see {rundir.failed})", rundir, reason) from e
    finally:
        torch.set_num_threads(n_threads)
        for h in handlers:
            log.removeHandler(h)
            h.close()


def run_meta(experiment: str, cfg: Any, rundir: RunDir, device: torch.device, prov: dict | None = None) -> dict:
    """The content of ``config.json``: resolved config, provenance (:func:`provenance`), versions,
    seed, device, quirks, commit."""
    return {
        "experiment": experiment,
        "hash": rundir.path.name,
        "config": to_dict(cfg),
        "seed": cfg.seed,
        **(prov or {"preset": None, "scale": "smoke", "overrides": None}),
        "device": str(device),
        "reference_quirks": active_quirks(cfg),
        "featlab_version": _version(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "git_commit": _git_commit(),
        "hostname": platform.node(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _version() -> str:
    from .. import __version__

    return __version__


def default_out() -> Path:
    """``$FEATLAB_OUT`` or ``./runs``."""
    return Path(os.environ.get("FEATLAB_OUT", "runs"))
