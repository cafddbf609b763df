"""The served guard's scheduling hints (guard/scheduling.py): the event loop's thread, where a
lone request's admission is committed, asks for the shortest CPU slice; the model's threads keep
the kernel's default; the model's call yields the CPU once while the admission commits. Each
test runs in threads of its own, so pytest's thread keeps its slice. The latency they buy is
measured in docs/benchmarks.md (bench/guard_latency.py); here, that they are in place."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from guard_support import contract, credit_rows, predict_scope, served_model, settings, training

from bastion.guard import app as guard_app
from bastion.guard import scheduling
from bastion.guard.app import create_app
from bastion.guard.auth import KeyStore


def _kernel_has_slices() -> bool:
    """Linux 6.12 added a SCHED_OTHER thread's own slice (sched_attr.sched_runtime)."""
    if platform.system() != "Linux" or scheduling.current_slice_ns() is None:
        return False
    major, minor = (int(part) for part in platform.release().split(".")[:2])
    return (major, minor) >= (6, 12)


needs_slices = pytest.mark.skipif(not _kernel_has_slices(), reason="Linux < 6.12: no slices")


def _in_thread(work: Any) -> Any:
    """`work()` in a new thread; what it returned (or raised)."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = work()
        except BaseException as exc:  # handed back to the test
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    if "error" in result:
        raise result["error"]
    return result["value"]


@needs_slices
def test_a_thread_asks_for_the_short_slice_and_gives_it_back() -> None:
    def work() -> tuple[int | None, ...]:
        assert scheduling.default_slice()  # this test's thread may have inherited a short one
        default = scheduling.current_slice_ns()
        assert scheduling.short_slice()
        short = scheduling.current_slice_ns()
        inherited: list[int | None] = []
        child = threading.Thread(target=lambda: inherited.append(scheduling.current_slice_ns()))
        child.start()
        child.join()
        assert scheduling.default_slice()
        return default, short, inherited[0], scheduling.current_slice_ns()

    default, short, inherited, back = _in_thread(work)
    assert short == scheduling.SHORT_SLICE_NS
    assert inherited == scheduling.SHORT_SLICE_NS  # why the model's pool resets its threads
    assert back == default != scheduling.SHORT_SLICE_NS


def test_where_the_kernel_has_no_slices_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another system, or a kernel that refuses the call: the thread is left as it was and the
    hints say so (False), nothing raised."""
    monkeypatch.setattr(scheduling.platform, "machine", lambda: "sparc64")
    assert scheduling.current_slice_ns() is None
    assert not scheduling.short_slice()
    assert not scheduling.default_slice()


@needs_slices
def test_a_thread_that_resets_its_scheduling_on_fork_keeps_that_and_gets_the_slice() -> None:
    """SCHED_RESET_ON_FORK (set by a launcher, or systemd's CPUSchedulingResetOnFork): clearing
    it needs CAP_SYS_NICE. Before, sched_setattr was sent with no flags: without the privilege
    the kernel refused it (no short slice); with it, the flag was silently cleared, changing
    how the thread's children are scheduled."""

    def work() -> tuple[bool, int | None, int]:
        assert scheduling.default_slice()
        os.sched_setscheduler(0, os.SCHED_OTHER | os.SCHED_RESET_ON_FORK, os.sched_param(0))
        return scheduling.short_slice(), scheduling.current_slice_ns(), os.sched_getscheduler(0)

    took, now, policy = _in_thread(work)
    assert took and now == scheduling.SHORT_SLICE_NS
    assert policy == os.SCHED_OTHER | os.SCHED_RESET_ON_FORK


def test_a_32_bit_process_makes_no_system_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 32-bit Python on a 64-bit kernel (an i386 or armhf image on an x86_64 or arm64 host):
    platform.machine() names the kernel's architecture, whose system call numbers are not the
    process's (314 is sync_file_range on i386, 274 mq_timedsend on 32-bit ARM). Nothing is
    called; the thread is left as it was."""
    monkeypatch.setattr(scheduling.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(scheduling, "_POINTER_BYTES", 4)
    monkeypatch.setattr(scheduling, "_libc", None)
    assert scheduling._calls()[0] is None
    assert scheduling.current_slice_ns() is None
    assert not scheduling.short_slice()


@pytest.mark.skipif(platform.system() != "Linux", reason="the C library is only opened on Linux")
@pytest.mark.parametrize("missing", ["library", "syscall"])
def test_a_c_library_that_cannot_be_called_leaves_the_thread_as_it_was(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    """A Python that cannot open its own C library (a static build: dlopen(NULL) fails) or
    whose C library has no syscall: the hints say False. Before, OSError or AttributeError
    went up from the served app's lifespan startup (and the model pool's initializer)."""

    class NoSyscall:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if missing == "library":
                raise OSError("dlopen(NULL): not a dynamic executable")

    monkeypatch.setattr(scheduling, "_libc", None)
    monkeypatch.setattr(scheduling, "_no_libc", False, raising=False)  # restored after
    monkeypatch.setattr(scheduling.ctypes, "CDLL", NoSyscall)
    monkeypatch.setattr(scheduling.platform, "machine", lambda: "x86_64")
    assert not scheduling.short_slice()
    assert not scheduling.default_slice()
    assert scheduling.current_slice_ns() is None


@needs_slices
def test_a_realtime_thread_is_left_alone() -> None:
    def work() -> tuple[bool, int]:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        except PermissionError:
            pytest.skip("no privilege for SCHED_FIFO here")
        try:
            return scheduling.short_slice(), os.sched_getscheduler(0)
        finally:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))

    took, policy = _in_thread(work)
    assert not took and policy == os.SCHED_FIFO


def _served(tmp_path: Path, requests: int, **server: Any) -> tuple[int | None, list[int]]:
    """`requests` predict requests to the served app (lifespan kept, `[server]` settings
    `server`), in a thread of its own that starts with the default slice: that thread's slice
    after the startup, and the statuses answered."""
    app = create_app(
        settings(tmp_path, server=server),
        model=served_model(),
        contract=contract(),
        training=training(),
    )
    store = KeyStore(tmp_path / "keys.sqlite3")
    key = store.create(["predict"], None)[0]
    store.close()
    body = json.dumps({"rows": credit_rows()[:3]}).encode()

    async def one() -> int:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(predict_scope(body, key), receive, send)
        (start,) = [m for m in sent if m["type"] == "http.response.start"]
        return int(start["status"])

    async def main() -> tuple[int | None, list[int]]:
        scheduling.default_slice()
        lifespan: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        said: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await lifespan.put({"type": "lifespan.startup"})
        life = asyncio.ensure_future(app({"type": "lifespan"}, lifespan.get, said.put))
        assert (await said.get())["type"] == "lifespan.startup.complete"
        loop_slice = scheduling.current_slice_ns()
        statuses = [await one() for _ in range(requests)]
        await lifespan.put({"type": "lifespan.shutdown"})
        assert (await said.get())["type"] == "lifespan.shutdown.complete"
        await life
        return loop_slice, statuses

    result: tuple[int | None, list[int]] = _in_thread(lambda: asyncio.run(main()))
    return result


def _counted_yields(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int | None]]:
    """The model's yields from now on: the yielding thread's name and slice."""
    yields: list[tuple[str, int | None]] = []
    real_yield = os.sched_yield

    def counted_yield() -> None:
        yields.append((threading.current_thread().name, scheduling.current_slice_ns()))
        real_yield()

    monkeypatch.setattr(guard_app.os, "sched_yield", counted_yield)
    return yields


def test_a_system_without_sched_yield_still_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.sched_yield is Unix only (the guard otherwise runs on Windows: its SIGHUP reload is
    skipped there). Before, the model's call raised AttributeError where it is missing, and
    every served request with an audit log was a 500."""
    monkeypatch.delattr(os, "sched_yield")
    assert _served(tmp_path, 2)[1] == [200, 200]


def test_the_served_model_yields_once_while_its_admission_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three requests: the loop's thread has the short slice after startup (where the kernel
    has slices), the model's thread the default, and each model call yielded once, in the
    model's thread, its admission committed and its answer a 200."""
    yields = _counted_yields(monkeypatch)
    loop_slice, statuses = _served(tmp_path, 3)
    assert statuses == [200, 200, 200]
    assert len(yields) == 3 and all(name.startswith("bastion-model") for name, _ in yields)
    if _kernel_has_slices():
        assert loop_slice == scheduling.SHORT_SLICE_NS
        assert all(s is not None and s != scheduling.SHORT_SLICE_NS for _, s in yields)
    with sqlite3.connect(tmp_path / "audit" / "audit-guard.sqlite3") as conn:
        events = [json.loads(r[0]) for r in conn.execute("SELECT event FROM events")]
    admissions = [e for e in events if "status" not in e]
    assert len(admissions) == 3


def test_with_the_hints_off_nothing_is_asked_of_the_scheduler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`[server] cpu_slice_hints = false` (a system call filter that kills on sched_setattr):
    the loop's thread keeps its slice and the model's call does not yield."""
    yields = _counted_yields(monkeypatch)
    calls: list[int] = []
    real = scheduling._set_slice
    monkeypatch.setattr(scheduling, "_set_slice", lambda ns: calls.append(ns) or real(ns))
    loop_slice, statuses = _served(tmp_path, 3, cpu_slice_hints=False)
    assert statuses == [200, 200, 200]
    assert yields == []
    assert scheduling.SHORT_SLICE_NS not in calls
    assert loop_slice != scheduling.SHORT_SLICE_NS


@pytest.mark.parametrize(
    ("name", "value"), [("cancel_grace_s", 61.0), ("max_abandoned", 1025), ("cancel_grace_s", 0)]
)
def test_the_abandonment_bounds_are_bounded(tmp_path: Path, name: str, value: float) -> None:
    """A huge grace or cap would give an app that ignores its cancellation the places it held
    before the abandonment existed."""
    with pytest.raises(Exception, match=name):
        settings(tmp_path, server={name: value})
