"""Run work items in isolated worker processes with a wall-time and memory bound per item.

Workers are forked once and reused; an item that overruns its time is killed with its worker
(which is replaced), an item whose worker dies is reported as failed, and results come back as
JSON text — never as pickles, since the worker has been reading hostile input."""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass
class Outcome:
    index: int
    result: str | None  # JSON text produced by the work function
    failure: str | None  # why there is no result (time limit, crash)


def _vm_size() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _worker_main(conn: Connection, items: Sequence[Any], fn: Callable[[Any], str],
                 memory_mb: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    budget = _vm_size() + memory_mb * 1024 * 1024
    try:
        resource.setrlimit(resource.RLIMIT_AS, (budget, budget))
    except (ValueError, OSError):
        pass
    while True:
        try:
            index = int(conn.recv_bytes().decode())
        except (EOFError, OSError):
            return
        if index < 0:
            return
        try:
            status, payload = "OK", fn(items[index])
        except MemoryError:
            status, payload = "FAIL", "ran out of memory"
        except Exception as exc:  # reported as a failure of this item, the worker lives on
            status, payload = "FAIL", f"{type(exc).__name__}: {exc}"
        conn.send_bytes(f"{index}\n{status}\n{payload}".encode())


class _Worker(Generic[T]):
    def __init__(self, ctx: Any, items: Sequence[T], fn: Callable[[T], str],
                 memory_mb: int) -> None:
        parent, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, items, fn, memory_mb),
                                   daemon=True)
        self.process.start()
        child.close()
        self.conn: Connection = parent
        self.index: int | None = None
        self.deadline = 0.0

    def assign(self, index: int, timeout_s: float) -> None:
        self.index = index
        self.deadline = time.monotonic() + timeout_s
        self.conn.send_bytes(str(index).encode())

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send_bytes(b"-1")
        except OSError:
            pass
        self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(2)
        self.conn.close()


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
    if "fork" not in multiprocessing.get_all_start_methods():  # pragma: no cover - non-POSIX
        for index, item in enumerate(items):
            on_outcome(Outcome(index, fn(item), None))
        return
    ctx = multiprocessing.get_context("fork")
    pending = deque(range(len(items)))
    pool: list[_Worker[T]] = [_Worker(ctx, items, fn, memory_mb)
                              for _ in range(min(workers, len(items)))]
    try:
        for worker in pool:
            if pending:
                worker.assign(pending.popleft(), timeout_s)
        while any(w.index is not None for w in pool):
            busy = [w for w in pool if w.index is not None]
            now = time.monotonic()
            timeout = max(0.0, min(w.deadline for w in busy) - now)
            ready = wait([w.conn for w in busy], timeout=timeout)
            for position, worker in enumerate(list(pool)):
                if worker.index is None:
                    continue
                outcome: Outcome | None = None
                if worker.conn in ready:
                    try:
                        text = worker.conn.recv_bytes().decode()
                        head, status, payload = text.split("\n", 2)
                        outcome = (Outcome(int(head), payload, None) if status == "OK"
                                   else Outcome(int(head), None, payload))
                    except (EOFError, OSError, ValueError):
                        worker.process.join(1)
                        code = worker.process.exitcode
                        reason = (f"killed by signal {-code}" if code and code < 0
                                  else f"exited with status {code}")
                        outcome = Outcome(worker.index, None, f"scan worker crashed ({reason})")
                elif time.monotonic() >= worker.deadline:
                    outcome = Outcome(worker.index, None,
                                      f"time limit of {timeout_s:g}s reached")
                if outcome is None:
                    continue
                if worker.process.is_alive() and worker.conn in ready and not \
                        (outcome.failure or "").startswith("scan worker crashed"):
                    worker.index = None
                else:
                    worker.kill()
                    worker = _Worker(ctx, items, fn, memory_mb)
                    pool[position] = worker
                on_outcome(outcome)
                if pending:
                    worker.assign(pending.popleft(), timeout_s)
    finally:
        for worker in pool:
            if worker.index is not None:
                worker.kill()
            else:
                worker.stop()
