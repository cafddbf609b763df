"""Who is looking at the dashboard: login with a guard API key, server-side sessions, CSRF
tokens and login throttling.

A person logs in with a key an administrator issued with `bastion guard keys create` (the
guard's key store, `bastion.guard.auth`), holding the `admin` or the `audit:read` scope. The
key is checked once, at login; the session then remembers only the key's id, and every request
asks the key store whether that key is still active, so revoking or expiring the key ends its
sessions at once.

Sessions live in this process's memory under a random 256-bit id (only its SHA-256 is kept as
the dictionary key), with an idle and an absolute lifetime, a bounded count, and a CSRF token
of their own. A restart logs everyone out, which a single-process read-only dashboard can
afford. The login form has no session yet: its CSRF token is an HMAC, under a per-process
secret, of a random nonce held in a short-lived pre-login cookie (a signed double submit), so
a page on another origin cannot log a victim's browser into the attacker's account. Failed
logins are throttled per client address."""

from __future__ import annotations

import collections
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from bastion.records import Record

LOGIN_SCOPES = frozenset({"admin", "audit:read"})
AUDIT_SCOPE = "audit:read"
MAX_TOKEN_CHARS = 8192


class Identity(Record):
    """A logged-in key: its public id, tenant and scopes (never the secret)."""

    key_id: str
    tenant: str | None
    scopes: frozenset[str]

    @property
    def reads_audit(self) -> bool:
        return AUDIT_SCOPE in self.scopes


class KeyVerifier(Protocol):
    """What the dashboard needs from a key store."""

    def verify(self, token: str) -> Identity | None:
        """The identity of a token allowed to log in, or None (for any reason: the reason is
        not the visitor's business)."""

    def active(self, key_id: str) -> bool:
        """Whether the key is still active (not revoked, not expired)."""


class GuardKeys:
    """The guard's API key store (`bastion guard keys ...`) as the dashboard's verifier."""

    def __init__(self, path: Path) -> None:
        from bastion.errors import UsageError
        from bastion.guard.auth import KeyStore

        if not Path(path).is_file():
            raise UsageError(
                f"no key store at {path}",
                hint="create a key first: bastion guard keys create --scope audit:read "
                "[--keys-db FILE]",
            )
        self._store = KeyStore(Path(path))

    def verify(self, token: str) -> Identity | None:
        from bastion.guard.auth import AuthFailure

        if len(token) > MAX_TOKEN_CHARS:
            return None
        try:
            principal = self._store.authenticate(token.strip())
        except AuthFailure:
            return None
        if not principal.scopes & LOGIN_SCOPES:
            return None
        return Identity(key_id=principal.key_id, tenant=principal.tenant, scopes=principal.scopes)

    def active(self, key_id: str) -> bool:
        from bastion.errors import UsageError

        try:
            return bool(self._store.get(key_id).state() == "active")
        except UsageError:
            return False

    def close(self) -> None:
        self._store.close()


class Session(Record):
    identity: Identity
    csrf: str
    created: float
    seen: float


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("ascii", "replace")).hexdigest()


class Sessions:
    """Server-side sessions (see the module docstring). Thread-safe."""

    def __init__(
        self,
        *,
        idle_s: float = 30 * 60,
        max_age_s: float = 8 * 3600,
        max_sessions: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_s = idle_s
        self.max_age_s = max_age_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._secret = secrets.token_bytes(32)

    def create(self, identity: Identity) -> tuple[str, Session]:
        """A new session (a new id: a session id is never carried over a login)."""
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(identity=identity, csrf=secrets.token_urlsafe(32), created=now, seen=now)
        with self._lock:
            self._sessions[_digest(session_id)] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)  # the least recently used
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 100:
            return None
        key = _digest(session_id)
        now = self._clock()
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            if now - session.seen > self.idle_s or now - session.created > self.max_age_s:
                del self._sessions[key]
                return None
            session = session.model_copy(update={"seen": now})
            self._sessions[key] = session
            self._sessions.move_to_end(key)
        return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._sessions.pop(_digest(session_id), None)

    def end_key(self, key_id: str) -> None:
        with self._lock:
            for key in [k for k, s in self._sessions.items() if s.identity.key_id == key_id]:
                del self._sessions[key]

    def __len__(self) -> int:
        return len(self._sessions)

    # -- the login form's CSRF token (no session yet) ------------------------------------------

    def login_nonce(self) -> str:
        return secrets.token_urlsafe(24)

    def login_token(self, nonce: str) -> str:
        mac = hmac.new(self._secret, b"bastion-ui login\0" + nonce.encode(), hashlib.sha256)
        return mac.hexdigest()

    def login_token_ok(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token or len(nonce) > 64 or len(token) > 64:
            return False
        return hmac.compare_digest(self.login_token(nonce), token)


def csrf_ok(session: Session, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(session.csrf.encode(), (token or "").encode())


class LoginThrottle:
    """At most `attempts` failed logins per client address in `window_s` (bounded memory)."""

    def __init__(
        self,
        attempts: int = 10,
        window_s: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self.max_clients = max_clients
        self._clock = clock
        self._failures: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> collections.deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            failures = self._failures[client] = collections.deque(maxlen=self.attempts)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
        while failures and now - failures[0] > self.window_s:
            failures.popleft()
        return failures

    def allowed(self, client: str) -> bool:
        with self._lock:
            return len(self._recent(client, self._clock())) < self.attempts

    def failed(self, client: str) -> None:
        now = self._clock()
        with self._lock:
            self._recent(client, now).append(now)
            self._failures.move_to_end(client)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)
