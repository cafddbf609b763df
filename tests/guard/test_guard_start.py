"""A guard that cannot start leaves its folders as they were.

Each case is a setting or a file the guard refuses at start (a JWKS file, an input-digest key,
a checkpoint signing key, an OOD profile, monitor options, a Redis URL, an audit log that is
not one). The guard must stop with a clear error (exit 2 from the CLI, no traceback), create
no key store (nor its -wal/-shm) and no audit log, and leave a key store and an audit log that
already existed byte for byte as they were."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from guard_support import DATA, contract, contract_json, settings, training

from bastion.errors import BastionError
from bastion.guard.app import create_app, open_audit
from bastion.guard.auth import KeyStore

UPSTREAM = "http://127.0.0.1:9"
JWT = {"enabled": True, "issuer": "https://idp.example", "audience": "bastion"}


class Case:
    """A refused start: the guard.toml tables (with `{conf}` standing for the folder of the
    files the case writes), those files, and what the error names."""

    def __init__(
        self,
        tables: dict[str, Any],
        files: dict[str, bytes],
        named: str,
        tabular: bool = False,
    ) -> None:
        self.tables = tables
        self.files = files
        self.named = named
        self.tabular = tabular  # needs a contract and training rows (OOD, query monitor)

    def write(self, conf: Path) -> dict[str, Any]:
        conf.mkdir(exist_ok=True)
        for name, data in self.files.items():
            path = conf / name
            path.write_bytes(data)
            path.chmod(0o600)
        return json.loads(json.dumps(self.tables).replace("{conf}", str(conf)))


def _jwks(files: dict[str, bytes]) -> Case:
    return Case({"auth": {"jwt": {**JWT, "jwks_file": "{conf}/jwks.json"}}}, files, "JWKS")


CASES = {
    "jwks missing": _jwks({}),
    "jwks not json": _jwks({"jwks.json": b"{not json"}),
    "jwks a json list": _jwks({"jwks.json": b"[]"}),
    "jwks without keys": _jwks({"jwks.json": b'{"keys": []}'}),
    "jwks over 1 MiB": _jwks({"jwks.json": b" " * (1024 * 1024 + 1)}),
    "digest key missing": Case({"audit": {"digest_key_file": "{conf}/digest.key"}}, {}, "digest"),
    "digest key short": Case(
        {"audit": {"digest_key_file": "{conf}/digest.key"}}, {"digest.key": b"short"}, "16 bytes"
    ),
    "signing key missing": Case({"audit": {"signing_key": "{conf}/sign.pem"}}, {}, "sign.pem"),
    "signing key not pem": Case(
        {"audit": {"signing_key": "{conf}/sign.pem"}}, {"sign.pem": b"not a key"}, "PEM"
    ),
    "redis url": Case({"limits": {"backend": "redis", "redis_url": "bogus://x"}}, {}, "redis_url"),
    "ood profile missing": Case(
        {"ood": {"profile": "{conf}/ood.json"}}, {}, "OOD profile", tabular=True
    ),
    "ood profile not one": Case(
        {"ood": {"profile": "{conf}/ood.json"}}, {"ood.json": b"{}"}, "OOD profile", tabular=True
    ),
    "monitor options": Case(
        {"monitor": {"options": {"max_keys": "many"}}}, {}, "[monitor.options]", tabular=True
    ),
}


def _snapshot(folder: Path) -> dict[str, str]:
    """Every entry under `folder` (symlinks not followed): a file's sha256, else its kind."""
    found = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            found[name] = "symlink to " + os.readlink(path)
        elif path.is_file():
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[name] = "folder"
    return found


def _existing(folder: Path) -> None:
    """A key store holding a key and an audit log, closed, as a guard leaves them."""
    store = KeyStore(folder / "keys.sqlite3")
    store.create(["predict"])
    store.close()
    open_audit(settings(folder)).close()


def _unchanged(folder: Path, existing: bool, start: Callable[[], Any]) -> Any:
    """What `start` returns, having checked that the folder's entries are as they were."""
    if existing:
        _existing(folder)
    before = _snapshot(folder)
    result = start()
    assert _snapshot(folder) == before
    return result


def _refused(call: Callable[[], Any]) -> Callable[[], BastionError]:
    """A start that must refuse with a BastionError: it returns the error."""

    def start() -> BastionError:
        with pytest.raises(BastionError) as refused:
            call()
        return refused.value

    return start


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "existing"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_create_app_refuses_at_start_and_leaves_the_folder_as_it_was(
    tmp_path: Path, case: Case, existing: bool
) -> None:
    tables = case.write(tmp_path / "conf")
    flavour = "rows" if case.tabular else "json"
    tables["proxy"] = {"upstream": UPSTREAM, "flavour": flavour}
    chosen = settings(tmp_path, **tables)
    rows = {"contract": contract(), "training": training()} if case.tabular else {}
    error = _unchanged(tmp_path, existing, _refused(lambda: create_app(chosen, **rows)))
    assert case.named in error.message


def _toml(tables: dict[str, Any], prefix: str = "") -> str:
    """`tables` as TOML (strings, numbers and booleans are written as JSON writes them)."""
    values = {k: v for k, v in tables.items() if not isinstance(v, dict)}
    text = f"[{prefix}]\n" if prefix and values else ""
    text += "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
    for name, table in tables.items():
        if isinstance(table, dict):
            text += _toml(table, f"{prefix}.{name}" if prefix else name)
    return text


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "existing"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_guard_proxy_exits_2_and_leaves_the_folder_as_it_was(
    tmp_path: Path, case: Case, existing: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    from bastion.cli.main import main

    conf = tmp_path / "conf"
    tables = case.write(conf)
    tables.setdefault("auth", {})["keys_db"] = str(tmp_path / "keys.sqlite3")
    tables.setdefault("audit", {})["path"] = str(tmp_path / "audit")
    config = conf / "guard.toml"
    config.write_text(_toml(tables), encoding="utf-8")
    argv = ["guard", "proxy", "--config", str(config), "--upstream", UPSTREAM]
    if case.tabular:
        (conf / "contract.json").write_text(contract_json(), encoding="utf-8")
        argv += ["--flavour", "rows", "--contract", str(conf / "contract.json")]
        argv += ["--target", "creditability", "--training-data", str(DATA)]
    else:
        argv += ["--flavour", "json"]
    assert _unchanged(tmp_path, existing, lambda: main(argv)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "bastion: error:" in err and case.named in err


def test_an_audit_log_it_cannot_use_leaves_no_new_key_store(tmp_path: Path) -> None:
    """The audit log is opened last, after the key store: when it refuses (here a file that is
    not a database), the key store this start created is closed and removed again."""
    (tmp_path / "audit").mkdir()
    (tmp_path / "audit" / "audit-guard.sqlite3").write_bytes(b"not a database" * 100)
    chosen = settings(tmp_path, proxy={"upstream": UPSTREAM, "flavour": "json"})
    error = _unchanged(tmp_path, False, _refused(lambda: create_app(chosen)))
    assert "audit log" in error.message


def test_an_audit_log_it_cannot_use_leaves_an_existing_key_store_as_it_was(
    tmp_path: Path,
) -> None:
    _existing(tmp_path)
    (tmp_path / "audit" / "audit-guard.sqlite3").write_bytes(b"not a database" * 100)
    chosen = settings(tmp_path, proxy={"upstream": UPSTREAM, "flavour": "json"})
    error = _unchanged(tmp_path, False, _refused(lambda: create_app(chosen)))
    assert "audit log" in error.message


def _add_key(store: KeyStore, path: Path) -> None:
    store.create(["predict"])


def _open_elsewhere(store: KeyStore, path: Path) -> None:
    other = sqlite3.connect(path)  # another connection holds it (left open for the test)
    other.execute("SELECT * FROM keys").fetchall()
    _others.append(other)


def _replace(store: KeyStore, path: Path) -> None:
    path.rename(path.with_name("moved.sqlite3"))
    path.write_bytes(b"someone else's file")


def _symlink(store: KeyStore, path: Path) -> None:
    path.rename(path.with_name("target.sqlite3"))
    path.symlink_to(path.with_name("target.sqlite3"))


_others: list[sqlite3.Connection] = []


@pytest.mark.parametrize("meddle", [_add_key, _open_elsewhere, _replace, _symlink])
def test_discard_leaves_a_key_store_someone_used_or_replaced(
    tmp_path: Path, meddle: Callable[[KeyStore, Path], None]
) -> None:
    path = tmp_path / "keys.sqlite3"
    store = KeyStore(path)
    meddle(store, path)
    before = {name for name in _snapshot(tmp_path) if not name.endswith(("-wal", "-shm"))}
    try:
        store.discard()
        assert before <= set(_snapshot(tmp_path))
    finally:
        while _others:
            _others.pop().close()


def test_discard_removes_only_a_key_store_it_created(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite3"
    KeyStore(path).discard()  # created by it, unused: removed (SQLite removed -wal and -shm)
    assert _snapshot(tmp_path) == {}
    _existing(tmp_path)
    before = _snapshot(tmp_path)
    KeyStore(path).discard()  # there before (with a key)
    assert _snapshot(tmp_path) == before
    empty = tmp_path / "empty.sqlite3"
    empty.touch()
    KeyStore(empty).discard()  # there before, empty (opening it wrote the table)
    assert empty.exists()
