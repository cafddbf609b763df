"""Plain-text report for terminals and logs."""

from __future__ import annotations

from bastion.findings import Report, Severity
from bastion.policy import Status, Verdict
from bastion.report.printable import terminal_safe as safe
from bastion.report.rows import rows_line

_ORDER = sorted(Severity, key=lambda s: -s.rank)
_VERDICT = {
    Status.PASSED: "PASSED",
    Status.FAILED: "FAILED",
    Status.UNDECIDED: "UNDECIDED (could not decide)",
}


def render(report: Report, verdict: Verdict) -> str:
    lines: list[str] = []
    meta = report.metadata
    lines.append(
        f"bastion {report.tool.version} — {report.command} of {safe(', '.join(report.targets))}"
    )
    lines.append(
        f"{meta.get('files', len(report.results))} file(s) in "
        f"{meta.get('duration_s', 0)}s; gate fails at '{verdict.fail_on}' or above"
    )
    lines.append("")
    failing = set(verdict.failing)
    waived = set(verdict.waived) | set(verdict.baselined)
    findings = sorted(report.findings, key=lambda f: (-f.severity.rank, f.location.path, f.rule_id))
    for finding in findings:
        mark = (
            "✗"
            if finding.fingerprint in failing
            else ("~" if finding.fingerprint in waived else "·")
        )
        lines.append(
            f"{mark} {finding.severity.value.upper():8} {finding.rule_id}  "
            f"{safe(finding.location.display())}"
        )
        lines.append(f"    {safe(finding.message)}")
        if finding.evidence:
            lines.append(f"    evidence: {safe(finding.evidence[:200])}")
        rows = rows_line(finding)
        if rows:
            lines.append(f"    {safe(rows)}")
        if finding.fingerprint in failing:
            lines.append(f"    fix: {finding.remediation}")
    for error in report.errors:
        lines.append(f"! ERROR    {error.check}  {safe(error.location.display())}")
        lines.append(f"    {safe(error.message)}")
    gaps = report.gaps
    for skip in gaps:
        extra = f" (pip install 'bastion-mlsec[{skip.extra}]')" if skip.extra else ""
        lines.append(
            f"- SKIPPED  {skip.code}  {safe(skip.location.display())}: {safe(skip.reason)}{extra}"
        )
    if findings or report.errors or gaps:
        lines.append("")
    counts = report.severity_counts()
    summary = ", ".join(f"{counts[s.value]} {s.value}" for s in _ORDER if counts[s.value])
    lines.append(
        f"findings: {summary or 'none'}; errors: {len(report.errors)}; "
        f"not checked: {len(gaps)}; out of scope: "
        f"{len(report.skips) - len(gaps)}"
    )
    lines.append(f"verdict: {_VERDICT[verdict.status]}")
    for reason in verdict.reasons:
        lines.append(f"  - {safe(reason)}")
    return "\n".join(lines) + "\n"
