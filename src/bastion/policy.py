"""Policy: Report + Settings (+ baseline) -> Verdict. A pure function; the exit code comes from
the verdict: 0 passed, 1 failed, 2 could not decide."""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
from enum import Enum
from pathlib import Path

from bastion import coverage
from bastion.config import Settings, WaiverSpec
from bastion.errors import ConfigError
from bastion.findings import Finding, Report, Severity
from bastion.records import Checked, field

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
    # kind of gap present in the report -> treatment the gate applied (bastion.coverage)
    gaps: dict[str, str] = field(default_factory=dict)
    # the policy's waivers that accepted a finding of this report or had expired (so the
    # history shows each waiver's reason and expiry beside the findings it covers)
    waivers: tuple[WaiverSpec, ...] = ()

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
    used: list[WaiverSpec] = []
    for finding in report.findings:
        if finding.fingerprint in baseline:
            baselined.append(finding.fingerprint)
        elif matching := [w for w in active if waiver_matches(w, finding)]:
            waived.append(finding.fingerprint)
            used.extend(w for w in matching if w not in used)
        elif finding.severity.rank >= threshold:
            failing.append(finding.fingerprint)
    if failing:
        gate = (
            "low"
            if settings.strict and threshold != settings.fail_on.rank
            else settings.fail_on.value
        )
        reasons.insert(0, f"{len(failing)} finding(s) at or above '{gate}'")
    blocking, undecided, reported, applied = _gaps(report, settings)
    reasons.extend(blocking)
    if failing or expired or blocking:
        status = Status.FAILED  # a failure wins; what was not checked is still said
        reasons.extend(undecided)
    else:
        scanned = [
            r
            for r in report.results
            if r.findings or (r.format != "symlink" and not r.errors and not r.out_of_scope)
        ]
        if not scanned:
            undecided.append("nothing scannable was found")
        reasons.extend(undecided)
        status = Status.UNDECIDED if undecided else Status.PASSED
    reasons.extend(reported)
    return Verdict(
        status=status,
        reasons=tuple(reasons),
        failing=tuple(failing),
        waived=tuple(waived),
        baselined=tuple(baselined),
        fail_on=settings.fail_on.value,
        gaps=applied,
        waivers=(*used, *expired),
    )


def gap_kinds(report: Report) -> dict[str, int]:
    """How many gaps of each kind (bastion.coverage) the report holds: skips by code, check
    errors, incomplete targets."""
    counts: dict[str, int] = {}
    for result in report.results:
        kinds = [s.code for s in result.skips]
        kinds += [coverage.CHECK_ERROR] * len(result.errors)
        # an incomplete target is counted as such unless a kind that already leaves the
        # verdict undecided (or worse) says why
        if result.incomplete and not any(
            coverage.treatment(k).rank >= coverage.Treatment.UNDECIDED.rank for k in kinds
        ):
            kinds.append(coverage.INCOMPLETE)
        for kind in kinds:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def _gaps(
    report: Report, settings: Settings
) -> tuple[list[str], list[str], list[str], dict[str, str]]:
    """What the gaps do to the gate (coverage.KINDS): the reasons that fail it, leave it
    undecided or are only reported, and the treatment applied to each kind present."""
    blocking: list[str] = []
    undecided: list[str] = []
    reported: list[str] = []
    applied: dict[str, str] = {}
    for kind, count in sorted(gap_kinds(report).items()):
        chosen = coverage.effective(kind, settings.coverage, settings.strict)
        applied[kind] = chosen.value
        if chosen is coverage.Treatment.BLOCKING:
            why = "--strict" if settings.strict else "policy [coverage]"
            blocking.append(f"not checked, failing the gate ({why}): {count} {kind}")
        elif chosen is coverage.Treatment.UNDECIDED:
            undecided.append(f"not checked, so undecided: {count} {kind}")
        elif chosen is coverage.Treatment.REPORTED:
            reported.append(f"not checked (reported, not blocking): {count} {kind}")
    return blocking, undecided, reported, applied


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
