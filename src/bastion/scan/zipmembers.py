"""Reading zip members for the zip scanner and the zip flavours (PyTorch, Keras, skops): one
place that opens a member within the scan's budgets and reports what cannot be read; and the
shape of a flavour, which the zip scanner finds through scan/__init__.py's ZIP_FLAVOURS."""

from __future__ import annotations

from typing import Protocol

from bastion import coverage
from bastion.findings import Confidence, Severity, Stage
from bastion.rules import Rule
from bastion.scan.base import ScanContext
from bastion.scan.source import Source
from bastion.scan.ziparchive import ZipEntry, ZipFormatError, ZipReader

ENCRYPTED_MEMBER = Rule(
    id="ARC004",
    title="Encrypted member could not be scanned",
    severity=Severity.INFO,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="coverage",
    description="An encrypted member cannot be inspected; a loader given the password can still "
    "run what is inside. The target is reported as not fully scanned (could not "
    "decide), never as clean.",
    remediation="Scan the decrypted content, or do not ship encrypted members.",
)
CORRUPT_MEMBER = Rule(
    id="ARC005",
    title="Archive member cannot be read",
    severity=Severity.MEDIUM,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="coverage",
    description="A member is corrupt or uses an unsupported compression; its content was not "
    "checked. Other members were scanned.",
    remediation="Re-create the archive with standard compression.",
)

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (ENCRYPTED_MEMBER, CORRUPT_MEMBER)


class ZipFlavour(Protocol):
    """A kind of zip a loader reads its own way (a PyTorch checkpoint, a .keras archive ...).
    The zip scanner asks each flavour in turn; an exclusive flavour that claims the archive
    scans all of it, a non-exclusive one adds its findings and lets the others look too."""

    @property
    def name(self) -> str: ...

    @property
    def exclusive(self) -> bool: ...

    def claims(self, source: Source, reader: ZipReader) -> bool: ...

    def scan(self, ctx: ScanContext, source: Source, reader: ZipReader) -> None: ...


def scan_zip_member(ctx: ScanContext, source: Source, reader: ZipReader, entry: ZipEntry) -> None:
    if entry.is_dir or entry.is_symlink:
        return
    child = member_source(ctx, source, reader, entry)
    if child is not None:
        ctx.scan(child)


def member_source(
    ctx: ScanContext, source: Source, reader: ZipReader, entry: ZipEntry
) -> Source | None:
    """A Source for one zip member, or None after reporting why it cannot be read."""
    where = source.location.model_copy(update={"members": (*source.location.members, entry.name)})
    if entry.encrypted:
        ctx.add(
            ENCRYPTED_MEMBER.finding(
                where,
                "encrypted member: its content could not be "
                "inspected, so the archive cannot be judged",
                evidence=entry.name,
            )
        )
        ctx.skip(where, "encrypted member: content cannot be inspected", coverage.ENCRYPTED)
        ctx.incomplete = True
        return None
    try:
        opener = reader.opener(entry, ctx.charge)
    except ZipFormatError as exc:
        ctx.add(CORRUPT_MEMBER.finding(where, str(exc), evidence=entry.name))
        return None
    return source.child(entry.name, opener, entry.size if entry.method else entry.compressed_size)
