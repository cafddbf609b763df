"""JUnit XML: one test case per scanned target, failing when the gate fails on it."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from bastion.coverage import Treatment
from bastion.findings import Report
from bastion.policy import Verdict
from bastion.report.printable import xml_safe as safe


def render(report: Report, verdict: Verdict) -> str:
    failing = set(verdict.failing)
    suite = ET.Element("testsuite", name=f"bastion {report.command}")
    tests = failures = errors = skipped = 0
    for result in report.results:
        tests += 1
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"bastion.{result.format}",
            name=safe(result.path),
            time=f"{result.duration_ms / 1000:.3f}",
        )
        bad = [f for f in result.findings if f.fingerprint in failing]
        if bad:
            failures += 1
            failure = ET.SubElement(
                case,
                "failure",
                type=bad[0].rule_id,
                message=safe(f"{len(bad)} finding(s): {bad[0].message}"[:500]),
            )
            failure.text = safe(
                "\n".join(
                    f"[{f.severity.value}] {f.rule_id} {f.location.display()}: {f.message}\n"
                    f"  evidence: {f.evidence}\n  fix: {f.remediation}"
                    for f in bad
                )
            )
        elif result.errors:
            errors += 1
            error = ET.SubElement(
                case,
                "error",
                type=result.errors[0].check,
                message=safe(result.errors[0].message[:500]),
            )
            error.text = safe("\n".join(e.message for e in result.errors))
        elif result.out_of_scope:
            skipped += 1
            ET.SubElement(case, "skipped", message=safe(result.skips[0].reason))
        gaps = [s for s in result.skips if s.is_gap]
        if gaps and not bad and not result.errors:
            # a gap that holds the gate back shows as a failure or an error (bastion.coverage)
            worst = max(gaps, key=lambda s: Treatment(verdict.gaps.get(s.code, "undecided")).rank)
            treatment = verdict.gaps.get(worst.code, "undecided")
            if treatment == "blocking":
                failures += 1
                ET.SubElement(case, "failure", type=worst.code, message=safe(worst.reason[:500]))
            elif treatment == "undecided":
                errors += 1
                ET.SubElement(case, "error", type=worst.code, message=safe(worst.reason[:500]))
        if gaps:
            out = ET.SubElement(case, "system-out")
            out.text = safe(
                "\n".join(
                    f"not checked ({s.code}, {verdict.gaps.get(s.code, 'undecided')}): {s.reason}"
                    + (f" (pip install 'bastion-mlsec[{s.extra}]')" if s.extra else "")
                    for s in gaps
                )
            )
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    suites = ET.Element(
        "testsuites", name="bastion", tests=str(tests), failures=str(failures), errors=str(errors)
    )
    suites.append(suite)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, "unicode") + "\n"
