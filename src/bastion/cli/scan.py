"""`bastion scan` and `bastion baseline`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bastion.config import Settings, load_settings
from bastion.findings import Report
from bastion.policy import Verdict, baseline_document, evaluate, load_baseline
from bastion.report import render
from bastion.runs import Progress

from .options import judging_options
from .output import say, write_report


def settings_for(paths: tuple[Path, ...], policy: Path | None, overrides: dict[str, Any]) -> \
        Settings:
    return load_settings(policy_file=policy, search_from=paths[0] if paths else Path("."),
                         overrides=overrides)


def progress_reporter(quiet: bool):  # type: ignore[no-untyped-def]
    """A progress callback drawing a bar on stderr when it is a terminal."""
    if quiet or not sys.stderr.isatty():
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(TextColumn("scanning"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.description}"), console=Console(stderr=True),
                   auto_refresh=False, transient=True)
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
    prints = load_baseline(baseline) if baseline else frozenset()
    if baseline is None and settings.baseline:
        base = Path(settings.source).parent if settings.source else Path(".")
        prints = load_baseline(base / settings.baseline)
    return evaluate(report, settings, prints)


def finish(report: Report, verdict: Verdict, fmt: str, output: Path | None,
           store: Path | None, no_store: bool, quiet: bool) -> int:
    write_report(render(report, verdict, fmt), output)
    run_id = None
    if not no_store:
        from bastion.store import Store, default_path

        history = Store(store or default_path())
        try:
            run_id = history.record(report, verdict)
        finally:
            history.close()
    if not quiet:
        counts = report.severity_counts()
        found = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no findings"
        where = f"; report in {output}" if output else ""
        stored = f"; run #{run_id}" if run_id else ""
        say(f"bastion: {verdict.status.value.upper()} — {found}{where}{stored}")
    return verdict.exit_code


@click.command("scan")
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@judging_options
@click.option("--workers", type=click.IntRange(1, 64), help="Parallel scan workers "
              "[default: CPU count].")
@click.option("--timeout", type=click.FloatRange(min=0.1), help="Seconds per file "
              "[default: 120].")
@click.option("--memory-mb", type=click.IntRange(min=64), help="Memory per scan worker "
              "[default: 2048].")
def scan_command(paths: tuple[Path, ...], fmt: str, output: Path | None, policy: Path | None,
                 fail_on: str | None, strict: bool | None, baseline: Path | None,
                 store: Path | None, no_store: bool, quiet: bool, workers: int | None,
                 timeout: float | None, memory_mb: int | None) -> None:
    """Scan model artifacts, model folders or a whole project.

    Every file is identified by its content (pickle, PyTorch, joblib, NumPy, safetensors,
    ONNX, Keras, TensorFlow SavedModel, GGUF, zip/tar/7z archives, compressed streams) and
    checked without executing anything. In a project, code and notebooks get the `bastion
    code` checks, requirement and lock files the `bastion deps` audit (with the policy's
    advisory_db), and signatures next to models are verified against the policy's trusted
    keys. The policy decides the exit code: 0 passed, 1 failed, 2 could not decide.
    """
    limits = {k: v for k, v in (("timeout_s", timeout), ("memory_mb", memory_mb)) if v}
    settings = settings_for(paths, policy, {"fail_on": fail_on, "strict": strict,
                                            "workers": workers, "limits": limits or None})
    from bastion.project import scan_project

    report = with_progress(lambda update: scan_project(list(paths), settings, update), quiet)
    verdict = judge(report, settings, baseline)
    raise SystemExit(finish(report, verdict, fmt, output, store, no_store, quiet))


@click.command("baseline")
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("bastion-baseline.json"), show_default=True,
              help="Where to write the baseline.")
@click.option("--policy", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Policy TOML.")
@click.option("--quiet", "-q", is_flag=True, help="No summary on stderr.")
def baseline_command(paths: tuple[Path, ...], output: Path, policy: Path | None,
                     quiet: bool) -> None:
    """Scan PATHS and record every current finding as accepted.

    Later scans given --baseline FILE (or `baseline = "FILE"` in the policy) pass on these
    findings and fail only on new ones. Review the file before committing it.
    """
    from bastion.project import scan_project

    settings = settings_for(paths, policy, {})
    report = scan_project(list(paths), settings)
    document = baseline_document(report)
    write_report(json.dumps(document, indent=2) + "\n", output)
    if not quiet:
        say(f"bastion: baseline of {len(report.findings)} finding(s) written to {output}")
    if report.errors:
        say(f"bastion: warning: {len(report.errors)} check error(s); those files are not "
            "covered by the baseline")
        raise SystemExit(2)
