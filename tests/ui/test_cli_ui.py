"""`bastion ui` from the command line: mistakes are clear errors (exit 2), and the real command
serves the dashboard on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bastion.cli.main import main
from bastion.store import Store
from tests.ui.ui_support import free_port


def test_mistakes_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ui", "--help"]) == 0
    assert "audit:read" in capsys.readouterr().out
    assert main(["ui", "--store", str(tmp_path / "none.sqlite3")]) == 2
    assert "does not exist" in capsys.readouterr().err
    store = tmp_path / "history.sqlite3"
    Store(store).close()
    assert main(["ui", "--store", str(store), "--keys-db", str(tmp_path / "k.sqlite3")]) == 2
    err = capsys.readouterr().err
    assert "no key store" in err and "bastion guard keys create" in err
    assert main(["ui", "--store", str(store), "--port", "70000"]) == 2
    assert main(["ui", "--store", str(store), "--tls-cert", str(store)]) == 2


def test_the_command_serves_on_loopback(tmp_path: Path) -> None:
    from bastion.guard.auth import KeyStore

    store = tmp_path / "history.sqlite3"
    Store(store).close()
    KeyStore(tmp_path / "keys.sqlite3").close()
    port = free_port()
    command = [sys.executable, "-m", "bastion", "ui", "--store", str(store)]
    command += ["--keys-db", str(tmp_path / "keys.sqlite3"), "--port", str(port)]
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, env={**os.environ, "BASTION_STORE": ""}, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as page:
                    assert page.status == 200
                    assert "script-src 'self'" in page.headers["content-security-policy"]
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    assert f"bastion ui on http://127.0.0.1:{port}" in err
