"""Argument types and the options shared by every command that judges (scan, code, deps, verify).

argparse rather than click: the command line is run once per file in CI jobs and pre-commit
hooks, and click's import (inspect, uuid, ...) was a large share of a one-file scan."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from bastion.findings import Severity
from bastion.report import FORMATS


def existing(kind: str = "path") -> Callable[[str], Path]:
    """An argument type: a path that must exist (kind "file", "dir" or any "path")."""

    def convert(text: str) -> Path:
        path = Path(text)
        if not os.path.lexists(path):
            raise argparse.ArgumentTypeError(f"{kind} '{text}' does not exist")
        if kind == "file" and path.is_dir():
            raise argparse.ArgumentTypeError(f"'{text}' is a folder, not a file")
        if kind == "folder" and not path.is_dir():
            raise argparse.ArgumentTypeError(f"'{text}' is not a folder")
        return path

    return convert


def output_file(text: str) -> Path:
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"'{text}' is a folder, not a file")
    return path


def bounded(
    kind: type[int] | type[float], low: float, high: float | None = None
) -> Callable[[str], int | float]:
    """An argument type: an int or float in [low, high]."""

    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a valid {kind.__name__}") from None
        if value < low or (high is not None and value > high):
            where = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"{text} is not {where}")
        return value

    return convert


def add_store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        type=output_file,
        metavar="FILE",
        default=os.environ.get("BASTION_STORE") or None,
        help="History database [env BASTION_STORE; default: user data dir].",
    )


def add_judging_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        "-f",
        dest="fmt",
        choices=FORMATS,
        default="text",
        help="Report format written to stdout or --output [default: text].",
    )
    parser.add_argument(
        "--output",
        "-o",
        type=output_file,
        metavar="FILE",
        help="Write the report to FILE instead of stdout.",
    )
    parser.add_argument(
        "--policy",
        type=existing("file"),
        metavar="FILE",
        help="Policy TOML [env BASTION_POLICY; default: bastion.toml or "
        "[tool.bastion] in pyproject.toml found from the working "
        "directory upwards, never from the scanned paths].",
    )
    parser.add_argument(
        "--fail-on",
        choices=[s.value for s in Severity],
        help="Lowest severity that fails the gate [default: medium].",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        default=None,
        help="Fail when anything could not be checked (skips).",
    )
    parser.add_argument(
        "--baseline",
        type=output_file,
        metavar="FILE",
        help="Accept the findings listed in this baseline file.",
    )
    add_store_option(parser)
    parser.add_argument(
        "--no-store", action="store_true", help="Do not record this run in the history."
    )
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="No progress or summary on stderr."
    )
