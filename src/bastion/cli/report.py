"""`bastion report compliance`: compliance evidence per framework control."""

from __future__ import annotations

import argparse

from .options import add_store_option, output_file
from .output import say, write_report

FORMATS = ("html", "json", "md")


def configure_report(parser: argparse.ArgumentParser) -> None:
    from bastion.lineage.compliance import FRAMEWORKS

    parser.description = f"""{parser.description}

For each control or technique of a framework: the bastion rules that cover it (by their
taxonomy tags), the latest evidence in the history store (runs, dates, verdicts, how often each
rule fired) and the gaps bastion does not cover. HTML is self-contained and prints well."""
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    compliance = sub.add_parser("compliance", help="Evidence per framework control.")
    compliance.add_argument("--framework", choices=FRAMEWORKS, default="eu-ai-act")
    compliance.add_argument("--format", "-f", dest="fmt", choices=FORMATS, default="html")
    compliance.add_argument("--output", "-o", type=output_file, metavar="FILE", required=True)
    add_store_option(compliance)
    compliance.add_argument("--quiet", "-q", action="store_true")


def run_report(args: argparse.Namespace) -> int:
    from bastion.lineage.compliance import RENDERERS, build
    from bastion.store import Store

    with Store(args.store) as history:
        report = build(history, args.framework)
    write_report(RENDERERS[args.fmt](report), args.output)
    if not args.quiet:
        s = report.summary
        say(
            f"bastion: {report.framework.title}: {s.controls} controls, {s.with_evidence} with "
            f"evidence, {s.without_evidence} without runs yet, {s.gaps} gaps; written to "
            f"{args.output}"
        )
    return 0
