"""bench/guard_sched_split.py: the per-thread split of a served request's time on the core,
read from `perf script` text (docs/benchmarks.md quotes its figures)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from guard_sched_split import main, split

LOOP, MODEL, DISK = "100", "101", "46"


def _switch(tid: str, at: float, to_comm: str, to_tid: str) -> str:
    return (
        f"          python {tid} {at:.6f}:            sched:sched_switch: prev_comm=python "
        f"prev_pid={tid} prev_prio=120 prev_state=S ==> next_comm={to_comm} next_pid={to_tid} "
        "next_prio=120"
    )


def _wake(tid: str, at: float, woken: str) -> str:
    return (
        f"          python {tid} {at:.6f}:            sched:sched_wakeup: comm=python "
        f"pid={woken} prio=120 target_cpu=001"
    )


def _syscall(tid: str, at: float, name: str, fd: str) -> str:
    return f"          python {tid} {at:.6f}:  syscalls:sys_enter_{name}: fd: {fd}"


def _request(t: float) -> list[str]:
    """The loop wakes the model (t), commits (fdatasync at +0.1 ms), the model runs 3 ms with
    the disk's worker 0.05 ms inside, the loop writes the answer's head and body."""
    return [
        "a line perf did not write",
        _wake(LOOP, t, MODEL),
        _syscall(LOOP, t + 0.0001, "fdatasync", "0x00000007"),
        _switch(LOOP, t + 0.0002, "python", MODEL),
        _switch(MODEL, t + 0.0012, "kworker/1:1H", DISK),
        _switch(DISK, t + 0.00125, "python", MODEL),
        _syscall(MODEL, t + 0.0020, "write", "0x0000000f"),  # not the loop's: not counted
        _switch(MODEL, t + 0.0032, "python", LOOP),
        _syscall(LOOP, t + 0.0033, "write", "0x00000014"),  # the answer's head
        _syscall(LOOP, t + 0.0034, "write", "0x00000014"),  # its body: the request ends
        _switch(LOOP, t + 0.0035, "swapper/1", "0"),
    ]


def test_split_sums_each_thread_s_time_on_the_core_per_request() -> None:
    lines = _request(10.0) + _request(10.1) + [_wake(LOOP, 10.2, "999")]  # not the model
    requests = split(lines, LOOP, MODEL)
    assert len(requests) == 2
    for request in requests:
        assert request.fsync == pytest.approx(0.0001)
        assert request.answered == pytest.approx(0.0034)
        on_core = request.on_core
        assert on_core[f"python[{LOOP}]"] == pytest.approx(0.0002 + 0.0002)
        assert on_core[f"python[{MODEL}]"] == pytest.approx(0.0010 + 0.00195)
        assert on_core[f"kworker/1:1H[{DISK}]"] == pytest.approx(0.00005)
        assert sum(on_core.values()) == pytest.approx(request.answered)


def test_main_prints_the_medians_and_refuses_a_trace_without_requests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "sched.txt"
    trace.write_text("\n".join(_request(10.0) + _request(10.1)))
    assert main([str(trace), "--loop", LOOP, "--model", MODEL]) == 0
    out = capsys.readouterr().out
    assert "2 requests" in out and "3.400 ms" in out and "0.100 ms" in out
    assert main([str(trace), "--loop", MODEL, "--model", LOOP]) == 1  # threads swapped
    assert "no request found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "missing.txt"), "--loop", LOOP, "--model", MODEL])
    assert exit_.value.code == 2
