"""The scanner plugin shape, the per-target scan context, and the rules every format shares."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO, Protocol

from bastion.config import Limits
from bastion.errors import LimitExceeded
from bastion.findings import (
    OUT_OF_SCOPE,
    CheckError,
    Confidence,
    Finding,
    Location,
    Severity,
    Skip,
    Stage,
    TargetResult,
    sort_findings,
)
from bastion.rules import Rule
from bastion.runs import LIMIT_HIT
from bastion.scan.identify import (
    CODE_CAPABLE_FORMATS,
    EXPECTED_FORMATS,
    PROTOBUF_FORMATS,
    SAFE_FORMAT_EXTENSIONS,
    extension_of,
    identify_all,
)
from bastion.scan.shipped_code import Entry, check_entries, regrade, shipped_modules
from bastion.scan.source import CorruptInput, Source

EXTENSION_MISMATCH = Rule(
    id="FMT001",
    title="Content does not match the file name",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="masquerading",
    description="The bytes identify as a different format than the extension promises. Loaders "
    "pick a code path by content, reviewers trust names: a pickle named .safetensors "
    "or .npy is a classic disguise.",
    remediation="Rename the file to its real format, or regenerate it in the promised format.",
)
POLYGLOT = Rule(
    id="FMT002",
    title="Polyglot file: valid as two formats",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="masquerading",
    description="The file parses as more than one format (for example a pickle or safetensors "
    "file that is also a zip archive). Different loaders and scanners then see "
    "different content.",
    remediation="Do not load it; rebuild the artifact from a trusted source.",
)
UNRECOGNISED = Rule(
    id="FMT003",
    title="Model file with unrecognised content",
    severity=Severity.LOW,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="coverage",
    description="The name says model artifact but the content matches no format bastion knows. "
    "Identification follows the loaders (every interpretation a loader could take "
    "is scanned), so no loader bastion models reads this file as code-carrying "
    "content; it is reported below the default gate (failing under --strict) "
    "because what it is could not be checked.",
    remediation="Identify the file's real format; remove it if it is not needed.",
)
MALFORMED = Rule(
    id="FMT004",
    title="Malformed artifact",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="model-integrity",
    description="The file claims a format but breaks its structure. Parsers disagree on broken "
    "files, which is how scanner bypasses are built, so bastion fails closed.",
    remediation="Regenerate the artifact with the framework's own writer.",
)

LINK_MEMBER = Rule(
    id="ARC002",
    title="Archive member is a link",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="A symbolic or hard link inside an archive (or a model folder) can point at any "
    "file of the machine that extracts or loads it: later writes or reads go there.",
    remediation="Replace links by real files; never extract untrusted archives with links.",
)

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (EXTENSION_MISMATCH, POLYGLOT, UNRECOGNISED, MALFORMED, LINK_MEMBER)

CHECK_ERROR_NAME = "scanner"
MAX_ARCHIVES_NOTED = 1_000


def _no_opener() -> BinaryIO:
    raise OSError("no content")


class Scanner(Protocol):
    """A format scanner: `formats` it handles, `scan` reports into the context. A plugin
    scanner (entry-point group `bastion.scanners`) may also define
    `identify(head: bytes, size: int, name: str) -> str | None` to claim content that no
    built-in identification recognises as one of its formats."""

    @property
    def name(self) -> str: ...

    @property
    def formats(self) -> tuple[str, ...]: ...

    def scan(self, ctx: ScanContext, source: Source, fmt: str) -> None: ...


class ScanContext:
    """Collects what scanning one top-level target produced; applies the limits."""

    def __init__(self, limits: Limits, registry: Mapping[str, Scanner], root: Path | None = None):
        self.limits = limits
        self.registry = registry
        self.root = root
        self.findings: list[Finding] = []
        self.skips: list[Skip] = []
        self.errors: list[CheckError] = []
        self.incomplete = False
        self.formats: list[str] = []
        self.inflated = 0
        self.deadline = time.monotonic() + limits.timeout_s
        self.archive_entries: dict[tuple[str, ...], list[Entry]] = {}

    # -- recording ----------------------------------------------------------------------------
    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def skip(
        self, location: Location, reason: str, code: str = "unsupported", extra: str | None = None
    ) -> None:
        self.skips.append(Skip(location=location, reason=reason, code=code, extra=extra))

    def error(self, location: Location, check: str, message: str) -> None:
        self.errors.append(CheckError(location=location, check=check, message=message[:500]))
        self.incomplete = True

    def limit_hit(self, location: Location, message: str) -> None:
        self.add(LIMIT_HIT.finding(location, f"analysis incomplete: {message}", evidence=message))
        self.incomplete = True

    def charge(self, nbytes: int) -> None:
        """Account for inflated bytes; raise LimitExceeded past the per-target budget."""
        self.inflated += nbytes
        if self.inflated > self.limits.max_decompressed:
            raise LimitExceeded(
                f"more than {self.limits.max_decompressed_mb} MiB decompressed from one target"
            )

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitExceeded(f"time limit of {self.limits.timeout_s:g}s reached")

    # -- dispatch -----------------------------------------------------------------------------
    def scan(self, source: Source, fmt: str | None = None) -> str:
        """Identify `source` by content and run its scanner. Never raises."""
        found: list[str] = [fmt or "unknown"]

        def work() -> None:
            self.check_time()
            if source.depth > self.limits.max_depth:
                raise LimitExceeded(f"nesting deeper than {self.limits.max_depth} levels")
            detected = fmt
            if detected is None:
                found[:] = identify_all(source.head(1024), source.size, source.name, source.opener)
                if found == ["unknown"]:  # content no built-in claims: a plugin's format?
                    claim = getattr(self.registry, "identify", None)
                    found[0] = (
                        claim(source.head(1024), source.size, source.name) if claim else None
                    ) or "unknown"
                detected = found[0]
                self._check_name(source, detected)
                self._check_zip_tail(source, detected)
            found[0] = detected
            self.formats.append(detected)
            self._note_member(source, detected)
            scanner = self.registry.get(detected)
            if scanner is None:
                self._unhandled(source, detected)
            else:
                scanner.scan(self, source, detected)

        self.guarded(source, work, CHECK_ERROR_NAME)
        for other in found[1:]:
            self._other_interpretation(source, found[0], other)
        return found[0]

    def _note_member(self, source: Source, fmt: str) -> None:
        """Remember archive members by archive, for the shipped-code checks in result()."""
        members = source.location.members
        if (
            not members
            or members[-1].startswith("<")
            or len(self.archive_entries) >= MAX_ARCHIVES_NOTED
        ):
            return
        entries = self.archive_entries.setdefault(members[:-1], [])
        if len(entries) < self.limits.max_members:
            # a member can be read only while its archive is open: bytecode headers now
            header = source.head(16) if members[-1].endswith(".pyc") else b""
            entries.append(Entry(path=members[-1], fmt=fmt, head=lambda: header))

    def _shipped_code(self, path: str) -> None:
        """Python shipped inside archives, judged as in a folder: an archive is extracted and
        then loaded from (scan/shipped_code.py)."""
        for chain, entries in self.archive_entries.items():
            modules = shipped_modules(entries)
            for problem in check_entries(entries, Location(path=path)):
                where = Location(path=path, members=(*chain, problem.path))
                self.add(problem.finding.model_copy(update={"location": where, "fingerprint": ""}))
            for index, finding in enumerate(self.findings):
                members = finding.location.members
                if len(members) == len(chain) + 1 and members[:-1] == chain:
                    folder = members[-1].rsplit("/", 1)[0] if "/" in members[-1] else "."
                    self.findings[index] = regrade(finding, folder, modules)

    def _other_interpretation(self, source: Source, primary: str, other: str) -> None:
        """Some loader reads the same bytes as `other` (identify_all): scan that view too."""
        if not {primary, other} <= PROTOBUF_FORMATS:
            self.add(
                POLYGLOT.finding(
                    source.location,
                    f"{primary} file that loaders can also read as {other}; both views are scanned",
                    evidence=f"{primary}+{other}",
                )
            )
        self.scan(source.child(f"<as {other}>", source.opener, source.size), other)

    def guarded(self, source: Source, work: Callable[[], None], check: str) -> None:
        """Run one unit of analysis; whatever goes wrong is recorded against `source`, never
        raised, and never leaves the file looking clean."""
        try:
            work()
        except LimitExceeded as exc:
            self.limit_hit(source.location, exc.message)
        except CorruptInput as exc:
            self.add(
                MALFORMED.finding(
                    source.location, f"corrupt content: {exc}", evidence=str(exc)[:200]
                )
            )
        except MemoryError:
            self.limit_hit(source.location, "memory budget exhausted")
        except RecursionError:
            self.limit_hit(source.location, "structure nested too deeply")
        except Exception as exc:  # a scanner bug must never make a file look clean
            self.error(source.location, check, f"{type(exc).__name__} while scanning: {exc}")

    def _check_name(self, source: Source, fmt: str) -> None:
        ext = extension_of(source.name)
        expected = EXPECTED_FORMATS.get(ext)
        if expected is None or fmt in expected:
            return
        if fmt == "unknown":
            return  # reported as unrecognised content by _unhandled
        severity = (
            Severity.HIGH
            if (ext in SAFE_FORMAT_EXTENSIONS and fmt in CODE_CAPABLE_FORMATS)
            else Severity.MEDIUM
        )
        self.add(
            EXTENSION_MISMATCH.finding(
                source.location,
                f"named '{ext}' but the content is {fmt}",
                evidence=f"extension={ext} content={fmt}",
                severity=severity,
            )
        )

    def _check_zip_tail(self, source: Source, fmt: str) -> None:
        """A file of another format that also ends like a zip archive is a polyglot; content
        nothing else claims is read as the zip Python's zipfile finds in it (self-extractors)."""
        if fmt in ("zip", "7z", "tar") or source.size < 22:
            return
        tail = source.tail(min(source.size, 65_557))
        eocd = tail.rfind(b"PK\x05\x06")
        if eocd < 0 or len(tail) - eocd < 22:
            return
        if fmt != "unknown":
            self.add(
                POLYGLOT.finding(
                    source.location, f"{fmt} file that is also a zip archive", evidence=f"{fmt}+zip"
                )
            )
        if fmt != "pickle":  # pickles scan what follows them themselves
            zip_view = source.child("<as zip>", source.opener, source.size)
            self.scan(zip_view, "zip")

    def _unhandled(self, source: Source, fmt: str) -> None:
        ext = extension_of(source.name)
        if fmt == "unknown" and ext in EXPECTED_FORMATS:
            self.add(
                UNRECOGNISED.finding(
                    source.location,
                    f"'{ext}' file whose content matches no known format",
                    evidence=source.head(16).hex(),
                )
            )
        elif fmt == "unknown":
            self.skip(source.location, "not a model, archive or config format", OUT_OF_SCOPE)
        else:
            self.skip(
                source.location, f"{fmt} content is not analysed by any scanner", "unsupported"
            )

    # -- result -------------------------------------------------------------------------------
    def result(self, path: str, size: int | None, started: float) -> TargetResult:
        self.guarded(
            Source(location=Location(path=path), opener=_no_opener, size=0, name=path),
            lambda: self._shipped_code(path),
            CHECK_ERROR_NAME,
        )
        fmt = self.formats[0] if self.formats else "unknown"
        unique = {f.fingerprint: f for f in self.findings}
        return TargetResult(
            path=path,
            format=fmt,
            size=size,
            findings=sort_findings(list(unique.values())),
            skips=tuple(self.skips),
            errors=tuple(self.errors),
            incomplete=self.incomplete,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
