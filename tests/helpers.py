"""Small helpers shared by tests: scan one file or bytes in-process."""

from __future__ import annotations

from pathlib import Path

from bastion.config import Limits
from bastion.findings import Severity, TargetResult
from bastion.scan.engine import scan_source
from bastion.scan.source import Source, bytes_source, file_source


def scan_file(path: Path, limits: Limits | None = None) -> TargetResult:
    source = file_source(path, path.name)
    return scan_source(source, limits or Limits(), path.parent)


def scan_data(data: bytes, name: str = "sample.bin", limits: Limits | None = None) -> TargetResult:
    return scan_source(bytes_source(data, name), limits or Limits())


def rules(result: TargetResult, at_least: Severity = Severity.INFO) -> set[str]:
    return {f.rule_id for f in result.findings if f.severity.rank >= at_least.rank}


def gate_fails(result: TargetResult, at_least: Severity = Severity.MEDIUM) -> bool:
    return bool(rules(result, at_least)) or result.incomplete


__all__ = ["Source", "gate_fails", "rules", "scan_data", "scan_file"]
