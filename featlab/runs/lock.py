"""One writer per run folder: an advisory lock beside it, recovered automatically when stale.

Convention:
    The lock of ``OUT/<experiment>/<hash>/`` is the file ``OUT/<experiment>/.<hash>.lock``,
    *beside* the folder (the folder itself is renamed away and deleted by a forced redo, so a
    lock inside it would vanish while held). The holder keeps an exclusive ``flock`` on it for
    the whole run and writes one JSON line ``{"pid", "host", "started"}`` into it so that a
    refused run can say who holds it.

    - Stale locks recover by themselves: the kernel drops a ``flock`` when its owner dies,
      however it dies (``kill -9``, a crashed node's NFS lease), so a lock file left behind by
      a dead run is simply taken over by the next one. No pid guessing is involved; on Linux
      NFS, ``flock`` is carried by the server's byte-range locks and holds across hosts.
    - The holder unlinks the file before releasing it; a waiter that then wins the old inode
      sees the path point elsewhere (or nowhere) and retries, so two holders can never coexist
      on two different inodes.
    - :meth:`RunLock.acquire` either waits (``wait=None``: forever; a number: seconds) or
      raises :class:`RunBusy` at once (``wait=0``), naming the holder.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import platform
import time
from pathlib import Path

__all__ = ["RunLock", "RunBusy", "lock_path", "read_owner"]


class RunBusy(RuntimeError):
    """Another process holds the run folder's lock; nothing was touched."""

    def __init__(self, path: Path, owner: dict | None):
        self.path = Path(path)
        self.owner = owner or {}
        who = ""
        if owner:
            who = (f" by pid {owner.get('pid', '?')} on {owner.get('host', '?')}"
                   f" since {owner.get('started', '?')}")
        super().__init__(f"{self.path} is being run{who}; left untouched (wait for it to finish, or stop it)")


def lock_path(run_folder: str | os.PathLike) -> Path:
    """``OUT/<experiment>/.<hash>.lock`` for the run folder ``OUT/<experiment>/<hash>``."""
    p = Path(run_folder)
    return p.parent / f".{p.name}.lock"


def read_owner(run_folder: str | os.PathLike) -> dict | None:
    """The ``{"pid", "host", "started"}`` written by the current (or a dead) holder, if any."""
    try:
        text = lock_path(run_folder).read_text(errors="replace").strip()
        owner = json.loads(text) if text else None
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def owner_alive(owner: dict | None) -> bool | None:
    """True/False when the owner is on this host and its pid is/is not alive; None otherwise."""
    if not owner or owner.get("host") != platform.node() or not isinstance(owner.get("pid"), int):
        return None
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, OverflowError):
        return None
    return True


class RunLock:
    """The exclusive lock of one run folder (see the module convention). A context manager."""

    def __init__(self, run_folder: str | os.PathLike):
        self.folder = Path(run_folder)
        self.path = lock_path(self.folder)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _try_once(self) -> bool:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        while True:
            fd = os.open(self.path, flags, 0o666)
            kept = False
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as e:
                    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        return False
                    raise
                try:
                    same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if not same:  # the previous holder unlinked it after we opened it: start again
                    continue
                owner = {"pid": os.getpid(), "host": platform.node(),
                         "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                os.ftruncate(fd, 0)
                os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)
                self._fd, kept = fd, True
                return True
            finally:
                if not kept:
                    os.close(fd)

    def acquire(self, wait: float | None = 0, poll: float = 0.2) -> "RunLock":
        """Take the lock; ``wait=0`` raises :class:`RunBusy` if held, ``None`` waits forever."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = None if wait is None else time.monotonic() + wait
        while not self._try_once():
            if deadline is not None and time.monotonic() >= deadline:
                raise RunBusy(self.folder, read_owner(self.folder))
            time.sleep(poll)
        return self

    def release(self) -> None:
        """Unlink the lock file, then drop the lock (a no-op when not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
