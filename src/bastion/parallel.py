"""Run work items in isolated worker processes with a wall-time and memory bound per item.

Workers are started once and reused; an item that overruns its time is killed with its worker
(which is replaced), an item whose worker dies is reported as failed, and results come back as
JSON text — never as pickles, since the worker has been reading hostile input. Every failure
has a type (`Failure`), so callers never decide by matching message text.

Two ways to start workers, with the same bounds and the same protocol:
- **fork** (plain os.fork and pipes): the fast path for the one-shot CLI — no interpreter
  start-up and no multiprocessing import per run;
- **spawn** (a fresh interpreter per worker, started with subprocess): for library, notebook and
  server callers, where the process has other threads and forking it is unsafe (a lock held by
  another thread stays locked forever in the child). The work function must then be importable
  by name (a module-level function or a functools.partial of one); the parent sends it with the
  item as a pickle over a pipe — parent to child only, so the child trusts what it unpickles.
`method="auto"` forks when the process has a single Python thread and spawns otherwise. Where
os.fork does not exist (Windows) only spawn is used; where the address-space limit cannot be set
(RLIMIT_AS is missing), isolation refuses to run rather than run unbounded."""

from __future__ import annotations

import os
import select
import signal
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, Generic, Literal, TypeVar

from bastion.errors import BastionError
from bastion.records import Record, force_setattr

T = TypeVar("T")

_HEADER = struct.Struct("<Q")
MAX_RESULT_BYTES = 512 * 1024 * 1024  # a result larger than this is treated as a crash
STARTUP_S = 60.0  # a spawned worker's interpreter start and imports, before an item's clock runs
STARTED = "STARTED"


Method = Literal["auto", "fork", "spawn"]


class Failure(str, Enum):
    """Why an item has no result."""

    TIMEOUT = "timeout"  # the item overran its wall time; its worker was killed
    MEMORY = "memory"  # the item ran out of its address-space budget
    CRASH = "crash"  # the worker died (signal, exit) or sent something unreadable
    ERROR = "error"  # the work function raised

    @property
    def bounded(self) -> bool:
        """A resource bound stopped the item (the file is incomplete, not broken)."""
        return self in (Failure.TIMEOUT, Failure.MEMORY)


class Outcome(Record):
    """What became of one item: its JSON result, or the kind of failure and a message."""

    index: int
    result: str | None  # JSON text produced by the work function
    failure: str | None  # why there is no result, for people
    kind: Failure | None = None  # why there is no result, for code (None with a result)

    def __post_init__(self) -> None:
        if self.result is not None:
            force_setattr(self, "kind", None)
        elif self.kind is None:
            force_setattr(self, "kind", Failure.CRASH)


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


def _limit_memory(memory_mb: int) -> None:
    """Cap this process's address space at its current size plus the budget."""
    import resource

    budget = _vm_size() + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (budget, budget))


def _run_one(fn: Callable[[Any], str], item: Any) -> tuple[str, str]:
    try:
        return "OK", fn(item)
    except MemoryError:
        return Failure.MEMORY.value, "ran out of memory"
    except Exception as exc:  # reported as a failure of this item, the worker lives on
        return Failure.ERROR.value, f"{type(exc).__name__}: {exc}"


def _worker_loop(
    commands: int, results: int, items: Sequence[Any], fn: Callable[[Any], str], memory_mb: int
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _limit_memory(memory_mb)
    except (ValueError, OSError):
        pass  # the limit could be checked in the parent before forking (see _check_limits)
    while True:
        try:
            index = int(_read_message(commands).decode())
        except (_PipeClosed, OSError, ValueError):
            return
        status, payload = _run_one(fn, items[index])
        _write_message(results, f"{index}\n{status}\n{payload}".encode())


def spawned_worker_main() -> None:
    """Entry point of a spawned worker: fds of its two pipes in argv, then tasks as
    (index, fn, item) pickles from the parent; answers framed like the forked worker's."""
    import pickle

    commands, results, memory_mb = (int(arg) for arg in sys.argv[1:4])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limited = False
    while True:
        try:
            task = _read_message(commands)
        except (_PipeClosed, OSError):
            return
        index, fn, item = pickle.loads(task)  # from the parent, which is trusted
        if not limited:  # after the first task's imports, so they don't count
            _limit_memory(memory_mb)
            limited = True
        _write_message(results, f"{index}\n{STARTED}\n".encode())  # the item's clock starts
        status, payload = _run_one(fn, item)
        _write_message(results, f"{index}\n{status}\n{payload}".encode())


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):  # a forked child must not re-flush our buffers
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


def _start_failed(fds: Sequence[int], exc: OSError) -> BastionError:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
    return BastionError(
        f"cannot start a scan worker: {exc.strerror or exc}",
        hint="the system is out of processes, file descriptors or memory; lower --workers",
    )


class _Worker(Generic[T]):
    """One worker process and its two pipes. Subclasses start it (fork or spawn) and send it
    items; everything else — deadlines, reaping, crash reasons — is shared."""

    pid: int
    commands: int
    results: int

    def __init__(self) -> None:
        self.index: int | None = None
        self.deadline = 0.0
        self.exit_status: int | None = None

    def _send(self, index: int) -> None:
        raise NotImplementedError

    def assign(self, index: int, timeout_s: float) -> None:
        self.index = index
        self.deadline = time.monotonic() + timeout_s
        try:
            self._send(index)
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


class _ForkedWorker(_Worker[T]):
    def __init__(
        self,
        items: Sequence[T],
        fn: Callable[[T], str],
        memory_mb: int,
        siblings: Sequence[_Worker[T]] = (),
    ) -> None:
        super().__init__()
        _flush_std_streams()
        fds: list[int] = []
        try:
            command_read, command_write = os.pipe()
            fds += (command_read, command_write)
            result_read, result_write = os.pipe()
            fds += (result_read, result_write)
            pid = os.fork()
        except OSError as exc:
            raise _start_failed(fds, exc) from exc
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

    def _send(self, index: int) -> None:
        _write_message(self.commands, str(index).encode())


class _SpawnedWorker(_Worker[T]):
    """A fresh interpreter: it says when an item really starts (after its start-up and the
    imports of the work function), and the item's time limit runs from then."""

    def __init__(
        self,
        items: Sequence[T],
        fn: Callable[[T], str],
        memory_mb: int,
        siblings: Sequence[_Worker[T]] = (),
    ) -> None:
        import json
        import subprocess

        super().__init__()
        self._items = items
        self._fn = fn
        fds: list[int] = []
        try:
            command_read, command_write = os.pipe()
            fds += (command_read, command_write)
            result_read, result_write = os.pipe()
            fds += (result_read, result_write)
            for fd in (command_write, result_read):
                os.set_inheritable(fd, False)
            code = (
                f"import sys; sys.path[:0] = {json.dumps(sys.path)}; "
                "from bastion.parallel import spawned_worker_main; spawned_worker_main()"
            )
            process = subprocess.Popen(
                [sys.executable, "-c", code, str(command_read), str(result_write), str(memory_mb)],
                pass_fds=(command_read, result_write),
                close_fds=True,
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            raise _start_failed(fds, exc) from exc
        process.returncode = 0  # reaped by _Worker.reap, not by Popen
        os.close(command_read)
        os.close(result_write)
        self.pid = process.pid
        self.commands = command_write
        self.results = result_read

    def _send(self, index: int) -> None:
        import pickle

        self.deadline += STARTUP_S
        _write_message(self.commands, pickle.dumps((index, self._fn, self._items[index])))


def choose_method(method: Method = "auto") -> Literal["fork", "spawn"]:
    """fork for a single-threaded process (the CLI), spawn when other Python threads exist
    (servers, notebooks, threaded applications) or os.fork does not."""
    if method != "auto":
        return method
    threading = sys.modules.get("threading")  # not imported: no other Python thread exists
    threaded = threading is not None and threading.active_count() > 1
    return "fork" if hasattr(os, "fork") and not threaded else "spawn"


def _check_limits() -> None:
    try:
        import resource

        resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, AttributeError) as exc:
        raise BastionError(
            "isolated scanning needs per-process memory limits (RLIMIT_AS), "
            "which this platform does not offer",
            hint="run bastion on Linux or macOS, or in a Linux container",
        ) from exc


def run_isolated(
    items: Sequence[T],
    fn: Callable[[T], str],
    *,
    workers: int,
    timeout_s: float,
    memory_mb: int,
    on_outcome: Callable[[Outcome], None],
    method: Method = "auto",
) -> None:
    """Call fn(item) for every item in isolated workers; report each Outcome as it arrives.
    With method "spawn" (or "auto" in a threaded process) fn must be picklable by reference."""
    if not items:
        return
    _check_limits()
    start: Callable[[Sequence[T], Callable[[T], str], int, Sequence[_Worker[T]]], _Worker[T]] = (
        _ForkedWorker if choose_method(method) == "fork" else _SpawnedWorker
    )
    pending = deque(range(len(items)))
    pool: list[_Worker[T]] = []
    try:
        for _ in range(min(max(workers, 1), len(items))):
            pool.append(start(items, fn, memory_mb, pool))
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
                        head, status, payload = (
                            _read_message(worker.results).decode().split("\n", 2)
                        )
                        if status == STARTED:
                            worker.deadline = time.monotonic() + timeout_s
                            continue
                        outcome = (
                            Outcome(index=int(head), result=payload, failure=None)
                            if status == "OK"
                            else Outcome(
                                index=int(head), result=None, failure=payload, kind=Failure(status)
                            )
                        )
                    except (_PipeClosed, OSError, ValueError):
                        crashed = True
                        outcome = Outcome(
                            index=worker.index,
                            result=None,
                            failure=f"scan worker crashed ({worker.crash_reason()})",
                            kind=Failure.CRASH,
                        )
                elif time.monotonic() >= worker.deadline:
                    crashed = True
                    outcome = Outcome(
                        index=worker.index,
                        result=None,
                        failure=f"time limit of {timeout_s:g}s reached",
                        kind=Failure.TIMEOUT,
                    )
                if outcome is None:
                    continue
                if crashed:
                    worker.kill()
                    worker = start(items, fn, memory_mb, pool[:position] + pool[position + 1 :])
                    pool[position] = worker
                else:
                    worker.index = None
                on_outcome(outcome)
                if pending:
                    worker.assign(pending.popleft(), timeout_s)
    finally:
        for worker in pool:
            worker.kill()
