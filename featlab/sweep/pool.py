"""The local executor: N worker processes, one task each at a time, each dying alone.

``concurrent.futures.ProcessPoolExecutor`` marks the *whole* pool broken when one worker
dies, failing every pending future, including runs that never started (issue 10, item 5), and
its workers outlive a ``kill -9`` of the driver, running the queued runs for ever (item 6).

Convention:
    - A worker holds at most one task. When a worker process dies (``os._exit``, the OOM
      killer, a segfault), only the future of the task it held fails, with
      :class:`WorkerDied`; queued tasks are unaffected and a fresh worker replaces it.
    - Workers die with the driver: on Linux each worker asks the kernel for ``SIGTERM`` when
      its parent dies (``prctl(PR_SET_PDEATHSIG)``), which the runner turns into a FAILED
      record (reason ``terminated``); a watchdog thread in every worker (any POSIX system)
      notices a changed parent pid within a second and does the same, and an idle worker
      exits when its pipe to the driver closes.
    - Workers are started with the ``spawn`` method (a fresh interpreter; no forked locks or
      CUDA state).
"""
from __future__ import annotations

import collections
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import Executor, Future
from multiprocessing.connection import wait as mp_wait
from typing import Any, Callable

__all__ = ["LocalPool", "WorkerDied"]

_PR_SET_PDEATHSIG = 1


class WorkerDied(RuntimeError):
    """The worker process running a task died before returning a result."""


class _RemoteError(RuntimeError):
    """An exception raised in a worker, with its traceback text (the exception itself may not pickle)."""


def _die_with_parent(parent_pid: int) -> None:
    """SIGTERM this process when the driver dies (prctl on Linux, plus a polling watchdog)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - musl without prctl, etc.
            pass
    if os.getppid() != parent_pid:  # the driver died before prctl took effect
        os._exit(1)

    def watchdog() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(30.0)  # give the run time to write its FAILED record, then go
                os._exit(1)

    threading.Thread(target=watchdog, name="featlab-parent-watchdog", daemon=True).start()


def _worker_main(conn: Any, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        task_id, fn, args, kwargs = msg
        try:
            result = fn(*args, **kwargs)
            reply = (task_id, True, result)
        except BaseException as e:  # noqa: BLE001 - reported to the driver
            reply = (task_id, False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
            if not isinstance(e, Exception):  # SIGTERM (Terminated), Ctrl-C, SystemExit: stop
                try:
                    conn.send(reply)
                finally:
                    return
        try:
            conn.send(reply)
        except (OSError, EOFError):
            return


class _Worker:
    def __init__(self, ctx: Any):
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        self.conn = parent_conn
        # not daemonic: a run may start processes of its own (data loaders)
        self.process = ctx.Process(target=_worker_main, args=(child_conn, os.getpid()), daemon=False,
                                   name="featlab-sweep-worker")
        self.process.start()
        child_conn.close()
        self.task: tuple[int, Future] | None = None


class LocalPool(Executor):
    """``submit(fn, *args)`` on ``workers`` spawned processes (see the module convention)."""

    def __init__(self, workers: int = 2):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = workers
        self._ctx = multiprocessing.get_context("spawn")
        self._queue: collections.deque = collections.deque()
        self._procs: list[_Worker] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._shutdown = False
        self._next_id = 0
        self._manager = threading.Thread(target=self._manage, name="featlab-local-pool", daemon=True)
        self._manager.start()

    # ------------------------------------------------------------------ Executor interface
    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        fut: Future = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit after shutdown")
            self._next_id += 1
            self._queue.append((self._next_id, fut, fn, args, kwargs))
        self._wake()
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while self._queue:
                    self._queue.popleft()[1].cancel()
        self._wake()
        if wait:
            self._manager.join()

    def worker_pids(self) -> list[int]:
        """Pids of the live worker processes (tests kill one)."""
        with self._lock:
            return [w.process.pid for w in self._procs if w.process.pid is not None]

    # ------------------------------------------------------------------ the manager thread
    def _wake(self) -> None:
        try:
            self._wake_w.send_bytes(b"x")
        except OSError:
            pass

    def _assign(self) -> None:
        with self._lock:
            idle = [w for w in self._procs if w.task is None]
            while self._queue and (idle or len(self._procs) < self.workers):
                task_id, fut, fn, args, kwargs = self._queue.popleft()
                if not fut.set_running_or_notify_cancel():
                    continue
                if idle:
                    w = idle.pop()
                else:
                    w = _Worker(self._ctx)
                    self._procs.append(w)
                try:
                    w.conn.send((task_id, fn, args, kwargs))
                    w.task = (task_id, fut)
                except Exception as e:  # noqa: BLE001 - e.g. an argument that does not pickle
                    fut.set_exception(e)

    def _finished(self) -> bool:
        with self._lock:
            return self._shutdown and not self._queue and all(w.task is None for w in self._procs)

    def _manage(self) -> None:
        try:
            while True:
                self._assign()
                if self._finished():
                    break
                with self._lock:
                    procs = list(self._procs)
                waitables = [self._wake_r] + [w.conn for w in procs] + [w.process.sentinel for w in procs]
                ready = mp_wait(waitables, timeout=1.0)
                if self._wake_r in ready:
                    while self._wake_r.poll():
                        self._wake_r.recv_bytes()
                for w in procs:
                    if w.conn in ready:
                        self._receive(w)
                for w in procs:
                    if w.process.sentinel in ready and not w.process.is_alive():
                        while w.conn.poll():  # a reply sent just before exiting
                            if not self._receive(w):
                                break
                        self._bury(w)
        finally:
            with self._lock:
                procs = list(self._procs)
            for w in procs:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
            for w in procs:
                w.process.join(timeout=10)
                if w.process.is_alive():
                    w.process.terminate()
                    w.process.join(timeout=5)
                w.conn.close()

    def _receive(self, w: _Worker) -> bool:
        try:
            task_id, ok, payload = w.conn.recv()
        except (EOFError, OSError):
            return False
        with self._lock:
            task, w.task = w.task, None
        if task is not None and task[0] == task_id:
            fut = task[1]
            if ok:
                fut.set_result(payload)
            else:
                fut.set_exception(_RemoteError(payload))
        return True

    def _bury(self, w: _Worker) -> None:
        with self._lock:
            if w in self._procs:
                self._procs.remove(w)
            task, w.task = w.task, None
        code = w.process.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        if task is not None:
            task[1].set_exception(WorkerDied(f"worker process {w.process.pid} died ({how}) while running this task"))
        w.conn.close()
