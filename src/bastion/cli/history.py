"""`bastion history`, `bastion show` and `bastion rules`."""

from __future__ import annotations

import argparse
import json

from bastion.errors import InputError
from bastion.report import FORMATS

from .options import add_store_option, bounded, output_file
from .output import rule_table, say, write_report


def configure_history(parser: argparse.ArgumentParser) -> None:
    add_store_option(parser)
    parser.add_argument(
        "--limit",
        "-n",
        type=bounded(int, 1, 100_000),
        default=20,
        help="How many runs [default: 20].",
    )
    parser.add_argument(
        "--json", dest="as_json", action="store_true", help="Print JSON lines instead of a table."
    )
    parser.add_argument(
        "--datasets",
        action="store_true",
        help="List dataset versions recorded by `bastion data manifest` instead of runs.",
    )


def _dataset_history(args: argparse.Namespace) -> int:
    from bastion.store import Store

    with Store(args.store) as history:
        versions = history.dataset_versions(limit=args.limit)
    if args.as_json:
        for version in versions:
            say(json.dumps(version._asdict()), err=False)
        return 0
    if not versions:
        say("no dataset versions recorded yet (bastion data manifest PATH -o FILE)")
        return 0
    say(
        f"{'ID':>5}  {'RECORDED':25}  {'ROWS':>10}  {'FINGERPRINT':14}  DATASET (MANIFEST)",
        err=False,
    )
    for version in versions:
        say(
            f"{version.id:>5}  {version.recorded_at:25}  {version.rows:>10,}  "
            f"{version.fingerprint[:12]:14}  {version.name} ({version.manifest})",
            err=False,
        )
    return 0


def run_history(args: argparse.Namespace) -> int:
    from bastion.store import Store

    if args.datasets:
        return _dataset_history(args)
    with Store(args.store) as history:
        runs = history.runs(args.limit)
    if args.as_json:
        for run in runs:
            say(json.dumps(run.model_dump(mode="json")), err=False)
        return 0
    if not runs:
        say("no runs recorded yet")
        return 0
    say(
        f"{'RUN':>5}  {'STARTED':25}  {'COMMAND':9}  {'VERDICT':9}  {'FINDINGS':>8}  TARGETS",
        err=False,
    )
    for run in runs:
        say(
            f"{run.id:>5}  {run.started_at:25}  {run.command:9}  {run.status:9}  "
            f"{run.findings:>8}  {run.targets}",
            err=False,
        )
    return 0


def configure_show(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_id",
        nargs="?",
        type=bounded(int, 1),
        metavar="RUN",
        help="Run number from `bastion history` [default: the latest].",
    )
    parser.add_argument(
        "--format",
        "-f",
        dest="fmt",
        choices=FORMATS,
        default="text",
        help="Report format [default: text].",
    )
    parser.add_argument(
        "--output",
        "-o",
        type=output_file,
        metavar="FILE",
        help="Write the report to FILE instead of stdout.",
    )
    add_store_option(parser)


def run_show(args: argparse.Namespace) -> int:
    from bastion.report import render
    from bastion.store import Store

    with Store(args.store) as history:
        run_id = args.run_id if args.run_id is not None else history.latest_id()
        if run_id is None:
            raise InputError("no runs recorded yet")
        report, verdict = history.load(run_id)
    write_report(render(report, verdict, args.fmt, rule_table(args.fmt)), args.output)
    return 0


def configure_rules(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", dest="as_json", action="store_true", help="Print the catalogue as JSON."
    )


def run_rules(args: argparse.Namespace) -> int:
    from bastion.catalogue import all_rules

    rules = all_rules()
    if args.as_json:
        data = [
            {**r.model_dump(mode="json"), "tags": r.tags.model_dump(mode="json")} for r in rules
        ]
        say(json.dumps(data, indent=2), err=False)
        return 0
    for rule in rules:
        tags = rule.tags
        say(f"{rule.id:7} {rule.severity.value:8} {rule.title}", err=False)
        say(
            f"        ATLAS {', '.join(tags.atlas)} | OWASP ML {', '.join(tags.owasp_ml)}"
            f" | OWASP LLM {', '.join(tags.owasp_llm)} | OWASP API {', '.join(tags.owasp_api)}"
            f" | NIST {', '.join(tags.nist_ai_rmf)}"
            f" | EU AI Act {', '.join(tags.eu_ai_act)}",
            err=False,
        )
    return 0
