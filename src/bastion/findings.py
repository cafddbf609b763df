"""The result model shared by every capability: Finding, Skip, CheckError, TargetResult, Report."""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

from bastion.records import Checked, Record, check_fields, field, force_setattr

SCHEMA_VERSION = "1.0"
OUT_OF_SCOPE = "out-of-scope"  # the Skip code of files that are not bastion's business


class Severity(str, Enum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {
    Severity.INFO: 0,
    Severity.LOW: 1,
    Severity.MEDIUM: 2,
    Severity.HIGH: 3,
    Severity.CRITICAL: 4,
}


class Confidence(str, Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Stage(str, Enum):
    DATA = "data"
    CODE = "code"
    ARTIFACT = "artifact"
    TESTING = "testing"
    DEPLOYMENT = "deployment"
    MONITORING = "monitoring"


class Location(Record):
    """Where a finding is: a path relative to the scan root, the chain of archive members
    inside it (outermost first), and a format-specific pointer (opcode offset, layer, key)."""

    path: str
    members: tuple[str, ...] = ()
    pointer: str | None = None
    line: int | None = None
    column: int | None = None

    def display(self) -> str:
        text = self.path
        for member in self.members:
            text += f" » {member}"
        if self.pointer:
            text += f" @ {self.pointer}"
        if self.line is not None:
            text += f":{self.line}"
        return text


class Tags(Record):
    """Where a rule sits in the external taxonomies (MITRE ATLAS, OWASP ML/LLM/API, NIST AI
    RMF, EU AI Act)."""

    atlas: tuple[str, ...] = ()
    owasp_ml: tuple[str, ...] = ()
    owasp_llm: tuple[str, ...] = ()
    owasp_api: tuple[str, ...] = ()  # OWASP API Security Top 10 (2023): the guard
    nist_ai_rmf: tuple[str, ...] = ()
    eu_ai_act: tuple[str, ...] = ()


class Finding(Record):
    """One observation against a rule, with its evidence, remediation and a stable fingerprint
    (rule, location and evidence; never the wording) for baselines and waivers."""

    rule_id: str
    severity: Severity
    confidence: Confidence
    stage: Stage
    message: str
    location: Location
    evidence: str = ""
    remediation: str = ""
    tags: Tags = field(default_factory=Tags)
    fingerprint: str = ""
    # data findings about rows: 0-based data-row indexes (header excluded), all of them, and
    # the values of the dataset's id column for those rows when one is given (--id)
    rows: tuple[int, ...] = ()
    row_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Findings are built by the thousands: the fields the gate and the fingerprint depend
        # on are checked here, all of them only to name what is wrong (docs/benchmarks.md)
        if not (
            isinstance(self.severity, Severity)
            and isinstance(self.confidence, Confidence)
            and isinstance(self.stage, Stage)
            and isinstance(self.location, Location)
            and isinstance(self.evidence, str)
        ):
            check_fields(self)
        if not self.fingerprint:
            force_setattr(self, "fingerprint", compute_fingerprint(self))


def compute_fingerprint(finding: Finding) -> str:
    """Rule + normalised location + evidence; never the message, so rewording keeps baselines."""
    loc = finding.location
    key = json.dumps(
        [
            finding.rule_id,
            loc.path.replace("\\", "/"),
            list(loc.members),
            loc.pointer or "",
            finding.evidence,
        ],
        separators=(",", ":"),
    )
    return str(_sha256(key.encode("utf-8")).hexdigest()[:32])


_SHA256: list[Any] = []  # the constructor, found on first use


def _sha256(data: bytes) -> Any:
    """SHA-256 from CPython's built-in module when it has one: hashlib loads OpenSSL, a few
    milliseconds of a one-file scan for a 32-character fingerprint. The constructor is looked
    up once: a failed import searches sys.path again on every call (40 us per finding)."""
    if not _SHA256:
        try:
            from _sha2 import sha256  # type: ignore[import-not-found]  # Python >= 3.12
        except ImportError:
            try:
                from _sha256 import sha256  # type: ignore[import-not-found,no-redef]  # <= 3.11
            except ImportError:  # pragma: no cover - a build without the built-in hashes
                from hashlib import sha256
        _SHA256.append(sha256)
    return _SHA256[0](data)


class Skip(Checked):
    """Something that was not checked, and why. `code` says what kind of gap it is."""

    location: Location
    reason: str
    code: str = "unsupported"  # a kind of gap: bastion.coverage.KINDS
    extra: str | None = None

    @property
    def is_gap(self) -> bool:
        """Something that should have been checked and was not (not merely out of scope)."""
        return self.code != OUT_OF_SCOPE


class CheckError(Checked):
    """A check that could not finish: the target is undecided, never clean."""

    location: Location
    check: str
    message: str


class TargetResult(Checked):
    """Everything found about one file (or symlink): its format, findings, skips and errors.
    `incomplete` means the file was not fully analysed and cannot count as clean."""

    path: str
    format: str = "unknown"
    size: int | None = None
    findings: tuple[Finding, ...] = ()
    skips: tuple[Skip, ...] = ()
    errors: tuple[CheckError, ...] = ()
    incomplete: bool = False
    duration_ms: float = 0.0

    @property
    def out_of_scope(self) -> bool:
        """Skipped, and every skip says the file is not something bastion checks."""
        return bool(self.skips) and not any(s.is_gap for s in self.skips)


class ToolInfo(Checked):
    """The tool and version that produced the report."""

    name: str = "bastion"
    version: str


class Report(Checked):
    """Pure observation: what was checked and what was found. It carries no verdict."""

    schema_version: str = SCHEMA_VERSION
    tool: ToolInfo
    command: str = "scan"
    targets: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    results: tuple[TargetResult, ...] = ()

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.results for f in r.findings]

    @property
    def skips(self) -> list[Skip]:
        return [s for r in self.results for s in r.skips]

    @property
    def errors(self) -> list[CheckError]:
        return [e for r in self.results for e in r.errors]

    @property
    def gaps(self) -> list[Skip]:
        """Skips that leave something unchecked (out-of-scope files are not gaps)."""
        return [s for s in self.skips if s.is_gap]

    def severity_counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Severity}
        for finding in self.findings:
            counts[finding.severity.value] += 1
        return counts


def sort_findings(findings: list[Finding]) -> tuple[Finding, ...]:
    """Deterministic order: location, then rule, then evidence."""
    return tuple(
        sorted(
            findings,
            key=lambda f: (
                f.location.path,
                f.location.members,
                f.location.pointer or "",
                f.rule_id,
                f.evidence,
            ),
        )
    )
