"""Cases in worker processes, isolated: a worker that dies or a case over its time limit fails that case only;
and long tasks (trainings) side by side, each in a process of its own (:class:`SideBySide`).

The workers are joblib's (loky) processes. At most one case per worker is in flight; a case's time starts when
a worker starts it (it touches a file first), so spawning workers and importing torch never count. When a
worker dies (a segfault in native code, ``os._exit``, the OOM killer) every case in flight is lost with it and
the pool is rebuilt; a case that was alone in flight is failed with the worker's exit
("worker died: signal 11 (SIGSEGV)"), while cases that were in flight together are run again one at a time, so
that only the one that kills its worker again is failed. A case over ``timeout_s`` is failed ("timed out after
N s"): the pool's workers are killed and rebuilt, and the other cases in flight are run again (their results do
not depend on the worker). Whatever happens, the caller gets one result per task.
"""

from __future__ import annotations

import contextlib
import re
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A generous default: classical methods take seconds per 2-D pair, deep inference milliseconds; the first case
# of a worker also builds (or loads) the method and warms it up.
DEFAULT_CASE_TIMEOUT_S = 900.0


@dataclass
class Task:
    key: Hashable
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class CaseFailure:
    """A task whose worker died or that ran over its time limit: ``reason`` says which."""

    reason: str


# Idle workers exit after this long (stop_workers ends them at once).
IDLE_WORKER_TIMEOUT_S = 60


@contextlib.contextmanager
def workers_ignore_sigint() -> Iterator[None]:
    """Worker processes started inside this block ignore SIGINT from birth (the disposition survives exec), so
    Ctrl-C, which the terminal sends to the whole process group, reaches only the main process: it stops the
    run with one line instead of a traceback from every worker, even one still importing its modules."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def stop_workers() -> None:
    """Kill this process's joblib (loky) worker processes now: after Ctrl-C or SIGTERM, instead of leaving
    them idle (and holding their memory) until their idle timeout."""
    from joblib.externals.loky import reusable_executor

    executor = getattr(reusable_executor, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)


def worker_death_reason(exc: BaseException) -> str:
    """ "worker died: signal 11 (SIGSEGV)" or "worker died: exit code 1" from loky's TerminatedWorkerError."""
    codes = [int(c) for c in re.findall(r"\((-?\d+)\)", str(exc).rsplit("exit codes of the workers are", 1)[-1])]
    described = [describe_exit(code) for code in codes]
    return "worker died: " + (", ".join(dict.fromkeys(described)) if described else "no exit status known")


def describe_exit(code: int) -> str:
    """A process's exit status as "signal 11 (SIGSEGV)" (negative: killed by that signal) or "exit code 1"."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {-code} ({signal.Signals(-code).name})"
    except ValueError:
        return f"signal {-code}"


# ------------------------------------------------------------------------------------- long tasks side by side
def _in_child(fn: Callable[[], Any], sender: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle: it stops this process
    try:
        outcome: tuple[str, Any] = ("ok", fn())
    except BaseException as exc:  # noqa: BLE001 - handed to the driver, which raises it
        outcome = ("error", exc)
    try:
        sender.send(outcome)
    except Exception as exc:  # an exception or result that does not pickle
        sender.send(("error", RuntimeError(f"{type(outcome[1]).__name__}: {outcome[1]} (could not be sent back: {exc})")))


class SideBySide:
    """Long tasks (trainings) in processes of their own, ``slots`` at a time, started in the order given.

    ``futures[key]`` gives a task's result or raises its exception; a process that dies fails its own task
    only ("process died: signal 9 (SIGKILL)"). ``stop()`` cancels what has not started and terminates the
    processes that run. Each task is a picklable callable; processes are spawned (fresh interpreters)."""

    def __init__(self, tasks: Sequence[tuple[Hashable, Callable[[], Any]]], slots: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._running: set[Any] = set()
        self._threads = ThreadPoolExecutor(max(1, slots), thread_name_prefix="regbench-side-by-side")
        self.futures: dict[Hashable, Future] = {key: self._threads.submit(self._run, key, fn) for key, fn in tasks}

    def _run(self, key: Hashable, fn: Callable[[], Any]) -> Any:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_in_child, args=(fn, sender), name=f"regbench-{key}", daemon=True)
        with self._lock:
            if self._stopping.is_set():
                raise RuntimeError("stopped before it started")
            process.start()
            self._running.add(process)
        sender.close()
        try:
            kind, value = receiver.recv()
        except EOFError:
            process.join()
            raise RuntimeError(f"process died: {describe_exit(process.exitcode or 0)}") from None
        finally:
            receiver.close()
        process.join()
        with self._lock:
            self._running.discard(process)
        if kind == "error":
            raise value
        return value

    def stop(self) -> None:
        self._stopping.set()
        for future in self.futures.values():
            future.cancel()
        with self._lock:
            for process in self._running:
                if process.is_alive():
                    process.terminate()
        self._threads.shutdown(wait=True)


def run_isolated(fn: Callable[..., Any], tasks: Sequence[Task], jobs: int, timeout_s: float | None = DEFAULT_CASE_TIMEOUT_S) -> Iterator[tuple[Hashable, Any]]:
    """``(task.key, fn(*task.args, **task.kwargs))`` for every task, in the order they finish, computed in
    ``jobs`` worker processes; a CaseFailure in place of the result for a task whose worker died or that
    timed out."""
    clocks = tempfile.TemporaryDirectory(prefix="regbench-cases-")
    try:
        yield from _run(fn, tasks, jobs, timeout_s, Path(clocks.name))
    finally:
        clocks.cleanup()


def _started(path: Path, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """In the worker: mark the start of the task, then run it."""
    path.touch()
    return fn(*args, **kwargs)


def _run(fn: Callable[..., Any], tasks: Sequence[Task], jobs: int, timeout_s: float | None, clocks: Path) -> Iterator[tuple[Hashable, Any]]:
    from joblib.externals.loky import get_reusable_executor
    from joblib.externals.loky.process_executor import BrokenProcessPool

    pending = deque(tasks)
    suspects: deque[Task] = deque()  # in flight when a worker died with others: run alone to find the culprit
    running: dict[Future, tuple[Task, Path, bool]] = {}
    submitted = 0

    def executor() -> Any:
        return get_reusable_executor(max_workers=jobs, timeout=IDLE_WORKER_TIMEOUT_S)

    def submit(task: Task, suspect: bool) -> None:
        nonlocal submitted
        submitted += 1
        clock = clocks / f"{submitted}"
        with workers_ignore_sigint():  # workers (re)spawn inside submit
            running[executor().submit(_started, clock, fn, *task.args, **task.kwargs)] = (task, clock, suspect)

    def elapsed(clock: Path) -> float:
        try:
            return time.time() - clock.stat().st_mtime
        except FileNotFoundError:  # not started yet
            return 0.0

    while pending or suspects or running:
        if suspects:
            if not running:
                submit(suspects.popleft(), True)
        else:
            while pending and len(running) < jobs:
                submit(pending.popleft(), False)
        # Not-yet-started cases are looked at again every second; a started one when its limit is reached.
        wait_s = None if timeout_s is None else max(0.05, min(min(timeout_s - elapsed(c), 1.0) for _, c, _ in running.values()))
        done, _ = wait(list(running), timeout=wait_s, return_when=FIRST_COMPLETED)
        broken: list[tuple[Task, bool, BaseException]] = []
        for future in done:
            task, _, suspect = running.pop(future)
            try:
                yield task.key, future.result()
            except BrokenProcessPool as exc:  # TerminatedWorkerError is one
                broken.append((task, suspect, exc))
        if broken:
            # The other cases in flight went down with the same pool: collect them before deciding.
            for future in list(running):
                task, _, suspect = running.pop(future)
                try:
                    yield task.key, future.result()
                except BrokenProcessPool as exc:
                    broken.append((task, suspect, exc))
            if len(broken) == 1 or all(suspect for _, suspect, _ in broken):
                for task, _, error in broken:
                    yield task.key, CaseFailure(worker_death_reason(error))
            else:
                suspects.extend(task for task, _, _ in broken)
            continue
        if timeout_s is None:
            continue
        late = [f for f, (_, clock, _) in running.items() if not f.done() and elapsed(clock) >= timeout_s]
        if late:
            executor().shutdown(wait=True, kill_workers=True)  # the only way to stop a case in native code
            for future in list(running):
                task, _, suspect = running.pop(future)
                if future in late:
                    yield task.key, CaseFailure(f"timed out after {timeout_s:g} s")
                elif future.done() and future.exception() is None:
                    yield task.key, future.result()
                else:
                    (suspects if suspect else pending).appendleft(task)  # innocent: run again
