"""`bastion audit`: verify and export the runtime guard's audit logs, make checkpoint keys."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .options import existing, output_file
from .output import say

if TYPE_CHECKING:
    from bastion.guard.audit_verify import ChainCheck


def configure_audit(parser: argparse.ArgumentParser) -> None:
    parser.description = f"""{parser.description}

  bastion audit verify PATH [--key KEY.pub]      check the hash chain and signed checkpoints
  bastion audit export PATH --format jsonl|ocsf  one ordered stream of every worker's records
  bastion audit keygen KEY                       an Ed25519 key for signing checkpoints

PATH is an audit log (audit-<worker>.sqlite3) or a folder holding several workers' logs; each
log's checkpoints are read from <log>.checkpoints. Exit codes: 0 verified, 1 a chain is broken,
2 could not check."""
    commands = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    formatter = parser.formatter_class

    verify = commands.add_parser(
        "verify",
        help="Check audit chains record by record and against their checkpoints.",
        description="Names the first broken link of each chain (its sequence number and what is "
        "wrong) and lists every problem found: SQLite integrity, removed triggers, edited, "
        "deleted, inserted or reordered records, rewrites caught by a signed checkpoint, "
        "truncation.",
        formatter_class=formatter,
    )
    verify.add_argument("path", type=existing(), metavar="PATH", help="A log or a folder.")
    _key_option(verify)
    verify.add_argument(
        "--format", dest="fmt", choices=("text", "json"), default="text", help="[default: text]"
    )

    export = commands.add_parser(
        "export",
        help="Merge workers' chains in time order as JSON Lines or OCSF API Activity events.",
        description="Every chain is verified first; a chain that does not verify stops the "
        "export (a SIEM should not ingest a rewritten log as evidence). OCSF: class API "
        "Activity (6003), the mapping is in docs/guard.md.",
        formatter_class=formatter,
    )
    export.add_argument("path", type=existing(), metavar="PATH", help="A log or a folder.")
    export.add_argument(
        "--format", dest="fmt", choices=("jsonl", "ocsf"), default="jsonl", help="[default: jsonl]"
    )
    export.add_argument(
        "--since", metavar="WHEN", help="Only records from then on: 24h, 7d, or an ISO date."
    )
    export.add_argument("-o", "--output", type=output_file, metavar="FILE", help="[stdout]")
    _key_option(export)

    keygen = commands.add_parser(
        "keygen",
        help="Write an Ed25519 key (mode 0600) and KEY.pub for signing checkpoints.",
        formatter_class=formatter,
    )
    keygen.add_argument("key", type=Path, metavar="KEY", help="Where to write the private key.")


def _key_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key",
        type=existing("file"),
        metavar="KEY",
        help="The checkpoint key's public half (or the private key file) to check signatures.",
    )


def run_audit(args: argparse.Namespace) -> int:
    runner = {"verify": _verify, "export": _export, "keygen": _keygen}
    return runner[args.subcommand](args)


def _verify(args: argparse.Namespace) -> int:
    from bastion.guard.audit_verify import verify_path

    checks = verify_path(args.path, public_key=args.key)
    if args.fmt == "json":
        document = [_check_json(c) for c in checks]
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        for check in checks:
            _print_check(check, sys.stdout)
    return 0 if all(c.ok for c in checks) else 1


def _check_json(check: ChainCheck) -> dict[str, object]:
    first = check.first_break
    return {
        **check.model_dump(mode="json"),
        "ok": check.ok,
        "first_break": first.model_dump(mode="json") if first else None,
    }


def _print_check(check: ChainCheck, out: TextIO) -> None:
    from bastion.report.printable import terminal_safe

    head = (
        f"{terminal_safe(check.path)}: worker {terminal_safe(check.worker or '?')}, "
        f"{check.records} records, {check.checkpoints} checkpoints "
        f"({check.signed_checkpoints} signatures checked)"
    )
    first = check.first_break
    if first is None:
        out.write(f"{head}\n  OK: the chain is intact\n")
    else:
        where = f"record {first.seq}" if first.seq is not None else "the file"
        if first.first_possible is not None:
            where = f"records {first.first_possible}-{first.seq}"
        out.write(f"{head}\n  BROKEN at {where}: {terminal_safe(first.message)}\n")
        for problem in check.problems:
            if problem is not first:
                out.write(f"  also: {terminal_safe(problem.message)}\n")
    for warning in check.warnings:
        out.write(f"  warning: {terminal_safe(warning)}\n")


def _export(args: argparse.Namespace) -> int:
    from bastion.guard.audit_export import CONVERTERS, merged, parse_since

    since = parse_since(args.since) if args.since else None
    records = merged(args.path, since=since, public_key=args.key)
    convert = CONVERTERS[args.fmt]
    count = 0
    if args.output is None:
        for record in records:
            sys.stdout.write(json.dumps(convert(record), sort_keys=True) + "\n")
            count += 1
        sys.stdout.flush()
    else:
        from bastion.errors import InputError

        try:
            with open(args.output, "w", encoding="utf-8") as handle:
                for record in records:
                    handle.write(json.dumps(convert(record), sort_keys=True) + "\n")
                    count += 1
        except OSError as exc:
            raise InputError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    say(f"bastion: {count} audit records exported")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from bastion.guard.checkpoints import generate_key

    private, public = generate_key(args.key)
    say(f"bastion: checkpoint key written to {private} (keep it secret) and {public}")
    return 0
