"""bastion's side of the differential oracles, read from its public API only: `bastion.scan`
over a folder of generated files, and the findings of each file's result."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import bastion
from bastion.config import Limits, Settings
from bastion.findings import Finding, Severity, TargetResult

GATE = Severity.MEDIUM  # the default fail_on


def scan_folder(folder: Path) -> dict[str, TargetResult]:
    """One bastion.scan over the folder (workers reused), results by relative path."""
    settings = Settings(workers=2, limits=Limits(timeout_s=60))
    report = bastion.scan([folder], settings)
    return {result.path: result for result in report.results}


def fails_closed(result: TargetResult) -> bool:
    """bastion could not decide (limit, crash): the file does not pass, whatever it holds."""
    return result.incomplete or bool(result.errors)


def naming(result: TargetResult, qualnames: Iterable[str]) -> list[Finding]:
    """The findings whose evidence or message names one of `qualnames` as a whole dotted
    name (so `os.system` does not match `xos.system` or `os.system_x`)."""
    patterns = [re.compile(rf"(?<![\w.]){re.escape(q)}(?![\w.])") for q in qualnames]
    return [
        f
        for f in result.findings
        if any(p.search(f.evidence) or p.search(f.message) for p in patterns)
    ]


def at_gate(findings: Iterable[Finding]) -> bool:
    return any(f.severity.rank >= GATE.rank for f in findings)
