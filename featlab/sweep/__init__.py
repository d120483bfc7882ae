"""Sweeps over configs and seeds, on a process pool, Dask or SLURM (see :mod:`.driver`)."""
from .._lazy import attach

_EXPORTS: dict[str, str] = {
    "SweepResult": "driver",
    "SweepSpec": "spec",
    "expand": "spec",
    "load_spec": "spec",
    "open_executor": "executors",
    "parse_spec": "spec",
    "run_one": "driver",
    "run_sweep": "driver",
    "slurm_job_script": "executors",
    "load_slurm_profile": "executors",
}

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS)
