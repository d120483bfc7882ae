"""Executors for sweeps: anything with ``submit(fn, *args) -> concurrent.futures.Future``.

| kind | what | when |
|---|---|---|
| ``local`` (default) | :class:`~featlab.sweep.pool.LocalPool` (N spawned processes; a dying worker fails only its own run; workers die with the driver) | one machine |
| ``dask`` | ``distributed.Client(address)`` or a ``LocalCluster(n_workers=N, threads_per_worker=1, processes=True)``, used through ``client.get_executor()`` | a running Dask scheduler, or many local processes with worker restarts |
| ``slurm`` | dask-jobqueue ``SLURMCluster`` built from a TOML profile, scaled to N jobs | a SLURM cluster (extra ``slurm``) |

Workers write only their own run directory, so executors never share files (and a run
folder's lock keeps two executors from running the same config at once).

Errors a user can cause raise a one-line :class:`~featlab.config.ConfigError`: a Dask scheduler
that does not answer within :data:`CONNECT_TIMEOUT_S` seconds (``--scheduler``), and
``--executor slurm`` on a machine without ``sbatch``.
"""
from __future__ import annotations

import contextlib
import shutil
import warnings
from concurrent.futures import Executor
from pathlib import Path
from typing import Iterator

from ..config import ConfigError

__all__ = ["open_executor", "slurm_cluster", "slurm_job_script", "load_slurm_profile", "CONNECT_TIMEOUT_S"]

#: seconds to wait for a Dask scheduler given by ``--scheduler`` before giving up
CONNECT_TIMEOUT_S = 10.0


def _need(module: str, extra: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise ConfigError("executor.kind", f"needs the '{extra}' extra: pip install 'featlab[{extra}]'") from None


def _quiet_dask_warnings() -> None:
    # Harmless when offline: dask/distributed#8559 (a warning while probing the network for the
    # dashboard / an external address). Keep logs of sweeps readable.
    warnings.filterwarnings("ignore", message=".*Port .* is already in use.*")
    warnings.filterwarnings("ignore", message=".*Couldn't detect a suitable IP address.*")
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="distributed.*")


def load_slurm_profile(path: str | Path) -> dict:
    """Read a dask-jobqueue profile: a TOML table of ``SLURMCluster`` keyword arguments.

    Example::

        queue = "gpu"
        cores = 8
        memory = "32GB"
        walltime = "04:00:00"
        job_extra_directives = ["--gres=gpu:1"]
        job_script_prologue = ["module load cuda", "source .venv/bin/activate"]
    """
    from .spec import read_toml

    prof = read_toml(path, "executor.profile", "SLURM profile")
    for key in ("cores", "memory"):
        if key not in prof:
            raise ConfigError(f"executor.profile.{key}", "required by dask-jobqueue's SLURMCluster")
    return prof


def slurm_cluster(profile: dict):
    """A dask-jobqueue ``SLURMCluster`` from a profile dict (no jobs are submitted until scaled)."""
    jq = _need("dask_jobqueue", "slurm")
    _quiet_dask_warnings()
    kw = dict(profile)
    kw.setdefault("scheduler_options", {"dashboard_address": None})
    return jq.SLURMCluster(**kw)


def slurm_job_script(profile: dict) -> str:
    """The ``sbatch`` script a profile produces, without submitting anything."""
    cluster = slurm_cluster(profile)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


def _connect(distributed, address: str):
    try:
        return distributed.Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError, TypeError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError("--scheduler", f"no Dask scheduler answers within {CONNECT_TIMEOUT_S:g} s "
                          f"({why[:200]})", address) from None


@contextlib.contextmanager
def open_executor(kind: str = "local", workers: int = 2, scheduler: str = "",
                  profile: str = "") -> Iterator[Executor]:
    """Yield a ``concurrent.futures.Executor`` of the given ``kind``; shut it down on exit."""
    if kind == "local":
        from .pool import LocalPool

        ex = LocalPool(workers)
        try:
            yield ex
        finally:
            ex.shutdown(wait=True, cancel_futures=True)
        return
    if kind in ("dask", "slurm"):
        distributed = _need("distributed", "dask" if kind == "dask" else "slurm")
        _quiet_dask_warnings()
        cluster = None
        if kind == "slurm":
            prof = load_slurm_profile(profile)
            if shutil.which("sbatch") is None:
                raise ConfigError("--executor slurm", "sbatch not found on PATH: run the sweep on a machine "
                                  "that can submit SLURM jobs (a login node)")
            cluster = slurm_cluster(prof)
            cluster.scale(jobs=workers)
            client = distributed.Client(cluster)
        elif scheduler:
            client = _connect(distributed, scheduler)
        else:
            cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                               dashboard_address=None)
            client = distributed.Client(cluster)
        try:
            ex = client.get_executor(pure=False)
            ex.client = client  # type: ignore[attr-defined]  (tests reach the workers through it)
            yield ex
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return
    raise ConfigError("executor.kind", "allowed: local, dask, slurm", kind)
