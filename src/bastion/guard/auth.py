"""Who is calling: API keys in a SQLite key store, and optional OIDC/JWT bearer tokens.

An API key is `bst_<id>_<secret>`: a 12-hex-digit id (public: it names the key in logs, the
audit trail and `keys list`) and a 256-bit secret from `secrets.token_urlsafe(32)`. Only a
SHA-256 digest of the secret is stored (domain-separated, bound to the id). A slow password
hash (bcrypt, scrypt, Argon2) protects *low-entropy* secrets against guessing; a uniformly
random 256-bit secret cannot be guessed whatever the hash, and a slow hash would cost tens of
milliseconds on every request (or force caching of secret-equivalents in memory). Digests are
compared with `hmac.compare_digest`, and an unknown id is compared against a dummy digest, so
timing does not tell an unknown id from a wrong secret.

Keys carry scopes (predict, score, admin, audit:read), a tenant, an optional expiry, and can be
revoked or rotated (a new key with the same scopes and tenant; the old one expires after a grace
period). The key store is read on every request through a cache that is dropped whenever
another connection commits (SQLite's `PRAGMA data_version`), so `bastion guard keys revoke` takes
effect on the next request in every worker sharing the file. The pragma is a read transaction
(locks on the WAL index: 60-80 µs when its code is out of the CPU's caches, as it is between
requests), so it runs only when the WAL-index header has changed since the last one, or a
second has passed. SQLite rewrites that header on every commit in WAL mode (its `iChange` and
`mxFrame` fields, sqlite.org/walformat.html); the guard only compares 48 bytes of it, read
with one `pread` of the `-shm` file, and never interprets them. A store that cannot be read
that way (no `-shm` file) is checked by the pragma on every request.

JWTs are verified with PyJWT against a pinned issuer, audience and algorithm list, with keys
from a configured JWKS file; asymmetric algorithms only."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sqlite3
import stat
import threading
import time
from pathlib import Path
from typing import Any, Literal

from bastion.errors import ConfigError, InputError, UsageError
from bastion.guard.digests import sha256_hex
from bastion.guard.files import Made, create_new, make_folders, remove_folders, remove_made
from bastion.guard.settings import SCOPES, JwtSettings
from bastion.records import Record

PREFIX = "bst"
WAL_INDEX_HEADER = 48  # bytes of the WAL-index header compared between requests (see above)
CHECK_EVERY_S = 1.0  # the pragma runs at least this often whatever the header says
_KEY = re.compile(r"^bst_([0-9a-f]{12})_([A-Za-z0-9_-]{43})\Z")
_ID = re.compile(r"^[0-9a-f]{12}\Z")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}\Z")
_SUBJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,100}\Z")
_DUMMY = hashlib.sha256(b"bastion-guard-key/1 dummy").hexdigest()
log = logging.getLogger("bastion.guard")
MAX_HEADER = 8192
# the request path reads a key without regular expressions (the engine's code is a cold
# cache's worth of misses between requests): the same characters as _KEY and _ID
_HEX_DIGITS = "0123456789abcdef"
_SECRET_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_KEY_LENGTH = 60  # bst_ + 12 + _ + 43


def is_key_id(text: str) -> bool:
    """Whether `text` is 12 lowercase hex digits, a key id (what `_ID` matches)."""
    return len(text) == 12 and not text.strip(_HEX_DIGITS)


def _key_parts(token: str) -> tuple[str, str] | None:
    """(id, secret) of a token of the key's form, else None: what `_KEY` matches, read with
    string operations."""
    if len(token) != _KEY_LENGTH:
        return None
    key_id, secret = token[4:16], token[17:]
    if (
        token[:4] != "bst_"
        or token[16] != "_"
        or key_id.strip(_HEX_DIGITS)
        or secret.strip(_SECRET_CHARS)
    ):
        return None
    return key_id, secret


SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    scopes TEXT NOT NULL,
    tenant TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    replaces TEXT,
    note TEXT
);
"""

Failure = Literal["missing", "malformed", "unknown", "secret", "expired", "revoked", "scope"]


class Principal(Record):
    """An authenticated caller."""

    key_id: str
    tenant: str | None
    scopes: frozenset[str]
    kind: Literal["key", "jwt"] = "key"


class KeyInfo(Record):
    """A key as `keys list` shows it (never the secret or its digest)."""

    id: str
    scopes: tuple[str, ...]
    tenant: str | None
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    replaces: str | None
    note: str | None

    def state(self, now: dt.datetime | None = None) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and _parse_time(self.expires_at) <= (now or _now()):
            return "expired"
        return "active"


class AuthFailure(Exception):
    """Authentication or authorisation failed; `reason` is for the audit log and metrics,
    never for the client."""

    def __init__(self, reason: Failure) -> None:
        super().__init__(reason)
        self.reason = reason


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _time_text(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def parse_expiry(text: str) -> dt.datetime:
    """`--expires`: a date (the key expires at 00:00 UTC that day) or an ISO date-time."""
    try:
        if re.fullmatch(r"\d{4}-\d\d-\d\d", text):
            moment = dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
        else:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise UsageError(
            f"--expires {text!r} is not a date", hint="use YYYY-MM-DD or an ISO 8601 date-time"
        ) from None
    return moment


def digest(key_id: str, secret: str) -> str:
    """The stored form of a key's secret (see the module docstring for why SHA-256)."""
    return sha256_hex(f"bastion-guard-key/1\0{key_id}\0{secret}".encode())


def check_scopes(scopes: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise UsageError(
            f"unknown scope {', '.join(unknown) or '(none)'}",
            hint=f"scopes are {', '.join(SCOPES)}",
        )
    return tuple(sorted(set(scopes)))


class KeyStore:
    """API keys in a SQLite file (WAL; created 0600). Thread-safe; `authenticate` runs on the
    event loop's thread and reads through a cache invalidated by other connections' commits."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._made: Made | None = None  # (device, inode) of the file it created
        self._folders: list[tuple[Path, Made]] = []  # the missing parents it made
        if not self.path.exists():
            try:
                self._folders = make_folders(self.path.parent)
                self._made = create_new(self.path, 0o600)
                if self._made is None:  # made meanwhile, or a dangling symlink: not ours
                    os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            except OSError as exc:
                self._remove_made(self._made)
                raise InputError(f"cannot create the key store {self.path}: {exc}") from exc
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=2000")
            conn.executescript(SCHEMA)
        except BaseException as exc:  # closed, and what this call made removed again
            if conn is not None:
                conn.close()
            self._remove_made(self._made)
            if isinstance(exc, sqlite3.Error):
                raise InputError(f"{self.path} is not a usable key store: {exc}") from exc
            raise
        self._conn = conn
        self._lock = threading.Lock()
        # key id -> (stored digest, record, expiry in epoch seconds or None), or None
        self._cache: dict[str, tuple[str, KeyInfo, float | None] | None] = {}
        self._principals: dict[str, Principal] = {}
        self._version = -1
        self._wal_index: bytes | None = None  # the WAL-index header at the last pragma
        self._checked_at = -CHECK_EVERY_S  # time.monotonic() of the last pragma
        self._shm: int | None = None  # the -shm file, opened read-only on first use
        self._closed = False

    def close(self) -> None:
        self._conn.close()
        self._closed = True  # the next lookup's pragma raises, as it always did
        self._wal_index = None
        if self._shm is not None:
            os.close(self._shm)
            self._shm = None

    def discard(self) -> None:
        """Close, and remove the file if this store created it and nobody has used it since (and
        the parent folders it made, if empty): for a start that fails once the store is open. A
        file that was there before, was replaced (or is now a symlink), holds a key, or is open
        elsewhere (SQLite leaves its -wal and -shm while another connection has it) is left as
        it is."""
        made = self._made
        try:
            unused = made is not None and not self._conn.execute("SELECT 1 FROM keys").fetchone()
        except sqlite3.Error:  # not the error to report: the failed start's is
            unused = False
        self.close()
        self._remove_made(made if unused else None)

    def _remove_made(self, made: Made | None) -> None:
        """Once closed: remove the file `made` names if no other connection has it open (it
        left no -wal or -shm), and the folders this call made that are still empty."""
        remove_made(self.path, made, f"{self.path}-wal", f"{self.path}-shm")
        remove_folders(self._folders)

    # -- management (the CLI) ----------------------------------------------------------------

    def create(
        self,
        scopes: tuple[str, ...] | list[str],
        tenant: str | None = None,
        expires: dt.datetime | None = None,
        note: str | None = None,
        replaces: str | None = None,
    ) -> tuple[str, KeyInfo]:
        """A new key: (the full key, shown once; its record)."""
        chosen = check_scopes(scopes)
        if tenant is not None and not _TENANT.match(tenant):
            raise UsageError(f"tenant {tenant!r} must be letters, digits and _ . : @ -")
        if expires is not None and expires <= _now():
            raise UsageError("--expires is in the past")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        info = KeyInfo(
            id=key_id,
            scopes=chosen,
            tenant=tenant,
            created_at=_time_text(_now()),
            expires_at=_time_text(expires) if expires else None,
            revoked_at=None,
            replaces=replaces,
            note=(note or "")[:200] or None,
        )
        with self._lock:
            self._conn.execute(
                "INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                (
                    key_id,
                    digest(key_id, secret),
                    " ".join(chosen),
                    tenant,
                    info.created_at,
                    info.expires_at,
                    replaces,
                    info.note,
                ),
            )
        return f"{PREFIX}_{key_id}_{secret}", info

    def list(self) -> list[KeyInfo]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, scopes, tenant, created_at, expires_at, revoked_at, replaces, note "
                "FROM keys ORDER BY created_at, id"
            ).fetchall()
        return [_info(row) for row in rows]

    def get(self, key_id: str) -> KeyInfo:
        if not _ID.match(key_id):
            raise UsageError(f"{key_id!r} is not a key id (12 hex digits, as `keys list` shows)")
        with self._lock:
            row = self._conn.execute(
                "SELECT id, scopes, tenant, created_at, expires_at, revoked_at, replaces, note "
                "FROM keys WHERE id = ?",
                (key_id,),
            ).fetchone()
        if row is None:
            raise UsageError(f"no key {key_id} in {self.path}")
        return _info(row)

    def revoke(self, key_id: str) -> KeyInfo:
        info = self.get(key_id)
        if info.revoked_at is None:
            with self._lock:
                self._conn.execute(
                    "UPDATE keys SET revoked_at = ? WHERE id = ?", (_time_text(_now()), key_id)
                )
                # this connection's own commits do not change its data_version
                self._cache.pop(key_id, None)
                self._principals.pop(key_id, None)
        return self.get(key_id)

    def rotate(self, key_id: str, grace: dt.timedelta) -> tuple[str, KeyInfo]:
        """A new key with the old one's scopes and tenant; the old one expires after `grace`."""
        old = self.get(key_id)
        if old.state() != "active":
            raise UsageError(f"key {key_id} is {old.state()}: create a new key instead")
        expires = old.expires_at and _parse_time(old.expires_at)
        full, new = self.create(
            old.scopes,
            old.tenant,
            expires if expires and expires > _now() else None,
            old.note,
            replaces=key_id,
        )
        ends = _now() + grace
        if not expires or ends < expires:
            with self._lock:
                self._conn.execute(
                    "UPDATE keys SET expires_at = ? WHERE id = ?", (_time_text(ends), key_id)
                )
                self._cache.pop(key_id, None)
        return full, new

    # -- the request path -------------------------------------------------------------------

    def _wal_index_header(self) -> bytes | None:
        """The first 48 bytes of the WAL index, or None when unreadable. SQLite keeps it beside
        the database's real path (a symlinked store's is beside its target). Opened without
        following a symlink and without blocking, and used only when it is a regular file: a
        FIFO or device planted there must not hang or feed the request path."""
        if self._closed:
            return None
        if self._shm is None:
            flags = os.O_RDONLY | os.O_NONBLOCK
            flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
            try:
                fd = os.open(f"{os.path.realpath(self.path)}-shm", flags)
            except OSError:
                return None
            try:
                regular = stat.S_ISREG(os.fstat(fd).st_mode)
            except OSError:
                regular = False
            if not regular:
                os.close(fd)
                return None
            self._shm = fd
        try:
            header = os.pread(self._shm, WAL_INDEX_HEADER, 0)
        except OSError:
            return None
        return header if len(header) == WAL_INDEX_HEADER else None

    def _refresh(self) -> None:
        """Drop the cache when another connection has committed since the last look."""
        header = self._wal_index_header()  # read before the pragma: a commit between the two
        now = time.monotonic()  # is seen by the pragma now and by the header next time
        if (
            header is not None
            and header == self._wal_index
            and now - self._checked_at < CHECK_EVERY_S
        ):
            return
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        self._wal_index, self._checked_at = header, now
        if version != self._version:
            self._cache.clear()
            self._principals.clear()
            self._version = version

    def _lookup(self, key_id: str) -> tuple[str, KeyInfo, float | None] | None:
        with self._lock:
            self._refresh()
            if len(self._cache) > 100_000:
                self._cache.clear()
                self._principals.clear()
            if key_id in self._cache:
                return self._cache[key_id]
            row = self._conn.execute(
                "SELECT id, scopes, tenant, created_at, expires_at, revoked_at, replaces, note, "
                "digest FROM keys WHERE id = ?",
                (key_id,),
            ).fetchone()
            found = None
            if row:
                info = _info(row[:8])
                fault = _stored_fault(key_id, info)
                if fault is None:
                    found = (row[8], info, _expiry(info.expires_at))
                else:  # refused as unknown; said once per key until the store changes
                    log.warning("key %s in %s is refused: its stored %s", key_id, self.path, fault)
            self._cache[key_id] = found
            return found

    def authenticate(self, token: str) -> Principal:
        parts = _key_parts(token)
        if parts is None:
            raise AuthFailure("malformed")
        key_id, secret = parts
        found = self._lookup(key_id)
        stored = found[0] if found else _DUMMY
        if not hmac.compare_digest(stored, digest(key_id, secret)) or found is None:
            raise AuthFailure("unknown" if found is None else "secret")
        info, expires = found[1], found[2]
        if info.revoked_at:
            raise AuthFailure("revoked")
        if expires is not None and expires <= _now().timestamp():
            raise AuthFailure("expired")
        principal = self._principals.get(key_id)
        if principal is None:  # immutable: built once per key until the store changes
            principal = Principal(key_id=key_id, tenant=info.tenant, scopes=frozenset(info.scopes))
            self._principals[key_id] = principal
        return principal


def _expiry(text: str | None) -> float | None:
    """A stored expiry as epoch seconds (kept in the cache: strptime costs microseconds a
    request would repeat); None when there is none (`_stored_fault` refuses one that is not
    a time)."""
    return _parse_time(text).timestamp() if text else None


def _stored_fault(key_id: str, info: KeyInfo) -> str | None:
    """What is wrong with a key's stored record, or None. `keys create` writes only valid
    records, but the store is a file: a record edited by hand (a tenant the audit log would
    refuse, an expiry that is not a time, an unknown scope) would otherwise raise in the
    middle of a request, which then gets no answer and no audit event."""
    if info.id != key_id:
        return "id"
    if not info.scopes or any(scope not in SCOPES for scope in info.scopes):
        return "scopes"
    if info.tenant is not None and not (
        isinstance(info.tenant, str) and _TENANT.match(info.tenant)
    ):
        return "tenant"
    if info.expires_at:
        try:
            _parse_time(info.expires_at)
        except (TypeError, ValueError):
            return "expiry"
    return None


def _info(row: Any) -> KeyInfo:
    return KeyInfo(
        id=row[0],
        scopes=tuple(row[1].split()),
        tenant=row[2],
        created_at=row[3],
        expires_at=row[4],
        revoked_at=row[5],
        replaces=row[6],
        note=row[7],
    )


class JwtVerifier:
    """Bearer JWTs from one pinned issuer (see JwtSettings)."""

    def __init__(self, settings: JwtSettings, jwks_path: Path) -> None:
        try:
            import jwt
        except ImportError as exc:  # pragma: no cover - PyJWT is in [guard]
            from bastion.errors import MissingExtra

            raise MissingExtra("PyJWT", "guard") from exc
        self.settings = settings
        try:
            raw = jwks_path.read_bytes()
            if len(raw) > 1024 * 1024:
                raise ConfigError(f"{jwks_path} is over 1 MiB: not a JWKS")
            document = json.loads(raw)
            if not isinstance(document, dict):
                raise ValueError("a JWKS is a JSON object")
            self._keys = jwt.PyJWKSet.from_dict(document)
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            raise ConfigError(f"cannot use the JWKS file {jwks_path}: {exc}") from exc
        self._jwt = jwt

    def authenticate(self, token: str) -> Principal:
        jwt = self._jwt
        if len(token) > self.settings.max_token_bytes or token.count(".") != 2:
            raise AuthFailure("malformed")
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in self.settings.algorithms:
                raise AuthFailure("malformed")
            kid = header.get("kid")
            candidates = [k for k in self._keys.keys if kid is None or k.key_id == kid]
            if not candidates:
                raise AuthFailure("unknown")
            claims = jwt.decode(
                token,
                candidates[0].key,
                algorithms=list(self.settings.algorithms),
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthFailure("expired") from None
        except jwt.PyJWTError:
            raise AuthFailure("secret") from None
        raw_scopes = claims.get(self.settings.scope_claim, "")
        if isinstance(raw_scopes, str):
            raw_scopes = raw_scopes.split()
        if not isinstance(raw_scopes, list):
            raise AuthFailure("malformed")
        scopes = frozenset(s for s in raw_scopes if isinstance(s, str) and s in SCOPES)
        tenant = claims.get(self.settings.tenant_claim)
        tenant = tenant if isinstance(tenant, str) and _TENANT.match(tenant) else None
        subject = str(claims["sub"])
        if not _SUBJECT.match(subject):
            subject = hashlib.sha256(subject.encode("utf-8", "replace")).hexdigest()[:24]
        return Principal(key_id=f"jwt:{subject}", tenant=tenant, scopes=scopes, kind="jwt")


class Authenticator:
    """Bearer credentials: an API key (bst_...) or, when configured, a JWT."""

    def __init__(self, store: KeyStore, jwt: JwtVerifier | None = None) -> None:
        self.store = store
        self.jwt = jwt

    def authenticate(self, header: bytes | None) -> Principal:
        if not header:
            raise AuthFailure("missing")
        if len(header) > MAX_HEADER:
            raise AuthFailure("malformed")
        try:
            text = header.decode("ascii")
        except UnicodeDecodeError:
            raise AuthFailure("malformed") from None
        scheme, _, token = text.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthFailure("malformed")
        if token.startswith(PREFIX + "_"):
            return self.store.authenticate(token)
        if self.jwt is not None:
            return self.jwt.authenticate(token)
        raise AuthFailure("malformed")


def authorise(principal: Principal, scope: str) -> None:
    """AuthFailure('scope') unless the principal holds `scope` (admin holds every scope but
    audit:read, which is granted only by name)."""
    if scope in principal.scopes:
        return
    if "admin" in principal.scopes and scope != "audit:read":
        return
    raise AuthFailure("scope")
