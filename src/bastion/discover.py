"""Finding the files under the paths a command is given: folders are walked without following
symbolic links, special files and unreadable folders are reported, nothing is opened."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from bastion.errors import InputError
from bastion.records import Record, field

# Tool-managed folders, not walked. __pycache__ is walked: its bytecode can run instead of the
# source next to it (supplychain/shipped_code.py).
SKIPPED_FOLDERS = frozenset(
    {
        ".git",
        ".venv",
        "node_modules",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".ipynb_checkpoints",
    }
)


class Target(Record):
    root: Path
    path: Path
    display: str  # path relative to the scan root (as given, for a file argument)
    size: int


class Link(Record):
    display: str
    target: str
    inside: bool  # the link resolves inside the scanned root


class Found(Record):
    """What a walk found: regular files, symlinks, and paths it could not use. The walk
    appends to the lists; the record itself is not rebound."""

    files: list[Target] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (display, message)


def shown(name: str) -> str:
    """A file name as reports show it: bytes that are not UTF-8 (decoded by Python as lone
    surrogates) become visible escapes, so one hostile name cannot make a report unwritable."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _scanned_inside(root: Path, target: str) -> bool:
    """Whether a link's target is itself scanned by the walk: inside the root and not under a
    skipped folder (a link into .git or .venv would otherwise hide a file from the scan)."""
    if os.path.commonpath([str(root), target]) != str(root):
        return False
    return not SKIPPED_FOLDERS.intersection(Path(os.path.relpath(target, root)).parts)


def walk(paths: Sequence[Path], max_files: int) -> Found:
    found = Found()
    multi = len(paths) > 1
    seen: set[Path] = set()
    for given in paths:
        if given.resolve() in seen:  # the same folder or file twice: once is enough
            continue
        seen.add(given.resolve())
        if not os.path.lexists(given):
            raise InputError(f"{given}: no such file or directory")
        if given.is_file():
            found.files.append(
                Target(
                    root=given.parent,
                    path=given,
                    display=shown(str(given)),
                    size=given.stat().st_size,
                )
            )
            continue
        if not given.is_dir():
            raise InputError(f"{given}: not a regular file or directory")
        root = given.resolve()
        # several roots: each file is shown under its root as given, so that two roots with
        # the same last name (upstream/models, ours/models) never share a display path
        prefix = f"{given.as_posix().rstrip('/')}/" if multi else ""
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as exc:
                found.problems.append(
                    (
                        shown(prefix + os.path.relpath(folder, root)),
                        f"cannot list folder: {exc.strerror}",
                    )
                )
                continue
            for entry in entries:
                if entry.name in SKIPPED_FOLDERS:
                    continue
                rel = shown(prefix + os.path.relpath(entry.path, root).replace(os.sep, "/"))
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    found.links.append(
                        Link(display=rel, target=target, inside=_scanned_inside(root, target))
                    )
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                    continue
                info = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(info.st_mode):
                    found.problems.append((rel, "special file (device, FIFO or socket)"))
                    continue
                found.files.append(
                    Target(root=root, path=Path(entry.path), display=rel, size=info.st_size)
                )
                if len(found.files) > max_files:
                    raise InputError(
                        f"more than {max_files} files under {given}",
                        hint="scan a narrower folder or raise limits.max_files",
                    )
    found.files.sort(key=lambda t: t.display)
    return found
