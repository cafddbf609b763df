"""Durability, tamper evidence and throughput of the guard's audit log (guard/audit.py).

    .venv/bin/python bench/guard_audit.py [--cycles 100] [--tamperings 1000]
        [--durability fsync|process|both] [--json OUT]

Parts 1 and 3 run once per durability level (`[audit] durability`: "fsync", the default,
acknowledges an event once its group commit is fsynced; "process" once it is committed to the
OS, which is what a kill -9 of the guard cannot take back).

1. kill -9: a child process appends events under load (64 appends in flight) and prints the
   sequence number and input digest of each event as soon as `append` returns; the parent
   kills it with SIGKILL after a random 50-600 ms, then checks the log: every acknowledged
   event is there with its digest (0 lost), sequence numbers run 1..N without a gap, `bastion
   audit verify` finds no broken link, SQLite's integrity_check says ok. The next cycle
   reopens the same log (crash recovery) and carries on.
2. Tampering: a 500-record signed log (checkpoint every 50) is copied and altered with raw
   SQLite writes after dropping the triggers (as an attacker with write access would; half the
   time the triggers are put back): edit a record, edit it and recompute its hash, delete one
   or a range, delete and renumber, insert a forged record, swap two records' contents,
   truncate the end, rewrite a record and recompute every later hash. Detected = verify fails;
   named = the first broken link is the record altered (for the tail rewrite, which only the
   signed checkpoint can catch: the range it names holds the record).
3. Throughput: 20,000 appends with 64 in flight (group commit at fsync) and, for contrast,
   with one in flight; events per second, median of three runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bastion.guard.audit import AuditEvent, AuditLog, input_digest, record_hash, utc_now
from bastion.guard.audit_verify import verify_log
from bastion.guard.checkpoints import generate_key

MODEL = "sha256:" + "ab" * 32


def event(n: int) -> AuditEvent:
    return AuditEvent(
        at=utc_now(),
        key_id=f"k{n % 17}",
        tenant="bench",
        route="/v1/predict",
        model_digest=MODEL,
        input_digest=input_digest(f"request {n} {os.getpid()} {time.time_ns()}".encode()),
        decisions={"auth": "allow", "contract": "allow", "pii": "allow", "ood": "allow"},
        status=200,
        latency_ms=0.4,
    )


# -- 1. kill -9 ----------------------------------------------------------------------------

CHILD = """
import asyncio, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from guard_audit import event
from bastion.guard.audit import AuditLog

async def main():
    log = AuditLog(
        Path(sys.argv[1]), signing_key=Path(sys.argv[2]), checkpoint_every=200,
        durability=sys.argv[4],
    )
    out = sys.stdout
    n = 0
    async def one(i):
        e = event(i)
        seq = await log.append(e)
        out.write(f"{seq} {e.input_digest}\\n")
        out.flush()
    while True:
        await asyncio.gather(*(one(n + i) for i in range(64)))
        n += 64

asyncio.run(main())
"""


def kill_cycles(
    folder: Path, cycles: int, rng: random.Random, durability: str = "fsync"
) -> dict[str, Any]:
    key, public = generate_key(folder / "audit.key")
    path = folder / "audit-w1.sqlite3"
    acknowledged: dict[int, str] = {}
    lost = gaps = breaks = integrity = 0
    for cycle in range(cycles):
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                str(path),
                str(key),
                str(Path(__file__).parent),
                durability,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # wait for the first acknowledgement, then kill at a random moment under load
        first = child.stdout.readline() if child.stdout else b""
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(child.pid, signal.SIGKILL)
        rest, errors = child.communicate()
        if not first:
            raise SystemExit(f"the child did not start: {errors.decode()[-2000:]}")
        for line in (first + rest).decode().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0].isdigit():
                acknowledged[int(parts[0])] = parts[1]
        with sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True) as conn:
            rows = dict(
                conn.execute("SELECT seq, json_extract(event, '$.input_digest') FROM events")
            )
            integrity += conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok"
        lost += sum(1 for seq, digest in acknowledged.items() if rows.get(seq) != digest)
        gaps += len(rows) != max(rows, default=0)
        check = verify_log(path, public_key=public)
        breaks += not check.ok
        if cycle % 10 == 0:
            print(
                f"  cycle {cycle}: {len(acknowledged)} acknowledged, {len(rows)} in the log",
                flush=True,
            )
    return {
        "durability": durability,
        "cycles": cycles,
        "acknowledged": len(acknowledged),
        "records": len(rows),
        "lost": lost,
        "gaps": gaps,
        "chain_breaks": breaks,
        "integrity_failures": integrity,
    }


# -- 2. tampering ------------------------------------------------------------------------


def build_log(folder: Path, key: Path, records: int = 500) -> Path:
    path = folder / "audit-w1.sqlite3"
    with AuditLog(path, signing_key=key, checkpoint_every=50) as log:
        for start in range(0, records, 50):
            futures = [log.submit(event(n)) for n in range(start, start + 50)]
            for future in futures:
                future.result()
    return path


def _attack(conn: sqlite3.Connection, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
    for statement, parameters in statements:
        conn.execute(statement, parameters)


def _rehash(conn: sqlite3.Connection, start: int, end: int | None) -> None:
    chain, worker = conn.execute("SELECT chain, worker FROM chain").fetchone()
    prev = conn.execute("SELECT hash FROM events WHERE seq = ?", (start - 1,)).fetchone()
    prev = prev[0] if prev else None
    rows = conn.execute(
        "SELECT seq, recorded_at, event, prev FROM events WHERE seq >= ? AND seq <= ? ORDER BY seq",
        (start, end if end is not None else 1 << 60),
    ).fetchall()
    for seq, at, data, stored_prev in rows:
        link = prev if prev is not None else stored_prev
        digest = record_hash(chain, worker, seq, link, at, bytes(data))
        conn.execute("UPDATE events SET prev = ?, hash = ? WHERE seq = ?", (link, digest, seq))
        prev = digest


KINDS = (
    "edit",
    "edit-rehash",
    "delete",
    "delete-range",
    "delete-renumber",
    "insert",
    "swap",
    "truncate",
    "rewrite-tail",
)


def tamper(path: Path, kind: str, n: int, rng: random.Random) -> tuple[int, bool]:
    """Alter the log; returns the first record altered and whether only a range can be named."""
    conn = sqlite3.connect(path, isolation_level=None)
    triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
    for name, _sql in triggers:
        conn.execute(f"DROP TRIGGER {name}")
    target = rng.randint(2, n - 1)
    ranged = False
    flip = "CAST(replace(CAST(event AS TEXT), '\"allow\"', '\"block\"') AS BLOB)"
    if kind == "edit":
        _attack(conn, [(f"UPDATE events SET event = {flip} WHERE seq = ?", (target,))])
    elif kind == "edit-rehash":
        _attack(conn, [(f"UPDATE events SET event = {flip} WHERE seq = ?", (target,))])
        _rehash(conn, target, target)
    elif kind == "delete":
        _attack(conn, [("DELETE FROM events WHERE seq = ?", (target,))])
    elif kind == "delete-range":
        _attack(conn, [("DELETE FROM events WHERE seq BETWEEN ? AND ?", (target, target + 9))])
    elif kind == "delete-renumber":
        _attack(
            conn,
            [
                ("DELETE FROM events WHERE seq = ?", (target,)),
                ("UPDATE events SET seq = -seq WHERE seq > ?", (target,)),
                ("UPDATE events SET seq = -seq - 1 WHERE seq < 0", ()),
            ],
        )
    elif kind == "insert":
        forged = event(10**9).model_dump_json().encode()
        prev = conn.execute("SELECT hash FROM events WHERE seq = ?", (target - 1,)).fetchone()[0]
        _attack(
            conn,
            [
                ("UPDATE events SET seq = -seq WHERE seq >= ?", (target,)),
                ("UPDATE events SET seq = 1 - seq WHERE seq < 0", ()),
                (
                    "INSERT INTO events (seq, recorded_at, event, prev, hash) VALUES (?,?,?,?,?)",
                    (target, utc_now(), forged, prev, os.urandom(32).hex()),
                ),
            ],
        )
    elif kind == "swap":
        other = rng.randint(target + 1, n) if target < n else target - 1
        first, second = sorted((target, other))
        a = conn.execute("SELECT event FROM events WHERE seq = ?", (first,)).fetchone()[0]
        b = conn.execute("SELECT event FROM events WHERE seq = ?", (second,)).fetchone()[0]
        if a == b:  # identical contents cannot be told apart; swap times instead
            raise AssertionError("two identical events")
        _attack(
            conn,
            [
                ("UPDATE events SET event = ? WHERE seq = ?", (b, first)),
                ("UPDATE events SET event = ? WHERE seq = ?", (a, second)),
            ],
        )
        target = first
    elif kind == "truncate":
        target = rng.randint(n // 2, n)
        _attack(conn, [("DELETE FROM events WHERE seq >= ?", (target,))])
    elif kind == "rewrite-tail":
        _attack(conn, [(f"UPDATE events SET event = {flip} WHERE seq = ?", (target,))])
        _rehash(conn, target, None)
        ranged = True
    if rng.random() < 0.5:
        for _name, sql in triggers:
            conn.execute(sql)
    conn.close()
    return target, ranged


def tamperings(folder: Path, trials: int, rng: random.Random) -> dict[str, Any]:
    key, public = generate_key(folder / "audit.key")
    clean = folder / "clean"
    clean.mkdir()
    original = build_log(clean, key)
    assert verify_log(original, public_key=public).ok
    outcome: dict[str, dict[str, int]] = {
        k: {"trials": 0, "detected": 0, "named": 0} for k in KINDS
    }
    misses: list[str] = []
    for trial in range(trials):
        kind = KINDS[trial % len(KINDS)]
        work = folder / f"t{trial}"
        work.mkdir()
        for file in clean.iterdir():
            shutil.copy2(file, work / file.name)
        path = work / original.name
        target, ranged = tamper(path, kind, 500, rng)
        check = verify_log(path, public_key=public)
        first = check.first_break
        stats = outcome[kind]
        stats["trials"] += 1
        if not check.ok:
            stats["detected"] += 1
        named = first is not None and (
            (first.first_possible or first.seq or 0) <= target <= (first.seq or 0)
            if ranged
            else first.seq == target
        )
        stats["named"] += named
        if not named and len(misses) < 10:
            misses.append(f"{kind} at {target}: {first}")
        shutil.rmtree(work)
    total = {k: sum(s[k] for s in outcome.values()) for k in ("trials", "detected", "named")}
    return {"by_kind": outcome, "total": total, "misses": misses}


# -- 3. throughput ---------------------------------------------------------------------------


async def _appends(log: AuditLog, count: int, in_flight: int) -> None:
    queue = iter(range(count))

    async def worker() -> None:
        for n in queue:
            await log.append(event(n))

    await asyncio.gather(*(worker() for _ in range(in_flight)))


def throughput(folder: Path, count: int, in_flight: int, durability: str = "fsync") -> float:
    path = folder / f"throughput-{in_flight}-{time.time_ns()}.sqlite3"
    with AuditLog(path, durability=durability) as log:
        started = time.perf_counter()
        asyncio.run(_appends(log, count, in_flight))
        elapsed = time.perf_counter() - started
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--tamperings", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--durability", choices=("fsync", "process", "both"), default="both")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    levels = ("fsync", "process") if args.durability == "both" else (args.durability,)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        for level in levels:
            for name in ("kill", "speed"):
                (root / level / name).mkdir(parents=True)
            print(f"[{level}] throughput (appends acknowledged at {level})", flush=True)
            speed = root / level / "speed"
            grouped = [throughput(speed, args.events, 64, level) for _ in range(3)]
            single = [throughput(speed, args.events // 10, 1, level) for _ in range(3)]
            results.setdefault(level, {})["throughput"] = {
                "in_flight_64_events_per_s": round(statistics.median(grouped)),
                "one_in_flight_events_per_s": round(statistics.median(single)),
                "runs": {
                    "in_flight_64": [round(x) for x in grouped],
                    "single": [round(x) for x in single],
                },
            }
            print(f"  {results[level]['throughput']}", flush=True)
            print(f"[{level}] kill -9 ({args.cycles} cycles)", flush=True)
            results[level]["kill"] = kill_cycles(root / level / "kill", args.cycles, rng, level)
            print(f"  {results[level]['kill']}", flush=True)
        (root / "tamper").mkdir()
        print(f"tampering ({args.tamperings} trials)", flush=True)
        results["tampering"] = tamperings(root / "tamper", args.tamperings, rng)
        print(f"  {results['tampering']['total']}", flush=True)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
