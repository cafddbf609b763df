"""Options shared by every command that judges (scan, and later sign/verify/deps/code)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bastion.findings import Severity
from bastion.report import FORMATS


def judging_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default="text",
                     show_default=True, help="Report format written to stdout or --output."),
        click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
                     help="Write the report to FILE instead of stdout."),
        click.option("--policy", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Policy TOML (default: bastion.toml or [tool.bastion] in "
                          "pyproject.toml found from the first path upwards)."),
        click.option("--fail-on", type=click.Choice([s.value for s in Severity]),
                     help="Lowest severity that fails the gate [default: medium]."),
        click.option("--strict", is_flag=True, default=None,
                     help="Fail when anything could not be checked (skips)."),
        click.option("--baseline", type=click.Path(dir_okay=False, path_type=Path),
                     help="Accept the findings listed in this baseline file."),
        click.option("--store", type=click.Path(dir_okay=False, path_type=Path),
                     envvar="BASTION_STORE",
                     help="History database [env BASTION_STORE; default: user data dir]."),
        click.option("--no-store", is_flag=True, help="Do not record this run in the history."),
        click.option("--quiet", "-q", is_flag=True, help="No progress or summary on stderr."),
    ]
    for option in reversed(options):
        func = option(func)
    return func
