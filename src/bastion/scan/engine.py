"""`bastion scan`: discover what is under the given paths, scan each file in an isolated worker
with limits, and assemble one Report."""

from __future__ import annotations

import datetime as dt
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bastion import __version__
from bastion.config import Limits, Settings
from bastion.errors import InputError
from bastion.findings import CheckError, Location, Report, Severity, TargetResult, ToolInfo
from bastion.parallel import Outcome, run_isolated
from bastion.rules import taxonomy_version
from bastion.scan import registry
from bastion.scan.base import LIMIT_HIT, LINK_MEMBER, ScanContext
from bastion.scan.source import Source, bytes_source, file_source

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Target:
    root: Path
    path: Path
    display: str
    size: int


def discover(paths: Sequence[Path], limits: Limits) -> tuple[list[Target], list[TargetResult]]:
    """Files to scan, plus results for what is reported without scanning (links leaving the
    root, special files, unreadable folders)."""
    targets: list[Target] = []
    notes: list[TargetResult] = []
    multi = len(paths) > 1
    for given in paths:
        if not os.path.lexists(given):
            raise InputError(f"{given}: no such file or directory")
        if given.is_file():
            targets.append(Target(given.parent, given, str(given), given.stat().st_size))
            continue
        if not given.is_dir():
            raise InputError(f"{given}: not a regular file or directory")
        root = given.resolve()
        prefix = f"{given.name}/" if multi else ""
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as exc:
                rel = os.path.relpath(folder, root)
                notes.append(_error_result(prefix + rel, f"cannot list folder: {exc.strerror}"))
                continue
            for entry in entries:
                rel = prefix + os.path.relpath(entry.path, root).replace(os.sep, "/")
                if entry.name in (".git", ".venv", "__pycache__", "node_modules"):
                    continue
                if entry.is_symlink():
                    notes.append(_symlink_result(root, Path(entry.path), rel))
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                    continue
                mode = entry.stat(follow_symlinks=False).st_mode
                if not stat.S_ISREG(mode):
                    notes.append(_error_result(rel, "special file (device, FIFO or socket)"))
                    continue
                targets.append(Target(root, Path(entry.path), rel,
                                      entry.stat(follow_symlinks=False).st_size))
                if len(targets) > limits.max_files:
                    raise InputError(f"more than {limits.max_files} files under {given}",
                                     hint="scan a narrower folder or raise limits.max_files")
    targets.sort(key=lambda t: t.display)
    return targets, notes


def _error_result(display: str, message: str) -> TargetResult:
    return TargetResult(path=display, errors=(CheckError(location=Location(path=display),
                                                         check="discover", message=message),),
                        incomplete=True)


def _symlink_result(root: Path, link: Path, display: str) -> TargetResult:
    target = os.path.realpath(link)
    inside = os.path.commonpath([str(root), target]) == str(root)
    if inside:
        return TargetResult(path=display, format="symlink")
    finding = LINK_MEMBER.finding(
        Location(path=display), f"symbolic link to {target}, outside the scanned folder; "
        "not followed (scan the target itself to check it)", evidence=f"-> {target}",
        severity=Severity.MEDIUM)
    return TargetResult(path=display, format="symlink", findings=(finding,))


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
