"""Run directories and the runner (see :mod:`featlab.runs.rundir` for the layout)."""
from .context import DivergenceError, RunContext
from .rundir import (
    STATUS_ABSENT,
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_INCOMPLETE,
    STATUS_UNREADABLE,
    RunDir,
    RunInfo,
    iter_runs,
)
from .index import filter_rows, format_rows, index_runs
from .lock import RunBusy, RunLock
from .runner import RunFailed, RunResult, RunStoreError, Terminated, default_out, execute, run_path

__all__ = [
    "DivergenceError",
    "RunContext",
    "RunBusy",
    "RunDir",
    "RunFailed",
    "RunInfo",
    "RunLock",
    "RunResult",
    "RunStoreError",
    "STATUS_ABSENT",
    "STATUS_DONE",
    "STATUS_FAILED",
    "STATUS_INCOMPLETE",
    "STATUS_UNREADABLE",
    "Terminated",
    "default_out",
    "execute",
    "filter_rows",
    "format_rows",
    "index_runs",
    "iter_runs",
    "run_path",
]
