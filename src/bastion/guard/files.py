"""Files and folders the guard creates at start, and removes again when the start is refused.

Only what the call itself made is removed: a file it created with O_EXCL, or a folder it made,
still the same one (device and inode, looked at with lstat: a symlink is never followed) and,
for a folder, empty; a database file only while no other connection has it open. Whatever was
there before is never touched."""

from __future__ import annotations

import os
import stat
from pathlib import Path

Made = tuple[int, int]  # (device, inode) of a file or folder this process created


def _identity(info: os.stat_result) -> Made:
    return info.st_dev, info.st_ino


def create_new(path: Path, mode: int) -> Made | None:
    """Create `path`, empty, if nothing is there (O_EXCL: a dangling symlink is something): its
    (device, inode), or None when something was there. OSError when it cannot be created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return None
    try:
        return _identity(os.fstat(fd))
    finally:
        os.close(fd)


def remove_made(path: Path, made: Made | None, *companions: str) -> None:
    """Remove `path` if it is still the regular file `made` names (see `create_new`) and none
    of its `companions` is there: SQLite's -wal and -shm, which, once this process has closed
    its connection, remain only while another connection has the database open (or a failed
    close left them). Anything else is left as it is."""
    if made is None or any(os.path.lexists(companion) for companion in companions):
        return
    try:
        now = os.lstat(path)
    except OSError:
        return
    if not stat.S_ISREG(now.st_mode) or _identity(now) != made:
        return
    try:
        os.unlink(path)
    except OSError:
        pass


def make_folders(folder: Path) -> list[tuple[Path, Made]]:
    """Make `folder` and its missing parents (`mkdir -p`): the folders made, outermost first,
    for `remove_folders`. OSError when one cannot be made (the ones made are removed again)."""
    missing = []
    for path in (folder, *folder.parents):
        if os.path.lexists(path):
            break
        missing.append(path)
    made: list[tuple[Path, Made]] = []
    try:
        for path in reversed(missing):
            try:
                path.mkdir()
            except FileExistsError:  # made meanwhile: not ours
                continue
            made.append((path, _identity(os.lstat(path))))
    except OSError:
        remove_folders(made)
        raise
    return made


def remove_folders(made: list[tuple[Path, Made]]) -> None:
    """Remove the folders `make_folders` made, innermost first, while they are still empty and
    the same folders."""
    for path, identity in reversed(made):
        try:
            now = os.lstat(path)
            if not stat.S_ISDIR(now.st_mode) or _identity(now) != identity:
                return
            path.rmdir()  # only an empty folder
        except OSError:
            return
