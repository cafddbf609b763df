"""`bastion scan`: discover what is under the given paths, scan each file in an isolated worker
with limits, and assemble one Report."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from pathlib import Path

from bastion.config import Limits, Settings
from bastion.discover import Found, Link, Target, walk
from bastion.findings import Location, Report, Severity, TargetResult
from bastion.runs import Progress, build_report, error_result, run_targets, start
from bastion.scan import registry
from bastion.scan.base import LINK_MEMBER, ScanContext
from bastion.scan.source import Source, bytes_source, file_source


def discover(found: Found) -> tuple[list[Target], list[TargetResult]]:
    """Files to scan, plus results for what is reported without scanning (links leaving the
    root, special files, unreadable folders)."""
    notes = [error_result(display, message) for display, message in found.problems]
    notes += [_symlink_result(link) for link in found.links]
    return found.files, notes


def _symlink_result(link: Link) -> TargetResult:
    if link.inside:
        return TargetResult(path=link.display, format="symlink")
    finding = LINK_MEMBER.finding(
        Location(path=link.display),
        f"symbolic link to {link.target}, outside the scanned "
        "content (another folder, or one bastion skips such as .git or .venv); not followed "
        "(scan the target itself to check it)",
        evidence=f"-> {link.target}",
        severity=Severity.MEDIUM,
    )
    return TargetResult(path=link.display, format="symlink", findings=(finding,))


def scan_source(source: Source, limits: Limits, root: Path | None = None) -> TargetResult:
    """Scan one source in this process (the worker entry point)."""
    started = time.monotonic()
    ctx = ScanContext(limits, registry(), root)  # cached: built once per process
    ctx.scan(source)
    return ctx.result(source.location.path, source.size, started)


def _scan_target(target: Target, limits: Limits) -> str:
    try:
        source = file_source(target.path, target.display)
        return scan_source(source, limits, target.root).model_dump_json()
    except OSError as exc:
        return error_result(target.display, f"cannot read: {exc.strerror}").model_dump_json()


def _scan_named_bytes(name: str, data: bytes, limits: Limits) -> str:
    return scan_source(bytes_source(data, name), limits).model_dump_json()


def run_scan(
    paths: Sequence[Path],
    settings: Settings,
    progress: Progress | None = None,
    found: Found | None = None,
) -> Report:
    """Scan every file under `paths` (or the already-walked `found`)."""
    started = start()
    targets, notes = discover(found or walk(paths, settings.limits.max_files))
    results = notes + scan_targets(targets, settings, progress)
    return build_report(results, [str(p) for p in paths], settings, started, "scan")


def scan_targets(
    targets: Sequence[Target], settings: Settings, progress: Progress | None = None
) -> list[TargetResult]:
    """Scan walked files in isolated workers, one result each."""
    registry()  # built here once; forked workers inherit it
    return run_targets(
        list(targets),
        lambda t: (t.display, t.size),
        functools.partial(_scan_target, limits=settings.limits),
        settings,
        progress,
    )


def scan_bytes(data: bytes, name: str, settings: Settings) -> Report:
    """Scan an in-memory artifact in an isolated worker (used by safe_load)."""
    started = start()
    results = run_targets(
        [name],
        lambda n: (n, len(data)),
        functools.partial(_scan_named_bytes, data=data, limits=settings.limits),
        settings.model_copy(update={"workers": 1}),
    )
    return build_report(results, [name], settings, started, "safe_load")
