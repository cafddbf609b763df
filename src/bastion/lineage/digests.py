"""Content digests: how bastion names a file, a folder, a commit or an external run.

- a file: ``sha256:<hex>`` — the SHA-256 the ML-BOM's hashes and model-signing's per-file
  resource digests hold (supplychain/digests.py computes it for both);
- a folder: ``tree-sha256:<hex>`` — SHA-256 over the sorted listing of its files (relative
  POSIX path and file digest; a symlink by its link text, never followed), without the
  folder's own ``model.sig`` and the folders bastion never walks (.git, virtualenvs, caches).
  model-signing's statement also carries a root digest, but it hashes the file digests
  without their names (a renamed file keeps it), so bastion's own listing is the identity;
- a commit: ``git:<40 or 64 hex>``; an MLflow run: ``mlflow:<run id>`` (opaque references:
  bastion does not resolve them);
- a Sigstore signer: ``sigstore:<identity>|<issuer>``.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path

from bastion.discover import SKIPPED_FOLDERS, shown
from bastion.errors import InputError
from bastion.records import Record
from bastion.supplychain.digests import file_sha256

FILE = "sha256:"
TREE = "tree-sha256:"
LINK = "link:"
GIT = "git:"
MLFLOW = "mlflow:"
SIGSTORE = "sigstore:"
SIGNATURE_NAME = "model.sig"  # a folder's own signature (supplychain/signing.py)
MAX_TREE_FILES = 200_000
_TREE_HEADER = b"bastion-tree-1\n"

_HEX = re.compile(r"^[0-9a-f]+\Z")
_MLFLOW_RUN = re.compile(r"^[0-9a-zA-Z_-]{1,64}\Z")
_DIGEST = re.compile(
    r"^(sha256:[0-9a-f]{64}|tree-sha256:[0-9a-f]{64}|git:[0-9a-f]{40}|git:[0-9a-f]{64}"
    r"|mlflow:[0-9a-zA-Z_-]{1,64}|sigstore:[^\x00-\x1f]{1,512})$"
)


class TreeEntry(Record):
    """One file of a folder digest: its path inside the folder and its digest."""

    path: str
    digest: str


class Identified(Record):
    """A path's digest; for a folder, the digests of the files it holds."""

    digest: str
    members: tuple[TreeEntry, ...] = ()
    links: tuple[TreeEntry, ...] = ()  # symlinks in a folder: path and "link:<target text>"


def is_digest(text: str) -> bool:
    """Whether `text` is a digest or reference in one of bastion's forms."""
    return bool(_DIGEST.match(text))


def file_digest(path: Path) -> str:
    return FILE + file_sha256(path).hex()


def identify(path: Path, max_files: int = MAX_TREE_FILES) -> Identified:
    """The digest of a file, or of a folder with its members. Raises InputError for what is
    neither, or a folder over `max_files` files."""
    try:
        info = path.stat()
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from exc
    if stat.S_ISREG(info.st_mode):
        try:
            return Identified(digest=file_digest(path))
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path}: not a regular file or folder")
    return _tree(path, max_files)


def _tree(root: Path, max_files: int) -> Identified:
    entries: list[tuple[str, str]] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            listing = list(os.scandir(folder))
        except OSError as exc:
            raise InputError(f"cannot list {folder}: {exc.strerror}") from exc
        for entry in listing:
            rel = shown(os.path.relpath(entry.path, root).replace(os.sep, "/"))
            if entry.name in SKIPPED_FOLDERS or (folder == root and entry.name == SIGNATURE_NAME):
                continue
            if entry.is_symlink():
                entries.append((rel, LINK + shown(os.readlink(entry.path))))
            elif entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                try:
                    entries.append((rel, file_digest(Path(entry.path))))
                except OSError as exc:
                    raise InputError(f"cannot read {entry.path}: {exc.strerror}") from exc
            if len(entries) > max_files:
                raise InputError(
                    f"{root} holds more than {max_files} files",
                    hint="name the model's own folder, not a folder above it",
                )
    entries.sort()
    digest = hashlib.sha256(_TREE_HEADER)
    for rel, value in entries:
        digest.update(rel.encode("utf-8", "surrogateescape") + b"\0" + value.encode() + b"\n")
    return Identified(
        digest=TREE + digest.hexdigest(),
        members=tuple(TreeEntry(path=r, digest=v) for r, v in entries if v.startswith(FILE)),
        links=tuple(TreeEntry(path=r, digest=v) for r, v in entries if v.startswith(LINK)),
    )


def git_reference(text: str) -> str | None:
    """A commit id as a reference ('git:<hex>'), or None when `text` is not a full commit id
    (abbreviated ids are ambiguous and refused)."""
    value = text[len(GIT) :] if text.startswith(GIT) else text
    value = value.lower()
    if len(value) in (40, 64) and _HEX.match(value):
        return GIT + value
    return None


def mlflow_reference(text: str) -> str:
    """An MLflow run id as an opaque reference ('mlflow:<id>')."""
    value = text[len(MLFLOW) :] if text.startswith(MLFLOW) else text
    if not _MLFLOW_RUN.match(value):
        raise InputError(
            f"{text[:80]!r} is not an MLflow run id", hint="letters, digits, '-' and '_' only"
        )
    return MLFLOW + value


def sigstore_reference(identity: str, issuer: str) -> str:
    return f"{SIGSTORE}{identity}|{issuer}"
