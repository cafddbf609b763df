"""Dashboard latency at scale: every page of `bastion ui` over the store bench/store_scale.py
writes (10,000 runs, 1,000,000 findings), served by uvicorn on 127.0.0.1, logged in with a
guard API key. Target (issue #12): every page renders server-side in at most 300 ms at p95.

    python bench/store_scale.py                     # once: bench/out/store_scale/history.sqlite3
    python bench/ui_latency.py [--store FILE] [-n 30] [--audit-events 20000]

For each page (the list pages, their filters singly and combined, a deep page reached by the
"older" cursor, a run and a finding, lineage around a model, trends over a year, the guard's
audit log of --audit-events events, each compliance framework): one warm-up request, then -n
measured ones. Reported per page: p50 and p95 of the server-side time (the Server-Timing
header the app sets around the whole view: queries and template) and p95 of the time the
client saw (HTTP on loopback included). The store is opened read-only, as the dashboard does;
the machine's load average is printed with the figures (it is shared)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "ui"))

TARGET_MS = 300.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _audit(folder: Path, events: int) -> Path:
    from audit_events import request_events

    from bastion.guard.audit import AuditLog, worker_log_path

    folder.mkdir(parents=True, exist_ok=True)

    async def write() -> None:
        log = AuditLog(worker_log_path(folder, "bench"))
        try:
            pending = []
            for event in request_events(
                events,
                dt.timedelta(seconds=30),
                flag_every=97,
                block_every=211,
                latency_ms=(2.0, 13),
            ):
                pending.append(log.append(event))
                if len(pending) >= 500:
                    await asyncio.gather(*pending)
                    pending = []
            await asyncio.gather(*pending)
        finally:
            log.close()

    asyncio.run(write())
    return folder


def pages(client: object, store: Path) -> dict[str, str]:
    """The URLs to time, with ids and cursors taken from the store."""
    import sqlite3

    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    busiest = db.execute("SELECT id FROM runs ORDER BY findings DESC LIMIT 1").fetchone()[0]
    finding = db.execute("SELECT MAX(id) / 2 FROM findings").fetchone()[0]
    model = db.execute(
        "SELECT downstream FROM links WHERE relation = 'trained-on' LIMIT 1"
    ).fetchone()[0]
    rule = db.execute(
        "SELECT rule_id FROM findings WHERE id > (SELECT MAX(id) - 1000 FROM findings) LIMIT 1"
    ).fetchone()[0]
    db.close()
    urls = {
        "overview": "/",
        "inventory models": "/inventory",
        "inventory datasets": "/inventory?kind=dataset",
        "runs": "/runs",
        "runs command=probe": "/runs?command=probe",
        "runs status=failed": "/runs?status=failed",
        "run (busiest)": f"/runs/{busiest}",
        "findings": "/findings",
        "findings severity>=high": "/findings?severity=high",
        "findings stage=data": "/findings?stage=data",
        f"findings rule={rule}": f"/findings?rule={rule}",
        "findings taxonomy=AML.T0010": "/findings?taxonomy=AML.T0010",
        "findings critical+deployment": "/findings?severity=critical&stage=deployment",
        "findings gate=failing": "/findings?gate=failing",
        "finding detail": f"/findings/{finding}",
        "trends 30 days": "/trends",
        "trends 365 days": "/trends?days=365",
        "lineage (a model)": f"/lineage?digest={model}",
        "guard": "/guard",
    }
    for key in ("eu-ai-act", "nist-ai-rmf", "owasp-ml", "owasp-llm", "atlas"):
        urls[f"compliance {key}"] = f"/compliance?framework={key}"
    # a deep page: follow "older" ten times on the findings list and the runs list
    for name, start in (("findings page 11", "/findings"), ("runs page 11", "/runs")):
        url = start
        for _ in range(10):
            text = client.get(url).text  # type: ignore[attr-defined]
            found = re.search(r'rel="next" class="next" href="\?([^"]+)"', text)
            if not found:
                break
            url = start + "?" + found[1].replace("&amp;", "&")
        urls[name] = url
    return urls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store", type=Path, default=ROOT / "bench" / "out" / "store_scale" / "history.sqlite3"
    )
    parser.add_argument("-n", type=int, default=30)
    parser.add_argument("--audit-events", type=int, default=20_000)
    args = parser.parse_args(argv)
    if not args.store.is_file():
        print(f"no store at {args.store}: run bench/store_scale.py first", file=sys.stderr)
        return 2

    import httpx
    import uvicorn

    from bastion.guard.auth import KeyStore
    from bastion.ui.app import create_app
    from bastion.ui.sessions import GuardKeys

    work = Path(tempfile.mkdtemp(prefix="bastion-ui-bench-"))
    keys = KeyStore(work / "keys.sqlite3")
    token, _ = keys.create(["audit:read"])
    audit = _audit(work / "audit", args.audit_events)
    started = time.perf_counter()
    app = create_app(args.store, GuardKeys(work / "keys.sqlite3"), audit=audit)
    print(f"app ready in {time.perf_counter() - started:.2f} s", file=sys.stderr)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    rows = []
    try:
        with httpx.Client(base_url=base, follow_redirects=False, timeout=60) as client:
            login = client.get("/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
            assert csrf is not None
            done = client.post(
                "/login", data={"csrf": csrf[1], "token": token}, headers={"origin": base}
            )
            assert done.status_code == 303, done.text
            for name, url in pages(client, args.store).items():
                client.get(url)  # warm-up
                server_ms, client_ms = [], []
                for _ in range(args.n):
                    began = time.perf_counter()
                    response = client.get(url)
                    client_ms.append((time.perf_counter() - began) * 1000)
                    assert response.status_code == 200, (url, response.status_code)
                    timing = response.headers["server-timing"]
                    server_ms.append(float(timing.split("dur=")[1]))
                cuts = statistics.quantiles(server_ms, n=20, method="inclusive")
                client_cuts = statistics.quantiles(client_ms, n=20, method="inclusive")
                rows.append(
                    (
                        name,
                        statistics.median(server_ms),
                        cuts[18],
                        client_cuts[18],
                        len(response.text),
                    )
                )
                print(f"  {name}: p95 {cuts[18]:.1f} ms", file=sys.stderr)
    finally:
        server.should_exit = True
        thread.join(10)
    load = os.getloadavg()
    print(
        f"\nstore {args.store} ({args.store.stat().st_size / 1e6:,.0f} MB); {args.n} requests "
        f"per page after one warm-up; audit log {args.audit_events:,} events; load average "
        f"{load[0]:.1f} on {os.cpu_count()} cores\n"
    )
    print("| page | server p50 ms | server p95 ms | client p95 ms | ≤ 300 ms p95 |")
    print("|---|---:|---:|---:|---|")
    for name, p50, p95, client95, _size in rows:
        ok = "yes" if p95 <= TARGET_MS else "**no**"
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {client95:.1f} | {ok} |")
    worst = max(rows, key=lambda r: r[2])
    print(f"\nworst server p95: {worst[2]:.1f} ms ({worst[0]})")
    return 0 if worst[2] <= TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
