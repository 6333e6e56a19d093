"""One writer per run directory: ``RUN/lock.json``, held by ``regbench run`` and ``regbench train``.

The lock is an ``flock`` on ``lock.json``, which also names its holder (host, PID, start time, command). The
kernel (or the NFS lock manager) releases an ``flock`` when its process dies, however it dies, so a lock is
never left held by a dead process: a ``lock.json`` found unlocked was left by a run that was killed, and is
taken over with a note naming that run. A live holder refuses the second run in one line naming it. The
run's settings are bound (manifest) while the lock is held, so two configurations can never be mixed in one
directory. Under dask the driver holds the lock; workers never write the store.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import RegbenchError
from .rundir import RunDir

log = logging.getLogger("regbench")


class RunDirectoryLocked(RegbenchError):
    """Another live process holds the run directory's lock."""


def _describe(holder: dict[str, Any]) -> str:
    return f"PID {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')} ({holder.get('command', '?')})"


class RunDirectoryLock:
    """``with RunDirectoryLock(run_dir):`` — exclusive use of ``run_dir`` by this process, or RunDirectoryLocked."""

    def __init__(self, run_dir: Path, command: str | None = None) -> None:
        self.path = RunDir(run_dir).lock
        self.command = command or " ".join(["regbench", *sys.argv[1:]])[:300]
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunDirectoryLocked(
                f"run directory {self.path.parent} is in use by another regbench: {_describe(holder)} (lock {self.path}). "
                "Wait for it to finish, or use another --out."
            ) from None
        except BaseException:
            os.close(fd)
            raise
        previous = _read_holder(fd)
        if previous.get("pid") is not None:  # a holder that ended without releasing: killed, or its machine lost
            log.warning(
                "run directory %s: taking over the lock of a run that ended without releasing it (%s); its finished cases are kept",
                self.path.parent,
                _describe(previous),
            )
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": self.command}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # an empty lock file: released cleanly (a holder left in it means a killed run)
        finally:
            os.close(fd)  # closing releases the flock

    def __enter__(self) -> RunDirectoryLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0)
        holder = json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}
