"""Added latency of the runtime guard: the example credit model (20 features) served raw and
served behind the full pipeline (API key, limits, contract, personal-data screen, OOD, query
monitor, output hardening, durable group-commit audit), same model, same run, same server
(uvicorn, one worker process each, pinned to the given cores), at a fixed open-loop rate on
loopback. Also: the proxy mode's overhead (the guard in front of the raw server), and access
control (generated bad credentials: none may be served).

    python bench/guard_latency.py [--rate 200] [--seconds 10] [--cores 0]

Prints p50/p90/p99 per setup and the added latency (medians of --repeats runs)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "guard"))


def _raw_app() -> Any:
    """The model behind a bare ASGI app: what serving without the guard costs."""
    import anyio.to_thread
    import msgspec
    from guard_support import served_model

    model = served_model()
    decoder = msgspec.json.Decoder()
    encoder = msgspec.json.Encoder()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] != "/v1/predict":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        rows = decoder.decode(body)["rows"]
        labels, _scores = await anyio.to_thread.run_sync(model.predict, rows, True)
        answer = encoder.encode({"predictions": [{"label": label} for label in labels]})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    return app


def serve(kind: str, port: int, folder: Path, upstream: str) -> None:
    import uvicorn
    from guard_support import contract, served_model, settings, training

    from bastion.guard.app import create_app

    big = {
        "ip_rate": 1e6,
        "ip_burst": 10**6,
        "key_rate": 1e6,
        "key_burst": 10**6,
        "daily_rows": 10**9,
        "max_in_flight": 10_000,
    }
    if kind == "raw":
        app = _raw_app()
    elif kind == "guard":
        app = create_app(
            settings(folder, limits=big),
            model=served_model(),
            contract=contract(),
            training=training(),
        )
    else:
        app = create_app(
            settings(folder, limits=big, proxy={"upstream": upstream}, server={"worker": kind}),
            contract=contract(),
            training=training(),
        )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", lifespan="on")


def _start(
    kind: str, port: int, folder: Path, cores: str, upstream: str = ""
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        __file__,
        "--serve",
        kind,
        "--port",
        str(port),
        "--folder",
        str(folder),
        "--upstream",
        upstream,
    ]
    if cores and hasattr(os, "sched_setaffinity"):
        command = ["taskset", "-c", cores, *command]
    process = subprocess.Popen(command)
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{kind} server did not start")


async def _open_loop(
    url: str, key: str, rows: list[dict[str, Any]], rate: float, seconds: float
) -> tuple[list[float], int, float]:
    """Requests sent at fixed times (not when the previous answer came back): latencies in ms,
    failures, achieved answers per second."""
    import httpx

    latencies: list[float] = []
    failures = 0
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    bodies = [json.dumps({"rows": [row]}).encode() for row in rows]
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        for body in bodies[:20]:  # warm-up
            await client.post(url, content=body, headers=headers)

        async def one(body: bytes) -> None:
            nonlocal failures
            started = time.perf_counter()
            response = await client.post(url, content=body, headers=headers)
            if response.status_code != 200:
                failures += 1
            latencies.append((time.perf_counter() - started) * 1000)

        tasks = []
        begin = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(bodies[i % len(bodies)])))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - begin
    return latencies, failures, len(latencies) / elapsed


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _access_control(url: str, store: Any, good: str, n: int) -> tuple[int, int]:
    """n requests with missing, malformed, expired, revoked and wrong-scope credentials:
    (sent, served with a 2xx)."""
    import datetime as dt

    import httpx

    revoked, info = store.create(["predict"])
    store.revoke(info.id)
    expired, _ = store.create(
        ["predict"], expires=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
    )
    wrong_scope, _ = store.create(["score"])
    audit_only, _ = store.create(["audit:read"])
    await asyncio.sleep(1.2)
    rng = random.Random(0)
    _, key_id, secret = good.split("_", 2)

    def bad() -> dict[str, str]:
        choice = rng.randrange(9)
        if choice == 0:
            return {}
        if choice == 1:
            return {"Authorization": "Bearer " + "".join(rng.choice("abc_-01") for _ in range(60))}
        if choice == 2:
            flipped = list(secret)
            i = rng.randrange(len(flipped))
            flipped[i] = "A" if flipped[i] != "A" else "B"
            return {"Authorization": f"Bearer bst_{key_id}_{''.join(flipped)}"}
        if choice == 3:
            return {"Authorization": f"Bearer {expired}"}
        if choice == 4:
            return {"Authorization": f"Bearer {revoked}"}
        if choice == 5:
            return {"Authorization": f"Bearer {wrong_scope}"}
        if choice == 6:
            return {"Authorization": f"Bearer {audit_only}"}
        if choice == 7:
            return {"Authorization": f"Basic {good}"}
        return {"Authorization": f"Bearer bst_{rng.getrandbits(48):012x}_{secret}"}

    served = 0
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(n):
            response = await client.post(url, json={"rows": []}, headers=bad())
            served += response.status_code < 300
    return n, served


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", choices=("raw", "guard", "proxy"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--upstream", default="")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", default="0", help="taskset core list for each server")
    parser.add_argument("--access", type=int, default=2000)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.folder, args.upstream)
        return 0
    from guard_support import credit_rows, free_port

    from bastion.guard.auth import KeyStore

    rows = credit_rows()
    results: dict[str, list[dict[str, float]]] = {"raw": [], "guard": [], "proxy": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = KeyStore(folder / "keys.sqlite3")
        key, _ = store.create(["predict", "score"])
        ports = {name: free_port() for name in results}
        servers = {"raw": _start("raw", ports["raw"], folder / "raw", args.cores)}
        upstream = f"http://127.0.0.1:{ports['raw']}"
        servers["guard"] = _start("guard", ports["guard"], folder, args.cores)
        servers["proxy"] = _start("proxy", ports["proxy"], folder, args.cores, upstream)
        try:
            for _ in range(args.repeats):
                for name, port in ports.items():
                    latencies, failures, achieved = asyncio.run(
                        _open_loop(
                            f"http://127.0.0.1:{port}/v1/predict",
                            key,
                            rows,
                            args.rate,
                            args.seconds,
                        )
                    )
                    results[name].append(
                        {
                            "p50": _pct(latencies, 0.5),
                            "p90": _pct(latencies, 0.9),
                            "p99": _pct(latencies, 0.99),
                            "rps": achieved,
                            "failures": failures,
                        }
                    )
            sent, served = asyncio.run(
                _access_control(
                    f"http://127.0.0.1:{ports['guard']}/v1/predict", store, key, args.access
                )
            )
        finally:
            for process in servers.values():
                process.terminate()
                process.wait(timeout=30)
    summary: dict[str, dict[str, float]] = {}
    for name, runs in results.items():
        summary[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        s = summary[name]
        print(
            f"{name:6} p50 {s['p50']:.3f} ms  p90 {s['p90']:.3f} ms  p99 {s['p99']:.3f} ms  "
            f"{s['rps']:.0f} req/s  failures {s['failures']:.0f}"
        )
    for name in ("guard", "proxy"):
        added = {q: summary[name][q] - summary["raw"][q] for q in ("p50", "p90", "p99")}
        print(
            f"added by {name}: p50 {added['p50']:.3f} ms  p90 {added['p90']:.3f} ms  "
            f"p99 {added['p99']:.3f} ms"
        )
    print(f"access control: {sent} bad-credential requests, {served} served")
    return 0 if served == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
