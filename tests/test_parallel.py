"""Isolation for every caller (issue #8 item 3): the fork path for the one-shot CLI and a spawn
path for threaded callers (servers, notebooks), with the same time and memory bounds, failures
classified by type, and no worker left behind. The work functions are module-level so that a
spawned interpreter can import them by name."""

from __future__ import annotations

import os
import pickle
import threading
import time
from pathlib import Path

import pytest

from bastion.config import Limits, Settings
from bastion.findings import Report
from bastion.parallel import Failure, Method, Outcome, choose_method, run_isolated
from bastion.policy import evaluate
from bastion.scan.engine import run_scan

EVIL = b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00echo\x85R."


def work(item: int) -> str:
    if item == 1:
        time.sleep(30)
    if item == 2:
        os._exit(3)
    if item == 3:
        raise ValueError("time limit and memory are only words here")
    if item == 4:
        return str(len(bytearray(1024 * 1024 * 1024)))  # 1 GiB over a 256 MiB budget
    return f'"done {item}"'


def run(items: list[int], method: Method, workers: int = 2) -> dict[int, Outcome]:
    outcomes: list[Outcome] = []
    run_isolated(
        items,
        work,
        workers=workers,
        timeout_s=3.0,
        memory_mb=256,
        on_outcome=outcomes.append,
        method=method,
    )
    return {o.index: o for o in outcomes}


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_every_failure_has_its_type_whatever_the_message_says(method: Method) -> None:
    started = time.monotonic()
    by_index = run([0, 1, 2, 3, 4, 5], method)
    assert time.monotonic() - started < 30
    assert by_index[0].result == '"done 0"' and by_index[5].result == '"done 5"'
    assert by_index[1].kind is Failure.TIMEOUT
    assert by_index[2].kind is Failure.CRASH
    assert by_index[3].kind is Failure.ERROR  # its message mentions "time limit" and "memory"
    assert by_index[4].kind is Failure.MEMORY
    assert all(o.result is None for i, o in by_index.items() if i in (1, 2, 3, 4))
    with pytest.raises(ChildProcessError):  # every worker was reaped
        os.waitpid(-1, os.WNOHANG)


def test_a_worker_error_whose_message_names_a_bound_is_still_an_error(tmp_path: Path) -> None:
    from bastion.runs import run_targets

    results = run_targets(
        [3], lambda i: (f"item{i}", None), work, Settings(workers=1, limits=Limits(timeout_s=5))
    )
    assert results[0].errors and not results[0].findings  # an error (exit 2), not LIM001


def test_auto_forks_when_single_threaded_and_spawns_beside_other_threads() -> None:
    assert choose_method("auto") == "fork"
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert choose_method("auto") == "spawn"
        assert choose_method("fork") == "fork"
    finally:
        stop.set()
        thread.join()


def test_a_threaded_caller_gets_the_same_report_as_the_cli(tmp_path: Path) -> None:
    (tmp_path / "evil.pkl").write_bytes(EVIL)
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    settings = Settings(workers=2)
    forked = run_scan([tmp_path], settings)
    spawned: list[Report] = []
    thread = threading.Thread(target=lambda: spawned.append(run_scan([tmp_path], settings)))
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)  # a server's other threads
    other.start()
    try:
        assert choose_method() == "spawn"
        thread.start()
        thread.join(120)
    finally:
        stop.set()
        other.join()
    (report,) = spawned

    def rules(of: Report) -> list[tuple[str, list[str]]]:
        return [(r.path, [f.rule_id for f in r.findings]) for r in of.results]

    assert rules(report) == rules(forked)
    assert evaluate(report, settings).exit_code == 1


def test_without_memory_limits_isolation_refuses_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion.errors import BastionError

    monkeypatch.setitem(__import__("sys").modules, "resource", None)  # as on Windows
    with pytest.raises(BastionError, match="RLIMIT_AS"):
        run([0], "spawn")
