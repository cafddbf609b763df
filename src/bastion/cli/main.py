"""Entry point: `bastion` and `python -m bastion`. `main(argv)` returns the exit code.

Only the module of the command being run is imported: `bastion scan model.pt` does not load the
signing, BOM or history code."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib import import_module

from bastion.errors import BastionError
from bastion.records import Record
from bastion.version import __version__


class Command(Record):
    module: str  # bastion.cli.<module> defines configure_<name>(parser) and run_<name>(args)
    summary: str


COMMANDS: dict[str, Command] = {
    "scan": Command(
        module="scan", summary="Scan model artifacts, model folders or a whole project."
    ),
    "baseline": Command(module="scan", summary="Record every current finding as accepted."),
    "code": Command(module="code", summary="Check Python files and notebooks for unsafe ML code."),
    "deps": Command(module="deps", summary="Audit dependencies for known vulnerabilities."),
    "data": Command(
        module="data", summary="Check datasets: integrity, contract, personal data, poisoning."
    ),
    "sign": Command(
        module="signing", summary="Sign a model or dataset in the OpenSSF model-signing format."
    ),
    "verify": Command(module="signing", summary="Verify a model-signing signature."),
    "bom": Command(module="bom", summary="Write a CycloneDX 1.6 ML-BOM for a model project."),
    "probe": Command(
        module="probe", summary="Test a model: evasion, membership inference, extraction."
    ),
    "guard": Command(
        module="guard", summary="Serve or protect a model behind the runtime guard; API keys."
    ),
    "audit": Command(module="audit", summary="Verify and export the guard's audit logs."),
    "ui": Command(module="ui", summary="Serve the dashboard over the history (loopback)."),
    "lineage": Command(
        module="lineage", summary="Record and show lineage: models, data, code, signatures."
    ),
    "gate": Command(
        module="lineage", summary="Decide a model's release from the evidence in the history."
    ),
    "report": Command(
        module="report", summary="Compliance evidence per framework control (html, json, md)."
    ),
    "rules": Command(
        module="history", summary="List every rule with its severity and taxonomy tags."
    ),
    "history": Command(module="history", summary="List recorded runs, newest first."),
    "show": Command(module="history", summary="Re-render a recorded run in any format."),
}

DESCRIPTION = """bastion — security checks for the ML lifecycle.

Start with:  bastion scan PATH      (a model file, archive or project folder)
Exit codes:  0 passed · 1 failed the policy · 2 could not decide (errors, nothing scannable)
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    """Help text as written (paragraphs kept), at most 100 columns. The width is found here
    because argparse would import shutil (and with it bz2 and lzma) to ask for it."""
    try:
        columns = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size(2).columns
    except (ValueError, OSError):
        columns = 80
    return argparse.RawDescriptionHelpFormatter(prog, width=max(40, min(columns, 100)) - 2)


def _top_parser() -> argparse.ArgumentParser:
    width = max(len(name) for name in COMMANDS)
    listing = "\n".join(f"  {name:{width}}  {cmd.summary}" for name, cmd in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="bastion",
        description=DESCRIPTION,
        epilog=f"commands:\n{listing}\n\nRun `bastion COMMAND --help` for a command's options.",
        formatter_class=_formatter,
        usage="bastion [-h] [--version] COMMAND [ARGS]...",
    )
    parser.add_argument("--version", action="version", version=f"bastion, version {__version__}")
    parser.add_argument(
        "command", metavar="COMMAND", choices=list(COMMANDS), help=argparse.SUPPRESS
    )
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def command_parser(name: str) -> tuple[argparse.ArgumentParser, Callable[..., int]]:
    """The parser of one command and the function that runs it."""
    command = COMMANDS[name]
    module = import_module(f"bastion.cli.{command.module}")
    parser = argparse.ArgumentParser(
        prog=f"bastion {name}", description=command.summary, formatter_class=_formatter
    )
    getattr(module, f"configure_{name}")(parser)
    return parser, getattr(module, f"run_{name}")


def _dispatch(argv: list[str]) -> int:
    top = _top_parser()
    if not argv:
        top.print_help(sys.stderr)
        return 2
    chosen = top.parse_args(argv[:1])  # the command name, or --help / --version
    parser, run_command = command_parser(chosen.command)
    return run_command(parser.parse_args(argv[1:]))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse: --help, --version (0) and usage errors (2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except BastionError as exc:
        print(f"bastion: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`bastion rules | head`): stop quietly
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 2
    except Exception as exc:  # a bug: say so briefly; BASTION_DEBUG=1 shows the traceback
        if os.environ.get("BASTION_DEBUG"):
            raise
        print(f"bastion: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(
            "hint: this is a bug in bastion; rerun with BASTION_DEBUG=1 and report the traceback",
            file=sys.stderr,
        )
        return 2


def run() -> None:
    sys.exit(main())
