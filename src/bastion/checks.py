"""The one interface every capability family implements for the project front door.

A `Check` says what it selects from a project's files, which extra makes it complete, how it
runs on what it selected, and which rules it owns. `bastion scan PROJECT` (project.py) walks
the paths once and runs every registered check in order; each check returns `TargetResult`s
that the project merges by path. Checks run in the order the project lists them, and a later
check may read what earlier ones produced (`ProjectContext.results`: the signature check asks
which files the artifact scan identified as models)."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from bastion.config import Settings
from bastion.discover import Found, Target
from bastion.findings import Location, Skip, TargetResult
from bastion.rules import Rule
from bastion.runs import Progress


class ProjectContext:
    """What every check of one project run shares: the walk, the settings, and the results so
    far (read-only for checks; the project merges what they return)."""

    def __init__(
        self,
        paths: Sequence[Path],
        settings: Settings,
        found: Found,
        progress: Progress | None = None,
    ) -> None:
        self.paths = tuple(paths)
        self.settings = settings
        self.found = found
        self.progress = progress
        self.results: Mapping[str, TargetResult] = {}


class Check(Protocol):
    """One capability family's step in a project scan."""

    @property
    def name(self) -> str:
        """Short name shown in errors and `bastion rules` (e.g. "artifacts", "code")."""
        ...

    @property
    def extra(self) -> str | None:
        """The pip extra that makes this check complete (`bastion-mlsec[<extra>]`), or None."""
        ...

    @property
    def requires(self) -> tuple[str, ...]:
        """Importable modules without which the check cannot run at all (its extra's core)."""
        ...

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Every rule this check can emit."""
        ...

    def select(self, ctx: ProjectContext) -> Sequence[Target]:
        """The files of the project this check applies to (may be empty: then it is not run)."""
        ...

    def run(self, selected: Sequence[Target], ctx: ProjectContext) -> Sequence[TargetResult]:
        """Check what was selected; never raises for anything about the content."""
        ...


def missing_modules(check: Check) -> list[str]:
    """The modules `check` requires that are not installed (found without importing them)."""
    missing = []
    for module in check.requires:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    return missing


def not_run(check: Check, selected: Sequence[Target], missing: Sequence[str]) -> list[TargetResult]:
    """What a check that cannot run leaves: a missing-extra gap on each file it selected."""
    extra = check.extra or check.name
    reason = f"{check.name} check not run: {', '.join(missing)} not installed"
    return [
        TargetResult(
            path=target.display,
            skips=(
                Skip(
                    location=Location(path=target.display),
                    reason=reason,
                    code="missing-extra",
                    extra=extra,
                ),
            ),
        )
        for target in selected
    ]
