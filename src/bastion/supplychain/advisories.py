"""Vulnerability advisories in the OSV format (https://ossf.github.io/osv-schema/), read from an
offline database: a folder or zip of OSV JSON records as osv.dev exports them per ecosystem.
Version ranges are evaluated with PEP 440 semantics."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

from bastion.errors import InputError
from bastion.findings import Severity
from bastion.records import Record
from bastion.supplychain.requirements import normalise

MAX_RECORD_BYTES = 4 * 1024 * 1024
MAX_RECORDS = 2_000_000


class Advisory(Record):
    id: str
    aliases: tuple[str, ...]
    summary: str
    severity: Severity
    package: str  # normalised PyPI name
    ranges: tuple[tuple[tuple[str, str], ...], ...]  # per range: (event, version) pairs
    versions: frozenset[str]
    fixed: tuple[str, ...]

    def affects(self, version: str) -> bool:
        """PEP 440 semantics throughout: `2.0` is the listed `2.0.0`."""
        from packaging.version import InvalidVersion, Version

        if version in self.versions:
            return True
        try:
            current = Version(version)
        except InvalidVersion:
            return False
        if any(current == listed for listed in _versions(self.versions)):
            return True
        return any(_in_range(current, events) for events in self.ranges)


def _versions(texts: frozenset[str]) -> list[object]:
    from packaging.version import InvalidVersion, Version

    out: list[object] = []
    for text in texts:
        try:
            out.append(Version(text))
        except InvalidVersion:
            continue
    return out


def unusable(advisory: Advisory) -> bool:
    """Whether an advisory names versions PEP 440 cannot read, so it could match nothing."""
    from packaging.version import InvalidVersion, Version

    for events in advisory.ranges:
        for _kind, value in events:
            if value == "0":
                continue
            try:
                Version(value)
            except InvalidVersion:
                return True
    return not advisory.ranges and not _versions(advisory.versions)


def _in_range(current: object, events: tuple[tuple[str, str], ...]) -> bool:
    """OSV ECOSYSTEM range: sorted events; affected from an `introduced` until the next
    `fixed` (exclusive) or `last_affected` (inclusive)."""
    from packaging.version import InvalidVersion, Version

    def key(event: tuple[str, str]) -> Version:
        return Version("0") if event[1] == "0" else Version(event[1])

    try:
        ordered = sorted(events, key=key)
    except InvalidVersion:
        return False
    affected = False
    for kind, value in ordered:
        bound = key((kind, value))
        if kind == "introduced":
            if current >= bound:  # type: ignore[operator]
                affected = True
        elif kind == "fixed":
            if current >= bound:  # type: ignore[operator]
                affected = False
        elif kind == "last_affected" and current > bound:  # type: ignore[operator]
            affected = False
    return affected


_LABELS = {
    "CRITICAL": Severity.CRITICAL,
    "HIGH": Severity.HIGH,
    "MODERATE": Severity.MEDIUM,
    "MEDIUM": Severity.MEDIUM,
    "LOW": Severity.LOW,
}


def _severity(record: dict) -> Severity:  # type: ignore[type-arg]
    label = (record.get("database_specific") or {}).get("severity")
    if isinstance(label, str) and label.upper() in _LABELS:
        return _LABELS[label.upper()]
    for entry in record.get("severity") or []:
        if isinstance(entry, dict):
            score = cvss_base_score(str(entry.get("type", "")), str(entry.get("score", "")))
            if score is not None:
                return (
                    Severity.CRITICAL
                    if score >= 9
                    else Severity.HIGH
                    if score >= 7
                    else Severity.MEDIUM
                    if score >= 4
                    else Severity.LOW
                )
    return Severity.MEDIUM


def cvss_base_score(kind: str, vector: str) -> float | None:
    """The base score of an OSV severity entry (CVSS_V3 or CVSS_V4 vector), computed by the
    `cvss` library; None for other types and for vectors it rejects."""
    import cvss

    calculators = {"CVSS_V3": cvss.CVSS3, "CVSS_V4": cvss.CVSS4}
    calculator = calculators.get(kind)
    if calculator is None:
        return None
    try:
        return float(calculator(vector).base_score)
    except (cvss.CVSSError, ValueError, KeyError, IndexError):
        return None


def parse_record(record: object) -> Iterator[Advisory]:
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        return
    if record.get("withdrawn"):
        return
    aliases = tuple(a for a in record.get("aliases") or [] if isinstance(a, str))
    summary = str(record.get("summary") or record.get("details") or "")[:300]
    severity = _severity(record)
    for affected in record.get("affected") or []:
        if not isinstance(affected, dict):
            continue
        package = affected.get("package") or {}
        if (
            not isinstance(package, dict)
            or package.get("ecosystem") != "PyPI"
            or not isinstance(package.get("name"), str)
        ):
            continue
        ranges = []
        fixed = []
        for item in affected.get("ranges") or []:
            if not isinstance(item, dict) or item.get("type") not in ("ECOSYSTEM", "SEMVER"):
                continue
            events = []
            for event in item.get("events") or []:
                if isinstance(event, dict):
                    for kind in ("introduced", "fixed", "last_affected"):
                        if isinstance(event.get(kind), str):
                            events.append((kind, event[kind]))
                            if kind == "fixed":
                                fixed.append(event[kind])
            if events:
                ranges.append(tuple(events))
        versions = frozenset(v for v in affected.get("versions") or [] if isinstance(v, str))
        yield Advisory(
            id=record["id"],
            aliases=aliases,
            summary=summary,
            severity=severity,
            package=normalise(package["name"]),
            ranges=tuple(ranges),
            versions=versions,
            fixed=tuple(fixed),
        )


class AdvisoryDatabase:
    """Advisories indexed by package, loaded from an OSV export folder or zip."""

    def __init__(self, advisories: list[Advisory], source: str, dropped: int = 0) -> None:
        self.source = source
        self.dropped = dropped  # records that could not be read or applied (reported)
        self.by_package: dict[str, list[Advisory]] = {}
        for advisory in advisories:
            self.by_package.setdefault(advisory.package, []).append(advisory)

    @classmethod
    def load(cls, path: Path) -> AdvisoryDatabase:
        """Every record the export holds; one that is not JSON, not an OSV record, or whose
        versions PEP 440 cannot read is counted in `dropped` (the rest still counts)."""
        advisories: list[Advisory] = []
        dropped = 0
        for text in _records(path):
            try:
                record = json.loads(text)
            except ValueError:
                dropped += 1
                continue
            if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                dropped += 1
                continue
            parsed = list(parse_record(record))
            usable = [a for a in parsed if not unusable(a)]
            dropped += len(parsed) != len(usable)
            advisories.extend(usable)
        return cls(advisories, str(path), dropped)

    def matches(self, package: str, version: str) -> list[Advisory]:
        return [a for a in self.by_package.get(normalise(package), []) if a.affects(version)]


def _records(path: Path) -> Iterator[bytes]:
    if path.is_dir():
        for count, file in enumerate(sorted(path.rglob("*.json")), 1):
            if count > MAX_RECORDS:
                raise InputError(f"{path} holds more than {MAX_RECORDS} records")
            if file.is_file() and file.stat().st_size <= MAX_RECORD_BYTES:
                yield file.read_bytes()
        return
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            infos = [i for i in archive.infolist() if i.filename.endswith(".json")]
            if len(infos) > MAX_RECORDS:
                raise InputError(f"{path} holds more than {MAX_RECORDS} records")
            for info in infos:
                if info.file_size <= MAX_RECORD_BYTES:
                    with archive.open(info) as handle:
                        data = handle.read(MAX_RECORD_BYTES + 1)
                    if len(data) <= MAX_RECORD_BYTES:
                        yield data
        return
    raise InputError(
        f"{path} is neither a folder nor a zip of OSV records",
        hint="download the PyPI export of osv.dev (all.zip) and pass its path",
    )
