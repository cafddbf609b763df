"""DAT rules: data files that cannot be read as declared, and data that is not the version a
manifest recorded (modified, inserted or deleted rows, changed columns, files added or gone),
and repeated values in the id column. The findings list every affected row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bastion.findings import Confidence, Finding, Location, Severity, Stage
from bastion.rules import Rule

if TYPE_CHECKING:
    from bastion.datacheck.dataset import Dataset
    from bastion.datacheck.manifest import Diff
    from bastion.errors import DataInputError

ROWS_IN_EVIDENCE = 20


MALFORMED = Rule(
    id="DAT001",
    title="Malformed data file",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.DATA,
    profile="data-integrity",
    description="The file cannot be read as the table it claims to be: a row with more or fewer "
    "fields than the header, bytes that are not text in the file's encoding, broken JSON, a "
    "corrupt Parquet/Arrow/compressed stream. Tools disagree on broken files (one skips the "
    "row, another stops, a third shifts the columns), so what a model trains on is not what a "
    "reviewer saw; bastion stops at the first such row and names it. The rest of the file is "
    "not checked.",
    remediation="Fix or regenerate the file at the named row (line), then check it again.",
)
BOUND = Rule(
    id="DAT002",
    title="Data file past a reading bound",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.DATA,
    profile="data-integrity",
    description="Reading stopped at a bound: a compressed file inflating past its cap or ratio "
    "(a decompression bomb), a single row longer than the line bound, more columns than the "
    "column bound. Such files exhaust memory or disk in the pipelines that load them. The rest "
    "of the file is not checked.",
    remediation="Check where the file comes from; if it is genuine, raise the bound in the "
    "policy's [data] table (max_decompressed_mb, max_compression_ratio, max_line_kb, "
    "max_columns).",
)
MIXED_TYPES = Rule(
    id="DAT003",
    title="Column mixes value types",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.DATA,
    profile="data-integrity",
    description="A column whose first rows hold one type (numbers, dates, booleans) holds "
    "values of another type further down. Loaders then coerce the column differently (to text, "
    "to NaN, or fail), and planted rows hide behind the coercion. bastion reads the column as "
    "text and checks the rest; the finding names the first offending row.",
    remediation="Fix the values at the named rows, or declare the column's type in the data "
    "contract.",
)
NAME_MISMATCH = Rule(
    id="DAT004",
    title="Data file content does not match its name",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.DATA,
    profile="data-integrity",
    description="The bytes identify as another format or compression than the file name says (a "
    "Parquet file named .csv, a .gz that is not gzip). Loaders that go by the name read "
    "something other than what bastion checked.",
    remediation="Rename the file to its real format, or rewrite it in the format its name "
    "promises.",
)
MODIFIED = Rule(
    id="DAT005",
    title="Rows modified since the manifest",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.DATA,
    profile="data-integrity",
    description="Rows whose content differs from the trusted version recorded in the data "
    "manifest (or from the older version in a diff): silent edits are how labels get flipped "
    "and triggers planted after a dataset was approved. The finding lists every modified row "
    "and the columns that changed.",
    remediation="Review the listed rows (`bastion data diff OLD NEW`); if the change is "
    "intended, record a new manifest and have it reviewed and signed.",
)
INSERTED = Rule(
    id="DAT006",
    title="Rows inserted since the manifest",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.DATA,
    profile="data-integrity",
    description="Rows present now that the trusted version did not have. Injected rows are the "
    "simplest poisoning: a few hundred crafted examples move a decision boundary.",
    remediation="Review the listed rows; if they are intended, record a new manifest and have "
    "it reviewed.",
)
DELETED = Rule(
    id="DAT007",
    title="Rows deleted since the manifest",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.DATA,
    profile="data-integrity",
    description="Rows the trusted version had that are gone: deleting the examples of one group "
    "skews what a model learns about it. Row numbers are those of the trusted version.",
    remediation="Review the listed rows of the trusted version; if intended, record a new "
    "manifest.",
)
SCHEMA_CHANGED = Rule(
    id="DAT008",
    title="Columns changed since the manifest",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.DATA,
    profile="data-integrity",
    description="Columns were added, removed or changed type relative to the trusted version.",
    remediation="Review the change; if intended, update the data contract and record a new "
    "manifest.",
)
FILES_CHANGED = Rule(
    id="DAT009",
    title="Data files added or missing since the manifest",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.DATA,
    profile="data-integrity",
    description="A data file the manifest records is missing, or a data file is present that "
    "the manifest does not record (it has never been reviewed).",
    remediation="Restore the missing file or review the new one, then record a new manifest.",
)
DUPLICATE_IDS = Rule(
    id="DAT010",
    title="Repeated values in the id column",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.DATA,
    profile="data-integrity",
    description="The column named as the row id (--id) holds repeated values: rows cannot be "
    "told apart, a planted copy of a row hides behind its twin, and joins duplicate data.",
    remediation="Make the id unique, or name another column as the id.",
)
READ_NOTES = Rule(
    id="DAT011",
    title="Data file read with assumptions",
    severity=Severity.INFO,
    confidence=Confidence.MEDIUM,
    stage=Stage.DATA,
    profile="data-integrity",
    description="bastion had to assume something to read the file (the encoding sniffed as not "
    "UTF-8, header cells renamed because they were empty or repeated, only the first worksheet "
    "of a workbook read). Other tools may assume otherwise.",
    remediation="State the format explicitly: UTF-8, unique header names, one sheet per file.",
)

BYTES_CHANGED = Rule(
    id="DAT013",
    title="Same values as read, different bytes",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.DATA,
    profile="data-integrity",
    description="The rows are the same as bastion reads them (same row fingerprint) but the "
    "file's bytes differ from the trusted version's (its SHA-256): values were rewritten in a "
    "form that type inference maps to the same value (007 -> 7, 1.0 -> 1, 1e3 -> 1000), or the "
    "quoting, line endings or compression changed. A loader that reads the column as text (an "
    "id, a zip code, a category) sees different data than the one reviewed.",
    remediation="Diff the files' bytes to see what changed; if intended, record a new manifest "
    "and have it reviewed.",
)
WEAK_MANIFEST = Rule(
    id="DAT012",
    title="Baseline manifest of a weaker format",
    severity=Severity.LOW,
    confidence=Confidence.HIGH,
    stage=Stage.DATA,
    profile="data-integrity",
    description="The baseline manifest is format 1, whose per-cell hints are 16-bit CRCs: when "
    "the columns of the data changed, a row is judged unchanged on those hints alone, and a "
    "forged value with the same hint (found in a fraction of a second) hides a modified row. "
    "Rows are still compared by their full digests when the columns did not change.",
    remediation="Record a new manifest of the trusted version with this bastion (format 2: "
    "keyed 64-bit cell digests) and have it reviewed and signed.",
)

RULES: tuple[Rule, ...] = (
    MALFORMED,
    BOUND,
    MIXED_TYPES,
    NAME_MISMATCH,
    MODIFIED,
    INSERTED,
    DELETED,
    SCHEMA_CHANGED,
    FILES_CHANGED,
    DUPLICATE_IDS,
    READ_NOTES,
    WEAK_MANIFEST,
    BYTES_CHANGED,
)

BOUND_KINDS = frozenset(
    {"decompressed-size", "line-too-long", "too-many-columns", "limit", "memory"}
)


def rows_text(rows: Sequence[int], limit: int = ROWS_IN_EVIDENCE) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f", … (+{len(rows) - limit:,})" if len(rows) > limit else "")


def with_rows(finding: Finding, rows: Sequence[int], row_ids: Sequence[str] = ()) -> Finding:
    return finding.model_copy(update={"rows": tuple(rows), "row_ids": tuple(row_ids)})


def reader_finding(name: str, error: DataInputError) -> Finding:
    """DAT001/DAT002/DAT003 for a reader error."""
    if error.kind == "mixed-types":
        rule = MIXED_TYPES
    elif error.kind in BOUND_KINDS:
        rule = BOUND
    else:
        rule = MALFORMED
    pointer = f"column:{error.column}" if error.column else None
    where = []
    if error.row is not None:
        where.append(f"row {error.row}")
    if error.line is not None:
        where.append(f"line {error.line}")
    evidence = f"{error.kind}" + (f" at {', '.join(where)}" if where else "")
    finding = rule.finding(
        Location(path=name, pointer=pointer, line=error.line),
        error.message,
        evidence=evidence,
    )
    return with_rows(finding, (error.row,) if error.row is not None else ())


def note_findings(dataset: Dataset) -> list[Finding]:
    findings = []
    for note in dataset.notes:
        rule = NAME_MISMATCH if note.startswith("the name says") else READ_NOTES
        findings.append(rule.finding(Location(path=dataset.name), note, evidence=note[:120]))
    return findings


def duplicate_id_finding(
    dataset: Dataset, id_column: str, rows: Sequence[int], values: Sequence[str]
) -> Finding:
    finding = DUPLICATE_IDS.finding(
        Location(path=dataset.name, pointer=f"column:{id_column}"),
        f"{len(rows):,} rows repeat a value of the id column {id_column!r} "
        f"(rows {rows_text(rows)})",
        evidence=f"{len(rows)} repeated ids",
    )
    return with_rows(finding, rows, values)


def diff_findings(name: str, diff: Diff, against: str) -> list[Finding]:
    """DAT005-DAT008 for what changed between the trusted version (`against`) and `name`."""
    findings: list[Finding] = []
    location = Location(path=name)
    if diff.bytes_differ:
        findings.append(bytes_changed_finding(name, against))
    if diff.added_columns or diff.removed_columns or diff.retyped_columns:
        parts = []
        if diff.added_columns:
            parts.append(f"added: {', '.join(diff.added_columns)}")
        if diff.removed_columns:
            parts.append(f"removed: {', '.join(diff.removed_columns)}")
        for column, before, after in diff.retyped_columns:
            parts.append(f"{column}: {before} -> {after}")
        findings.append(
            SCHEMA_CHANGED.finding(
                location,
                f"columns changed since {against}: {'; '.join(parts)}",
                evidence="; ".join(parts)[:300],
            )
        )
    if diff.modified:
        rows = [c.new_row for c in diff.modified if c.new_row is not None]
        ids = [c.row_id or "" for c in diff.modified] if diff.keyed else []
        columns = diff.changed_columns()
        changed = ", ".join(f"{c} ({n})" for c, n in list(columns.items())[:10])
        examples = []
        for change in diff.modified[:5]:
            if change.cells:
                cells = "; ".join(f"{c.column}: {c.old} -> {c.new}" for c in change.cells[:4])
                examples.append(f"row {change.new_row}: {cells}")
        message = f"{len(rows):,} rows modified since {against} (rows {rows_text(rows)})" + (
            f"; columns changed: {changed}" if changed else ""
        )
        if examples:
            message += ". " + " | ".join(examples)
        evidence = f"{len(rows)} modified rows" + (f"; columns: {changed}" if changed else "")
        findings.append(
            with_rows(
                MODIFIED.finding(location, message, evidence=evidence),
                rows,
                ids if any(ids) else (),
            )
        )
    if diff.inserted:
        rows = [c.new_row for c in diff.inserted if c.new_row is not None]
        ids = [c.row_id or "" for c in diff.inserted] if diff.keyed else []
        findings.append(
            with_rows(
                INSERTED.finding(
                    location,
                    f"{len(rows):,} rows inserted since {against} (rows {rows_text(rows)})",
                    evidence=f"{len(rows)} inserted rows",
                ),
                rows,
                ids if any(ids) else (),
            )
        )
    if diff.deleted:
        rows = [c.old_row for c in diff.deleted if c.old_row is not None]
        findings.append(
            with_rows(
                DELETED.finding(
                    location,
                    f"{len(rows):,} rows of {against} deleted (its rows {rows_text(rows)})",
                    evidence=f"{len(rows)} deleted rows",
                ),
                rows,
            )
        )
    return findings


def bytes_changed_finding(name: str, against: str) -> Finding:
    from bastion.datacheck.manifest import BYTES_DIFFER

    return BYTES_CHANGED.finding(
        Location(path=name),
        f"{name}: {BYTES_DIFFER}, since {against}",
        evidence="row fingerprint equal, file SHA-256 differs",
    )


def legacy_manifest_finding(name: str, entry: str) -> Finding:
    return WEAK_MANIFEST.finding(
        Location(path=name),
        f"the baseline manifest's {entry} is format 1 (16-bit cell hints): a modified row can "
        "hide behind a forged hint when the columns change; record a new manifest",
        evidence="manifest schema_version 1",
    )


def files_changed_finding(name: str, message: str) -> Finding:
    return FILES_CHANGED.finding(Location(path=name), message, evidence=message[:200])
