"""`bastion scan PROJECT`: the front door. The project is walked once; every registered check
(checks.py) selects what it applies to and runs on it; their results merge by path into one
Report. The walk's own notes (links, special files, unreadable folders) are reported here."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module
from pathlib import Path

from bastion.checks import Check, ProjectContext, missing_modules, not_run
from bastion.config import Settings
from bastion.discover import walk
from bastion.findings import Report, TargetResult
from bastion.runs import Progress, build_report, start

# The checks of `bastion scan PROJECT`, in the order they run (the signature check reads the
# formats the artifact check identified). One entry per capability family's check.
CHECKS: tuple[str, ...] = (
    "bastion.scan.checks:ArtifactCheck",
    "bastion.scan.policy_files:ShippedPolicyCheck",
    "bastion.supplychain.checks:CodeCheck",
    "bastion.supplychain.checks:DependencyCheck",
    "bastion.supplychain.checks:SignatureCheck",
    "bastion.datacheck.checks:DataCheck",
)


def registered_checks() -> list[Check]:
    """Every check of the project scan, built in order."""
    checks: list[Check] = []
    for target in CHECKS:
        module, _, name = target.partition(":")
        checks.append(getattr(import_module(module), name)())
    return checks


def scan_project(
    paths: Sequence[Path], settings: Settings, progress: Progress | None = None
) -> Report:
    from bastion.scan.engine import discover

    started = start()
    found = walk(paths, settings.limits.max_files)  # once, for every check
    ctx = ProjectContext(paths, settings, found, progress)
    _files, notes = discover(found)
    results: dict[str, TargetResult] = {}
    _merge(results, notes)
    for check in registered_checks():
        selected = check.select(ctx)
        if not selected:
            continue
        missing = missing_modules(check)
        produced = not_run(check, selected, missing) if missing else check.run(selected, ctx)
        _merge(results, produced)
        ctx.results = dict(results)
    ordered = sorted(results.values(), key=lambda r: r.path)
    return build_report(ordered, [str(p) for p in paths], settings, started, "scan")


def _merge(results: dict[str, TargetResult], extra: Sequence[TargetResult]) -> None:
    for result in extra:
        current = results.get(result.path)
        if current is None or (not current.findings and current.out_of_scope):
            results[result.path] = result
        else:
            results[result.path] = current.model_copy(
                update={
                    "findings": current.findings + result.findings,
                    "skips": current.skips + result.skips,
                    "errors": current.errors + result.errors,
                    "incomplete": current.incomplete or result.incomplete,
                }
            )
