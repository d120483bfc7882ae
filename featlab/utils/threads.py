"""CPU thread counts that cannot oversubscribe the machine.

A torch (OpenMP) or OpenBLAS thread that has no core of its own does not just run slower: the
others spin at every barrier waiting for it, so a run with 2 threads beside a neighbour busy
on both cores of a 2-core machine took 194 s instead of 14 s with 1 thread (issue 10, item 15).
The runner therefore picks the count itself unless the config sets ``threads``.

Convention:
    ``auto_threads(workers)`` returns
    ``max(1, min(cores // workers, cores - others))``, where

    - ``cores`` = the CPUs this process may use: the affinity mask (``taskset``, cpusets,
      SLURM's allocation), capped by a cgroup CPU quota (``cpu.max``, ``cpu.cfs_quota_us``)
      and by ``OMP_NUM_THREADS`` when the user set it;
    - ``workers`` = runs of the same sweep executing at once on this machine (1 for a lone
      ``featlab run``), so ``workers x threads <= cores``;
    - ``others`` = CPU demand of other processes: the larger of the 1-minute load average and
      the median of five instantaneous counts of runnable tasks (``/proc/loadavg``), less this
      process, rounded to the nearest integer. The choice is made once, when a run starts.

    ``FEATLAB_THREADS=N`` in the environment overrides the automatic choice (still outside the
    run hash); a config's explicit ``threads=N`` overrides everything and is part of the hash.
"""
from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Iterator

__all__ = ["ThreadPlan", "auto_threads", "usable_cores", "other_load", "thread_limits"]

ENV_VAR = "FEATLAB_THREADS"


@dataclass(frozen=True)
class ThreadPlan:
    """How many threads a run uses and why (recorded in ``config.json`` as ``thread_plan``)."""

    threads: int
    source: str  # "config" | "FEATLAB_THREADS" | "auto"
    cores: int
    workers: int
    others: float

    def as_dict(self) -> dict:
        return asdict(self)


def _cgroup_quota() -> float | None:
    """CPUs allowed by a cgroup CPU quota (v2 ``cpu.max`` or v1 ``cfs_quota_us``), if any."""
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        q = int(open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read())
        p = int(open("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read())
        return q / p if q > 0 and p > 0 else None
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """CPUs this process may run on (affinity mask, cgroup quota, ``OMP_NUM_THREADS``), >= 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.floor(quota)))
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) >= 1:
        n = min(n, int(omp))
    return max(1, n)


def _running_now() -> int | None:
    try:
        return int(open("/proc/loadavg").read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def other_load(samples: int = 5, interval: float = 0.01) -> float:
    """CPU demand of other processes (see the module convention); 0 where it cannot be read."""
    counts = []
    for i in range(samples):
        r = _running_now()
        if r is not None:
            counts.append(r - 1)  # this process is running while it reads
        if i + 1 < samples:
            time.sleep(interval)
    instant = float(statistics.median(counts)) if counts else 0.0
    try:
        load1 = float(open("/proc/loadavg").read().split()[0])
    except (OSError, ValueError, IndexError):
        load1 = 0.0
    return max(0.0, instant, load1)


def auto_threads(workers: int = 1, requested: int | None = None) -> ThreadPlan:
    """The thread count of one run among ``workers`` concurrent ones (see the convention)."""
    workers = max(1, int(workers))
    cores = usable_cores()
    if requested is not None:
        return ThreadPlan(int(requested), "config", cores, workers, 0.0)
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            from ..config import ConfigError

            raise ConfigError(ENV_VAR, "must be a positive integer (threads per run)", env)
        return ThreadPlan(int(env), ENV_VAR, cores, workers, 0.0)
    others = other_load()
    n = max(1, min(cores // workers, cores - int(round(others))))
    return ThreadPlan(n, "auto", cores, workers, round(others, 2))


@contextlib.contextmanager
def thread_limits(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads and ``n`` BLAS/OpenMP threads; restore after.

    BLAS libraries loaded by numpy/scipy (OpenBLAS, MKL) are limited through threadpoolctl
    (a scikit-learn dependency) when it is installed.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        limiter = contextlib.nullcontext()
        try:
            from threadpoolctl import threadpool_limits

            limiter = threadpool_limits(limits=n)
        except ImportError:  # pragma: no cover - scikit-learn brings it
            pass
        with limiter:
            yield
    finally:
        torch.set_num_threads(before)
