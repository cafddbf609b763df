"""Writing reports and messages: the report to stdout or --output, everything else to stderr."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click

from bastion.errors import InputError


def write_report(text: str, output: Path | None) -> None:
    """Write atomically: a failed write never leaves a truncated report behind."""
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    folder = output.parent if str(output.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{output.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # mkstemp creates 0600; reports are ordinary files
        os.replace(temp, output)
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror}") from exc


def say(message: str, err: bool = True) -> None:
    click.echo(message, err=err)
