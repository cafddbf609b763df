"""A real history store for the dashboard's tests: bastion scans of files built here (one of
them a pickle whose global and file name are markup), a data check, waivers (one expired),
lineage links, and a guard audit log with allowed, flagged and blocked requests; plus a guard
key store with keys of each kind. Attacker-chosen strings are planted where findings carry
them: a pickle global named `<script>…`, a file name with markup, a `javascript:` URL."""

from __future__ import annotations

import asyncio
import datetime as dt
import pickle
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.config import Settings, WaiverSpec
from bastion.lineage.record import record, record_run
from bastion.policy import evaluate
from bastion.project import scan_project
from bastion.store import Store
from tests.ui.audit_events import request_events

MARKER = "bastion-xss-marker"
# each of these would run script if a page put it into HTML unescaped
SCRIPT_GLOBAL = f"<script>window.{MARKER.replace('-', '_')}=1</script>"
MARKUP_NAME = f'<img src=x onerror="window.{MARKER.replace("-", "_")}=2">.pkl'
JS_URL = f"javascript:window.{MARKER.replace('-', '_')}=3"


def evil_pickle() -> bytes:
    """A protocol-2 pickle calling a global whose module is markup and whose name is a
    `javascript:` URL (GLOBAL takes both as newline-terminated text)."""
    module = ("os." + SCRIPT_GLOBAL).encode()
    return b"\x80\x02c" + module + b"\n" + JS_URL.encode() + b"\n)R."


def build_project(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "evil": root / MARKUP_NAME,
        "system": root / "model_system.pkl",
        "clean": root / "model_clean.pkl",
        "data": root / "train.csv",
    }
    files["evil"].write_bytes(evil_pickle())

    class _System:
        def __reduce__(self) -> tuple[Any, ...]:
            import os

            return (os.system, ("echo " + MARKER,))

    files["system"].write_bytes(pickle.dumps(_System(), protocol=2))
    files["clean"].write_bytes(pickle.dumps({"weights": [0.1, 0.2, 0.3], "bias": 0.5}))
    rows = ["age,income,email,label"]
    rows += [f"{20 + i % 50},{1000 + i * 7},user{i}@example.com,{i % 2}" for i in range(200)]
    files["data"].write_text("\n".join(rows) + "\n")
    return files


def _scan(store: Store, paths: list[Path], settings: Settings) -> int:
    report = scan_project(paths, settings)
    verdict = evaluate(report, settings)
    return record_run(store, report, verdict, settings).run_id


def build_store(folder: Path) -> dict[str, Any]:
    """The store the browser tests read, with what they look for."""
    files = build_project(folder / "project")
    store_path = folder / "history.sqlite3"
    today = dt.date.today()
    waivers = (
        WaiverSpec(
            rule="PKL001",
            path="*model_system.pkl",
            reason="reviewed: the demo's echo",
            expires=today + dt.timedelta(days=30),
        ),
        WaiverSpec(
            rule="PKL002",
            path="model_old.pkl",
            reason="old waiver",
            expires=today - dt.timedelta(days=3),
        ),
    )
    plain = Settings()
    waived = Settings(waivers=waivers)
    with Store(store_path) as store:
        runs = {
            "evil": _scan(store, [files["evil"]], plain),
            "system": _scan(store, [files["system"]], waived),
            "clean": _scan(store, [files["clean"]], plain),
        }
        linked = record(
            files["clean"],
            datasets=[files["data"], files["evil"]],  # a name with markup in the graph
            params={"owner": "ml-platform", "C": 1.0},
            store=store,
        )
    return {
        "store": store_path,
        "files": files,
        "runs": runs,
        "model_digest": linked.model,
    }


def append_events(path: Path, events: Iterable[Any], seqs: list[int] | None = None) -> list[int]:
    """Append `events` to the worker audit log at `path`, in a thread with an event loop of its
    own (the caller may be inside Playwright's event loop); their sequence numbers, added to
    `seqs` as each event is written (a generator of events holding that list can name an
    earlier event)."""
    from bastion.guard.audit import AuditLog

    seqs = [] if seqs is None else seqs

    async def write() -> None:
        log = AuditLog(path)
        try:
            for event in events:
                seqs.append(await log.append(event))
        finally:
            log.close()

    worker = threading.Thread(target=lambda: asyncio.run(write()))
    worker.start()
    worker.join()
    return seqs


def build_audit(folder: Path) -> Path:
    """A guard audit folder with a few hours of allowed, flagged and blocked requests."""
    from bastion.guard.audit import worker_log_path

    folder.mkdir(parents=True, exist_ok=True)
    events = request_events(
        120, dt.timedelta(minutes=5), flag_every=17, block_every=29, tenant="team-a"
    )
    append_events(worker_log_path(folder, "w1"), events)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """A running dashboard: its URL, the keys that can log in, what the store holds."""

    def __init__(self, folder: Path) -> None:
        from bastion.guard.auth import KeyStore
        from bastion.ui.app import create_app
        from bastion.ui.sessions import GuardKeys

        self.folder = folder
        self.built = build_store(folder)
        self.audit = build_audit(folder / "guard-audit")
        self.keys_path = folder / "guard-keys.sqlite3"
        self.keys = KeyStore(self.keys_path)
        self.reader, _ = self.keys.create(["audit:read"], note="dashboard reader")
        self.admin, _ = self.keys.create(["admin"], note="admin without audit:read")
        self.predict, _ = self.keys.create(["predict"], note="a model client")
        self.app = create_app(self.built["store"], GuardKeys(self.keys_path), audit=self.audit)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        import uvicorn

        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the dashboard did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.keys.close()

    def new_key(self, *scopes: str) -> tuple[str, Any]:
        return self.keys.create(list(scopes))


def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The dashboard for a test module's fixture (there is no conftest.py here: the probe
    tests import their conftest by its bare name, and a second conftest would shadow it)."""
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    running = Served(tmp_path_factory.mktemp("ui"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


class _SaySaved:
    """A plugin registered by a test that saved screenshots: names the folder at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_line(f"dashboard screenshots: {self.folder}")


def announce_screenshots(config: pytest.Config, folder: Path) -> None:
    config.pluginmanager.register(_SaySaved(folder), f"bastion-ui-screenshots-{id(folder)}")
