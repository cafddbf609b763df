"""Signed checkpoints of an audit chain, kept outside its database.

A checkpoint says "chain C had N records and the hash of record N was H at time T", signed with
an Ed25519 key (the `cryptography` package). They are appended, one JSON object a line, to a
file beside the database (or wherever the operator puts it: ideally another volume or a
write-once store). Whoever can rewrite the database can recompute every hash of the chain, but
without the key cannot sign a checkpoint that agrees with the rewrite: a truncated or rewritten
log no longer matches the last checkpoint it signed.

Keys are PEM files: `bastion audit keygen KEY` writes the private key (PKCS#8, mode 0600) and
`KEY.pub` (SubjectPublicKeyInfo); `openssl genpkey -algorithm ed25519 -out KEY` makes the same
private key. The guard signs with the private key; `bastion audit verify --key KEY.pub` checks
with the public one. A private key readable by other users is refused (as ssh does)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.errors import BastionError
from bastion.guard.files import create_new, remove_made
from bastion.records import Record

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

MAX_KEY_BYTES = 16 * 1024
MAX_CHECKPOINT_LINE = 4096
MAX_CHECKPOINT_BYTES = 256 * 1024 * 1024  # ~1.5M checkpoints; a larger file is refused


class AuditError(BastionError):
    """The audit log (or its checkpoints or key) cannot be opened, written or trusted."""


class Checkpoint(Record):
    """One signed statement about the head of a chain. `sig` is the base64 Ed25519 signature
    of `signed_bytes()` (None when the log runs without a key: then checkpoints still detect
    truncation by someone who does not also edit them, but prove nothing)."""

    chain: str
    worker: str
    seq: int
    head: str
    at: str
    key: str | None = None  # fingerprint of the public key that signed it
    sig: str | None = None

    def signed_bytes(self) -> bytes:
        body = {
            "at": self.at,
            "chain": self.chain,
            "head": self.head,
            "key": self.key,
            "seq": self.seq,
            "worker": self.worker,
        }
        return b"bastion-audit-checkpoint/1\n" + json.dumps(
            body, sort_keys=True, separators=(",", ":")
        ).encode("utf-8")


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:  # pragma: no cover - cryptography is in the [guard] extra
        from bastion.errors import MissingExtra

        raise MissingExtra("cryptography", "guard") from None
    return ed25519


def key_fingerprint(public: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:32]


def generate_key(path: Path) -> tuple[Path, Path]:
    """Write a new Ed25519 private key to `path` (mode 0600, refusing to overwrite) and its
    public key to `path.pub`; returns both paths."""
    from cryptography.hazmat.primitives import serialization

    ed25519 = _crypto()
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_path = path.with_name(path.name + ".pub")
    for target in (path, public_path):
        if target.exists():
            raise AuditError(f"{target} already exists", hint="choose another path")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        public_path.write_bytes(
            private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    except OSError as exc:
        raise AuditError(f"cannot write the key {path}: {exc.strerror}") from None
    return path, public_path


def _read_key_file(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_KEY_BYTES + 1)
    except FileNotFoundError:
        raise AuditError(
            f"the checkpoint key {path} does not exist",
            hint="make one with `bastion audit keygen PATH`",
        ) from None
    except OSError as exc:
        raise AuditError(f"cannot read the checkpoint key {path}: {exc.strerror}") from None
    if len(data) > MAX_KEY_BYTES:
        raise AuditError(f"{path} is too large to be a key file")
    return data


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in a PEM file that only its owner can read."""
    from cryptography.hazmat.primitives import serialization

    ed25519 = _crypto()
    data = _read_key_file(path)
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise AuditError(
            f"the checkpoint key {path} is readable by other users",
            hint=f"chmod 600 {path}",
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise AuditError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise AuditError(f"{path} is not an Ed25519 key", hint="use `bastion audit keygen`")
    return typing.cast("Ed25519PrivateKey", key)


def load_verify_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in a PEM file (a private key file gives its public half)."""
    from cryptography.hazmat.primitives import serialization

    ed25519 = _crypto()
    data = _read_key_file(path)
    key: Any
    try:
        if b"PRIVATE KEY" in data:
            key = serialization.load_pem_private_key(data, password=None)
            key = key.public_key() if isinstance(key, ed25519.Ed25519PrivateKey) else key
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise AuditError(f"{path} is not a PEM key: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise AuditError(f"{path} is not an Ed25519 key")
    return typing.cast("Ed25519PublicKey", key)


def sign(checkpoint: Checkpoint, key: Ed25519PrivateKey | None) -> Checkpoint:
    if key is None:
        return checkpoint
    stamped = checkpoint.model_copy({"key": key_fingerprint(key.public_key()), "sig": None})
    signature = base64.b64encode(key.sign(stamped.signed_bytes())).decode("ascii")
    return stamped.model_copy({"sig": signature})


def signature_ok(checkpoint: Checkpoint, key: Ed25519PublicKey) -> bool:
    from cryptography.exceptions import InvalidSignature

    if checkpoint.sig is None or checkpoint.key != key_fingerprint(key):
        return False
    try:
        key.verify(base64.b64decode(checkpoint.sig, validate=True), checkpoint.signed_bytes())
    except (InvalidSignature, ValueError):
        return False
    return True


def append_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Append one line and fsync it (and, for a new file, its folder). A file it created is
    removed again if the line cannot be written (a full disk): no empty or half-made file."""
    line = checkpoint.model_dump_json().encode("utf-8") + b"\n"
    made = create_new(path, 0o640)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        remove_made(path, made)
        raise
    os.close(fd)
    if made is not None:
        _fsync_dir(path.parent)


def drop_torn_tail(path: Path) -> None:
    """Cut a checkpoint file after its last newline: what follows is half a line a crash left,
    and the next checkpoint must start on a line of its own."""
    with path.open("r+b") as handle:
        data = handle.read(MAX_CHECKPOINT_BYTES + 1)
        handle.truncate(data.rfind(b"\n") + 1)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - not every platform opens folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class CheckpointFile(Record):
    """What a checkpoint file holds: the checkpoints read, the line numbers (1-based) that are
    not checkpoints, and whether the last line was cut short (a crash while appending)."""

    checkpoints: tuple[Checkpoint, ...]
    bad_lines: tuple[int, ...] = ()
    torn_tail: bool = False


def read_checkpoints(path: Path) -> CheckpointFile:
    try:
        size = path.stat().st_size
        if size > MAX_CHECKPOINT_BYTES:
            raise AuditError(f"{path} is larger than {MAX_CHECKPOINT_BYTES} bytes")
        data = path.read_bytes()
    except FileNotFoundError:
        raise AuditError(f"the checkpoint file {path} does not exist") from None
    except OSError as exc:
        raise AuditError(f"cannot read the checkpoint file {path}: {exc.strerror}") from None
    lines = data.split(b"\n")
    torn = lines[-1] != b""
    if not torn:
        lines.pop()
    checkpoints: list[Checkpoint] = []
    bad: list[int] = []
    for number, line in enumerate(lines, start=1):
        last = number == len(lines)
        try:
            if len(line) > MAX_CHECKPOINT_LINE:
                raise ValueError("line too long")
            checkpoints.append(Checkpoint.model_validate_json(line))
        except ValueError:
            if not (last and torn):
                bad.append(number)
            continue
        if last and torn:  # a complete object without its newline: keep it, it parsed
            torn = False
    return CheckpointFile(checkpoints=tuple(checkpoints), bad_lines=tuple(bad), torn_tail=torn)
