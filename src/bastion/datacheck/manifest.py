"""Dataset manifests and diffs: what a trusted version of the data was, and exactly which rows
changed since.

A manifest is a versioned JSON document (schema: schema/manifest-2.json) listing each data
file with its SHA-256, size, columns and types, row count, the order-independent row
fingerprint and — up to a bound of rows — an index of per-row digests (and id digests with
`--id`, and per-cell digests keyed by a random key recorded with them) from which `diff` names
the modified, inserted and deleted rows and the columns that changed. Format 1 (16-bit cell
hints, forgeable) is still read, and a comparison against it says it is weaker. It holds no
cell values and no raw ids: digests only. It carries no timestamp outside `metadata`; the same
data gives the same manifest but for the cell key (drawn at random each time, so a collision
precomputed for one manifest is no use against the next), and `bastion sign` signs it like any
file and `bastion verify` checks it.

`diff` compares two versions (data files or manifests, or a manifest against data): with an id
column rows are matched by id; without one, identical rows are matched as a multiset (so a
reordering or a deletion does not flag the rows after it) and the remaining rows are paired by
position when their cell digests mostly agree (modified), else they are inserted/deleted."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from bastion.datacheck.rowhash import (
    CELL_DIGEST_BYTES,
    CELL_KEY_BYTES,
    CRC16,
    DIGEST_BYTES,
    KEY_BYTES,
    KEYED,
    CellSpec,
    RowIndex,
    file_digest,
    index_rows,
    settle_types,
)
from bastion.errors import DataInputError, InputError
from bastion.records import Record, RecordError, field, json_schema

if TYPE_CHECKING:
    import numpy

    from bastion.datacheck.dataset import Dataset

MANIFEST_KIND = "bastion-data-manifest"
MANIFEST_VERSION = "2"
LEGACY_VERSIONS = ("1",)  # read, compared with a warning (16-bit cell hints)
LEGACY_NOTE = (
    "the baseline manifest is format 1: where the columns differ, rows are compared by 16-bit "
    "cell hints, which a forged value can match; record a new manifest"
)
MAX_INDEXED_ROWS = 5_000_000  # rows whose digests a manifest keeps (8 bytes of JSON each, ~)
MAX_MANIFEST_BYTES = 512 * 1024 * 1024
MAX_VALUES_SHOWN = 40  # characters of one value shown in a diff
BYTES_DIFFER = (
    "same values as read, different bytes: type inference or formatting changed (007 -> 7, "
    "1.0 -> 1, quoting, line endings, compression); the file's SHA-256 differs"
)


class ColumnEntry(Record):
    name: str
    type: str


class FileEntry(Record):
    size: int
    sha256: str


class RowIndexEntry(Record):
    """Per-row digests in row order, base64: BLAKE2b-256 of the canonical row cut to
    `digest_bytes`; of the id cell cut to `key_bytes` (with an id column); per-cell digests,
    row-major, little-endian (within a bound of cells): BLAKE2b keyed with `cell_key` (random
    per manifest) cut to `cell_digest_bytes` (format 2), or 16-bit CRC hints (format 1,
    `cell_hints`)."""

    digest_bytes: int = DIGEST_BYTES
    digests: str
    key_bytes: int = KEY_BYTES
    keys: str | None = None
    cell_hints: str | None = None  # format 1 only
    cell_digest_bytes: int = CELL_DIGEST_BYTES
    cell_key: str | None = None
    cell_digests: str | None = None


class DatasetEntry(Record):
    name: str
    format: str
    split: str | None = None
    file: FileEntry | None = None
    columns: tuple[ColumnEntry, ...]
    rows: int
    fingerprint: str  # SHA-256 over the sorted full row digests (key-aware with an id)
    text_columns: tuple[str, ...] = ()  # columns read as text (they mixed types)
    row_index: RowIndexEntry | None = None  # None past MAX_INDEXED_ROWS


class Manifest(Record):
    """A dataset manifest: the state of one or more data files, comparable and signable."""

    kind: str = MANIFEST_KIND
    schema_version: str = MANIFEST_VERSION
    tool: str
    id_column: str | None = None
    datasets: tuple[DatasetEntry, ...]
    metadata: dict[str, Any] = field(default_factory=dict)

    def dataset(self, name: str) -> DatasetEntry | None:
        for entry in self.datasets:
            if entry.name == name:
                return entry
        return None


def manifest_schema() -> dict[str, Any]:
    schema = json_schema(Manifest)
    schema["$id"] = "https://github.com/bastion-mlsec/bastion/schema/data-manifest-2.json"
    return schema


# -- building -----------------------------------------------------------------------------------


class Indexed(NamedTuple):
    """One dataset as read for the manifest: the dataset (after any mixed-types re-read), its
    row index, and the mixed-types problems that were worked around."""

    dataset: Dataset
    rows: RowIndex
    retyped: list[DataInputError]


def index_dataset(
    dataset: Dataset,
    id_column: str | None,
    keep_key_values: bool = False,
    progress: Callable[[int], None] | None = None,
    cell_spec: CellSpec | None = None,
) -> Indexed:
    """The row index of a dataset; columns that mix types are re-read as text (reported by
    the caller). `cell_spec`: how cells are digested (that of the manifest compared against;
    this process's key when None). Raises DataInputError for input that cannot be read."""
    settled, index, retyped = settle_types(
        dataset, lambda d: index_rows(d, id_column, keep_key_values, progress, cell_spec)
    )
    return Indexed(settled, index, retyped)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def dataset_entry(indexed: Indexed) -> DatasetEntry:
    dataset, index = indexed.dataset, indexed.rows
    file = None
    if dataset.path is not None:
        digest = index.file_sha256 or file_digest(dataset)
        assert digest is not None
        file = FileEntry(size=dataset.path.stat().st_size, sha256=digest)
    row_index = None
    if index.rows <= MAX_INDEXED_ROWS:
        spec = index.cell_spec
        if spec.kind != KEYED or spec.key is None:
            raise ValueError("a manifest records keyed cell digests only")
        cells = None
        if index.hints is not None:
            cells = _b64(index.hints.astype("<u8").tobytes())
        row_index = RowIndexEntry(
            digests=_b64(index.digests.tobytes()),
            keys=_b64(index.keys.tobytes()) if index.keys is not None else None,
            cell_key=_b64(spec.key),
            cell_digests=cells,
        )
    return DatasetEntry(
        name=dataset.name,
        format=dataset.format,
        split=dataset.split,
        file=file,
        columns=tuple(
            ColumnEntry(name=n, type=t) for n, t in zip(index.columns, index.types, strict=True)
        ),
        rows=index.rows,
        fingerprint=index.fingerprint,
        text_columns=tuple(getattr(dataset.source, "text_columns", ())),
        row_index=row_index,
    )


def build_manifest(
    entries: Sequence[DatasetEntry], id_column: str | None, metadata: dict[str, Any]
) -> Manifest:
    from bastion.version import __version__

    return Manifest(
        tool=f"bastion {__version__}",
        id_column=id_column,
        datasets=tuple(sorted(entries, key=lambda e: e.name)),
        metadata=metadata,
    )


def dump_manifest(manifest: Manifest) -> str:
    # field order (kind first, so a reader can tell a manifest from its first bytes)
    return json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n"


def load_manifest(path: Path) -> Manifest:
    """A manifest file, validated against the schema. Raises InputError."""
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise InputError(f"{path}: {size:,} bytes is too large for a manifest")
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read manifest {path}: {exc.strerror}") from exc
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{path} is not a manifest: not JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("kind") != MANIFEST_KIND:
        raise InputError(
            f"{path} is not a bastion data manifest",
            hint="write one with `bastion data manifest PATH -o FILE`",
        )
    if data.get("schema_version") not in (MANIFEST_VERSION, *LEGACY_VERSIONS):
        raise InputError(
            f"{path}: manifest schema version {data.get('schema_version')!r} is not "
            f"{MANIFEST_VERSION!r}",
            hint="regenerate it with this bastion",
        )
    try:
        manifest = Manifest.model_validate(data)
        for entry in manifest.datasets:
            index_of_entry(entry)  # the digests decode and have the right sizes
    except (RecordError, ValueError) as exc:
        raise InputError(f"{path} is not a valid manifest: {exc}") from exc
    return manifest


def index_of_entry(entry: DatasetEntry) -> RowIndex | None:
    """The row index a manifest entry carries, or None when it has none (too many rows)."""
    import numpy as np

    if entry.row_index is None:
        return None
    ri = entry.row_index
    if ri.digest_bytes != DIGEST_BYTES or ri.key_bytes != KEY_BYTES:
        raise ValueError(f"{entry.name}: unsupported digest sizes")
    raw = base64.b64decode(ri.digests, validate=True)
    if len(raw) != entry.rows * DIGEST_BYTES:
        raise ValueError(f"{entry.name}: {len(raw)} digest bytes for {entry.rows} rows")
    digests = np.frombuffer(raw, dtype=f"S{DIGEST_BYTES}")
    keys = None
    if ri.keys is not None:
        raw_keys = base64.b64decode(ri.keys, validate=True)
        if len(raw_keys) != entry.rows * KEY_BYTES:
            raise ValueError(f"{entry.name}: {len(raw_keys)} key bytes for {entry.rows} rows")
        keys = np.frombuffer(raw_keys, dtype=f"S{KEY_BYTES}")
    hints = None
    width = len(entry.columns)
    if ri.cell_key is not None or ri.cell_digests is not None:  # format 2
        if ri.cell_hints is not None or ri.cell_key is None:
            raise ValueError(f"{entry.name}: cell digests without their key, or with hints")
        if ri.cell_digest_bytes != CELL_DIGEST_BYTES:
            raise ValueError(f"{entry.name}: unsupported cell digest size")
        key = base64.b64decode(ri.cell_key, validate=True)
        if len(key) != CELL_KEY_BYTES:
            raise ValueError(f"{entry.name}: a cell key of {len(key)} bytes")
        spec = CellSpec(KEYED, key)
        if ri.cell_digests is not None:
            raw_cells = base64.b64decode(ri.cell_digests, validate=True)
            if len(raw_cells) != entry.rows * width * CELL_DIGEST_BYTES:
                raise ValueError(f"{entry.name}: cell digests do not match rows x columns")
            hints = np.frombuffer(raw_cells, dtype="<u8").reshape(entry.rows, width)
    else:  # format 1: 16-bit CRC hints
        spec = CellSpec(CRC16)
        if ri.cell_hints is not None:
            raw_hints = base64.b64decode(ri.cell_hints, validate=True)
            if len(raw_hints) != entry.rows * width * 2:
                raise ValueError(f"{entry.name}: cell hints do not match rows x columns")
            hints = np.frombuffer(raw_hints, dtype="<u2").reshape(entry.rows, width)
    return RowIndex(
        columns=[c.name for c in entry.columns],
        types=[c.type for c in entry.columns],
        digests=digests,
        keys=keys,
        hints=hints,
        fingerprint=entry.fingerprint,
        cell_spec=spec,
        file_sha256=entry.file.sha256 if entry.file is not None else None,
    )


def cell_spec_of(entry: DatasetEntry | None) -> CellSpec | None:
    """The cell digests to compute for data compared with this manifest entry (None: this
    process's key). Raises ValueError for an entry whose row index does not decode."""
    if entry is None or entry.row_index is None:
        return None
    index = index_of_entry(entry)
    return index.cell_spec if index is not None else None


# -- diff ---------------------------------------------------------------------------------------


class CellChange(NamedTuple):
    column: str
    old: str  # shown value (redacted where personal data), or "" when only hints are known
    new: str


class RowChange(NamedTuple):
    old_row: int | None
    new_row: int | None
    row_id: str | None
    columns: tuple[str, ...]  # columns that changed (modified rows)
    cells: tuple[CellChange, ...] = ()


class Diff(NamedTuple):
    old_name: str
    new_name: str
    old_rows: int
    new_rows: int
    identical: bool
    modified: list[RowChange]
    inserted: list[RowChange]
    deleted: list[RowChange]
    added_columns: list[str]
    removed_columns: list[str]
    retyped_columns: list[tuple[str, str, str]]
    keyed: bool
    notes: list[str]
    # the same rows as read from files whose bytes differ: type inference or formatting changed
    bytes_differ: bool = False

    def changed_columns(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for change in self.modified:
            for column in change.columns:
                counts[column] = counts.get(column, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


class HintDiffer:
    """Which shared columns differ between old row i and new row j, from the per-cell digests
    (None when either side has none, or they were computed differently: another key or
    format); `width` is the number of shared columns."""

    def __init__(self, old: RowIndex, new: RowIndex, shared: list[tuple[int, int]]) -> None:
        self.available = (
            old.hints is not None
            and new.hints is not None
            and bool(shared)
            and old.cell_spec == new.cell_spec
        )
        self.legacy = self.available and old.cell_spec.kind == CRC16
        self.old_cols = [a for a, _b in shared]
        self.new_cols = [b for _a, b in shared]
        self.names = [new.columns[b] for b in self.new_cols]
        self.width = len(shared)
        self.old_hints = old.hints
        self.new_hints = new.hints

    def shared_rows(self, side: str) -> numpy.ndarray:
        """Each row's hints on the shared columns, as one bytes value per row."""
        import numpy as np

        hints = self.old_hints if side == "old" else self.new_hints
        columns = self.old_cols if side == "old" else self.new_cols
        assert hints is not None
        block = np.ascontiguousarray(hints[:, columns])
        return block.view(f"V{block.dtype.itemsize * len(columns)}").reshape(len(block))

    def __call__(self, i: int, j: int) -> tuple[str, ...] | None:
        if not self.available:
            return None
        assert self.old_hints is not None and self.new_hints is not None
        a = self.old_hints[i, self.old_cols]
        b = self.new_hints[j, self.new_cols]
        return tuple(n for n, x, y in zip(self.names, a, b, strict=True) if x != y)


def diff_indexes(
    old: RowIndex,
    new: RowIndex,
    old_name: str,
    new_name: str,
) -> Diff:
    """Which rows were modified, inserted or deleted between two row indexes."""
    notes: list[str] = []
    old_set = {n: i for i, n in enumerate(old.columns)}
    new_set = {n: i for i, n in enumerate(new.columns)}
    added = [c for c in new.columns if c not in old_set]
    removed = [c for c in old.columns if c not in new_set]
    retyped = [
        (c, old.types[old_set[c]], new.types[new_set[c]])
        for c in new.columns
        if c in old_set and old.types[old_set[c]] != new.types[new_set[c]]
    ]
    shared = [(old_set[c], new_set[c]) for c in new.columns if c in old_set]
    differ = HintDiffer(old, new, shared)
    schema_same = not added and not removed and old.columns == new.columns
    modified: list[RowChange] = []
    inserted: list[RowChange] = []
    deleted: list[RowChange] = []
    keyed = old.keys is not None and new.keys is not None
    if keyed:
        assert old.keys is not None and new.keys is not None
        old_keys = _occurrence_keys(old.keys)
        new_keys = _occurrence_keys(new.keys)
        if len(set(old.keys.tolist())) != len(old.keys) or len(set(new.keys.tolist())) != len(
            new.keys
        ):
            notes.append("the id column has repeated values: repeats are matched in row order")
        old_pos = {k: i for i, k in enumerate(old_keys)}
        for j, key in enumerate(new_keys):
            i = old_pos.pop(key, None)
            if i is None:
                inserted.append(RowChange(None, j, _key_value(new, j), ()))
            elif schema_same:
                if old.digests[i] != new.digests[j]:
                    columns = differ(i, j)
                    modified.append(RowChange(i, j, _key_value(new, j), columns or ()))
            else:  # compare the shared columns (by their hints, when there are any)
                columns = differ(i, j)
                if columns is None or columns:
                    modified.append(RowChange(i, j, _key_value(new, j), columns or ()))
        for _key, i in sorted(old_pos.items(), key=lambda kv: kv[1]):
            deleted.append(RowChange(i, None, None, ()))
    else:
        if old.keys is not None or new.keys is not None:
            notes.append("only one side has an id column: rows matched by content")
        if schema_same:
            unmatched_old, unmatched_new = _multiset_unmatched(old.digests, new.digests)
            modified, inserted, deleted = _pair_by_position(unmatched_old, unmatched_new, differ)
        elif differ.available:
            notes.append("the columns differ: rows compared on the shared columns' cell digests")
            unmatched_old, unmatched_new = _multiset_unmatched(
                differ.shared_rows("old"), differ.shared_rows("new")
            )
            modified, inserted, deleted = _pair_by_position(unmatched_old, unmatched_new, differ)
        else:
            notes.append(
                "the columns differ and there are no comparable cell digests: rows paired by "
                "position"
            )
            for j in range(min(old.rows, new.rows)):
                modified.append(RowChange(j, j, None, ()))
            inserted = [RowChange(None, j, None, ()) for j in range(old.rows, new.rows)]
            deleted = [RowChange(i, None, None, ()) for i in range(new.rows, old.rows)]
    if differ.legacy and not schema_same:
        notes.append(LEGACY_NOTE)
    identical = (
        old.fingerprint == new.fingerprint and schema_same and not retyped and old.rows == new.rows
    )
    return Diff(
        old_name=old_name,
        new_name=new_name,
        old_rows=old.rows,
        new_rows=new.rows,
        identical=identical,
        modified=modified,
        inserted=inserted,
        deleted=deleted,
        added_columns=added,
        removed_columns=removed,
        retyped_columns=retyped,
        keyed=keyed,
        notes=notes,
        bytes_differ=identical
        and old.file_sha256 is not None
        and new.file_sha256 is not None
        and old.file_sha256 != new.file_sha256,
    )


def _occurrence_keys(keys: numpy.ndarray) -> list[tuple[bytes, int]]:
    seen: dict[bytes, int] = {}
    out = []
    for key in keys.tolist():
        count = seen.get(key, 0)
        seen[key] = count + 1
        out.append((key, count))
    return out


def _key_value(index: RowIndex, row: int) -> str | None:
    if index.key_values is None:
        return None
    return index.key_values[row]


def _multiset_unmatched(old: numpy.ndarray, new: numpy.ndarray) -> tuple[list[int], list[int]]:
    """Rows of each side whose digest has no partner on the other side (as multisets)."""
    remaining: dict[bytes, list[int]] = {}
    for i, digest in enumerate(old.tolist()):
        remaining.setdefault(digest, []).append(i)
    unmatched_new = []
    for j, digest in enumerate(new.tolist()):
        rows = remaining.get(digest)
        if rows:
            rows.pop(0)
        else:
            unmatched_new.append(j)
    unmatched_old = sorted(i for rows in remaining.values() for i in rows)
    return unmatched_old, unmatched_new


def _pair_by_position(
    old_rows: list[int],
    new_rows: list[int],
    differ: HintDiffer,
) -> tuple[list[RowChange], list[RowChange], list[RowChange]]:
    """Pair leftover rows in order when most of their cells agree (a modified row), else call
    them deleted/inserted. Without hints, rows at the same position are paired."""
    modified: list[RowChange] = []
    inserted: list[RowChange] = []
    deleted: list[RowChange] = []
    i = j = 0
    while i < len(old_rows) and j < len(new_rows):
        a, b = old_rows[i], new_rows[j]
        columns = differ(a, b)
        width = differ.width
        if columns is None:
            if a == b:
                modified.append(RowChange(a, b, None, ()))
                i += 1
                j += 1
            elif a < b:
                deleted.append(RowChange(a, None, None, ()))
                i += 1
            else:
                inserted.append(RowChange(None, b, None, ()))
                j += 1
            continue
        if width and len(columns) * 2 <= width:
            modified.append(RowChange(a, b, None, columns))
            i += 1
            j += 1
            continue
        # not similar: look one step ahead on each side for a better partner
        ahead_new = differ(a, new_rows[j + 1]) if j + 1 < len(new_rows) else None
        ahead_old = differ(old_rows[i + 1], b) if i + 1 < len(old_rows) else None
        if ahead_new is not None and len(ahead_new) * 2 <= width:
            inserted.append(RowChange(None, b, None, ()))
            j += 1
        elif ahead_old is not None and len(ahead_old) * 2 <= width:
            deleted.append(RowChange(a, None, None, ()))
            i += 1
        else:
            deleted.append(RowChange(a, None, None, ()))
            inserted.append(RowChange(None, b, None, ()))
            i += 1
            j += 1
    deleted += [RowChange(a, None, None, ()) for a in old_rows[i:]]
    inserted += [RowChange(None, b, None, ()) for b in new_rows[j:]]
    return modified, inserted, deleted


# -- cell values for a diff of two data versions --------------------------------------------------


def value_redactor() -> Callable[[str, Any], str] | None:
    """How a diff shows one cell: the personal-data detectors (personal/detectors.py) redact
    what they find in the value; a column whose name says it holds personal data (a name, an
    address, an identity number, a quasi-identifier such as age or birth date) is redacted
    whole. None when the detectors are not available (then every value is redacted)."""
    try:
        from bastion.datacheck import semantics
        from bastion.personal import detectors
    except ImportError:  # pragma: no cover - the detectors ship with the data checks
        return None
    from bastion.datacheck.csvfile import value_shape
    from bastion.report.printable import terminal_safe

    hidden = {*semantics.QUASI_IDENTIFIERS, *semantics.DIRECT_IDENTIFIERS, *detectors.KINDS}

    def show(column: str, value: Any) -> str:
        if value is None:
            return "null"
        text = str(value)
        semantic = semantics.column_semantic(column)
        if semantic in hidden:
            return "redacted " + value_shape(text, limit=12)
        hint = semantic if semantic in detectors.KINDS else None
        shown = detectors.redact(text[:MAX_VALUES_SHOWN], hint=hint)
        if len(text) > MAX_VALUES_SHOWN:
            shown += "…"
        return terminal_safe(shown)

    return show


MAX_IDS_EXAMINED = 20_000  # id values of changed rows run through the detectors in a diff


def guard_ids(diff: Diff, id_column: str | None) -> Diff:
    """The diff with its row ids (values of the id column) redacted when they are personal data:
    the column's name says so, the detectors find personal data in one of them, or there are
    too many to examine (MAX_IDS_EXAMINED). A diff runs no personal-data check of its own."""
    changes = [*diff.modified, *diff.inserted, *diff.deleted]
    ids = [c.row_id for c in changes if c.row_id]
    if id_column is None or not ids:
        return diff
    from bastion.datacheck import semantics
    from bastion.personal import detectors

    semantic = semantics.column_semantic(id_column)
    personal = (
        semantic in semantics.DIRECT_IDENTIFIERS
        or semantic in semantics.QUASI_IDENTIFIERS
        or semantic in detectors.KINDS
        or len(ids) > MAX_IDS_EXAMINED
        or any(detectors.detect(value) for value in ids)
    )
    if not personal:
        return diff
    from bastion.datacheck.row_ids import redact_id

    def hide(items: list[RowChange]) -> list[RowChange]:
        return [c._replace(row_id=redact_id(c.row_id)) if c.row_id else c for c in items]

    return diff._replace(
        modified=hide(diff.modified),
        inserted=hide(diff.inserted),
        deleted=hide(diff.deleted),
        notes=[*diff.notes, f"ids redacted: the id column {id_column!r} holds personal data"],
    )


def _rows_of(dataset: Dataset, rows: list[int]) -> dict[int, dict[str, Any]]:
    """The values of the given rows (sorted 0-based indexes), read batch by batch."""
    import numpy as np

    wanted = np.asarray(sorted(set(rows)), dtype=np.int64)
    found: dict[int, dict[str, Any]] = {}
    if not len(wanted):
        return found
    for start, batch in dataset.batches():
        end = start + batch.num_rows
        lo, hi = np.searchsorted(wanted, [start, end])
        if hi > lo:
            picked = batch.take(wanted[lo:hi] - start).to_pylist()
            for offset, row in zip(wanted[lo:hi].tolist(), picked, strict=True):
                found[offset] = row
        if hi >= len(wanted):
            break
    return found


def _redacted(_column: str, value: Any) -> str:
    from bastion.datacheck.csvfile import value_shape

    return "null" if value is None else "redacted " + value_shape(str(value), limit=12)


def with_values(
    diff: Diff, old: Dataset, new: Dataset, max_rows: int = 10_000
) -> tuple[Diff, bool]:
    """The diff with the changed cells' values for the first `max_rows` modified rows (and exact
    changed columns, where hints only suggested them). Values of personal-data columns are
    redacted; when the personal-data check is unavailable every value is redacted. Returns the
    diff and whether values were shown unredacted for non-personal columns."""
    pairs = diff.modified[:max_rows]
    if not pairs:
        return diff, True
    redactor = value_redactor()
    show = redactor or _redacted
    old_values = _rows_of(old, [c.old_row for c in pairs if c.old_row is not None])
    new_values = _rows_of(new, [c.new_row for c in pairs if c.new_row is not None])
    changed: list[RowChange] = []
    for change in pairs:
        before = old_values.get(change.old_row or 0, {})
        after = new_values.get(change.new_row or 0, {})
        cells = [
            CellChange(column, show(column, before[column]), show(column, after[column]))
            for column in after
            if column in before and before[column] != after[column]
        ]
        changed.append(change._replace(columns=tuple(c.column for c in cells), cells=tuple(cells)))
    modified = changed + diff.modified[max_rows:]
    notes = list(diff.notes)
    if redactor is None:
        notes.append("values redacted: the personal-data detectors are not available")
    return diff._replace(modified=modified, notes=notes), redactor is not None


# -- summary --------------------------------------------------------------------------------------


def _rows_text(rows: Sequence[int], limit: int = 20) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    more = f" … (+{len(rows) - limit:,} more)" if len(rows) > limit else ""
    return shown + more


def summary(diff: Diff, limit: int = 20) -> str:
    """A review-ready summary (Markdown). Names, column names and ids come from the data: their
    control characters are escaped (the summary is printed to terminals and stored)."""
    from bastion.report.printable import terminal_safe

    return "\n".join(terminal_safe(line) for line in _summary(diff, limit).split("\n"))


def _summary(diff: Diff, limit: int) -> str:
    lines = [f"## Data diff: `{diff.old_name}` → `{diff.new_name}`", ""]
    if diff.identical:
        lines.append(f"Identical content ({diff.new_rows:,} rows).")
        if diff.bytes_differ:
            lines += ["", f"- {BYTES_DIFFER}"]
        return "\n".join(lines) + "\n"
    how = "matched by id" if diff.keyed else "matched by content (no id column)"
    lines += [
        f"- rows: {diff.old_rows:,} → {diff.new_rows:,} ({how})",
        f"- modified: {len(diff.modified):,}, inserted: {len(diff.inserted):,}, "
        f"deleted: {len(diff.deleted):,}",
    ]
    if diff.added_columns:
        lines.append(f"- columns added: {', '.join(diff.added_columns)}")
    if diff.removed_columns:
        lines.append(f"- columns removed: {', '.join(diff.removed_columns)}")
    for column, before, after in diff.retyped_columns:
        lines.append(f"- column {column}: type {before} → {after}")
    changed = diff.changed_columns()
    if changed:
        lines.append(
            "- columns changed in modified rows: "
            + ", ".join(f"{c} ({n:,})" for c, n in changed.items())
        )
    for note in diff.notes:
        lines.append(f"- note: {note}")
    if diff.modified:
        lines += [
            "",
            "### Modified rows",
            "",
            "| old row | new row | id | changes |",
            "|---|---|---|---|",
        ]
        for change in diff.modified[:limit]:
            if change.cells:
                what = "; ".join(f"{c.column}: {c.old} → {c.new}" for c in change.cells)
            else:
                what = ", ".join(change.columns) or "(columns not recorded)"
            lines.append(
                f"| {change.old_row} | {change.new_row} | {change.row_id or ''} | "
                f"{what.replace('|', '¦')} |"
            )
        if len(diff.modified) > limit:
            lines.append(f"| … | | | {len(diff.modified) - limit:,} more (see the JSON report) |")
    if diff.inserted:
        rows = [c.new_row for c in diff.inserted if c.new_row is not None]
        lines += ["", f"### Inserted rows (new version): {_rows_text(rows, limit)}"]
    if diff.deleted:
        rows = [c.old_row for c in diff.deleted if c.old_row is not None]
        lines += ["", f"### Deleted rows (old version): {_rows_text(rows, limit)}"]
    return "\n".join(lines) + "\n"
