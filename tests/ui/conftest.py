"""The dashboard under test: a real store, audit log and key store built in a temporary folder,
served by uvicorn on 127.0.0.1 (a free port) in a thread, for the whole module."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

from ui_support import build_audit, build_store  # noqa: E402

SCREENSHOTS = pytest.StashKey[Path]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    folder = config.stash.get(SCREENSHOTS, None)
    if folder is not None:
        terminalreporter.write_line(f"dashboard screenshots: {folder}")


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


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    running = Served(tmp_path_factory.mktemp("ui"))
    running.start()
    try:
        yield running
    finally:
        running.stop()
