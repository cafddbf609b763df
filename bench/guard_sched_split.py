"""Where a served request's CPU goes, thread by thread, from a scheduler trace of the latency
benchmark's servers (docs/benchmarks.md, "the durable log's own floor on one core").

Record the servers' core while bench/guard_latency.py runs, then turn the trace into text:

    perf record -q -C 1 -o sched.data -e sched:sched_switch,sched:sched_wakeup \\
        -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_write -- \\
        chrt -f 10 .venv/bin/python bench/guard_latency.py --interleave --setups guard \\
        --access 0 --throughput-seconds 0 --rate 15 --seconds 5 --rounds 2 --cores 1 \\
        --servers-normal
    perf script -i sched.data -F comm,tid,time,event,trace > sched.txt
    python bench/guard_sched_split.py sched.txt --loop TID --model TID

`--loop` is a server's event-loop thread (uvicorn runs it in the process's main thread: its
thread id is the process id) and `--model` its model thread (the one the loop wakes to
predict; in the trace, the thread the loop wakes right before it commits or waits). A request
runs from the loop's wake-up of the model thread to the loop's second write to one file (the
answer's head, then its body, on the client's socket); in between, each thread's time on the
core is summed. Printed: the requests found, the median time from the model's wake-up to the
answer's body, to the loop's fdatasync (the admission's commit, if any), and each thread's
median time on the core (kworker threads are the block layer's)."""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

_LINE = re.compile(
    r"\s*(?P<comm>\S.*?)\s+(?P<tid>\d+)\s+(?P<time>[\d.]+):\s+(?P<event>\S+):\s*(?P<rest>.*)"
)
_NEXT = re.compile(r"next_comm=(?P<comm>.+?) next_pid=(?P<tid>\d+)")
_WOKEN = re.compile(r"pid=(?P<tid>\d+)")
_FD = re.compile(r"fd: (?P<fd>0x[0-9a-f]+)")


@dataclass
class Request:
    start: float
    on_core: dict[str, float] = field(default_factory=dict)
    fsync: float | None = None
    answered: float | None = None
    writes: dict[str, int] = field(default_factory=dict)


def split(lines: list[str], loop: str, model: str) -> list[Request]:
    """The requests of the trace (text of `perf script -F comm,tid,time,event,trace`)."""
    done: list[Request] = []
    request: Request | None = None
    running: tuple[str, float] | None = None  # (thread shown as "comm[tid]", since)
    for line in lines:
        match = _LINE.match(line)
        if match is None:
            continue
        tid, at, event, rest = match["tid"], float(match["time"]), match["event"], match["rest"]
        if event == "sched:sched_switch":
            after = _NEXT.search(rest)
            if after is None:
                continue
            if request is not None and running is not None:
                name, since = running
                request.on_core[name] = request.on_core.get(name, 0.0) + at - since
            running = (f"{after['comm']}[{after['tid']}]", at)
        elif event == "sched:sched_wakeup" and tid == loop and request is None:
            woken = _WOKEN.search(rest)
            if woken is not None and woken["tid"] == model:
                request = Request(start=at)
                running = (f"{match['comm']}[{tid}]", at)
        elif request is not None and tid == loop and event.endswith("enter_fdatasync"):
            if request.fsync is None:
                request.fsync = at - request.start
        elif request is not None and tid == loop and event.endswith("enter_write"):
            fd = _FD.search(rest)
            if fd is not None:
                request.writes[fd["fd"]] = request.writes.get(fd["fd"], 0) + 1
                if request.writes[fd["fd"]] == 2:  # the answer's body, after its head
                    if running is not None:
                        name, since = running
                        request.on_core[name] = request.on_core.get(name, 0.0) + at - since
                    request.answered = at - request.start
                    done.append(request)
                    request, running = None, None
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("trace", type=Path, help="the text of `perf script` (see above)")
    parser.add_argument("--loop", required=True, help="the event loop's thread id")
    parser.add_argument("--model", required=True, help="the model's thread id")
    args = parser.parse_args(argv)
    try:
        lines = args.trace.read_text(errors="replace").splitlines()
    except OSError as exc:
        parser.error(f"cannot read {args.trace}: {exc.strerror}")
    requests = split(lines, args.loop, args.model)
    if not requests:
        print("no request found: check the thread ids and the recorded events", file=sys.stderr)
        return 1

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1e3:.3f} ms" if values else "-"

    print(f"{len(requests)} requests")
    print(f"model woken -> answer's body written: {ms([r.answered or 0.0 for r in requests])}")
    print(f"model woken -> loop enters fdatasync: {ms([r.fsync for r in requests if r.fsync])}")
    names = {name for r in requests for name in r.on_core}
    total = {name: sum(r.on_core.get(name, 0.0) for r in requests) for name in names}
    for name in sorted(names, key=lambda n: -total[n]):
        median = statistics.median(r.on_core.get(name, 0.0) for r in requests)
        if median > 0:
            print(f"on the core, median per request: {name:<32} {median * 1e3:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
