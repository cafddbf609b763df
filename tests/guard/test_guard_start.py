"""A guard that cannot start leaves its folders as they were.

Each case is a setting or a file the guard refuses at start (a JWKS file, an input-digest key,
a checkpoint signing key, an OOD profile, monitor options, a Redis URL, an audit log that is
not one). The guard must stop with a clear error (exit 2 from the CLI, no traceback), create
no key store (nor its -wal/-shm) and no audit log, and leave a key store and an audit log that
already existed byte for byte as they were."""

from __future__ import annotations

import errno
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

from bastion.errors import BastionError, InputError
from bastion.guard.app import create_app, open_audit
from bastion.guard.audit import AuditLog
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


# -- the audit log and the key store on their own: a refusal leaves nothing half made --------

LOG = "audit-guard.sqlite3"


def _foreign_checkpoints(folder: Path) -> None:
    """A checkpoint file beside LOG in `folder` that belongs to another chain (a log opened in
    a sibling folder)."""
    elsewhere = folder.with_name("elsewhere")
    elsewhere.mkdir()
    AuditLog(elsewhere / LOG).close()
    (folder / f"{LOG}.checkpoints").write_bytes((elsewhere / f"{LOG}.checkpoints").read_bytes())


def _failing(exc: BaseException) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return fail


def _disk_full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# what is in the audit folder before the log is opened, and what the open is given
FRESH_REFUSALS: dict[str, tuple[Callable[[Path], Any], dict[str, Any]]] = {
    "checkpoints of another chain": (_foreign_checkpoints, {}),
    "checkpoint file unreadable": (
        lambda folder: (folder / f"{LOG}.checkpoints").write_bytes(b"not a checkpoint\n"),
        {},
    ),
    "checkpoint file a folder": (lambda folder: (folder / f"{LOG}.checkpoints").mkdir(), {}),
    "max_bytes below the schema": (lambda folder: None, {"max_bytes": 1}),
}


@pytest.mark.parametrize("durability", ["fsync", "process"])
@pytest.mark.parametrize("refusal", FRESH_REFUSALS.values(), ids=FRESH_REFUSALS.keys())
def test_a_new_audit_log_refused_leaves_no_file(
    tmp_path: Path, refusal: tuple[Callable[[Path], Any], dict[str, Any]], durability: str
) -> None:
    prepare, options = refusal
    folder = tmp_path / "audit"
    folder.mkdir()
    prepare(folder)
    log = folder / LOG
    _unchanged(tmp_path, False, _refused(lambda: AuditLog(log, durability=durability, **options)))


# a step of the open after the database file was made fails (monkeypatched: a full disk)
STEP_FAILURES = {
    "wal reservation": ("_reserve_wal", sqlite3.OperationalError("disk I/O error")),
    "genesis checkpoint": ("append_checkpoint", _disk_full()),
}


@pytest.mark.parametrize("failure", STEP_FAILURES.values(), ids=STEP_FAILURES.keys())
def test_a_new_audit_log_whose_open_fails_after_creation_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: tuple[str, BaseException]
) -> None:
    from bastion.guard import audit

    name, exc = failure
    target = audit.AuditLog if name.startswith("_") else audit
    monkeypatch.setattr(target, name, _failing(exc))
    error = _unchanged(tmp_path, False, _refused(lambda: AuditLog(tmp_path / LOG)))
    assert LOG in error.message


def _existing_log(folder: Path) -> None:
    with AuditLog(folder / LOG, worker="guard") as log:
        log.submit(_event()).result(timeout=10)


def _event() -> Any:
    from bastion.guard.audit import AuditEvent, input_digest, utc_now

    return AuditEvent(
        at=utc_now(),
        key_id="k1",
        tenant=None,
        route="/v1/predict",
        model_digest="sha256:" + "ab" * 32,
        input_digest=input_digest(b"row"),
        decisions={"auth": "allow"},
        status=200,
        latency_ms=1.0,
    )


def _foreign(folder: Path) -> None:
    _existing_log(folder)
    (folder / f"{LOG}.checkpoints").unlink()
    _foreign_checkpoints(folder)


def _foreign_torn(folder: Path) -> None:
    _foreign(folder)
    with (folder / f"{LOG}.checkpoints").open("ab") as handle:
        handle.write(b'{"chain":"ab')  # a crash in the middle of an append


def _no_checkpoints(folder: Path) -> None:
    _existing_log(folder)
    (folder / f"{LOG}.checkpoints").unlink()


def _other_worker(folder: Path) -> dict[str, Any]:
    _existing_log(folder)
    return {"worker": "other"}


def _other_key(folder: Path) -> dict[str, Any]:
    from bastion.guard.checkpoints import generate_key

    _existing_log(folder)
    keys = folder.with_name("keys")
    keys.mkdir()
    return {"signing_key": generate_key(keys / "other.key")[0]}


def _someone_elses_database(folder: Path) -> None:
    conn = sqlite3.connect(folder / LOG)  # rollback journal, as sqlite3 makes them
    with conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()


def _someone_elses_database_of_version_1(folder: Path) -> None:
    """Another program's database whose user_version is 1 (as common as it is ours)."""
    _someone_elses_database(folder)
    conn = sqlite3.connect(folder / LOG)
    conn.execute("PRAGMA user_version = 1")
    conn.close()


def _empty_file(folder: Path) -> None:
    (folder / LOG).touch()
    _foreign_checkpoints(folder)


# a file at the log's path that the open refuses: what makes it, and what the open is given
EXISTING_REFUSALS: dict[str, Callable[[Path], dict[str, Any] | None]] = {
    "checkpoints of another chain": _foreign,
    "checkpoints of another chain, torn": _foreign_torn,
    "checkpoints missing": _no_checkpoints,
    "another worker's chain": _other_worker,
    "signed by another key": _other_key,
    "someone else's database": _someone_elses_database,
    "someone else's database, user_version 1": _someone_elses_database_of_version_1,
    "an empty file, checkpoints of another chain": _empty_file,
}


@pytest.mark.parametrize("refusal", EXISTING_REFUSALS.values(), ids=EXISTING_REFUSALS.keys())
def test_an_existing_file_the_audit_log_refuses_is_left_byte_for_byte(
    tmp_path: Path, refusal: Callable[[Path], dict[str, Any] | None]
) -> None:
    folder = tmp_path / "audit"
    folder.mkdir()
    options = refusal(folder) or {}
    _unchanged(tmp_path, False, _refused(lambda: AuditLog(folder / LOG, **options)))


def test_an_audit_folder_it_made_is_removed_when_the_log_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """open_audit makes the audit folder (and its parents): a log that then fails to open
    leaves none of them, nor a key store in the folders build_guard made for it."""
    from bastion.guard.audit import AuditLog as Log

    monkeypatch.setattr(Log, "_reserve_wal", _failing(sqlite3.OperationalError("disk I/O error")))
    chosen = settings(
        tmp_path,
        auth={"keys_db": str(tmp_path / "state" / "keys" / "keys.sqlite3")},
        audit={"path": str(tmp_path / "state" / "audit" / "w")},
        proxy={"upstream": UPSTREAM, "flavour": "json"},
    )
    _unchanged(tmp_path, False, _refused(lambda: create_app(chosen)))


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "existing"])
def test_guard_proxy_with_a_foreign_checkpoint_file_exits_2_and_leaves_the_folder_as_it_was(
    tmp_path: Path, existing: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    from bastion.cli.main import main

    conf = tmp_path / "conf"
    conf.mkdir()
    audit = tmp_path / "audit"
    audit.mkdir()
    (_foreign if existing else _foreign_checkpoints)(audit)
    tables = {
        "auth": {"keys_db": str(tmp_path / "state" / "keys.sqlite3")},
        "audit": {"path": str(audit)},
    }
    config = conf / "guard.toml"
    config.write_text(_toml(tables), encoding="utf-8")
    argv = ["guard", "proxy", "--config", str(config), "--upstream", UPSTREAM, "--flavour", "json"]
    assert _unchanged(tmp_path, False, lambda: main(argv)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err
    assert "bastion: error:" in err and "another chain" in err


def _not_a_database(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


NOT_KEY_STORES: dict[str, Callable[[Path], Any]] = {
    "random bytes": _not_a_database,
    "a text file": lambda path: path.write_text("keys: none\n" * 200, encoding="utf-8"),
    "a folder": lambda path: path.mkdir(),
}


@pytest.mark.parametrize("make", NOT_KEY_STORES.values(), ids=NOT_KEY_STORES.keys())
def test_a_key_store_that_is_not_one_is_refused_cleanly_and_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Callable[[Path], Any]
) -> None:
    opened: list[sqlite3.Connection] = []
    connect = sqlite3.connect

    def recording(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(connect(*args, **kwargs))
        return opened[-1]

    make(tmp_path / "keys.sqlite3")
    monkeypatch.setattr(sqlite3, "connect", recording)
    error = _unchanged(tmp_path, False, _refused(lambda: KeyStore(tmp_path / "keys.sqlite3")))
    assert isinstance(error, InputError) and "key store" in error.message
    for conn in opened:
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            conn.execute("SELECT 1")


def test_a_key_store_whose_setup_fails_leaves_no_file_nor_the_folders_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.guard import auth

    (tmp_path / "state").mkdir()
    monkeypatch.setattr(auth, "SCHEMA", "CREATE TABLE keys (")  # the step after creation fails
    path = tmp_path / "state" / "a" / "b" / "keys.sqlite3"
    error = _unchanged(tmp_path, False, _refused(lambda: KeyStore(path)))
    assert isinstance(error, InputError)


def test_discard_removes_the_folders_the_key_store_made_if_empty(tmp_path: Path) -> None:
    KeyStore(tmp_path / "a" / "b" / "keys.sqlite3").discard()
    assert _snapshot(tmp_path) == {}
    store = KeyStore(tmp_path / "a" / "b" / "keys.sqlite3")
    (tmp_path / "a" / "note.txt").write_text("mine", encoding="utf-8")  # someone's file
    store.discard()
    assert set(_snapshot(tmp_path)) == {"a", "a/note.txt"}


def test_a_proxy_that_cannot_be_made_leaves_no_key_store_or_audit_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upstream client (httpx, an import that may be missing) is made before the key store
    and the audit log are opened."""
    from bastion.guard import proxy

    monkeypatch.setattr(proxy.ProxyApp, "__init__", _failing(ImportError("No module 'httpx'")))
    chosen = settings(tmp_path, proxy={"upstream": UPSTREAM, "flavour": "json"})

    def start() -> None:
        with pytest.raises(ImportError):
            create_app(chosen)

    _unchanged(tmp_path, False, start)


# -- a refused open never removes what another process is using, nor a crashed log's -wal ----


def _opened_meanwhile(monkeypatch: pytest.MonkeyPatch, close: bool) -> Callable[[Path, int], Any]:
    """`create_new` as the audit log calls it, during which a second guard opens the same new
    log (making its chain) and records two events, kept open (in _others_logs), or records
    none and closes it."""
    from bastion.guard import audit

    real = audit.create_new

    def racing(path: Path, mode: int) -> Any:
        made = real(path, mode)
        monkeypatch.setattr(audit, "create_new", real)
        other = AuditLog(path, worker="guard")
        for _ in range(0 if close else 2):
            other.submit(_event()).result(timeout=10)
        if close:
            other.close()
        else:
            _others_logs.append(other)
        return made

    return racing


_others_logs: list[AuditLog] = []


@pytest.mark.parametrize("close", [False, True], ids=["still open", "closed"])
def test_a_refused_open_leaves_a_new_log_another_guard_opened_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, close: bool
) -> None:
    """This open created the file, but another guard made the chain in it before this one was
    refused (another worker name here): the file, its -wal and -shm and the other guard's
    records and checkpoints stay."""
    from bastion.guard import audit

    monkeypatch.setattr(audit, "create_new", _opened_meanwhile(monkeypatch, close))
    log = tmp_path / LOG
    try:
        with pytest.raises(BastionError, match="worker guard's chain"):
            AuditLog(log, worker="other")
        assert log.exists()
        for other in _others_logs:
            assert os.path.exists(f"{log}-wal") and os.path.exists(f"{log}-shm")
            other.submit(_event()).result(timeout=10)
            other.close()
    finally:
        while _others_logs:
            _others_logs.pop().close()
    with AuditLog(log, worker="guard") as reopened:
        assert reopened._seq == (0 if close else 3)


def _crashed(folder: Path) -> None:
    """A log whose guard was killed (kill -9) after recording three events in process mode,
    still in the -wal: the database file then deleted."""
    import subprocess
    import sys

    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from bastion.guard.audit import AuditLog\n"
        "from test_guard_start import _event\n"
        "log = AuditLog(Path(sys.argv[1]), durability='process', checkpoint_seconds=1000)\n"
        "for _ in range(3):\n"
        "    log.submit(_event()).result(timeout=10)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    here = Path(__file__).parent
    src = {**os.environ, "PYTHONPATH": str(here.parents[1] / "src")}
    subprocess.run([sys.executable, "-c", script, str(folder / LOG), str(here)], env=src)
    assert os.path.getsize(f"{folder / LOG}-wal") > 0
    (folder / LOG).unlink()


@pytest.mark.parametrize("checkpoints", [True, False], ids=["checkpoints", "no checkpoints"])
def test_a_crashed_logs_wal_without_its_database_is_refused_and_kept(
    tmp_path: Path, checkpoints: bool
) -> None:
    """SQLite deletes a -wal beside an empty database: a new log is not made beside the -wal
    a crashed guard left (its records, the database deleted), and the -wal stays."""
    _crashed(tmp_path)
    if not checkpoints:
        (tmp_path / f"{LOG}.checkpoints").unlink()
    error = _unchanged(tmp_path, False, _refused(lambda: AuditLog(tmp_path / LOG)))
    assert "-wal" in error.message


@pytest.mark.parametrize("events", [0, 2], ids=["no event", "two events"])
def test_a_refused_open_leaves_the_new_log_it_made_once_another_guard_uses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, events: int
) -> None:
    """This open created the log and its chain; before it was refused (its checkpoint file
    unreadable, monkeypatched) another guard opened the log (still open) and recorded
    `events`, or recorded two and closed it: the log stays, with those events."""
    from bastion.guard import audit
    from bastion.guard.checkpoints import AuditError

    log = tmp_path / LOG
    check = audit.AuditLog._check_checkpoints
    others: list[AuditLog] = []

    def meanwhile(self: AuditLog, conn: sqlite3.Connection) -> Any:
        monkeypatch.setattr(audit.AuditLog, "_check_checkpoints", check)
        others.append(AuditLog(log))
        for _ in range(events):
            others[-1].submit(_event()).result(timeout=10)
        if events:
            others.pop().close()
        raise AuditError("refused")

    monkeypatch.setattr(audit.AuditLog, "_check_checkpoints", meanwhile)
    try:
        with pytest.raises(AuditError, match="refused"):
            AuditLog(log)
        assert log.exists()
    finally:
        while others:
            others.pop().close()
    with AuditLog(log) as reopened:
        assert reopened._seq == events


def test_a_key_store_whose_setup_fails_leaves_the_file_another_worker_opened_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers share the key store: one creates the file, another opens it (and makes its
    tables) before the first one's setup fails (monkeypatched): the file stays, with its
    -wal and -shm, and the other worker's store works."""
    from bastion.guard import auth

    path = tmp_path / "keys.sqlite3"
    real = auth.create_new
    others: list[KeyStore] = []

    def meanwhile(made_path: Path, mode: int) -> Any:
        made = real(made_path, mode)
        others.append(KeyStore(path))
        monkeypatch.setattr(auth, "SCHEMA", "CREATE TABLE keys (")  # this worker's setup fails
        return made

    monkeypatch.setattr(auth, "create_new", meanwhile)
    try:
        with pytest.raises(InputError):
            KeyStore(path)
        assert path.exists()
        others[0].create(["predict"])
    finally:
        while others:
            others.pop().close()
