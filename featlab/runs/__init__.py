"""Run directories and the runner (see :mod:`featlab.runs.rundir` for the layout)."""
from .context import DivergenceError, RunContext
from .rundir import (
    STATUS_ABSENT,
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_INCOMPLETE,
    RunDir,
    iter_runs,
)
from .index import filter_rows, format_rows, index_runs
from .runner import RunFailed, RunResult, default_out, execute, run_path

__all__ = [
    "DivergenceError",
    "RunContext",
    "RunDir",
    "RunFailed",
    "RunResult",
    "STATUS_ABSENT",
    "STATUS_DONE",
    "STATUS_FAILED",
    "STATUS_INCOMPLETE",
    "default_out",
    "execute",
    "filter_rows",
    "format_rows",
    "index_runs",
    "iter_runs",
    "run_path",
]
