"""Running one check over many targets in isolated workers, and assembling the Report. Shared
by every command that judges files (scan, code, ...)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from bastion.config import Settings
from bastion.findings import (
    CheckError,
    Confidence,
    Location,
    Report,
    Severity,
    Stage,
    TargetResult,
    ToolInfo,
)
from bastion.parallel import Outcome, run_isolated
from bastion.records import Record
from bastion.rules import Rule, taxonomy_version
from bastion.version import __version__

T = TypeVar("T")
Progress = Callable[[int, int, str], None]

LIMIT_HIT = Rule(
    id="LIM001",
    title="Scan stopped at a resource limit",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="coverage",
    description="The file (or a member) hit a time, memory, size, depth or count bound before "
    "it was fully analysed. Hostile files are built to do this; the part not read "
    "may hold a payload, so the file is not clean.",
    remediation="Inspect the file by hand or raise the limit deliberately (bastion.toml "
    "[limits]) if it is a known, trusted large artifact.",
)

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (LIMIT_HIT,)


def error_result(display: str, message: str, check: str = "discover") -> TargetResult:
    return TargetResult(
        path=display,
        errors=(CheckError(location=Location(path=display), check=check, message=message),),
        incomplete=True,
    )


def incomplete_result(display: str, size: int | None, reason: str) -> TargetResult:
    finding = LIMIT_HIT.finding(
        Location(path=display), f"analysis incomplete: {reason}", evidence=reason
    )
    return TargetResult(path=display, size=size, findings=(finding,), incomplete=True)


def run_targets(
    items: Sequence[T],
    display: Callable[[T], tuple[str, int | None]],
    work: Callable[[T], str],
    settings: Settings,
    progress: Progress | None = None,
) -> list[TargetResult]:
    """work(item) returns a TargetResult as JSON; it runs in an isolated worker with the
    settings' time and memory limits (forked, or spawned in a threaded process: `work` is then
    pickled by reference, so it is a module-level function or a functools.partial of one).
    A worker that overruns or dies yields a result that fails closed (incomplete or errored),
    never a clean one."""
    results: list[TargetResult] = []

    def collect(outcome: Outcome) -> None:
        name, size = display(items[outcome.index])
        failure = outcome.failure or "worker failure"
        if outcome.result is not None:
            results.append(TargetResult.model_validate_json(outcome.result))
        elif outcome.kind is not None and outcome.kind.bounded:
            results.append(incomplete_result(name, size, failure))
        else:
            results.append(error_result(name, failure, "worker"))
        if progress:
            progress(len(results), len(items), name)

    limits = settings.limits
    if settings.executor == "ray":
        from bastion.cluster import run_on_ray

        run_on_ray(
            items,
            work,
            timeout_s=limits.timeout_s,
            memory_mb=limits.memory_mb,
            on_outcome=collect,
            address=settings.ray_address,
        )
    else:
        run_isolated(
            items,
            work,
            workers=settings.workers,
            timeout_s=limits.timeout_s,
            memory_mb=limits.memory_mb,
            on_outcome=collect,
        )
    return results


class Started(Record):
    """When a run began: the wall-clock time for the report, a monotonic clock for its duration."""

    at: dt.datetime
    clock: float


def start() -> Started:
    return Started(at=dt.datetime.now(dt.timezone.utc), clock=time.monotonic())


def build_report(
    results: list[TargetResult],
    targets: list[str],
    settings: Settings,
    started: Started,
    command: str,
    extra_metadata: dict[str, Any] | None = None,
) -> Report:
    results.sort(key=lambda r: r.path)
    metadata = {
        "started_at": started.at.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started.clock, 3),
        "files": sum(1 for r in results if r.format != "symlink"),
        "taxonomy_version": taxonomy_version(),
        "policy": settings.policy_name,
        "settings": {
            "fail_on": settings.fail_on.value,
            "strict": settings.strict,
            "source": settings.source,
            "limits": settings.limits.model_dump(),
        },
        **(extra_metadata or {}),
    }
    return Report(
        tool=ToolInfo(version=__version__),
        command=command,
        targets=tuple(targets),
        metadata=metadata,
        results=tuple(results),
    )
