"""Policy: Report + Settings (+ baseline) -> Verdict. A pure function; the exit code comes from
the verdict: 0 passed, 1 failed, 2 could not decide."""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
from enum import Enum
from pathlib import Path

from bastion.config import Settings, WaiverSpec
from bastion.errors import ConfigError
from bastion.findings import Finding, Report, Severity
from bastion.records import Checked

BASELINE_VERSION = "1"


class Status(str, Enum):
    PASSED = "passed"
    FAILED = "failed"
    UNDECIDED = "undecided"


EXIT_CODES = {Status.PASSED: 0, Status.FAILED: 1, Status.UNDECIDED: 2}


class Verdict(Checked):
    status: Status
    reasons: tuple[str, ...]
    failing: tuple[str, ...] = ()  # fingerprints of findings that fail the gate
    waived: tuple[str, ...] = ()
    baselined: tuple[str, ...] = ()
    fail_on: str

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


def waiver_matches(waiver: WaiverSpec, finding: Finding) -> bool:
    if waiver.rule != finding.rule_id:
        return False
    return fnmatch.fnmatchcase(finding.location.path, waiver.path)


def evaluate(
    report: Report,
    settings: Settings,
    baseline: frozenset[str] = frozenset(),
    today: dt.date | None = None,
) -> Verdict:
    today = today or dt.date.today()
    reasons: list[str] = []
    failing: list[str] = []
    waived: list[str] = []
    baselined: list[str] = []
    expired = [w for w in settings.waivers if w.expires < today]
    for waiver in expired:
        reasons.append(
            f"waiver for {waiver.rule} on '{waiver.path}' expired on {waiver.expires.isoformat()}"
        )
    active = [w for w in settings.waivers if w.expires >= today]
    # --strict also fails on findings reported below the default gate on purpose (LOW: e.g. a
    # pickle instantiating a class of the user's own package)
    threshold = (
        min(settings.fail_on.rank, Severity.LOW.rank) if settings.strict else settings.fail_on.rank
    )
    for finding in report.findings:
        if finding.fingerprint in baseline:
            baselined.append(finding.fingerprint)
        elif any(waiver_matches(w, finding) for w in active):
            waived.append(finding.fingerprint)
        elif finding.severity.rank >= threshold:
            failing.append(finding.fingerprint)
    if failing:
        gate = (
            "low"
            if settings.strict and threshold != settings.fail_on.rank
            else settings.fail_on.value
        )
        reasons.insert(0, f"{len(failing)} finding(s) at or above '{gate}'")
    gaps = report.gaps
    if settings.strict and gaps:
        reasons.append(f"--strict: {len(gaps)} item(s) were not checked")
    if failing or expired or (settings.strict and gaps):
        status = Status.FAILED
    else:
        undecided = []
        if report.errors:
            undecided.append(f"{len(report.errors)} check error(s)")
        incomplete = [r for r in report.results if r.incomplete]
        if incomplete:
            undecided.append(f"{len(incomplete)} target(s) not fully scanned")
        scanned = [
            r
            for r in report.results
            if r.findings or (r.format != "symlink" and not r.errors and not r.out_of_scope)
        ]
        if not scanned:
            undecided.append("nothing scannable was found")
        reasons.extend(undecided)
        status = Status.UNDECIDED if undecided else Status.PASSED
    return Verdict(
        status=status,
        reasons=tuple(reasons),
        failing=tuple(failing),
        waived=tuple(waived),
        baselined=tuple(baselined),
        fail_on=settings.fail_on.value,
    )


def baseline_document(report: Report) -> dict[str, object]:
    entries = sorted(
        (
            {
                "fingerprint": f.fingerprint,
                "rule_id": f.rule_id,
                "path": f.location.path,
                "evidence": f.evidence,
            }
            for f in report.findings
        ),
        key=lambda e: (str(e["path"]), str(e["rule_id"]), str(e["fingerprint"])),
    )
    return {"schema_version": BASELINE_VERSION, "tool": "bastion", "findings": entries}


def load_baseline(path: Path) -> frozenset[str]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read baseline {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"baseline {path} is not JSON: {exc}") from exc
    if (
        not isinstance(data, dict)
        or data.get("schema_version") != BASELINE_VERSION
        or not isinstance(data.get("findings"), list)
    ):
        raise ConfigError(
            f"{path} is not a bastion baseline (schema_version {BASELINE_VERSION})",
            hint="write one with `bastion baseline`",
        )
    prints = [e.get("fingerprint") for e in data["findings"] if isinstance(e, dict)]
    return frozenset(p for p in prints if isinstance(p, str))
