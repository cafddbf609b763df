"""API keys, JWTs and the keys CLI."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bastion.cli.main import main
from bastion.errors import ConfigError, UsageError
from bastion.guard.auth import (
    Authenticator,
    AuthFailure,
    JwtVerifier,
    KeyStore,
    Principal,
    authorise,
    parse_expiry,
)
from bastion.guard.settings import JwtSettings


def _reason(auth: Authenticator, header: bytes | None) -> str:
    with pytest.raises(AuthFailure) as failure:
        auth.authenticate(header)
    return failure.value.reason


def test_keys_are_random_stored_hashed_and_checked(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite3")
    key, info = store.create(["predict", "score"], tenant="acme")
    prefix, key_id, secret = key.split("_", 2)
    assert prefix == "bst" and key_id == info.id and len(secret) == 43  # 256 bits, base64url
    raw = (tmp_path / "keys.sqlite3").read_bytes()
    assert secret.encode() not in raw
    assert (tmp_path / "keys.sqlite3").stat().st_mode & 0o777 == 0o600
    auth = Authenticator(store)
    principal = auth.authenticate(f"Bearer {key}".encode())
    assert principal == Principal(
        key_id=info.id, tenant="acme", scopes=frozenset({"predict", "score"})
    )
    other, _ = store.create(["predict"])
    assert len({key, other}) == 2
    flipped = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert _reason(auth, f"Bearer {flipped}".encode()) == "secret"
    assert _reason(auth, f"Bearer bst_000000000000_{secret}".encode()) == "unknown"
    assert _reason(auth, None) == "missing"
    assert _reason(auth, b"Basic abc") == "malformed"
    assert _reason(auth, f"Bearer {key}x".encode()) == "malformed"
    assert _reason(auth, b"Bearer " + "é".encode()) == "malformed"
    assert _reason(auth, b"Bearer " + b"a" * 10_000) == "malformed"


def test_revoke_expire_rotate(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite3")
    auth = Authenticator(store)
    key, info = store.create(["predict"])
    store.revoke(info.id)
    assert _reason(auth, f"Bearer {key}".encode()) == "revoked"
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1.5)
    short, _ = store.create(["predict"], expires=soon)
    auth.authenticate(f"Bearer {short}".encode())
    time.sleep(2.1)
    assert _reason(auth, f"Bearer {short}".encode()) == "expired"
    old, old_info = store.create(["score"], tenant="t1")
    new, new_info = store.rotate(old_info.id, dt.timedelta(0))
    assert new_info.scopes == ("score",) and new_info.tenant == "t1"
    assert new_info.replaces == old_info.id
    time.sleep(1.1)
    assert _reason(auth, f"Bearer {old}".encode()) == "expired"
    assert auth.authenticate(f"Bearer {new}".encode()).key_id == new_info.id
    with pytest.raises(UsageError):
        store.create(["root"])
    with pytest.raises(UsageError):
        store.create(["predict"], tenant="bad tenant; drop")
    with pytest.raises(UsageError):
        parse_expiry("next tuesday")
    assert parse_expiry("2030-01-31") == dt.datetime(2030, 1, 31, tzinfo=dt.timezone.utc)


def test_scopes_admin_is_not_audit_reader() -> None:
    admin = Principal(key_id="a", tenant=None, scopes=frozenset({"admin"}))
    authorise(admin, "predict")
    with pytest.raises(AuthFailure):
        authorise(admin, "audit:read")
    reader = Principal(key_id="r", tenant=None, scopes=frozenset({"audit:read"}))
    with pytest.raises(AuthFailure):
        authorise(reader, "predict")


def test_keys_cli_prints_the_secret_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "k.sqlite3")
    assert (
        main(
            [
                "guard",
                "keys",
                "create",
                "--scope",
                "predict",
                "--tenant",
                "acme",
                "--expires",
                "2099-01-01",
                "--keys-db",
                db,
            ]
        )
        == 0
    )
    key = capsys.readouterr().out.strip()
    assert key.startswith("bst_")
    assert main(["guard", "keys", "list", "--json", "--keys-db", db]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed[0]["tenant"] == "acme" and key.split("_", 2)[2] not in json.dumps(listed)
    assert main(["guard", "keys", "revoke", listed[0]["id"], "--keys-db", db]) == 0
    assert main(["guard", "keys", "list", "--keys-db", db]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["guard", "keys", "revoke", "nothex", "--keys-db", db]) == 2
    assert (
        main(
            [
                "guard",
                "keys",
                "create",
                "--scope",
                "predict",
                "--expires",
                "2001-01-01",
                "--keys-db",
                db,
            ]
        )
        == 2
    )


def test_a_corrupt_key_store_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "keys.sqlite3"
    bad.write_bytes(b"not a database" * 100)
    with pytest.raises(Exception) as error:
        KeyStore(bad)
    assert "key store" in str(error.value)
    assert not isinstance(error.value, sqlite3.DatabaseError)


# -- JWT -----------------------------------------------------------------------------------------


@pytest.fixture()
def issuer(tmp_path: Path):  # type: ignore[no-untyped-def]
    jwt = pytest.importorskip("jwt")
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    public.update(kid="k1", alg="RS256", use="sig")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [public]}))
    settings = JwtSettings(
        enabled=True, issuer="https://idp.example", audience="bastion", jwks_file=str(jwks)
    )

    def token(**claims: object) -> str:
        now = int(time.time())
        body = {
            "iss": "https://idp.example",
            "aud": "bastion",
            "sub": "svc-1",
            "exp": now + 60,
            "scope": "predict score",
            "tenant": "acme",
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        return str(jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"}))

    return JwtVerifier(settings, jwks), token, key, jwt


def test_jwt_pinned_issuer_audience_algorithm(issuer) -> None:  # type: ignore[no-untyped-def]
    verifier, token, _key, jwt = issuer
    principal = verifier.authenticate(token())
    assert principal.key_id == "jwt:svc-1" and principal.tenant == "acme"
    assert principal.scopes == frozenset({"predict", "score"}) and principal.kind == "jwt"
    for bad, reason in (
        (token(iss="https://evil.example"), "secret"),
        (token(aud="other"), "secret"),
        (token(exp=int(time.time()) - 3600), "expired"),
        (token(sub=None), "secret"),
        (
            jwt.encode(
                {
                    "iss": "https://idp.example",
                    "aud": "bastion",
                    "sub": "x",
                    "exp": int(time.time()) + 60,
                },
                "shared-secret-0123456789abcdef0123",
                algorithm="HS256",
                headers={"kid": "k1"},
            ),
            "malformed",
        ),
        (token()[:-4] + "AAAA", "secret"),
        ("a.b", "malformed"),
    ):
        with pytest.raises(AuthFailure) as failure:
            verifier.authenticate(bad)
        assert failure.value.reason == reason
    none_alg = jwt.encode({"sub": "x"}, None, algorithm="none")
    with pytest.raises(AuthFailure):
        verifier.authenticate(none_alg)
    unknown_scope = verifier.authenticate(token(scope="predict root"))
    assert unknown_scope.scopes == frozenset({"predict"})


def test_jwt_settings_refuse_weak_algorithms(tmp_path: Path) -> None:
    from bastion.records import RecordError

    with pytest.raises(RecordError):
        JwtSettings(enabled=True, issuer="i", audience="a", jwks_file="f", algorithms=("HS256",))
    with pytest.raises(RecordError):
        JwtSettings(enabled=True, issuer="", audience="a", jwks_file="f")
    with pytest.raises(ConfigError):
        JwtVerifier(JwtSettings(), tmp_path / "missing.json")


def _pragmas(store: KeyStore) -> list[str]:
    """The data_version pragmas `store`'s connection runs from now on."""
    seen: list[str] = []
    store._conn.set_trace_callback(lambda sql: seen.append(sql) if "data_version" in sql else None)
    return seen


def test_revocation_in_another_worker_is_seen_on_the_next_request(tmp_path: Path) -> None:
    """The guard's store (a worker) and the CLI's (another connection to the same file): each
    revocation, expiry change and new key is seen on the next request, never later, while
    requests between commits skip the pragma."""
    guard_store = KeyStore(tmp_path / "keys.sqlite3")
    cli_store = KeyStore(tmp_path / "keys.sqlite3")
    auth = Authenticator(guard_store)
    pragmas = _pragmas(guard_store)
    for _ in range(30):  # enough commits for SQLite to restart its WAL now and then
        key, info = cli_store.create(["predict"])
        assert auth.authenticate(f"Bearer {key}".encode()).key_id == info.id
        before = len(pragmas)
        for _ in range(20):
            auth.authenticate(f"Bearer {key}".encode())
        assert len(pragmas) == before  # nothing committed: the cache stands
        cli_store.revoke(info.id)
        assert _reason(auth, f"Bearer {key}".encode()) == "revoked"
        assert len(pragmas) == before + 1


def test_revocation_is_seen_without_the_wal_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store whose WAL index cannot be read runs the pragma on every request; one whose
    header never changes (a journal mode another process switched) runs it every second."""
    guard_store = KeyStore(tmp_path / "keys.sqlite3")
    cli_store = KeyStore(tmp_path / "keys.sqlite3")
    auth = Authenticator(guard_store)
    pragmas = _pragmas(guard_store)
    monkeypatch.setattr(guard_store, "_wal_index_header", lambda: None)
    key, info = cli_store.create(["predict"])
    for _ in range(5):
        auth.authenticate(f"Bearer {key}".encode())
    assert len(pragmas) == 5
    cli_store.revoke(info.id)
    assert _reason(auth, f"Bearer {key}".encode()) == "revoked"

    import bastion.guard.auth as auth_module

    clock = [1000.0]
    monkeypatch.setattr(auth_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(guard_store, "_wal_index_header", lambda: b"\0" * 48)
    key, info = cli_store.create(["predict"])
    auth.authenticate(f"Bearer {key}".encode())
    cli_store.revoke(info.id)
    clock[0] += auth_module.CHECK_EVERY_S / 2
    auth.authenticate(f"Bearer {key}".encode())  # the header says nothing changed
    clock[0] += auth_module.CHECK_EVERY_S / 2
    assert _reason(auth, f"Bearer {key}".encode()) == "revoked"
    guard_store.close()
    cli_store.close()


def _cached_key(path: Path) -> tuple[KeyStore, Authenticator, str, Any]:
    """A store, its authenticator, and a key it has authenticated once (so it is cached)."""
    store = KeyStore(path)
    auth = Authenticator(store)
    key, info = store.create(["predict"])
    auth.authenticate(f"Bearer {key}".encode())
    return store, auth, key, info


def test_own_revocation_and_rotation_drop_the_cached_key(tmp_path: Path) -> None:
    store, auth, key, info = _cached_key(tmp_path / "keys.sqlite3")
    store.revoke(info.id)
    assert _reason(auth, f"Bearer {key}".encode()) == "revoked"
    old, old_info = store.create(["predict"])
    auth.authenticate(f"Bearer {old}".encode())
    store.rotate(old_info.id, dt.timedelta(0))
    time.sleep(1.1)
    assert _reason(auth, f"Bearer {old}".encode()) == "expired"


def test_a_symlinked_store_reads_its_real_wal_index(tmp_path: Path) -> None:
    """SQLite keeps the WAL index beside the store's real path. A stale file planted at
    `<link>-shm` (left by a crash) is never read: revocation still applies on the next
    request, not a second later."""
    real = tmp_path / "real" / "keys.sqlite3"
    real.parent.mkdir()
    KeyStore(real).close()
    link = tmp_path / "keys.sqlite3"
    link.symlink_to(real)
    Path(f"{link}-shm").write_bytes(b"\x01" * 4096)  # left by a crash
    guard_store, cli_store = KeyStore(link), KeyStore(real)
    auth = Authenticator(guard_store)
    for _ in range(5):
        key, info = cli_store.create(["predict"])
        auth.authenticate(f"Bearer {key}".encode())
        cli_store.revoke(info.id)
        assert _reason(auth, f"Bearer {key}".encode()) == "revoked"
    guard_store.close()
    cli_store.close()


def test_a_fifo_or_symlink_at_the_wal_index_path_is_not_read(tmp_path: Path) -> None:
    """What the guard reads as the WAL index is opened without blocking or following a
    symlink, and used only as a regular file: a FIFO (which would block an open, and the event
    loop with it) or a symlink there gives no header, so the pragma decides."""
    fifo = tmp_path / "other.sqlite3-shm"
    os.mkfifo(fifo)
    os.symlink(fifo, tmp_path / "linked.sqlite3-shm")
    for name in ("other.sqlite3", "linked.sqlite3"):
        store = KeyStore(tmp_path / "keys.sqlite3")
        store.path = tmp_path / name  # only `_wal_index_header` reads it from here on
        headers: list[bytes | None] = []
        worker = threading.Thread(
            target=lambda s=store, h=headers: h.append(s._wal_index_header()), daemon=True
        )
        worker.start()
        worker.join(timeout=5)
        assert headers == [None], f"{name}: the key check hung or read a non-regular file"
        store.close()


def test_a_closed_store_refuses_and_keeps_no_descriptor(tmp_path: Path) -> None:
    """Used after close() (another worker keeps the WAL index in place), the store reopens
    nothing and does not answer from its cache."""
    store, auth, key, _ = _cached_key(tmp_path / "keys.sqlite3")
    other = KeyStore(tmp_path / "keys.sqlite3")
    store.close()
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(sqlite3.ProgrammingError):
        auth.authenticate(f"Bearer {key}".encode())
    assert len(os.listdir("/proc/self/fd")) == before
    other.close()


def test_a_cached_key_expires_on_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key check keeps a cached key's expiry as a number and compares it with the clock on
    every request: a key authenticated (and cached) before its expiry is refused from the
    second it expires, with no change to the store."""
    import bastion.guard.auth as auth_module

    store = KeyStore(tmp_path / "keys.sqlite3")
    auth = Authenticator(store)
    expires = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(hours=1)
    key, _ = store.create(["predict"], expires=expires)
    header = f"Bearer {key}".encode()
    assert auth.authenticate(header).scopes == frozenset({"predict"})
    just_before = expires - dt.timedelta(microseconds=1)
    monkeypatch.setattr(auth_module, "_now", lambda: just_before)
    assert auth.authenticate(header).scopes == frozenset({"predict"})
    monkeypatch.setattr(auth_module, "_now", lambda: expires)
    assert _reason(auth, header) == "expired"
    monkeypatch.setattr(auth_module, "_now", lambda: expires + dt.timedelta(days=1))
    assert _reason(auth, header) == "expired"
    store.close()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("expires_at", "soon"),
        ("tenant", "acme\n"),
        ("tenant", "a b;c"),
        ("scopes", "predict root"),
        ("scopes", ""),
    ],
)
def test_a_key_record_edited_by_hand_is_refused_not_crashing(
    tmp_path: Path, column: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A record `keys create` would never write (the store is a file anyone with access can
    edit): the key is refused as unknown, cached or not, with a warning, never an exception
    out of the request (which then got no answer and no audit event); the other keys work."""
    store = KeyStore(tmp_path / "keys.sqlite3")
    auth = Authenticator(store)
    edited, edited_info = store.create(["predict"], tenant="acme")
    fine, _ = store.create(["predict"], tenant="acme")
    with sqlite3.connect(tmp_path / "keys.sqlite3") as other:
        other.execute(f"UPDATE keys SET {column} = ? WHERE id = ?", (value, edited_info.id))
    with caplog.at_level("WARNING", logger="bastion.guard"):
        for _ in range(2):  # cached or not
            assert _reason(auth, f"Bearer {edited}".encode()) == "unknown"
    assert [r for r in caplog.records if edited_info.id in r.getMessage()]
    assert auth.authenticate(f"Bearer {fine}".encode()).tenant == "acme"
    store.close()
