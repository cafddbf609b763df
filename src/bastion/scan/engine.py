"""`bastion scan`: discover what is under the given paths, scan each file in an isolated worker
with limits, and assemble one Report."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bastion import __version__
from bastion.config import Limits, Settings
from bastion.discover import Link, Target, walk
from bastion.findings import CheckError, Location, Report, Severity, TargetResult, ToolInfo
from bastion.parallel import Outcome, run_isolated
from bastion.rules import taxonomy_version
from bastion.scan import registry
from bastion.scan.base import LIMIT_HIT, LINK_MEMBER, ScanContext
from bastion.scan.source import Source, bytes_source, file_source

Progress = Callable[[int, int, str], None]


def discover(paths: Sequence[Path], limits: Limits) -> tuple[list[Target], list[TargetResult]]:
    """Files to scan, plus results for what is reported without scanning (links leaving the
    root, special files, unreadable folders)."""
    found = walk(paths, limits.max_files)
    notes = [_error_result(display, message) for display, message in found.problems]
    notes += [_symlink_result(link) for link in found.links]
    return found.files, notes


def _error_result(display: str, message: str) -> TargetResult:
    return TargetResult(path=display, errors=(CheckError(location=Location(path=display),
                                                         check="discover", message=message),),
                        incomplete=True)


def _symlink_result(link: Link) -> TargetResult:
    if link.inside:
        return TargetResult(path=link.display, format="symlink")
    finding = LINK_MEMBER.finding(
        Location(path=link.display), f"symbolic link to {link.target}, outside the scanned "
        "folder; not followed (scan the target itself to check it)",
        evidence=f"-> {link.target}", severity=Severity.MEDIUM)
    return TargetResult(path=link.display, format="symlink", findings=(finding,))


def scan_source(source: Source, limits: Limits, root: Path | None = None) -> TargetResult:
    """Scan one source in this process (the worker entry point)."""
    started = time.monotonic()
    ctx = ScanContext(limits, registry(), root)  # cached: built once per process
    ctx.scan(source)
    return ctx.result(source.location.path, source.size, started)


def _scan_target(target: Target, limits: Limits) -> str:
    try:
        source = file_source(target.root, target.path)
        source = Source(location=Location(path=target.display), opener=source.opener,
                        size=source.size, name=source.name, fs_path=target.path)
        return scan_source(source, limits, target.root).model_dump_json()
    except OSError as exc:
        return _error_result(target.display, f"cannot read: {exc.strerror}").model_dump_json()


def _failed(target: Target, reason: str) -> TargetResult:
    finding = LIMIT_HIT.finding(Location(path=target.display), f"analysis incomplete: {reason}",
                                evidence=reason)
    return TargetResult(path=target.display, size=target.size, findings=(finding,),
                        incomplete=True)


def run_scan(paths: Sequence[Path], settings: Settings, progress: Progress | None = None,
             command: str = "scan", unsafe: Sequence[str] = ()) -> Report:
    started_at = dt.datetime.now(dt.timezone.utc)
    clock = time.monotonic()
    targets, notes = discover(paths, settings.limits)
    results: list[TargetResult] = list(notes)
    done = 0

    def collect(outcome: Outcome) -> None:
        nonlocal done
        target = targets[outcome.index]
        if outcome.result is not None:
            results.append(TargetResult.model_validate_json(outcome.result))
        elif "time limit" in (outcome.failure or "") or "memory" in (outcome.failure or ""):
            results.append(_failed(target, outcome.failure or "worker failure"))
        else:
            results.append(_error_result(target.display, outcome.failure or "worker failure"))
        done += 1
        if progress:
            progress(done, len(targets), target.display)

    limits = settings.limits
    registry()  # built here once; forked workers inherit it
    run_isolated(targets, lambda t: _scan_target(t, limits), workers=settings.workers,
                 timeout_s=limits.timeout_s, memory_mb=limits.memory_mb, on_outcome=collect)
    return build_report(results, [str(p) for p in paths], settings, started_at, clock, command,
                        unsafe)


def scan_bytes(data: bytes, name: str, settings: Settings) -> Report:
    """Scan an in-memory artifact in an isolated worker (used by safe_load)."""
    started_at = dt.datetime.now(dt.timezone.utc)
    clock = time.monotonic()
    results: list[TargetResult] = []
    limits = settings.limits

    def work(_: int) -> str:
        return scan_source(bytes_source(data, name), limits).model_dump_json()

    def collect(outcome: Outcome) -> None:
        if outcome.result is not None:
            results.append(TargetResult.model_validate_json(outcome.result))
        else:
            results.append(_failed(Target(Path("."), Path(name), name, len(data)),
                                   outcome.failure or "worker failure"))

    run_isolated([0], work, workers=1, timeout_s=limits.timeout_s, memory_mb=limits.memory_mb,
                 on_outcome=collect)
    return build_report(results, [name], settings, started_at, clock, "safe_load", ())


def build_report(results: list[TargetResult], targets: list[str], settings: Settings,
                 started_at: dt.datetime, clock: float, command: str,
                 unsafe: Sequence[str]) -> Report:
    results.sort(key=lambda r: r.path)
    metadata = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - clock, 3),
        "files": sum(1 for r in results if r.format != "symlink"),
        "taxonomy_version": taxonomy_version(),
        "settings": {"fail_on": settings.fail_on.value, "strict": settings.strict,
                     "source": settings.source, "limits": settings.limits.model_dump()},
        "unsafe": list(unsafe),
    }
    return Report(tool=ToolInfo(version=__version__), command=command, targets=tuple(targets),
                  metadata=metadata, results=tuple(results))
