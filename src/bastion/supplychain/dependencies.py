"""`bastion deps`: known vulnerabilities in a project's dependencies, from an offline OSV
database (`--advisory-db`), pip-audit's services (`--online`), and the advisories bundled with
bastion for ML loaders whose safety switches were bypassed (always checked)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from bastion import coverage
from bastion.config import Settings
from bastion.errors import InputError, UsageError
from bastion.findings import (
    Confidence,
    Finding,
    Location,
    Report,
    Severity,
    Skip,
    Stage,
    TargetResult,
    sort_findings,
)
from bastion.rules import Rule
from bastion.runs import build_report, start
from bastion.supplychain.advisories import Advisory, AdvisoryDatabase, parse_record
from bastion.supplychain.requirements import Dependency, read_any, read_environment

VULNERABLE = Rule(
    id="DEP001",
    title="Dependency with a known vulnerability",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.CODE,
    profile="coverage",
    description="A pinned or installed dependency version is affected by a published advisory "
    "(severity from the advisory).",
    remediation="Upgrade to a fixed version listed in the finding, or waive with a reason "
    "if the vulnerable code path is not used.",
)
ML_LOADER = Rule(
    id="DEP002",
    title="ML framework whose safe-loading switch is bypassable",
    severity=Severity.CRITICAL,
    confidence=Confidence.HIGH,
    stage=Stage.CODE,
    profile="model-code-execution",
    description="The installed or pinned version of an ML framework has a published bypass of "
    "its safe loading mode (torch weights_only, Keras safe_mode): loading an "
    "untrusted model runs code even when the code asks for safe loading.",
    remediation="Upgrade the framework to the fixed version, and scan models with bastion "
    "before loading them.",
)
RANGE_ADMITS = Rule(
    id="DEP003",
    title="Version range admits vulnerable releases",
    severity=Severity.MEDIUM,
    confidence=Confidence.MEDIUM,
    stage=Stage.CODE,
    profile="coverage",
    description="The requirement is not pinned and its range includes versions affected by an "
    "advisory; which version gets installed depends on the day.",
    remediation="Pin the dependency (or raise the lower bound) above the fixed version, and "
    "use a lock file.",
)

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (VULNERABLE, ML_LOADER, RANGE_ADMITS)

BUNDLED = Path(__file__).with_name("ml_advisories.json")


def bundled_advisories() -> list[Advisory]:
    records = json.loads(BUNDLED.read_text("utf-8"))
    return [advisory for record in records for advisory in parse_record(record)]


def _admits(dependency: Dependency, advisory: Advisory) -> str | None:
    """A version allowed by an unpinned requirement that the advisory affects."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        spec = SpecifierSet(dependency.specifier)
    except InvalidSpecifier:
        return None
    candidates = set(advisory.versions)
    for events in advisory.ranges:
        candidates |= {
            v for kind, v in events if kind in ("introduced", "last_affected") and v != "0"
        }
        candidates |= {v + ".post0" for kind, v in events if kind == "introduced" and v != "0"}
    for version in sorted(candidates):
        try:
            if spec.contains(version, prereleases=True) and advisory.affects(version):
                return version
        except ValueError:
            continue
    if not advisory.fixed and not dependency.specifier:
        return "any"
    return None


def audit(
    dependencies: Sequence[Dependency],
    database: AdvisoryDatabase | None,
    online: dict[tuple[str, str], list[Advisory]] | None = None,
) -> list[Finding]:
    bundled = AdvisoryDatabase(bundled_advisories(), "bastion")
    findings: list[Finding] = []
    for dep in dependencies:
        location = Location(path=dep.source, line=dep.line, pointer=dep.name)
        sources = [(bundled, ML_LOADER)]
        if database is not None:
            sources.append((database, VULNERABLE))
        reported: set[str] = set()
        for db, rule in sources:
            advisories = db.by_package.get(dep.name, [])
            for advisory in advisories:
                if advisory.id in reported or set(advisory.aliases) & reported:
                    continue
                if dep.version is not None:
                    if not advisory.affects(dep.version):
                        continue
                    findings.append(_finding(rule, location, dep, advisory, dep.version))
                else:
                    version = _admits(dep, advisory)
                    if version is None:
                        continue
                    findings.append(
                        _finding(
                            RANGE_ADMITS,
                            location,
                            dep,
                            advisory,
                            f"{dep.specifier or 'any version'} (e.g. {version})",
                        )
                    )
                reported.add(advisory.id)
                reported.update(advisory.aliases)
        for advisory in (online or {}).get((dep.name, dep.version or ""), []):
            if advisory.id not in reported:
                findings.append(_finding(VULNERABLE, location, dep, advisory, dep.version or ""))
    return findings


def _finding(
    rule: Rule, location: Location, dep: Dependency, advisory: Advisory, version: str
) -> Finding:
    fixed = ", ".join(advisory.fixed) or "none published"
    aliases = f" ({', '.join(advisory.aliases)})" if advisory.aliases else ""
    severity = rule.severity if rule is ML_LOADER else advisory.severity
    if rule is RANGE_ADMITS:
        severity = (
            min(advisory.severity, Severity.MEDIUM, key=lambda s: s.rank)
            if advisory.severity.rank < Severity.HIGH.rank
            else Severity.MEDIUM
        )
    return rule.finding(
        location,
        f"{dep.name} {version}: {advisory.id}{aliases} — {advisory.summary} Fixed in: {fixed}.",
        evidence=f"{dep.name}=={version} {advisory.id}",
        severity=severity,
    )


def _online(files: Sequence[Path]) -> dict[tuple[str, str], list[Advisory]]:
    """Ask pip-audit's vulnerability service (network)."""
    tool = shutil.which("pip-audit")
    if tool is None:
        raise UsageError("--online needs pip-audit", hint="pip install pip-audit")
    args = [tool, "-f", "json", "--progress-spinner", "off"]
    for file in files:
        args += ["-r", str(file)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    try:
        data = json.loads(proc.stdout)
    except ValueError as exc:
        raise InputError(f"pip-audit failed: {proc.stderr.strip()[-500:]}") from exc
    out: dict[tuple[str, str], list[Advisory]] = {}
    for dep in data.get("dependencies", []):
        for vuln in dep.get("vulns", []):
            record = {
                "id": vuln.get("id"),
                "aliases": vuln.get("aliases", []),
                "summary": vuln.get("description", ""),
                "affected": [
                    {
                        "package": {"ecosystem": "PyPI", "name": dep.get("name")},
                        "versions": [dep.get("version")],
                        "ranges": [
                            {
                                "type": "ECOSYSTEM",
                                "events": [
                                    {"introduced": "0"},
                                    *({"fixed": f} for f in vuln.get("fix_versions", [])),
                                ],
                            }
                        ],
                    }
                ],
            }
            for advisory in parse_record(record):
                out.setdefault((advisory.package, dep.get("version", "")), []).append(advisory)
    return out


def run_deps(
    files: Sequence[Path], settings: Settings, advisory_db: Path | None = None, online: bool = False
) -> Report:
    started = start()
    database = AdvisoryDatabase.load(advisory_db) if advisory_db else None
    remote = _online(files) if online else None
    results: list[TargetResult] = []
    inputs: list[tuple[str, list[Dependency], list[str]]] = []
    if files:
        for file in files:
            deps, problems = read_any(file, str(file))
            inputs.append((str(file), deps, problems))
    else:
        inputs.append(("environment", read_environment(), []))
    for display, deps, problems in inputs:
        began = time.monotonic()
        skips = [
            Skip(location=Location(path=display), reason=p, code="unsupported") for p in problems
        ]
        if database is not None and database.dropped:
            skips.append(
                Skip(
                    location=Location(path=display),
                    code="unsupported",
                    reason=f"{database.dropped} record(s) of the advisory database "
                    "could not be read or applied (broken JSON, not OSV, or "
                    "versions PEP 440 cannot read): their packages were not "
                    "checked against them",
                )
            )
        if database is None and not online:
            skips.append(
                Skip(
                    location=Location(path=display),
                    code=coverage.NO_ADVISORY_DB,
                    reason="no advisory database given (--advisory-db or --online): "
                    "only bastion's bundled ML advisories were checked",
                )
            )
        findings = audit(deps, database, remote)
        results.append(
            TargetResult(
                path=display,
                format="dependencies",
                size=len(deps),
                findings=sort_findings(findings),
                skips=tuple(skips),
                duration_ms=round((time.monotonic() - began) * 1000, 1),
            )
        )
    return build_report(
        results,
        [str(f) for f in files] or ["environment"],
        settings,
        started,
        "deps",
        {
            "advisory_db": database.source if database else None,
            "advisory_records_dropped": database.dropped if database else 0,
            "online": online,
        },
    )
