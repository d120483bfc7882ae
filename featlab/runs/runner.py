"""Run one experiment config into its run directory, safely.

Order of events (see :mod:`featlab.runs.rundir` for the layout):

1. Validate the config (and let the experiment's ``resolve`` fill in the hashes of the files it
   names), resolve the device. A bad value raises
   :class:`~featlab.config.ConfigError` *before anything is written*; so does an output root
   that cannot hold run folders (a file in the way, read-only, not writable).
2. Take the folder's lock (:mod:`featlab.runs.lock`). If another process holds it, raise
   :class:`~featlab.runs.lock.RunBusy` at once (``wait=0``, ``featlab run``) or wait for it
   (``wait=None``, sweep workers); the live folder is never touched.
3. ``OUT/<experiment>/<hash12>/``: if it is ``DONE`` and ``force`` is off, skip it. Any other
   existing folder (killed, crashed, diverged, unreadable or forced) is first *renamed away*
   (``.<hash12>.trash-*``, one atomic step) and then deleted, so a kill during clean-up never
   leaves a ``DONE`` folder without its results.
4. Write ``config.json`` first, with the preset, its scale and the overridden fields (see
   :func:`provenance`; if writing fails, e.g. a full disk, the folder is removed and
   :class:`RunStoreError` says why), then run, appending metrics and saving arrays and
   figures, with a CPU thread count that cannot oversubscribe the machine
   (:func:`featlab.utils.threads.auto_threads`, or ``cfg.threads``), restored afterwards.
5. On NaN/inf (:class:`DivergenceError`, including a non-finite number in the returned summary
   or a logged metric), an exception, Ctrl-C (``interrupted``) or SIGTERM (``terminated``,
   what SLURM sends at the time limit), write ``FAILED`` with the reason and traceback, log it,
   and re-raise: no ``DONE``.
6. Write ``summary.json``, then ``DONE`` by atomic rename and a directory fsync.
"""
from __future__ import annotations

import contextlib
import logging
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from ..config import ConfigError, active_quirks, config_hash, to_dict, validate
from ..utils import atomic_write_json, atomic_write_text, fsync_dir, resolve_device
from ..utils.progress import TqdmHandler
from ..utils.threads import auto_threads, thread_limits
from .context import DivergenceError, RunContext, first_nonfinite
from .lock import RunBusy, RunLock
from .rundir import STATUS_DONE, RunDir

__all__ = ["execute", "RunResult", "RunFailed", "RunBusy", "RunStoreError", "Terminated", "run_path", "provenance"]


class RunFailed(RuntimeError):
    """A run stopped without DONE; ``.rundir`` holds the FAILED record."""

    def __init__(self, message: str, rundir: RunDir, reason: str):
        super().__init__(message)
        self.rundir = rundir
        self.reason = reason


class RunStoreError(RuntimeError):
    """The run folder could not be written (e.g. a full disk); nothing was run and the folder
    was removed."""


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM while a run executes (a BaseException, like
    KeyboardInterrupt, so that ``except Exception`` in an experiment cannot swallow it)."""


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


class _FileHandler(logging.FileHandler):
    """A log file that goes quiet instead of printing tracebacks when the disk is full."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass


def _logger(rundir: RunDir, quiet: bool) -> tuple[logging.Logger, list[logging.Handler]]:
    log = logging.getLogger(f"featlab.run.{rundir.path.parent.name}.{rundir.path.name}")
    log.setLevel(logging.INFO)
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    fh = _FileHandler(rundir.log)
    fh.setFormatter(fmt)
    handlers: list[logging.Handler] = [fh]
    if not quiet:
        sh = TqdmHandler(sys.stderr)  # log lines printed above a live progress bar, never through it
        sh.setFormatter(fmt)
        handlers.append(sh)
    for h in handlers:
        log.addHandler(h)
    return log, handlers


# ---------------------------------------------------------------------------- the folder
def _prepare_parent(folder: Path) -> None:
    """Create ``OUT/<experiment>/`` or raise ConfigError("--out", ...): nothing else written."""
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError("--out", "cannot hold run folders: a file is in the way (set --out or "
                          "FEATLAB_OUT to a directory)", str(parent.parent)) from None
    except OSError as e:
        raise ConfigError("--out", f"cannot create run folders here: {e.strerror}", str(parent.parent)) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError("--out", "cannot create run folders here: not writable", str(parent.parent))


def _discard(folder: Path) -> None:
    """Remove ``folder`` so that it is complete or absent at every instant (lock held).

    It is renamed to a hidden ``.<name>.trash-*`` sibling in one atomic step, then deleted;
    trash left by a clean-up that was itself killed is deleted first.
    """
    parent = folder.parent
    for old in parent.glob(f".{folder.name}.trash-*"):
        _rm(old)
    if not (folder.exists() or folder.is_symlink()):
        return
    trash = parent / f".{folder.name}.trash-{os.getpid()}-{secrets.token_hex(4)}"
    os.replace(folder, trash)
    fsync_dir(parent)
    _rm(trash)


def _rm(p: Path) -> None:
    if p.is_symlink() or not p.is_dir():
        with contextlib.suppress(OSError):
            p.unlink()
    else:
        shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` in the main thread for the duration of the block.

    Convention: the first SIGTERM raises; later ones are ignored until the block exits (the
    run is already stopping and must get to write its FAILED record); the previous handler is
    restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _handler(signum, frame):
        # Once stopping, later SIGTERMs (a sweep worker gets one from the kernel when its driver
        # dies and one from its watchdog a second later) must not cut the FAILED record short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated(f"received signal {signum} (SIGTERM)")

    try:
        previous = signal.signal(signal.SIGTERM, _handler)
    except (ValueError, OSError):  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _reason(e: BaseException) -> str:
    if isinstance(e, DivergenceError):
        return "diverged"
    if isinstance(e, KeyboardInterrupt):
        return "interrupted"
    if isinstance(e, Terminated):
        return "terminated"
    return "error"


# ---------------------------------------------------------------------------- the runner
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
            force: bool = False, quiet: bool = False, preset: str | None = None, wait: float | None = 0,
            workers: int = 1) -> RunResult:
    """Run ``experiment`` with ``cfg`` (default: the preset ``preset``, else the default one) under ``out``.

    ``preset`` names the preset ``cfg`` was built from; config.json then records it with the
    fields overridden relative to it and its scale (:func:`provenance`), and every figure
    caption says so. Returns a :class:`RunResult`; ``skipped`` is True when a DONE run was
    found. Raises
    :class:`~featlab.config.ConfigError` for bad configs or output roots (nothing written),
    :class:`RunBusy` when another process holds the folder (after ``wait`` seconds; ``None``
    waits for ever), :class:`RunStoreError` when ``config.json`` cannot be written, and
    :class:`RunFailed` when the run stops without DONE (:class:`Terminated` and
    ``KeyboardInterrupt`` are re-raised after the FAILED record is written). ``workers`` is
    the number of runs executing at once on this machine (a sweep's), for the thread choice.
    """
    from ..experiments import get

    exp = get(experiment) if isinstance(experiment, str) else experiment
    if cfg is None:
        preset = exp.default_preset if preset is None else preset
        cfg = exp.preset(preset)
    if not isinstance(cfg, exp.config):
        raise TypeError(f"{exp.name} expects a {exp.config.__name__}, got {type(cfg).__name__}")
    validate(cfg)
    if exp.resolve is not None:  # e.g. hash the files the config names (part of the run hash)
        cfg = validate(exp.resolve(cfg))
    prov = provenance(exp, cfg, preset)
    device = resolve_device(cfg.device)

    folder = run_path(out, exp.name, cfg)
    _prepare_parent(folder)
    lock = RunLock(folder)
    try:
        lock.acquire(wait)
    except OSError as e:
        raise ConfigError("--out", f"cannot lock run folders here: {e.strerror}", str(folder.parent)) from None
    try:
        with _sigterm_raises():
            rundir = RunDir(folder)
            if rundir.status() == STATUS_DONE and not force:
                return RunResult(rundir, rundir.read_summary(), skipped=True, elapsed=0.0)
            plan = auto_threads(workers, cfg.threads)  # after any wait: the load of now
            _discard(folder)
            try:
                folder.mkdir()
            except OSError as e:
                raise RunStoreError(f"cannot create {folder}: {e.strerror}") from None

            quirks = active_quirks(cfg)
            meta = run_meta(exp.name, cfg, rundir, device, prov)
            meta.update(_thread_meta(plan))
            try:
                atomic_write_json(rundir.config, meta)
            except OSError as e:
                _rm(folder)
                raise RunStoreError(f"cannot write {rundir.config}: {e.strerror or e}; nothing was run") from None
            return _run(exp, cfg, rundir, device, quirks, plan.threads, quiet, prov)
    finally:
        lock.release()


def _thread_meta(plan: Any) -> dict:
    return {"threads_used": plan.threads, "thread_plan": plan.as_dict()}


def _run(exp: Any, cfg: Any, rundir: RunDir, device: torch.device, quirks: list[str], threads: int,
         quiet: bool, prov: dict) -> RunResult:
    log, handlers = _logger(rundir, quiet)
    ctx = RunContext(rundir, cfg, device, log, quirks, provenance=prov)
    t0 = time.perf_counter()
    log.info("run %s -> %s (%d CPU thread%s)", exp.name, rundir.path, threads, "s" if threads != 1 else "")
    if quirks:
        log.info("reference quirks active: %s", ", ".join(quirks))
    try:
        with thread_limits(threads):
            summary = exp.run(cfg, ctx) or {}
        summary = {"experiment": exp.name, **summary}
        bad = first_nonfinite(summary)
        if bad is not None:
            raise DivergenceError(f"summary value {bad[0]} is {bad[1]}: a recorded result became non-finite "
                                  "(the run diverged); try a smaller learning rate")
        elapsed = time.perf_counter() - t0
        summary.setdefault("elapsed_s", round(elapsed, 3))
        atomic_write_json(rundir.summary, summary)
        log.info("done in %.1fs", elapsed)
        atomic_write_text(rundir.done, time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
        return RunResult(rundir, summary, skipped=False, elapsed=elapsed)
    except BaseException as e:  # noqa: BLE001 - every way out must leave a FAILED record
        reason = _reason(e)
        msg = f"{type(e).__name__}: {e}"
        note = ""
        try:
            atomic_write_json(rundir.failed, {"reason": reason, "message": msg, "traceback": traceback.format_exc(),
                                              "elapsed_s": round(time.perf_counter() - t0, 3)})
        except OSError as w:
            note = f" (the FAILED record could not be written: {w.strerror or w})"
        log.error("run stopped (%s): %s%s", reason, msg, note)
        if isinstance(e, (KeyboardInterrupt, Terminated)):
            raise
        where = f"see {rundir.failed}" if not note else f"folder {rundir.path}"
        raise RunFailed(f"{exp.name} {reason}: {msg} ({where}){note}", rundir, reason) from e
    finally:
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
