"""Run work items in isolated worker processes with a wall-time and memory bound per item.

Workers are forked once and reused; an item that overruns its time is killed with its worker
(which is replaced), an item whose worker dies is reported as failed, and results come back as
JSON text — never as pickles, since the worker has been reading hostile input.

Plain os.fork and pipes rather than multiprocessing: the bounds are the same, and a one-file scan
does not pay multiprocessing's import time (a noticeable part of a CLI run)."""

from __future__ import annotations

import os
import select
import signal
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from bastion.errors import BastionError

T = TypeVar("T")

_HEADER = struct.Struct("<Q")
MAX_RESULT_BYTES = 512 * 1024 * 1024  # a result larger than this is treated as a crash


class Outcome:
    """What became of one item: its JSON result, or why there is none."""

    __slots__ = ("failure", "index", "result")

    def __init__(self, index: int, result: str | None, failure: str | None) -> None:
        self.index = index
        self.result = result  # JSON text produced by the work function
        self.failure = failure  # why there is no result (time limit, crash)


class _PipeClosed(Exception):
    pass


def _vm_size() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _write_message(fd: int, payload: bytes) -> None:
    view = memoryview(_HEADER.pack(len(payload)) + payload)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_exactly(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise _PipeClosed
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_message(fd: int) -> bytes:
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
    if size > MAX_RESULT_BYTES:
        raise _PipeClosed
    return _read_exactly(fd, size)


def _worker_loop(commands: int, results: int, items: Sequence[Any], fn: Callable[[Any], str],
                 memory_mb: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    budget = _vm_size() + memory_mb * 1024 * 1024
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (budget, budget))
    except (ImportError, ValueError, OSError):
        pass
    while True:
        try:
            index = int(_read_message(commands).decode())
        except (_PipeClosed, OSError, ValueError):
            return
        try:
            status, payload = "OK", fn(items[index])
        except MemoryError:
            status, payload = "FAIL", "ran out of memory"
        except Exception as exc:  # reported as a failure of this item, the worker lives on
            status, payload = "FAIL", f"{type(exc).__name__}: {exc}"
        _write_message(results, f"{index}\n{status}\n{payload}".encode())


class _Worker(Generic[T]):
    def __init__(self, items: Sequence[T], fn: Callable[[T], str], memory_mb: int,
                 siblings: Sequence[_Worker[T]] = ()) -> None:
        for stream in (sys.stdout, sys.stderr):  # the child must not re-flush our buffers
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        fds: list[int] = []
        try:
            command_read, command_write = os.pipe()
            fds += (command_read, command_write)
            result_read, result_write = os.pipe()
            fds += (result_read, result_write)
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            raise BastionError(f"cannot start a scan worker: {exc.strerror or exc}",
                               hint="the system is out of processes, file descriptors or "
                                    "memory; lower --workers") from exc
        if pid == 0:  # child: never returns into the caller's code
            code = 0
            try:
                for sibling in siblings:  # so a sibling sees EOF when the parent goes away
                    sibling._close()
                os.close(command_write)
                os.close(result_read)
                _worker_loop(command_read, result_write, items, fn, memory_mb)
            except BaseException:  # the parent reports the crash from the exit status
                code = 70
            finally:
                os._exit(code)
        os.close(command_read)
        os.close(result_write)
        self.pid = pid
        self.commands = command_write
        self.results = result_read
        self.index: int | None = None
        self.deadline = 0.0
        self.exit_status: int | None = None

    def assign(self, index: int, timeout_s: float) -> None:
        self.index = index
        self.deadline = time.monotonic() + timeout_s
        try:
            _write_message(self.commands, str(index).encode())
        except OSError:
            pass  # the worker is gone; its result pipe reports EOF and the item fails

    def reap(self, wait_s: float) -> None:
        """Collect the exit status, waiting up to wait_s; SIGKILL if it is still running."""
        if self.exit_status is not None:
            return
        stop = time.monotonic() + wait_s
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_status = os.waitstatus_to_exitcode(status)
                return
            if time.monotonic() >= stop:
                os.kill(self.pid, signal.SIGKILL)
                _, status = os.waitpid(self.pid, 0)
                self.exit_status = os.waitstatus_to_exitcode(status)
                return
            time.sleep(0.002)

    def crash_reason(self) -> str:
        self.reap(1.0)
        code = self.exit_status
        return f"killed by signal {-code}" if code and code < 0 else f"exited with status {code}"

    def kill(self) -> None:
        """End the worker now. Also how an idle worker is retired: it holds nothing that needs
        a clean exit, and waiting for one would add to every run."""
        self.reap(0.0)
        self._close()

    def _close(self) -> None:
        for fd in (self.commands, self.results):
            try:
                os.close(fd)
            except OSError:
                pass


def _run_inline(items: Sequence[T], fn: Callable[[T], str],
                on_outcome: Callable[[Outcome], None]) -> None:  # pragma: no cover - no fork
    for index, item in enumerate(items):
        on_outcome(Outcome(index, fn(item), None))


def run_isolated(
    items: Sequence[T],
    fn: Callable[[T], str],
    *,
    workers: int,
    timeout_s: float,
    memory_mb: int,
    on_outcome: Callable[[Outcome], None],
) -> None:
    """Call fn(item) for every item in forked workers; report each Outcome as it arrives."""
    if not items:
        return
    if not hasattr(os, "fork"):  # pragma: no cover - non-POSIX
        _run_inline(items, fn, on_outcome)
        return
    pending = deque(range(len(items)))
    pool: list[_Worker[T]] = []
    try:
        for _ in range(min(max(workers, 1), len(items))):
            pool.append(_Worker(items, fn, memory_mb, pool))
        for worker in pool:
            worker.assign(pending.popleft(), timeout_s)
        while any(w.index is not None for w in pool):
            busy = [w for w in pool if w.index is not None]
            timeout = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            poller = select.poll()
            for w in busy:
                poller.register(w.results, select.POLLIN)
            ready = {fd for fd, _ in poller.poll(timeout * 1000)}
            for position, worker in enumerate(list(pool)):
                if worker.index is None:
                    continue
                outcome: Outcome | None = None
                crashed = False
                if worker.results in ready:
                    try:
                        head, status, payload = _read_message(worker.results).decode() \
                            .split("\n", 2)
                        outcome = (Outcome(int(head), payload, None) if status == "OK"
                                   else Outcome(int(head), None, payload))
                    except (_PipeClosed, OSError, ValueError):
                        crashed = True
                        outcome = Outcome(worker.index, None,
                                          f"scan worker crashed ({worker.crash_reason()})")
                elif time.monotonic() >= worker.deadline:
                    crashed = True
                    outcome = Outcome(worker.index, None, f"time limit of {timeout_s:g}s reached")
                if outcome is None:
                    continue
                if crashed:
                    worker.kill()
                    worker = _Worker(items, fn, memory_mb, pool[:position] + pool[position + 1:])
                    pool[position] = worker
                else:
                    worker.index = None
                on_outcome(outcome)
                if pending:
                    worker.assign(pending.popleft(), timeout_s)
    finally:
        for worker in pool:
            worker.kill()
