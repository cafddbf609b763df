"""`bastion guard report`: runtime evidence (audit chains, monitor alerts) as a bastion report,
judged by the policy, rendered in any format and recorded in the history like `bastion scan`.
`bastion.cli.guard` hands it the arguments after `report`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .options import add_judging_options, existing
from .scan import finish, gate_overrides, settings_for

DESCRIPTION = """Summarise a period of the runtime guard's evidence as a bastion report.

The audit chains are verified first (a broken chain is a critical GRD201 finding naming its
first broken link); then the period's pipeline decisions become findings of the GRD0xx rules
(refused credentials, abuse limits, contract violations, personal data, prompt injection, OOD,
upstream faults) and the query monitor's alerts findings of GRD1xx (extraction, recombination,
boundary probing, sweeps, off-distribution keys, drift, prediction shift). The policy decides
the exit code: 0 passed, 1 failed, 2 could not decide."""


def parser() -> argparse.ArgumentParser:
    from .main import _formatter

    command = argparse.ArgumentParser(
        prog="bastion guard report", description=DESCRIPTION, formatter_class=_formatter
    )
    command.add_argument(
        "--since",
        default="24h",
        metavar="WHEN",
        help="Start of the period: 24h, 30m, 7d, or an ISO date/time [default: 24h]; "
        "'all' for everything.",
    )
    command.add_argument(
        "--audit",
        type=existing(),
        metavar="PATH",
        help="An audit log or the folder of the workers' logs [default: guard.toml's "
        "[audit] path, or ./guard-audit].",
    )
    command.add_argument(
        "--config", type=existing("file"), metavar="FILE", help="guard.toml (for [audit] path)."
    )
    command.add_argument(
        "--key",
        type=existing("file"),
        metavar="KEY",
        help="The checkpoint key's public half, to check the checkpoints' signatures.",
    )
    add_judging_options(command)
    return command


def main(argv: Sequence[str]) -> int:
    from bastion.guard.report import guard_report
    from bastion.runs import start

    args = parser().parse_args(list(argv))
    started = start()
    path = args.audit or _configured_path(args.config)
    settings = settings_for([path], args.policy, gate_overrides(args))
    since = None if args.since == "all" else args.since
    report = guard_report(path, settings, since=since, public_key=args.key, started=started)
    return finish(report, settings, args)


def _configured_path(config: Path | None) -> Path:
    from bastion.errors import InputError
    from bastion.guard.settings import load_guard_settings

    path = Path(load_guard_settings(config).audit.path)
    if not path.exists():
        raise InputError(f"no audit log at {path}", hint="give the audit folder with --audit PATH")
    return path
