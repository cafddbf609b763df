"""Dashboard sessions, login tokens and throttling, and the guard key store as the verifier."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from bastion.errors import UsageError
from bastion.ui.sessions import GuardKeys, Identity, LoginThrottle, Sessions, csrf_ok

ME = Identity(key_id="0123456789ab", tenant=None, scopes=frozenset({"audit:read"}))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_session_lifetimes_and_ending() -> None:
    clock = Clock()
    sessions = Sessions(idle_s=60, max_age_s=300, clock=clock)
    sid, session = sessions.create(ME)
    assert len(sid) >= 43 and sessions.get(sid) == session.model_copy(update={"seen": 1000.0})
    assert sessions.get(sid + "x") is None and sessions.get(None) is None
    clock.now += 59
    assert sessions.get(sid) is not None  # activity keeps it alive...
    for _ in range(5):
        clock.now += 59
        assert sessions.get(sid) is not None or clock.now - 1000 > 300
    assert sessions.get(sid) is None  # ...but never past the absolute lifetime
    other, _ = sessions.create(ME)
    clock.now += 61
    assert sessions.get(other) is None  # idle too long
    third, _ = sessions.create(ME)
    sessions.end(third)
    assert sessions.get(third) is None
    a, _ = sessions.create(ME)
    b, _ = sessions.create(ME.model_copy(update={"key_id": "ba9876543210"}))
    sessions.end_key(ME.key_id)
    assert sessions.get(a) is None and sessions.get(b) is not None


def test_session_count_is_bounded_least_recently_used_first() -> None:
    sessions = Sessions(max_sessions=3)
    ids = [sessions.create(ME)[0] for _ in range(3)]
    sessions.get(ids[0])  # used: the second is now the oldest
    sessions.create(ME)
    assert len(sessions) == 3
    assert sessions.get(ids[1]) is None and sessions.get(ids[0]) is not None


def test_csrf_and_login_tokens() -> None:
    sessions = Sessions()
    _, session = sessions.create(ME)
    assert csrf_ok(session, session.csrf)
    assert not csrf_ok(session, None) and not csrf_ok(session, session.csrf[:-1] + "x")
    nonce = sessions.login_nonce()
    token = sessions.login_token(nonce)
    assert sessions.login_token_ok(nonce, token)
    assert not sessions.login_token_ok(sessions.login_nonce(), token)  # another visitor's
    assert not sessions.login_token_ok(nonce, Sessions().login_token(nonce))  # another process
    assert not sessions.login_token_ok(None, token) and not sessions.login_token_ok(nonce, "")


def test_login_throttle() -> None:
    clock = Clock()
    throttle = LoginThrottle(attempts=3, window_s=60, max_clients=2, clock=clock)
    for _ in range(3):
        assert throttle.allowed("10.0.0.1")
        throttle.failed("10.0.0.1")
    assert not throttle.allowed("10.0.0.1") and throttle.allowed("10.0.0.2")
    clock.now += 61
    assert throttle.allowed("10.0.0.1")
    throttle.failed("10.0.0.1")
    throttle.succeeded("10.0.0.1")
    assert throttle.allowed("10.0.0.1")
    for client in ("a", "b", "c"):
        throttle.failed(client)
    assert len(throttle._failures) <= 2  # bounded memory


def test_guard_keys_as_the_verifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion.guard.auth import KeyStore

    path = tmp_path / "keys.sqlite3"
    with pytest.raises(UsageError):
        GuardKeys(path)  # no key store: a clear error, not an empty one created
    store = KeyStore(path)
    reader, _ = store.create(["audit:read"])
    admin, _ = store.create(["admin"], tenant="ops")
    client, _ = store.create(["predict", "score"])
    soon, soon_info = store.create(
        ["audit:read"], expires=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)
    )
    keys = GuardKeys(path)
    seen = keys.verify(reader)
    assert seen is not None and seen.reads_audit and seen.key_id == reader.split("_")[1]
    boss = keys.verify(admin)
    assert boss is not None and not boss.reads_audit and boss.tenant == "ops"
    assert keys.verify(client) is None  # a model client's key does not open the dashboard
    for bad in ("", "bst_", reader[:-1], reader + "x", "Bearer " + reader, "x" * 10_000):
        assert keys.verify(bad) is None
    assert keys.active(seen.key_id)
    store.revoke(seen.key_id)
    assert keys.verify(reader) is None and not keys.active(seen.key_id)
    assert not keys.active("ffffffffffff") and not keys.active("not-an-id")
    assert keys.active(soon_info.id) and keys.verify(soon) is not None
    import bastion.guard.auth as auth

    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)
    monkeypatch.setattr(auth, "_now", lambda: later)
    assert not keys.active(soon_info.id) and keys.verify(soon) is None  # expired
    keys.close()
    store.close()
