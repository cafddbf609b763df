"""Rules: each check declares its rules next to itself with `Rule(...)` and exports them in its
module's `RULES` (bastion/catalogue.py gathers them; nothing registers on import). The taxonomy
crosswalk (ATLAS, OWASP, NIST AI RMF, EU AI Act) is data in taxonomy/catalogue.toml."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

from bastion.findings import Confidence, Finding, Location, Severity, Stage, Tags
from bastion.records import Record

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@functools.lru_cache(maxsize=1)
def taxonomy() -> dict[str, Any]:
    text = (Path(__file__).parent / "taxonomy" / "catalogue.toml").read_text("utf-8")
    return tomllib.loads(text)


def taxonomy_version() -> str:
    return str(taxonomy()["version"])


def profile_tags(profile: str) -> Tags:
    data = taxonomy()["profiles"][profile]
    return Tags(**{key: tuple(value) for key, value in data.items()})


class Rule(Record):
    id: str
    title: str
    severity: Severity
    confidence: Confidence
    stage: Stage
    description: str
    remediation: str
    profile: str

    @property
    def tags(self) -> Tags:
        return profile_tags(self.profile)

    def finding(
        self,
        location: Location,
        message: str,
        evidence: str = "",
        severity: Severity | None = None,
        confidence: Confidence | None = None,
    ) -> Finding:
        return Finding(
            rule_id=self.id,
            severity=severity or self.severity,
            confidence=confidence or self.confidence,
            stage=self.stage,
            message=message,
            location=location,
            evidence=evidence[:500],
            remediation=self.remediation,
            tags=self.tags,
        )
