"""Writing reports and messages: the report to stdout or --output, everything else to stderr."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from bastion.errors import InputError

if TYPE_CHECKING:
    from bastion.rules import Rule


def rule_table(fmt: str) -> Mapping[str, Rule] | None:
    """The rule catalogue for formats that carry a rule table (SARIF); None for the others,
    which then skip importing every check."""
    if fmt != "sarif":
        return None
    from bastion.catalogue import rules_by_id

    return rules_by_id()


def write_report(text: str, output: Path | None) -> None:
    """Write a regular file atomically (a failed write never leaves a truncated report behind);
    through a symlink, the file it points to is replaced. A device or FIFO (/dev/null,
    /dev/stdout, a pipe) is written in place — never replaced by a file."""
    if output is None:
        _write_stdout(text)
        return
    try:
        target = Path(os.path.realpath(output))
        try:
            mode = target.stat().st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            with open(target, "w", encoding="utf-8") as handle:
                handle.write(text)
            return
        _replace_atomically(target, text)
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror or exc}") from exc


def _write_stdout(text: str) -> None:
    """The report as UTF-8 whatever the locale (JSON, SARIF and HTML are UTF-8), every byte of
    it: with PYTHONUNBUFFERED the text layer would drop what a short write to a pipe left."""
    sys.stdout.flush()
    binary = getattr(sys.stdout, "buffer", None)
    if binary is None:  # a text-only stream (an embedding application's)
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    view = memoryview(text.encode("utf-8"))
    while view:
        written = binary.write(view)
        if not written:
            raise BrokenPipeError("stdout accepts no more data")
        view = view[written:]
    binary.flush()


def _replace_atomically(target: Path, text: str) -> None:
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # mkstemp creates 0600; reports are ordinary files
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def say(message: str, err: bool = True) -> None:
    """A line for the user: stderr by default (stdout carries only reports and listings).
    Messages quote names from the inspected content, so control characters are escaped."""
    from bastion.report.printable import terminal_safe

    stream = sys.stderr if err else sys.stdout
    stream.write("\n".join(terminal_safe(line) for line in message.split("\n")) + "\n")
    stream.flush()
