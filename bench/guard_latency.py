"""Added latency of the runtime guard: the example credit model (20 features) served raw and
served behind the full pipeline (API key, limits, contract, personal-data screen, OOD, query
monitor, output hardening, durable group-commit audit), same model, same run, each server one
uvicorn worker process pinned with taskset, at a fixed open-loop rate on loopback. The setups
are measured in interleaved segments (raw, guard, proxy, raw, guard, ...; the order rotated
every round) so that the shared machine's load falls on all of them alike, and each figure is
the median over the rounds. Also:

- `guard`: the audit at `[audit] durability = "fsync"` (the default) on the disk: a request is
  answered once its group commit is fsynced;
- `guard-process`: `[audit] durability = "process"` on the same disk: the event is committed to
  the OS (survives kill -9 of the guard, not a power cut) in the request's own thread;
- `guard-nosync`: the fsync pipeline with its audit log on tmpfs (/dev/shm), where fsync returns
  at once: NOT durable, measured only to separate the pipeline's own cost from the disk's
  fsync latency, which is printed too (the group commit waits for one fsync per batch);
- `raw-durable`: the raw app plus the guard's durable audit commit and nothing else: each
  prediction's admission-like event appended with `AuditLog.append_here` (the guard's in-place
  fsync commit, on the disk) while the model computes, with the guard's scheduling hints. Its
  added latency is the floor any guard with this durable log pays on the machine, whatever
  its pipeline costs;
- `raw-direct`: the same, but each event is one synchronous write (O_DIRECT | O_DSYNC, a 4 KiB
  block of a preallocated file) instead of a SQLite commit: NOT a log (no chain, no recovery),
  measured only as the floor of a one-write journal, the cheapest durable append the machine
  offers (SQLite's commit goes through the page cache and an fdatasync);
- `proxy`: the guard in proxy mode in front of the raw server (its overhead = proxy - raw);
- with `--base-tree PATH` (a checkout of an earlier bastion, e.g. `git worktree add`), its
  `guard` and `guard-nosync` too, as `base-guard` and `base-guard-nosync`, in the same
  interleaved rounds: a before/after comparison under the same machine load;
- sustained throughput: closed loop (many clients, each sending its next request as soon as
  the last is answered) against raw and guard pinned to 1 core, then to 2;
- access control: generated bad credentials, none may be served.

With `--interleave` every round runs all the setups at once instead of one after another, each
at `--rate`, their requests staggered evenly (with 7 setups at 15 requests/s each, one request
every 9.5 ms, each answered in about 5): each setup's requests sit between the other setups'
requests, so a noisy neighbour's burst falls on all of them alike. Without it, 5-second
segments of one setup after another moved the same setup's p50 by half a millisecond.

    python bench/guard_latency.py [--rate 100] [--seconds 4] [--rounds 5] [--cores 0]
    python bench/guard_latency.py --interleave --rate 15 --seconds 10 --rounds 11
    python bench/guard_latency.py --interleave --setups guard,guard-nosync --access 0 \
        --throughput-seconds 0   # only these two beside raw, no sustained or access runs

The client is a minimal keep-alive HTTP/1.1 client on asyncio streams (a full client costs
more CPU per request than the guard does, and the machine has two cores)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "guard"))


class DirectJournal:
    """`raw-direct`'s durable append: each record padded to 4 KiB blocks and written with one
    pwrite to a file opened O_DIRECT | O_DSYNC, preallocated with written zeros (no extent to
    convert, no size to journal), so the write returns once the block is on stable storage."""

    BLOCK = 4096
    SIZE = 64 << 20  # rotates: a benchmark's journal, not a log

    def __init__(self, path: Path) -> None:
        import mmap

        flags = os.O_RDWR | os.O_CREAT | os.O_DIRECT | os.O_DSYNC
        self.fd = os.open(path, flags, 0o600)
        zeros = mmap.mmap(-1, 1 << 20)  # page-aligned, as O_DIRECT needs
        for offset in range(0, self.SIZE, len(zeros)):
            os.pwrite(self.fd, zeros, offset)
        os.fsync(self.fd)
        self.buffer = mmap.mmap(-1, 16 * self.BLOCK)
        self.offset = 0

    def write(self, data: bytes) -> None:
        size = -(-len(data) // self.BLOCK) * self.BLOCK
        if size > len(self.buffer):
            raise ValueError(f"a record of {len(data)} bytes is over the journal's block")
        self.buffer[: len(data)] = data
        self.buffer[len(data) : size] = bytes(size - len(data))
        if self.offset + size > self.SIZE:
            self.offset = 0
        os.pwrite(self.fd, memoryview(self.buffer)[:size], self.offset)
        self.offset += size

    def close(self) -> None:
        os.close(self.fd)


def raw_app(model: Any = None, durable: Path | None = None, direct: bool = False) -> Any:
    """The model behind a bare ASGI app: what serving without the guard costs. With `durable`
    (an audit log's path), each prediction also appends one event to that log the way the guard
    commits a lone request's admission (in place, in the event loop's thread, while the model
    computes; answered once it is fsynced), with the guard's CPU slice hints: the `raw-durable`
    setup, the durable log's own cost with no pipeline at all. With `direct` too, each event
    is one synchronous write to a `DirectJournal` at that path instead (`raw-direct`)."""
    import concurrent.futures

    import msgspec
    from guard_support import served_model

    from bastion.guard import scheduling
    from bastion.guard.audit import AuditLog, admission_made, encode_event, input_digest

    model = model or served_model()
    decoder = msgspec.json.Decoder()
    encoder = msgspec.json.Encoder()
    log = AuditLog(durable, durability="fsync") if durable is not None and not direct else None
    journal = DirectJournal(durable) if durable is not None and direct else None
    hinted = durable is not None
    pool = (
        concurrent.futures.ThreadPoolExecutor(4, initializer=scheduling.default_slice)
        if hinted
        else None
    )

    def predict(rows: Any) -> Any:
        os.sched_yield()  # as guard.app._predict does while its admission commits
        return model.predict(rows, True)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup" and hinted:
                    scheduling.short_slice()
                    if log is not None:
                        await log.append(made(b""))  # times a commit: in place from then on
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    if log is not None:
                        log.close()
                    if journal is not None:
                        journal.close()
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
        loop = asyncio.get_running_loop()
        if not hinted:
            # the same thread handoff as the guard's served model (guard.app.InnerApp._predict)
            labels, _scores = await loop.run_in_executor(None, model.predict, rows, True)
        else:
            answered = loop.run_in_executor(pool, predict, rows)
            event = made(body)
            if journal is not None:
                journal.write(encode_event(event))  # releases the GIL for its write
            elif log is not None and log.append_here(event) is None:  # the writer is busy
                await log.append(event)
            labels, _scores = await answered
        answer = encoder.encode({"predictions": [{"label": label} for label in labels]})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(answer)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    def made(body: bytes) -> Any:
        return admission_made(
            key_id=None,
            tenant=None,
            route="/v1/predict",
            model_digest=model.digest,
            input_digest=input_digest(body),
            decisions={"auth": "allow"},
        )

    return app


GUARDS = ("guard", "guard-process", "guard-nosync")
# limits no benchmark reaches: the guard's own work is measured, never a 429
NO_LIMITS = {
    "ip_rate": 1e6,
    "ip_burst": 10**6,
    "key_rate": 1e6,
    "key_burst": 10**6,
    "daily_rows": 10**9,
    "max_in_flight": 10_000,
}
KINDS = ("raw", *GUARDS, "proxy", "raw-durable", "raw-direct")


def serve(kind: str, port: int, folder: Path, upstream: str) -> None:
    import uvicorn
    from guard_support import contract, served_model, settings, training

    from bastion.guard.app import create_app

    big = NO_LIMITS
    audit: dict[str, Any] = {"path": str(folder / f"audit-{kind}")}
    if kind == "guard-nosync":
        audit = {"path": tempfile.mkdtemp(prefix="bastion-bench-", dir="/dev/shm")}
    if kind == "guard-process":
        audit["durability"] = "process"
    if kind == "raw":
        app = raw_app()
    elif kind == "raw-durable":
        (folder / f"audit-{kind}").mkdir(exist_ok=True)
        app = raw_app(durable=folder / f"audit-{kind}" / "audit.sqlite3")
    elif kind == "raw-direct":
        app = raw_app(durable=folder / "journal-raw-direct", direct=True)
    elif kind in GUARDS:
        app = create_app(
            settings(folder, limits=big, audit=audit, server={"worker": kind}),
            model=served_model(),
            contract=contract(),
            training=training(),
        )
    else:
        app = create_app(
            settings(
                folder,
                limits=big,
                audit=audit,
                proxy={"upstream": upstream},
                server={"worker": kind},
            ),
            contract=contract(),
            training=training(),
        )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", lifespan="on")


# `--servers-normal`: the servers at normal priority (SCHED_OTHER) even when this script runs
# under `chrt -f`; see `main`'s help for why a realtime server misleads on one core
SERVERS_NORMAL = False


def _start(
    kind: str, port: int, folder: Path, cores: str, upstream: str = "", base: Path | None = None
) -> subprocess.Popen[bytes]:
    script, env = __file__, None
    if kind.startswith("base-"):  # the same setup served by the earlier tree's code
        assert base is not None
        script, kind = str(base / "bench" / "guard_latency.py"), kind.removeprefix("base-")
        env = {**os.environ, "PYTHONPATH": str(base / "src")}
        # its own folder for its audit chains, the same key store (SQLite follows the link)
        own = folder / "base"
        own.mkdir(exist_ok=True)
        if not (own / "keys.sqlite3").exists():
            (own / "keys.sqlite3").symlink_to(folder / "keys.sqlite3")
        folder = own
    command = [
        sys.executable,
        script,
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
    if SERVERS_NORMAL:
        command = ["chrt", "--other", "0", *command]
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{kind} server did not start")


class _Connection:
    """One keep-alive HTTP/1.1 connection: POST a body, read status and body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def post(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        chunked = False
        for line in head.split(b"\r\n"):
            lowered = line.lower()
            if lowered.startswith(b"content-length:"):
                length = int(line[15:])
            elif lowered.startswith(b"transfer-encoding:") and b"chunked" in lowered:
                chunked = True
        if not chunked:
            await self.reader.readexactly(length)
            return status
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            await self.reader.readexactly(size + 2)
            if size == 0:
                return status


class _Client:
    """A pool of keep-alive connections to one server (a connection per request in flight)."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.key = key
        self.idle: list[_Connection] = []
        self.opened: list[_Connection] = []

    def request(self, body: bytes, path: str = "/v1/predict") -> bytes:
        return (
            f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n"
            f"authorization: Bearer {self.key}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def post(self, request: bytes) -> int:
        if self.idle:
            connection = self.idle.pop()
            try:
                status = await connection.post(request)
            except (asyncio.IncompleteReadError, ConnectionError):
                # a pooled connection left idle past the server's keep-alive timeout (5 s) was
                # closed by it: send on a new one (the request was not answered)
                connection.writer.close()
            else:
                self.idle.append(connection)
                return status
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        connection = _Connection(reader, writer)
        self.opened.append(connection)
        status = await connection.post(request)
        self.idle.append(connection)
        return status

    async def close(self) -> None:
        for connection in self.opened:
            connection.writer.close()
        self.idle.clear()
        self.opened.clear()


async def _open_loop(
    port: int,
    key: str,
    bodies: list[bytes],
    rate: float,
    seconds: float,
    samples: list[float] | None = None,
    start: asyncio.Event | None = None,
    offset: float = 0.0,
) -> dict[str, float]:
    """Requests sent at fixed times, whether or not earlier ones were answered: latency
    percentiles in ms, failures (non-200), achieved answers per second; every latency is also
    added to `samples`. With `start`, the first request waits for that event and then
    `offset` seconds (interleaved setups: see `_interleaved`)."""
    client = _Client(port, key)
    requests = [client.request(body) for body in bodies]
    for request in requests[:50]:  # warm-up
        await client.post(request)
    if start is not None:
        await start.wait()
        await asyncio.sleep(offset)
    latencies: list[float] = []
    failures = 0

    async def one(request: bytes) -> None:
        nonlocal failures
        started = time.perf_counter()
        status = await client.post(request)
        latencies.append((time.perf_counter() - started) * 1000)
        failures += status != 200

    tasks = []
    begin = time.perf_counter()
    total = int(rate * seconds)
    for i in range(total):
        delay = begin + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(requests[i % len(requests)])))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - begin
    await client.close()
    if samples is not None:
        samples.extend(latencies)
    return {
        "p50": _pct(latencies, 0.5),
        "p90": _pct(latencies, 0.9),
        "p99": _pct(latencies, 0.99),
        "rps": len(latencies) / elapsed,
        "failures": failures,
    }


async def _interleaved(
    ports: dict[str, int],
    key: str,
    bodies: list[bytes],
    rate: float,
    seconds: float,
    samples: dict[str, list[float]],
) -> dict[str, dict[str, float]]:
    """Every setup at `rate` at once, their requests staggered evenly (setup k sends at
    (i + k/K) / rate): each request of one setup has the other setups' requests just before
    and after it, so the setups meet the same moments of a noisy machine, which segments of
    one setup after another do not."""
    start = asyncio.Event()
    names = list(ports)
    runs = [
        asyncio.create_task(
            _open_loop(
                ports[name],
                key,
                bodies,
                rate,
                seconds,
                samples[name],
                start,
                k / (len(names) * rate),
            )
        )
        for k, name in enumerate(names)
    ]
    await asyncio.sleep(3.0)  # every client's warm-up done
    start.set()
    results = await asyncio.gather(*runs)
    return dict(zip(names, results, strict=True))


async def _closed_loop(
    port: int, key: str, bodies: list[bytes], clients: int, seconds: float
) -> float:
    """`clients` loops each sending its next request when the last is answered: answers/s."""
    client = _Client(port, key)
    requests = [client.request(body) for body in bodies]
    for request in requests[:20]:
        await client.post(request)
    done = 0
    stop = time.perf_counter() + seconds

    async def loop(offset: int) -> None:
        nonlocal done
        i = offset
        while time.perf_counter() < stop:
            if await client.post(requests[i % len(requests)]) == 200:
                done += 1
            i += clients

    begin = time.perf_counter()
    await asyncio.gather(*(loop(k) for k in range(clients)))
    elapsed = time.perf_counter() - begin
    await client.close()
    return done / elapsed


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _fsync_ms(folder: Path, n: int = 200) -> dict[str, float]:
    """fsync latency of the file system the audit log is on (the group commit waits for one
    per batch)."""
    times = []
    path = folder / "fsync-probe"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        for _ in range(n):
            os.write(fd, b"x" * 512)
            started = time.perf_counter()
            os.fsync(fd)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    return {"p50": _pct(times, 0.5), "p99": _pct(times, 0.99)}


def _client_cores(server_cores: str) -> None:
    """Pin this process (the client) off the servers' cores when there is a core to spare."""
    if not hasattr(os, "sched_setaffinity"):
        return
    wanted = {int(c) for c in server_cores.split(",") if c.strip().isdigit()}
    spare = set(os.sched_getaffinity(0)) - wanted
    os.sched_setaffinity(0, spare or set(os.sched_getaffinity(0)) | wanted)


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
    parser.add_argument("--serve", choices=KINDS)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--upstream", default="")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=4.0, help="per segment")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cores", default="0", help="taskset core list for the servers")
    parser.add_argument("--clients", type=int, default=16, help="closed-loop clients")
    parser.add_argument("--throughput-seconds", type=float, default=4.0)
    parser.add_argument("--access", type=int, default=2000)
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="run the setups at once, their requests staggered (same moments of the machine)",
    )
    parser.add_argument("--base-tree", type=Path, help="an earlier checkout to compare with")
    parser.add_argument(
        "--setups",
        help="comma-separated setups to measure besides raw (default: all; e.g. guard,guard-nosync"
        " to keep the other setups' fsyncs off the disk while these are measured)",
    )
    parser.add_argument(
        "--servers-normal",
        action="store_true",
        help="run the servers at normal priority (SCHED_OTHER) while this client keeps the"
        " scheduling class it was started with (e.g. chrt -f on the other core). A server under"
        " SCHED_FIFO pinned to one core starves the kernel's block-layer worker (kblockd, a"
        " SCHED_OTHER thread bound to that core), so each fsync waits for the model's compute to"
        " end: an artefact of the realtime class, not what a deployed guard pays",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "guard_latency.json")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.folder, args.upstream)
        return 0
    global SERVERS_NORMAL
    SERVERS_NORMAL = args.servers_normal
    from guard_support import credit_rows, free_port

    from bastion.guard.auth import KeyStore

    rows = credit_rows()
    random.Random(0).shuffle(rows)
    bodies = [json.dumps({"rows": [row]}).encode() for row in rows]
    kinds: tuple[str, ...] = KINDS
    if args.base_tree:
        kinds += ("base-guard", "base-guard-nosync")
    if args.setups:
        chosen = [name.strip() for name in args.setups.split(",") if name.strip()]
        unknown = sorted(set(chosen) - set(kinds))
        if unknown:
            parser.error(f"unknown setups {unknown}; choose among {list(kinds[1:])}")
        kinds = ("raw", *(name for name in kinds[1:] if name in chosen))
    latency: dict[str, list[dict[str, float]]] = {name: [] for name in kinds}
    pooled: dict[str, list[float]] = {name: [] for name in kinds}
    throughput: dict[str, dict[str, list[float]]] = {}
    core_sets = _core_sets()  # before this process pins itself
    with tempfile.TemporaryDirectory(dir=ROOT / "bench") as tmp:
        folder = Path(tmp)
        store = KeyStore(folder / "keys.sqlite3")
        key, _ = store.create(["predict", "score"])
        fsync = _fsync_ms(folder)
        ports = {name: free_port() for name in kinds}
        servers: dict[str, subprocess.Popen[bytes]] = {}
        _client_cores(args.cores)
        try:
            servers["raw"] = _start("raw", ports["raw"], folder, args.cores)
            upstream = f"http://127.0.0.1:{ports['raw']}"
            for name in kinds[1:]:
                servers[name] = _start(
                    name, ports[name], folder, args.cores, upstream, args.base_tree
                )
            for round_ in range(args.rounds):
                order = kinds[round_ % len(kinds) :] + kinds[: round_ % len(kinds)]
                if args.interleave:
                    segment = asyncio.run(
                        _interleaved(
                            {name: ports[name] for name in order},
                            key,
                            bodies,
                            args.rate,
                            args.seconds,
                            pooled,
                        )
                    )
                    for name in kinds:
                        latency[name].append(segment[name])
                    continue
                for name in order:
                    latency[name].append(
                        asyncio.run(
                            _open_loop(
                                ports[name], key, bodies, args.rate, args.seconds, pooled[name]
                            )
                        )
                    )
            sent, served = (
                asyncio.run(
                    _access_control(
                        f"http://127.0.0.1:{ports['guard']}/v1/predict", store, key, args.access
                    )
                )
                if "guard" in kinds and args.access > 0
                else (0, 0)
            )
        finally:
            _stop(servers)
        for cores in core_sets if args.throughput_seconds > 0 else []:
            sustained = ("raw", "guard", "guard-process")
            throughput[cores] = {name: [] for name in sustained}
            servers = {}
            _client_cores(cores)
            try:
                for name in sustained:
                    port = free_port()
                    ports[name] = port
                    servers[name] = _start(name, port, folder, cores)
                for round_ in range(3):
                    for name in sustained if round_ % 2 == 0 else sustained[::-1]:
                        throughput[cores][name].append(
                            asyncio.run(
                                _closed_loop(
                                    ports[name], key, bodies, args.clients, args.throughput_seconds
                                )
                            )
                        )
            finally:
                _stop(servers)
    summary = {
        name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for name, runs in latency.items()
    }
    for name, s in summary.items():
        print(
            f"{name:13} p50 {s['p50']:7.3f} ms  p90 {s['p90']:7.3f} ms  p99 {s['p99']:7.3f} ms  "
            f"{s['rps']:.0f} req/s  failures {s['failures']:.0f}"
        )
    added = {}
    compared = [name for name in kinds if name != "raw"]
    for name in compared:
        added[name] = {q: summary[name][q] - summary["raw"][q] for q in ("p50", "p90", "p99")}
        a = added[name]
        print(
            f"added by {name:13}: p50 {a['p50']:.3f} ms  p90 {a['p90']:.3f} ms  "
            f"p99 {a['p99']:.3f} ms"
        )
    # every round's requests together: a p99 over rounds x rate x seconds samples, where a
    # round's own p99 is its second-slowest request or so
    pooled_summary = {
        name: {q: _pct(values, f) for q, f in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))}
        for name, values in pooled.items()
    }
    pooled_added = {}
    for name in compared:
        pooled_added[name] = {
            q: pooled_summary[name][q] - pooled_summary["raw"][q] for q in ("p50", "p90", "p99")
        }
    for name, s in pooled_summary.items():
        print(
            f"pooled {name:13} p50 {s['p50']:7.3f} ms  p90 {s['p90']:7.3f} ms  "
            f"p99 {s['p99']:7.3f} ms  ({len(pooled[name])} requests)"
        )
    for name, a in pooled_added.items():
        print(
            f"pooled, added by {name:13}: p50 {a['p50']:.3f} ms  p90 {a['p90']:.3f} ms  "
            f"p99 {a['p99']:.3f} ms"
        )
    print(f"fsync on the audit file system: p50 {fsync['p50']:.3f} ms, p99 {fsync['p99']:.3f} ms")
    rates = {
        cores: {name: statistics.median(values) for name, values in by_name.items()}
        for cores, by_name in throughput.items()
    }
    for cores, by_name in rates.items():
        print(
            f"sustained on cores {cores}: raw {by_name['raw']:.0f} req/s, "
            f"guard {by_name['guard']:.0f} req/s ({by_name['guard'] / by_name['raw']:.0%}), "
            f"guard-process {by_name['guard-process']:.0f} req/s "
            f"({by_name['guard-process'] / by_name['raw']:.0%})"
        )
    print(f"access control: {sent} bad-credential requests, {served} served")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "latency_ms": summary,
                "added_ms": added,
                "pooled_latency_ms": pooled_summary,
                "pooled_added_ms": pooled_added,
                "rounds": latency,
                "fsync_ms": fsync,
                "throughput_rps": rates,
                "access": {"sent": sent, "served": served},
            },
            indent=2,
        )
    )
    return 0 if served == 0 else 1


def _core_sets() -> list[str]:
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    sets = [str(available[0])]
    if len(available) > 1:
        sets.append(f"{available[0]},{available[1]}")
    return sets


def _stop(servers: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in servers.values():
        process.terminate()
    for process in servers.values():
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    raise SystemExit(main())
