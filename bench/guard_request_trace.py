"""Where one guarded request's time goes, in process (no HTTP): the guard's ASGI app called
directly, one request at a time with a pause between, and the moments of each step marked
from the request's start (median over the requests, in ms):

- `admission_start` / `admission_end`: the AdmissionEvent's commit in the event loop's thread
  (`AuditLog.append_here`; `in place` counts the requests it committed itself);
- `model_start` / `model_end`: the served model's predict, in the model's thread;
- `answer`: the answer's body handed to the server.

With the durable audit (`--audit fsync`) the admission's commit should end before the model
does, on any number of cores: its fsync runs while the model computes. Run it pinned and under
the scheduler you want to look at, e.g.

    taskset -c 0 .venv/bin/python bench/guard_request_trace.py --audit fsync
    taskset -c 0 chrt -f 10 .venv/bin/python bench/guard_request_trace.py --audit fsync

Under SCHED_FIFO on one core the model's thread keeps the core until it finishes, and the
fsync's completion (kernel work at normal priority) waits for it: the commit then ends after the
model (docs/benchmarks.md, runtime guard latency). `--audit nosync` puts the log on tmpfs (NOT
durable: fsync returns at once), `--audit process` is `durability = "process"`.

`--raw` sends each body also to the model served bare (bench/guard_latency.py's raw app), after
the same pause, and reports what the guard adds outside the model: before the model starts and
after it ends (the model's own time varies by more than the guard costs).

`--steps` also times each step of the pipeline on its own (median per request, in µs): the
API key's check, the limits, reading and parsing the body, the personal-data screen, the
contract, the OOD score, the admission event and its commit, the metrics. Compare a pause
between requests (`--gap-ms 20`, as at the latency benchmark's rates) with none (`--gap-ms
0`): a step's code and data leave the CPU's caches while other work runs, and a request that
comes after a pause pays for fetching them again."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "guard"))
sys.path.insert(0, str(ROOT / "bench"))

from guard_latency import NO_LIMITS, raw_app  # noqa: E402
from guard_support import predict_scope  # noqa: E402

MARKS = ("admission_start", "model_start", "admission_end", "model_end", "answer")


class _Traced:
    """The served model, its predict marked."""

    def __init__(self, inner: Any, marks: dict[str, float]) -> None:
        self.inner, self.marks = inner, marks
        self.digest, self.classes, self.has_scores = inner.digest, inner.classes, inner.has_scores

    def predict(self, rows: Any, scores: bool) -> Any:
        self.marks["model_start"] = time.perf_counter()
        try:
            return self.inner.predict(rows, scores)
        finally:
            self.marks["model_end"] = time.perf_counter()


async def _run(
    app: Any, raw: Any, key: str, bodies: list[bytes], requests: int, gap: float
) -> list[dict[str, float]]:
    """The guard's requests, each followed by the same body sent to `raw` (when given) after
    the same pause; the raw app's marks."""
    apps = [app] if raw is None else [app, raw]
    queues: list[asyncio.Queue[dict[str, Any]]] = []
    tasks = []
    for one in apps:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        started = asyncio.Event()

        async def lifespan_send(message: dict[str, Any], started: asyncio.Event = started) -> None:
            started.set()

        await queue.put({"type": "lifespan.startup"})
        tasks.append(asyncio.create_task(one({"type": "lifespan"}, queue.get, lifespan_send)))
        await started.wait()
        queues.append(queue)
    raw_marks: list[dict[str, float]] = []
    try:
        for i in range(requests):
            body = bodies[i % len(bodies)]
            await _one(app, key, body)
            await asyncio.sleep(gap)
            if raw is not None:
                raw_marks.append(await _one_raw(raw, body))
                await asyncio.sleep(gap)
    finally:
        for queue in queues:
            await queue.put({"type": "lifespan.shutdown"})
        await asyncio.gather(*tasks)
    return raw_marks


async def _one_raw(app: Any, body: bytes) -> dict[str, float]:
    """One request to the bare app: its marks (the model's start and end, the answer)."""
    marks = app.bench_marks

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            marks.setdefault("answer", time.perf_counter())

    marks.clear()
    marks["start"] = time.perf_counter()
    await app(predict_scope(body, ""), receive, send)
    return dict(marks)


async def _one(app: Any, key: str, body: bytes) -> None:
    marks = app.bench_marks
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
        elif message["type"] == "http.response.body":
            marks.setdefault("answer", time.perf_counter())

    marks.clear()
    marks["start"] = time.perf_counter()
    await app(predict_scope(body, key), receive, send)
    if statuses != [200]:
        raise SystemExit(f"the guard answered {statuses}")
    app.bench_trace.append(dict(marks))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audit", choices=("fsync", "nosync", "process"), default="fsync")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=20.0, help="pause between requests")
    parser.add_argument("--json", type=Path, help="write the medians here")
    parser.add_argument("--steps", action="store_true", help="time each pipeline step too")
    parser.add_argument(
        "--raw",
        action="store_true",
        help="after each guarded request, send the same body to the model served bare "
        "(bench/guard_latency.py's raw app), and report the difference of the answer times",
    )
    args = parser.parse_args()
    from guard_support import contract, credit_rows, served_model, settings, training

    from bastion.guard.app import create_app
    from bastion.guard.auth import KeyStore

    folder = Path(tempfile.mkdtemp(dir="/dev/shm" if args.audit == "nosync" else ROOT / "bench"))
    try:
        big = NO_LIMITS
        audit: dict[str, Any] = {"path": str(folder / "audit")}
        if args.audit == "process":
            audit["durability"] = "process"
        marks: dict[str, float] = {}
        app = create_app(
            settings(folder, limits=big, audit=audit),
            model=_Traced(served_model(), marks),
            contract=contract(),
            training=training(),
        )
        log = app.guard.audit
        commit_here = log.append_here
        in_place = 0

        def traced_append_here(event: Any) -> int | None:
            nonlocal in_place
            marks["admission_start"] = time.perf_counter()
            try:
                seq = commit_here(event)
                in_place += seq is not None
                return seq
            finally:
                marks["admission_end"] = time.perf_counter()

        log.append_here = traced_append_here  # type: ignore[method-assign]
        steps = _time_steps(app) if args.steps else {}
        app.bench_marks, app.bench_trace = marks, []  # type: ignore[attr-defined]
        key, _ = KeyStore(folder / "keys.sqlite3").create(["predict"])
        bodies = [json.dumps({"rows": [row]}).encode() for row in credit_rows()]
        raw = None
        if args.raw:
            raw_model_marks: dict[str, float] = {}
            raw = raw_app(_Traced(served_model(), raw_model_marks))
            raw.bench_marks = raw_model_marks
        raw_trace = asyncio.run(
            _run(app, raw, key, bodies, args.warmup + args.requests, args.gap_ms / 1000)
        )[args.warmup :]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    trace = app.bench_trace[args.warmup :]  # type: ignore[attr-defined]
    medians = {
        name: statistics.median((t[name] - t["start"]) * 1000 for t in trace if name in t)
        for name in MARKS
        if any(name in t for t in trace)
    }
    after = [
        (t["admission_end"] - t["model_end"]) * 1000
        for t in trace
        if "admission_end" in t and "model_end" in t
    ]
    print(f"audit {args.audit}, {len(trace)} requests, admissions committed in place: {in_place}")
    print("  ".join(f"{name} {value:.3f}" for name, value in medians.items()) + "  (ms, median)")
    if raw_trace:
        # the model's own time varies by more than the guard costs: what the guard adds is
        # compared outside it, before the model starts and after it ends
        for name, runs in (("guard", trace), ("bare", raw_trace)):
            medians[f"{name}_before_model"] = statistics.median(
                (t["model_start"] - t["start"]) * 1000 for t in runs
            )
            medians[f"{name}_after_model"] = statistics.median(
                (t["answer"] - t["model_end"]) * 1000 for t in runs
            )
        added = {
            when: medians[f"guard_{when}_model"] - medians[f"bare_{when}_model"]
            for when in ("before", "after")
        }
        print(
            "outside the model (ms, median): guard {:.3f} before + {:.3f} after, bare {:.3f} + "
            "{:.3f}: the guard adds {:.3f} + {:.3f} = {:.3f} ms".format(
                medians["guard_before_model"],
                medians["guard_after_model"],
                medians["bare_before_model"],
                medians["bare_after_model"],
                added["before"],
                added["after"],
                added["before"] + added["after"],
            )
        )
    if after:
        print(f"admission commit ends {statistics.median(after):+.3f} ms after the model (median)")
    step_us = {
        name: statistics.median(times[args.warmup :]) * 1e6
        for name, times in steps.items()
        if len(times) > args.warmup
    }
    if step_us:
        line = "  ".join(f"{name} {value:.1f}" for name, value in step_us.items())
        print(line + "  (µs, median)")
    if args.json:
        document = {"audit": args.audit, "median_ms": medians, "step_median_us": step_us}
        args.json.write_text(json.dumps(document, indent=2))
    return 0


def _time_steps(app: Any) -> dict[str, list[float]]:
    """Wrap the pipeline's steps with timers: seconds per call, by step, in call order."""
    import bastion.guard.http as guard_http

    times: dict[str, list[float]] = {}
    guard = app.guard

    def wrap(owner: Any, attribute: str, name: str) -> None:
        inner = getattr(owner, attribute)
        spent = times.setdefault(name, [])
        if asyncio.iscoroutinefunction(inner):

            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await inner(*args, **kwargs)
                finally:
                    spent.append(time.perf_counter() - started)

            setattr(owner, attribute, timed_async)
        else:

            def timed(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return inner(*args, **kwargs)
                finally:
                    spent.append(time.perf_counter() - started)

            setattr(owner, attribute, timed)

    wrap(guard.authenticator, "authenticate", "auth")
    wrap(guard.limiter, "spend", "budget")
    wrap(guard_http, "read_body", "read_body")
    wrap(guard_http, "parse_rows", "parse")
    for step in ("_screen_rows", "_contract", "_ood", "_admit"):
        wrap(app, step, step.lstrip("_"))
    wrap(guard.audit, "append_here", "admission_commit")
    wrap(guard.metrics, "observe", "metrics")
    return times


if __name__ == "__main__":
    raise SystemExit(main())
