"""`bastion lineage record|show` and `bastion gate`: thin wrappers over bastion.lineage."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from bastion.errors import UsageError

from .options import add_store_option, existing, output_file
from .output import say, write_report


def configure_lineage(parser: argparse.ArgumentParser) -> None:
    parser.description = f"""{parser.description}

Every recorded run already links the digests it saw (scan, data, probe, verify); `record`
adds what only the pipeline knows — which data and code made a model — and `show` draws the
graph around a model or digest with each node's latest verdicts."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    record = sub.add_parser(
        "record",
        help="Link a model to its training data, code, parameters and MLflow run.",
        description="Digests are taken now: run it right after training.",
    )
    record.add_argument("--model", required=True, metavar="M", help="Model file, folder or digest.")
    record.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="D",
        help="Training data: a file, folder, data manifest (its datasets by their recorded "
        "file digests) or digest. Repeat for several.",
    )
    record.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="C",
        help="Code: a full git commit id, a file or folder (hashed), or a digest.",
    )
    record.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="A training parameter (repeatable).",
    )
    record.add_argument("--mlflow-run", metavar="ID", help="MLflow run id (a reference).")
    record.add_argument(
        "--deployment", metavar="NAME", help="A deployment (guard, endpoint) serving the model."
    )
    add_store_option(record)
    record.add_argument("--quiet", "-q", action="store_true")
    show = sub.add_parser("show", help="The graph upstream and downstream of a model.")
    show.add_argument("reference", metavar="MODEL|DIGEST", help="A file, folder or digest.")
    show.add_argument("--format", "-f", dest="fmt", choices=("text", "json", "dot"), default="text")
    show.add_argument("--output", "-o", type=output_file, metavar="FILE")
    show.add_argument("--depth", type=int, default=8, metavar="N", help="Hops each way [8].")
    add_store_option(show)


def _params(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {item[:80]!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def run_lineage(args: argparse.Namespace) -> int:
    from bastion.store import Store

    if args.action == "record":
        from bastion.lineage.record import record

        with Store(args.store) as history:
            recorded = record(
                args.model,
                datasets=args.dataset,
                code=args.code,
                params=_params(args.param),
                mlflow_run=args.mlflow_run,
                deployment=args.deployment,
                store=history,
            )
        if not args.quiet:
            say(
                f"bastion: lineage of {recorded.model}: {len(recorded.upstream)} upstream "
                f"digest(s), {len(recorded.links)} link(s) in {history.path}"
            )
        return 0
    from bastion.lineage.graph import lineage, resolve
    from bastion.lineage.render import graph_dot, graph_json, graph_text

    if not 1 <= args.depth <= 64:
        raise UsageError("--depth is between 1 and 64")
    with Store(args.store) as history:
        graph = lineage(history, resolve(history, args.reference), max_depth=args.depth)
    render = {"text": graph_text, "json": graph_json, "dot": graph_dot}[args.fmt]
    write_report(render(graph), args.output)
    return 0


def configure_gate(parser: argparse.ArgumentParser) -> None:
    parser.description = f"""{parser.description}

Decides from the evidence in the history store for the model's digest, judged under the
current policy: scanned with nothing blocking, signature verified with a trusted key, training
data checked in the version trained on, probe thresholds met, no expired waiver, and no piece
of evidence older than [gate] max_age_days. Exit 0 release, 1 a requirement is unmet or its
evidence missing, 2 undecided (or an error)."""
    parser.add_argument("model", metavar="MODEL", help="Model file, folder or digest.")
    parser.add_argument(
        "--policy", type=existing("file"), metavar="FILE", help="Policy TOML ([gate] table)."
    )
    parser.add_argument("--format", "-f", dest="fmt", choices=("text", "json"), default="text")
    parser.add_argument("--output", "-o", type=output_file, metavar="FILE")
    add_store_option(parser)
    parser.add_argument(
        "--no-record",
        action="store_true",
        help="Do not record the decision as a run (it is recorded by default).",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="No summary on stderr.")


def run_gate(args: argparse.Namespace) -> int:
    from bastion.lineage.gate import decide, decision_report
    from bastion.lineage.record import record_run
    from bastion.lineage.render import decision_json, decision_text
    from bastion.policy import Verdict
    from bastion.store import Store

    from .scan import settings_for

    started = dt.datetime.now(dt.timezone.utc)
    is_path = Path(args.model).exists()
    settings = settings_for([Path(args.model)] if is_path else [], args.policy, {})
    with Store(args.store) as history:
        decision = decide(history, args.model, settings, now=started)
        run_id = None
        if not args.no_record:
            report = decision_report(decision, settings, started)
            verdict = Verdict(
                status=decision.status,
                reasons=tuple(
                    f"{r.name}: {r.status}: {r.detail}"
                    for r in decision.requirements
                    if r.status in ("unmet", "missing", "undecided")
                ),
                failing=tuple(f.fingerprint for f in report.findings),
                fail_on=settings.fail_on.value,
            )
            recorded = record_run(history, report, verdict, settings)
            run_id = recorded.run_id
    render = decision_json if args.fmt == "json" else decision_text
    write_report(render(decision), args.output)
    if not args.quiet:
        stored = f"; run #{run_id}" if run_id else ""
        say(f"bastion: gate {decision.status.value.upper()}{stored}")
    return decision.exit_code
