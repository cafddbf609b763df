"""The artifact family's project check: every file of a project is identified by content and
scanned; Python shipped beside models is judged with them (shipped_code.py)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path, PurePosixPath

from bastion.checks import ProjectContext
from bastion.discover import Target
from bastion.findings import Location, TargetResult
from bastion.rules import Rule

# every module of this family that declares rules (each exports RULES)
RULE_MODULES = (
    "bastion.scan.base",
    "bastion.scan.archive",
    "bastion.scan.zipmembers",
    "bastion.scan.pickle",
    "bastion.scan.pytorch",
    "bastion.scan.keras",
    "bastion.scan.skops",
    "bastion.scan.npy",
    "bastion.scan.safetensors",
    "bastion.scan.onnx",
    "bastion.scan.tensorflow",
    "bastion.scan.gguf",
    "bastion.scan.templates",
    "bastion.scan.config_values",
    "bastion.scan.remote_code",
    "bastion.scan.shipped_code",
)


def rules_of(modules: Sequence[str]) -> tuple[Rule, ...]:
    """The RULES every listed module exports, in listing order."""
    return tuple(rule for name in modules for rule in import_module(name).RULES)


class ArtifactCheck:
    """Every walked file, identified by content (extensions are hints) and scanned in
    isolated workers with the policy's limits."""

    name = "artifacts"
    extra: str | None = None
    requires: tuple[str, ...] = ()

    @property
    def rules(self) -> tuple[Rule, ...]:
        return rules_of(RULE_MODULES)

    def select(self, ctx: ProjectContext) -> Sequence[Target]:
        return ctx.found.files

    def run(self, selected: Sequence[Target], ctx: ProjectContext) -> Sequence[TargetResult]:
        from bastion.scan.engine import scan_targets

        results = scan_targets(selected, ctx.settings, ctx.progress)
        return judge_shipped_code(results, selected)


def judge_shipped_code(results: list[TargetResult], files: Sequence[Target]) -> list[TargetResult]:
    """Python shipped beside models: shadowing modules, bytecode, native code (new results),
    and classes of shipped code instantiated by a pickle (findings regraded in place)."""
    from bastion.scan.shipped_code import Entry, check_entries, regrade, shipped_modules

    formats = {r.path: r.format for r in results}

    def head(path: Path) -> bytes:
        try:
            with open(path, "rb") as handle:
                return handle.read(16)
        except OSError:
            return b""

    entries = [
        Entry(path=t.display, fmt=formats.get(t.display, ""), head=functools.partial(head, t.path))
        for t in files
    ]
    modules = shipped_modules(entries)
    out = []
    for result in results:
        folder = str(PurePosixPath(result.path).parent)
        regraded = tuple(regrade(f, folder, modules) for f in result.findings)
        out.append(
            result
            if regraded == result.findings
            else result.model_copy(update={"findings": regraded})
        )
    for problem in check_entries(entries, Location(path="")):
        finding = problem.finding.model_copy(
            update={"location": Location(path=problem.path), "fingerprint": ""}
        )
        out.append(TargetResult(path=problem.path, format="python", findings=(finding,)))
    return out
