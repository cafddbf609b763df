"""SARIF 2.1.0 for GitHub code scanning and other SARIF consumers: rule metadata from the
catalogue, security-severity, partial fingerprints, archive members as nested artifacts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bastion.findings import Finding, Report, Severity
from bastion.policy import Verdict
from bastion.rules import Rule
from bastion.version import __version__

SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
}
LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
PRECISION = {"high": "high", "medium": "medium", "low": "low"}
DOCS = "https://github.com/bastion-mlsec/bastion/blob/main/docs/rules/{id}.md"


def _rule_entry(rule: Rule) -> dict[str, Any]:
    tags = rule.tags
    tag_list = [
        "security",
        f"stage:{rule.stage.value}",
        *(f"external/atlas/{t}" for t in tags.atlas),
        *(f"external/owasp-ml/{t}" for t in tags.owasp_ml),
        *(f"external/owasp-llm/{t}" for t in tags.owasp_llm),
        *(f"external/owasp-api/{t}" for t in tags.owasp_api),
        *(f"external/nist-ai-rmf/{t}" for t in tags.nist_ai_rmf),
        *(f"external/eu-ai-act/{t}" for t in tags.eu_ai_act),
    ]
    return {
        "id": rule.id,
        "name": "".join(word.capitalize() for word in rule.title.split()[:8]),
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.description},
        "help": {
            "text": rule.remediation,
            "markdown": f"**{rule.title}**\n\n{rule.description}\n\n"
            f"**Remediation:** {rule.remediation}",
        },
        "helpUri": DOCS.format(id=rule.id),
        "defaultConfiguration": {"level": LEVEL[rule.severity]},
        "properties": {
            "tags": tag_list,
            "security-severity": SECURITY_SEVERITY[rule.severity],
            "precision": PRECISION[rule.confidence.value],
            "problem.severity": "error" if rule.severity.rank >= 3 else "warning",
        },
    }


def _stub_entry(rule_id: str, severity: Severity) -> dict[str, Any]:
    """A rule this bastion's catalogue does not hold (a plugin's, or a run recorded by another
    version): enough for SARIF consumers, never a crash."""
    return {
        "id": rule_id,
        "name": rule_id,
        "shortDescription": {"text": f"{rule_id} (not in this bastion's rule catalogue)"},
        "defaultConfiguration": {"level": LEVEL[severity]},
        "properties": {"tags": ["security"], "security-severity": SECURITY_SEVERITY[severity]},
    }


def render(report: Report, verdict: Verdict, catalogue: Mapping[str, Rule]) -> str:
    first_severity: dict[str, Severity] = {}
    for finding in report.findings:
        first_severity.setdefault(finding.rule_id, finding.severity)
    used = sorted(first_severity)
    index = {rule_id: i for i, rule_id in enumerate(used)}
    rule_entries = [
        _rule_entry(catalogue[rule_id])
        if rule_id in catalogue
        else _stub_entry(rule_id, first_severity[rule_id])
        for rule_id in used
    ]
    artifacts: list[dict[str, Any]] = []
    artifact_index: dict[tuple[str, ...], int] = {}

    def artifact(chain: tuple[str, ...]) -> int:
        if chain in artifact_index:
            return artifact_index[chain]
        parent = artifact(chain[:-1]) if len(chain) > 1 else None
        entry: dict[str, Any] = {
            "location": _artifact_location(chain[-1])
            if parent is None
            else {"uri": _uri(chain[-1])}
        }
        if parent is not None:
            entry["parentIndex"] = parent
        artifacts.append(entry)
        artifact_index[chain] = len(artifacts) - 1
        return artifact_index[chain]

    failing = set(verdict.failing)
    results = [
        _result(f, index[f.rule_id], artifact, f.fingerprint in failing) for f in report.findings
    ]
    notifications = [
        {
            "level": "error",
            "message": {"text": f"{e.check}: {e.message}"},
            "locations": [
                {"physicalLocation": {"artifactLocation": _artifact_location(e.location.path)}}
            ],
        }
        for e in report.errors
    ]
    # what was not checked, by kind (bastion.coverage): a warning when it holds the gate back
    for skip in report.gaps:
        treatment = verdict.gaps.get(skip.code, "undecided")
        extra = f" (pip install 'bastion-mlsec[{skip.extra}]')" if skip.extra else ""
        notifications.append(
            {
                "level": "note" if treatment == "reported" else "warning",
                "message": {"text": f"not checked ({skip.code}): {skip.reason}{extra}"},
                "descriptor": {"id": skip.code},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": _artifact_location(skip.location.path)
                        }
                    }
                ],
                "properties": {"treatment": treatment, "extra": skip.extra},
            }
        )
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "bastion",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": "https://github.com/bastion-mlsec/bastion",
                "rules": rule_entries,
            }
        },
        "invocations": [
            {
                "executionSuccessful": not report.errors,
                "toolExecutionNotifications": notifications,
                "properties": {"verdict": verdict.status.value, "exitCode": verdict.exit_code},
            }
        ],
        "originalUriBaseIds": {"%SRCROOT%": {"description": {"text": "scan root"}}},
        "results": results,
        "columnKind": "unicodeCodePoints",
    }
    if artifacts:
        run["artifacts"] = artifacts
    document = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [run],
    }
    return json.dumps(document, indent=2) + "\n"


def _uri(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")  # display paths use "/"; a backslash is part of a name


def _artifact_location(path: str) -> dict[str, Any]:
    """Relative paths hang off %SRCROOT% (what code scanning maps to the repository);
    absolute ones become file: URIs."""
    if path.startswith("/"):
        return {"uri": "file://" + _uri(path)}
    return {"uri": _uri(path), "uriBaseId": "%SRCROOT%"}


def _result(finding: Finding, rule_index: int, artifact: Any, failing: bool) -> dict[str, Any]:
    loc = finding.location
    physical: dict[str, Any] = {
        "artifactLocation": {**_artifact_location(loc.path), "index": artifact((loc.path,))}
    }
    if loc.line is not None:
        region: dict[str, Any] = {"startLine": loc.line}
        if loc.column is not None:
            region["startColumn"] = loc.column
        physical["region"] = region
    location: dict[str, Any] = {"physicalLocation": physical}
    related = []
    if loc.members:
        chain = (loc.path, *loc.members)
        location["logicalLocations"] = [
            {"fullyQualifiedName": " » ".join(chain), "kind": "resource"}
        ]
        related.append(
            {
                "id": 1,
                "message": {"text": "archive member: " + " » ".join(loc.members)},
                "physicalLocation": {
                    "artifactLocation": {"uri": _uri(loc.members[-1]), "index": artifact(chain)}
                },
            }
        )
    message = finding.message
    if loc.pointer:
        message += f" ({loc.pointer})"
    result: dict[str, Any] = {
        "ruleId": finding.rule_id,
        "ruleIndex": rule_index,
        "level": LEVEL[finding.severity],
        "message": {"text": message},
        "locations": [location],
        "partialFingerprints": {"bastionFingerprint/v1": finding.fingerprint},
        "properties": {
            "severity": finding.severity.value,
            "confidence": finding.confidence.value,
            "security-severity": SECURITY_SEVERITY[finding.severity],
            "evidence": finding.evidence,
            "gate": "fail" if failing else "pass",
        },
    }
    if related:
        result["relatedLocations"] = related
    return result
