"""`bastion scan` and `bastion baseline`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bastion.config import Settings, load_settings
from bastion.findings import Report
from bastion.policy import Verdict, baseline_document, evaluate, load_baseline
from bastion.report import render
from bastion.runs import Progress

from .options import add_judging_options, bounded, existing, output_file
from .output import rule_table, say, write_report


def settings_for(paths: Sequence[Path], policy: Path | None, overrides: dict[str, Any]) -> Settings:
    """The invoking project's settings: --policy, BASTION_POLICY, or the policy found from the
    working directory upwards — never one inside the scanned `paths` unless named."""
    return load_settings(
        policy_file=policy, project_dir=Path.cwd(), overrides=overrides, scanned=paths
    )


def gate_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"fail_on": args.fail_on, "strict": args.strict}


def progress_reporter(quiet: bool):  # type: ignore[no-untyped-def]
    """A progress callback drawing a bar on stderr when it is a terminal."""
    if quiet or not sys.stderr.isatty():
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn("scanning"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=Console(stderr=True),
        auto_refresh=False,
        transient=True,
    )
    task = bar.add_task("", total=None)

    def update(done: int, total: int, name: str) -> None:
        if total > 1:
            if not bar.live.is_started:
                bar.start()
            bar.update(task, completed=done, total=total, description=name[-50:])
            bar.refresh()

    return update, bar


def with_progress(work: Callable[[Progress | None], Report], quiet: bool) -> Report:
    """Run `work` with a progress bar on stderr (when it is a terminal)."""
    update, bar = progress_reporter(quiet)
    try:
        return work(update)
    finally:
        if bar is not None:
            bar.stop()


def judge(report: Report, settings: Settings, baseline: Path | None) -> Verdict:
    """The policy's verdict, with an explicit --baseline or the policy's own."""
    prints = load_baseline(baseline) if baseline else frozenset()
    if baseline is None and settings.baseline:
        base = Path(settings.source).parent if settings.source else Path(".")
        prints = load_baseline(base / settings.baseline)
    return evaluate(report, settings, prints)


def finish(report: Report, settings: Settings, args: argparse.Namespace) -> int:
    """Judge, write the report, record the run and say the verdict; returns the exit code."""
    verdict = judge(report, settings, args.baseline)
    if not args.quiet:
        say(f"bastion: policy: {settings.policy_name}")
    write_report(render(report, verdict, args.fmt, rule_table(args.fmt)), args.output)
    run_id = None
    if not args.no_store:
        from bastion.lineage.record import record_run
        from bastion.store import Store

        with Store(args.store) as history:
            recorded = record_run(history, report, verdict, settings)
        run_id = recorded.run_id
        if not args.quiet:
            for problem in recorded.unlinked[:10]:
                say(f"bastion: lineage: {problem}")
    if not args.quiet:
        counts = report.severity_counts()
        found = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no findings"
        where = f"; report in {args.output}" if args.output else ""
        stored = f"; run #{run_id}" if run_id else ""
        say(f"bastion: {verdict.status.value.upper()} — {found}{where}{stored}")
    return verdict.exit_code


def configure_scan(parser: argparse.ArgumentParser) -> None:
    parser.description = f"""{parser.description}

Every file is identified by its content (pickle, PyTorch, joblib, NumPy, safetensors, ONNX,
Keras, TensorFlow SavedModel, GGUF, zip/tar/7z archives, compressed streams) and checked
without executing anything. In a project, code and notebooks get the `bastion code` checks,
requirement and lock files the `bastion deps` audit (with the policy's advisory_db), and
signatures next to models are verified against the policy's trusted keys. The policy decides
the exit code: 0 passed, 1 failed, 2 could not decide."""
    parser.add_argument(
        "paths",
        nargs="+",
        type=existing(),
        metavar="PATH",
        help="Model files, archives, model folders or project folders.",
    )
    add_judging_options(parser)
    parser.add_argument(
        "--workers",
        type=bounded(int, 1, 64),
        metavar="N",
        help="Parallel scan workers [default: CPU count].",
    )
    parser.add_argument(
        "--executor",
        choices=("local", "ray"),
        help="Where files are scanned: local worker processes, or a Ray cluster "
        "(needs bastion-mlsec[ray]; files must be readable at the same "
        "paths on every node) [env BASTION_EXECUTOR; default: local].",
    )
    parser.add_argument(
        "--address",
        metavar="ADDR",
        dest="ray_address",
        help="Ray cluster address for --executor ray (HOST:6379 or "
        "ray://HOST:10001) [env BASTION_RAY_ADDRESS; default: a local Ray "
        "instance].",
    )
    parser.add_argument(
        "--timeout",
        type=bounded(float, 0.1),
        metavar="SECONDS",
        help="Seconds per file [default: 120].",
    )
    parser.add_argument(
        "--memory-mb",
        type=bounded(int, 64),
        metavar="MIB",
        help="Memory per scan worker in MiB [default: 2048].",
    )


def run_scan(args: argparse.Namespace) -> int:
    paths: list[Path] = args.paths
    limits = {k: v for k, v in (("timeout_s", args.timeout), ("memory_mb", args.memory_mb)) if v}
    settings = settings_for(
        paths,
        args.policy,
        {
            **gate_overrides(args),
            "workers": args.workers,
            "executor": args.executor,
            "ray_address": args.ray_address,
            "limits": limits or None,
        },
    )
    if settings.ray_address and settings.executor != "ray":
        from bastion.errors import UsageError

        raise UsageError("--address names a Ray cluster: use it with --executor ray")
    from bastion.project import scan_project

    report = with_progress(lambda update: scan_project(paths, settings, update), args.quiet)
    return finish(report, settings, args)


def configure_baseline(parser: argparse.ArgumentParser) -> None:
    parser.description = f"""{parser.description}

Scans PATHS and writes every current finding's fingerprint. Later scans given --baseline FILE
(or `baseline = "FILE"` in the policy) pass on these findings and fail only on new ones.
Review the file before committing it."""
    parser.add_argument("paths", nargs="+", type=existing(), metavar="PATH")
    parser.add_argument(
        "--output",
        "-o",
        type=output_file,
        metavar="FILE",
        default=Path("bastion-baseline.json"),
        help="Where to write the baseline [default: bastion-baseline.json].",
    )
    parser.add_argument("--policy", type=existing("file"), metavar="FILE", help="Policy TOML.")
    parser.add_argument("--quiet", "-q", action="store_true", help="No summary on stderr.")


def run_baseline(args: argparse.Namespace) -> int:
    from bastion.project import scan_project

    settings = settings_for(args.paths, args.policy, {})
    report = scan_project(args.paths, settings)
    document = baseline_document(report)
    write_report(json.dumps(document, indent=2) + "\n", args.output)
    if not args.quiet:
        say(f"bastion: baseline of {len(report.findings)} finding(s) written to {args.output}")
    if report.errors:
        say(
            f"bastion: warning: {len(report.errors)} check error(s); those files are not "
            "covered by the baseline"
        )
        return 2
    return 0
