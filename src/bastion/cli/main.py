"""Entry point: `bastion` and `python -m bastion`. `main(argv)` returns the exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from bastion import __version__
from bastion.errors import BastionError

from .bom import bom_command
from .code import code_command
from .deps import deps_command
from .history import history_command, rules_command, show_command
from .scan import baseline_command, scan_command
from .signing import sign_command, verify_command


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="bastion")
def cli() -> None:
    """bastion — security checks for the ML lifecycle.

    \b
    Start with:  bastion scan PATH      (a model file, archive or project folder)
    Exit codes:  0 passed · 1 failed the policy · 2 could not decide (errors, nothing scannable)
    """


cli.add_command(scan_command)
cli.add_command(baseline_command)
cli.add_command(code_command)
cli.add_command(deps_command)
cli.add_command(sign_command)
cli.add_command(bom_command)
cli.add_command(verify_command)
cli.add_command(rules_command)
cli.add_command(history_command)
cli.add_command(show_command)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="bastion",
                 standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 2
    except click.ClickException as exc:
        exc.show()
        return 2
    except BastionError as exc:
        click.echo(f"bastion: error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # a bug: say so briefly; BASTION_DEBUG=1 shows the traceback
        if os.environ.get("BASTION_DEBUG"):
            raise
        click.echo(f"bastion: internal error: {type(exc).__name__}: {exc}", err=True)
        click.echo("hint: this is a bug in bastion; rerun with BASTION_DEBUG=1 and report the "
                   "traceback", err=True)
        return 2
    return 0


def run() -> None:
    sys.exit(main())
