"""Data contracts: what a trusted dataset's columns hold, written down, and checks of new data
against it.

`profile(dataset, options)` infers a `Contract` from a trusted version: each column's type,
nullability, range, categories (up to a cardinality cap), uniqueness and whether it is a
monotone id. The contract is a standalone JSON document (JSON Schema-like keywords, format
version 1, described by datacheck/schema/contract-1.json): a reviewer reads and edits it, the
runtime guard enforces it on live requests, and nothing is pickled.

`check(dataset, options)` validates a dataset against `options.contract` batch by batch (bounded
memory): pandera is the engine for nullability and value constraints (a DataFrameSchema built from
the contract, lazy validation so every failure is collected); bastion reads cells as the declared
type first (constraints.coerce_series) so one bad cell fails alone, and keeps uniqueness and
ordering across batches itself. Every failure becomes a CONxxx finding naming the column, the
rule broken and all failing rows; values are never shown.

`validate_row(contract, row)` checks one record (a dict) without pandas, with the same constraint
definitions (constraints.CONSTRAINTS), for the runtime guard."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bastion.datacheck import constraints as cs
from bastion.datacheck.row_ids import row_ids
from bastion.errors import ConfigError, MissingExtra
from bastion.findings import Confidence, Finding, Location, Severity, Stage
from bastion.records import Record, field
from bastion.rules import Rule

if TYPE_CHECKING:
    import numpy
    import pandas
    import pyarrow

    from bastion.datacheck.dataset import Dataset
    from bastion.datacheck.options import DataOptions

FORMAT = "bastion-data-contract"
FORMAT_VERSION = 1
SCHEMA_PATH = Path(__file__).parent / "schema" / "contract-1.json"
MAX_CONTRACT_BYTES = 16 * 1024 * 1024  # a contract is a small document; this refuses a bomb
MAX_JSON_DEPTH = 8  # the format nests four levels; deeper input is refused before parsing
RE2_MAX_MEM = 8 * 1024 * 1024  # memory RE2 may use to compile one pattern
# profile: evidence a column is an identifier (unique / monotone) needs at least this many rows
MIN_ROWS_FOR_KEYS = 20
MAX_ID_TEXT = 64  # text values longer than this, or with spaces, are not identifiers

_STAGE = Stage.DATA


_REVIEW = (
    "Review the listed rows: fix or drop them if they are wrong, or, if the new data is right "
    "and the trusted version was too narrow, update the contract (and have the change reviewed "
    "like code)."
)
CON001 = Rule(
    id="CON001",
    title="Column missing",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=_STAGE,
    description="A column the contract requires is not in the dataset. Models and pipelines "
    "read columns by name; a missing column is a broken or swapped file.",
    remediation="Restore the column, or update the contract if the change is intended.",
    profile="data-integrity",
)
CON002 = Rule(
    id="CON002",
    title="Column not in the contract",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=_STAGE,
    description="The dataset has a column the contract does not know. New columns can carry "
    "data nobody reviewed (personal data, a leaked label) into training.",
    remediation="Review the column and add it to the contract, or drop it; set "
    "additionalColumns to 'allow' in the contract to accept unknown columns.",
    profile="data-integrity",
)
CON003 = Rule(
    id="CON003",
    title="Value of the wrong type",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=_STAGE,
    description="Cells that cannot be read as the column's declared type (text in a numeric "
    "column, a fraction in an integer column, a malformed date). Type confusion is a common way "
    "to slip crafted values past downstream checks.",
    remediation=_REVIEW,
    profile="data-integrity",
)
CON004 = Rule(
    id="CON004",
    title="Missing value in a required column",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=_STAGE,
    description="Null cells in a column the contract declares non-nullable.",
    remediation=_REVIEW,
    profile="data-integrity",
)
CON005 = Rule(
    id="CON005",
    title="Value out of range",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=_STAGE,
    description="Values below the contract's minimum or above its maximum. Out-of-range values "
    "in new data are a sign of a broken pipeline or of injected rows.",
    remediation=_REVIEW,
    profile="data-integrity",
)
CON006 = Rule(
    id="CON006",
    title="Unknown category",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=_STAGE,
    description="Values of a categorical column that are not among the contract's categories.",
    remediation=_REVIEW,
    profile="data-integrity",
)
CON007 = Rule(
    id="CON007",
    title="Text does not match the contract",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=_STAGE,
    description="Text shorter or longer than the contract allows, or not matching its pattern. "
    "Overlong text in a short field is a common carrier for injected payloads.",
    remediation=_REVIEW,
    profile="data-integrity",
)
CON008 = Rule(
    id="CON008",
    title="Duplicate value in a unique column",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=_STAGE,
    description="Rows that repeat a value of a column the contract declares unique (an "
    "identifier). Duplicated ids are a sign of replayed or injected rows.",
    remediation="Find out where the duplicated rows come from; drop the copies or fix the ids.",
    profile="data-integrity",
)
CON009 = Rule(
    id="CON009",
    title="Identifier out of order",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=_STAGE,
    description="Rows whose value in a column the contract declares monotonically increasing (a "
    "sequence id, an event time) is not greater than the row before it: rows inserted, "
    "reordered or replayed.",
    remediation="Check how the rows were produced; restore the order or update the contract.",
    profile="data-integrity",
)
RULES: tuple[Rule, ...] = (
    CON001,
    CON002,
    CON003,
    CON004,
    CON005,
    CON006,
    CON007,
    CON008,
    CON009,
)
_RULES_BY_ID = {rule.id: rule for rule in RULES}


class ContractError(ConfigError):
    """A contract file that cannot be used: not JSON, not the format, past a bound, an unsafe
    pattern."""


Kind = Literal["integer", "number", "string", "boolean", "datetime"]


class ColumnSpec(Record):
    """One column of a contract; keys are JSON Schema's where JSON Schema has one."""

    type: Kind
    description: str | None = None
    nullable: bool = False
    minimum: float | int | str | None = None
    maximum: float | int | str | None = None
    enum: tuple[str, ...] | None = None
    min_length: int | None = field(default=None, name="minLength")
    max_length: int | None = field(default=None, name="maxLength")
    pattern: str | None = None
    unique: bool = False
    monotonic: Literal["increasing"] | None = None


class ContractSource(Record):
    dataset: str | None = None
    rows: int | None = None
    tool: str | None = None


class Contract(Record):
    """A dataset contract (format version 1)."""

    contract: str = FORMAT
    version: int = FORMAT_VERSION
    title: str | None = None
    source: ContractSource | None = None
    additional_columns: Literal["refuse", "allow"] = field(
        default="refuse", name="additionalColumns"
    )
    columns: dict[str, ColumnSpec] = field(default_factory=dict)

    def dumps(self) -> str:
        """The contract as readable JSON (sorted nowhere: columns keep the dataset's order)."""
        import msgspec

        document = _without_nulls(msgspec.to_builtins(self))
        return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    def save(self, path: Path | str) -> None:
        Path(path).write_text(self.dumps(), encoding="utf-8")


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


# --- reading a contract file ------------------------------------------------------------------


def load_contract(path: Path | str) -> Contract:
    """Read and validate a contract file; ContractError says what is wrong."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONTRACT_BYTES + 1)
    except OSError as exc:
        raise ContractError(f"cannot read the contract {path}: {exc.strerror or exc}") from None
    return parse_contract(data, name=str(path))


def parse_contract(data: bytes | str, name: str = "contract") -> Contract:
    """A contract from its JSON text. Refuses, with a ContractError: more than
    MAX_CONTRACT_BYTES, nesting deeper than the format has, non-finite numbers, anything the
    format's JSON Schema rejects, keywords that do not fit the column's type, and patterns RE2
    cannot run in linear time and bounded memory."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_CONTRACT_BYTES:
        raise ContractError(
            f"{name}: larger than {MAX_CONTRACT_BYTES // (1024 * 1024)} MiB; not a contract"
        )
    depth = _max_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise ContractError(f"{name}: JSON nested {depth} levels deep; the format has 4")
    try:
        text = raw.decode("utf-8")
        document = json.loads(
            text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_int
        )
    except UnicodeDecodeError:
        raise ContractError(f"{name}: not UTF-8 text") from None
    except ValueError as exc:
        raise ContractError(f"{name}: not valid JSON ({exc})") from None
    _validate_schema(document, name)
    contract = Contract.model_validate(document)
    for column, spec in contract.columns.items():
        _check_column(spec, f"{name}: column {column!r}")
    return contract


def _max_depth(raw: bytes) -> int:
    """Bracket depth outside strings, counted before the JSON parser recurses."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    return deepest
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a contract can hold")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]!r} is out of range")
    return value


def _int(text: str) -> int:
    if len(text) > 40:
        raise ValueError("integer with more than 40 digits")
    return int(text)


def _validate_schema(document: Any, name: str) -> None:
    try:
        import jsonschema
    except ImportError:
        raise MissingExtra("jsonschema", "data") from None
    schema = json.loads(SCHEMA_PATH.read_text("utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(_short(str(p)) for p in first.absolute_path) or "(top level)"
        rule = _short(json.dumps(first.validator_value), 60)
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        # the message names the schema keyword broken, never the offending (hostile) value
        raise ContractError(
            f"{name}: not a bastion data contract at {where}: breaks '{first.validator}' "
            f"{rule}{more}",
            hint=f"the format is described by {SCHEMA_PATH.name}",
        )


_NUMERIC_KEYWORDS = ("minimum", "maximum")
_TEXT_KEYWORDS = ("enum", "min_length", "max_length", "pattern")


def _check_column(spec: ColumnSpec, where: str) -> None:
    """Keywords that make sense for the column's type, with bounds of the right kind."""
    if spec.type != "string":
        for keyword in _TEXT_KEYWORDS:
            if getattr(spec, keyword) is not None:
                raise ContractError(f"{where}: {keyword!r} applies to string columns only")
    if spec.type in ("string", "boolean"):
        for keyword in _NUMERIC_KEYWORDS:
            if getattr(spec, keyword) is not None:
                raise ContractError(f"{where}: {keyword!r} does not apply to {spec.type} columns")
        if spec.monotonic:
            raise ContractError(f"{where}: 'monotonic' does not apply to {spec.type} columns")
    for keyword in _NUMERIC_KEYWORDS:
        bound = getattr(spec, keyword)
        if bound is None:
            continue
        if spec.type == "datetime":
            if not isinstance(bound, str):
                raise ContractError(f"{where}: {keyword!r} of a datetime is an ISO 8601 string")
            try:
                cs.parse_datetime(bound)
            except cs.Invalid:
                raise ContractError(f"{where}: {keyword!r} is not an ISO 8601 date") from None
        elif isinstance(bound, str):
            raise ContractError(f"{where}: {keyword!r} of a {spec.type} column is a number")
    if spec.pattern is not None:
        compile_pattern(spec.pattern, where)


def compile_pattern(pattern: str, where: str = "pattern") -> Any:
    """A pattern compiled with RE2, which matches in time linear in the text whatever the
    pattern (no backtracking, so no catastrophic patterns); RE2 refuses what it cannot run that
    way (backreferences, lookaround) and patterns that need more than RE2_MAX_MEM to compile."""
    try:
        import re2
    except ImportError:
        raise MissingExtra("google-re2", "data") from None
    options = re2.Options()
    options.max_mem = RE2_MAX_MEM
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        raise ContractError(
            f"{where}: pattern refused ({exc})",
            hint="patterns use RE2 syntax: no backreferences or lookaround, bounded size",
        ) from None


# --- prepared constraints: one per column, used by both executors ------------------------------


class Prepared(Record):
    constraint: cs.Constraint
    param: Any


class PreparedColumn(Record):
    name: str
    spec: ColumnSpec
    constraints: tuple[Prepared, ...]


def prepare(contract: Contract) -> tuple[PreparedColumn, ...]:
    """Each column's constraints with their parameters in the form the executors use."""
    columns = []
    for name, spec in contract.columns.items():
        items: list[Prepared] = []
        for keyword, attribute in (
            ("minimum", "minimum"),
            ("maximum", "maximum"),
            ("enum", "enum"),
            ("minLength", "min_length"),
            ("maxLength", "max_length"),
            ("pattern", "pattern"),
        ):
            value = getattr(spec, attribute)
            if value is None:
                continue
            if keyword in ("minimum", "maximum") and spec.type == "datetime":
                value = cs.parse_datetime(value)
            elif keyword == "enum":
                value = frozenset(value)
            elif keyword == "pattern":
                value = compile_pattern(value, f"column {name!r}")
            items.append(Prepared(constraint=cs.CONSTRAINTS[keyword], param=value))
        columns.append(PreparedColumn(name=name, spec=spec, constraints=tuple(items)))
    return tuple(columns)


# --- one row (the runtime guard) ---------------------------------------------------------------


class Violation(Record):
    """One broken constraint in one row."""

    rule_id: str
    column: str
    constraint: str  # the contract keyword: type, nullable, minimum, enum, ..., or column
    message: str


def validate_row(
    contract: Contract | tuple[PreparedColumn, ...], row: Mapping[str, Any]
) -> list[Violation]:
    """The contract's violations in one record (a mapping of column to value), without pandas.
    Checks presence, unknown keys (unless the contract allows them), type, nullability and every
    value constraint, with the same definitions as the batch check. `unique` and `monotonic`
    concern a whole dataset and are not checked on a single row. Pass `prepare(contract)` instead
    of the contract to prepare its constraints once for many rows."""
    if isinstance(contract, Contract):
        allow_extra = contract.additional_columns == "allow"
        columns = prepare(contract)
    else:
        allow_extra = True
        columns = contract
    violations: list[Violation] = []
    known = set()
    for column in columns:
        name, spec = column.name, column.spec
        known.add(name)
        if name not in row:
            violations.append(
                Violation(rule_id="CON001", column=name, constraint="column", message="missing")
            )
            continue
        value = row[name]
        if cs.is_null(value):
            if not spec.nullable:
                violations.append(
                    Violation(
                        rule_id="CON004",
                        column=name,
                        constraint="nullable",
                        message="missing value",
                    )
                )
            continue
        try:
            value = cs.coerce_value(spec.type, value)
        except cs.Invalid as exc:
            violations.append(
                Violation(
                    rule_id="CON003", column=name, constraint="type", message=f"{exc} ({spec.type})"
                )
            )
            continue
        for item in column.constraints:
            if not item.constraint.holds(value, item.param):
                violations.append(
                    Violation(
                        rule_id=item.constraint.rule,
                        column=name,
                        constraint=item.constraint.keyword,
                        message=f"must be {item.constraint.describe(item.param)}",
                    )
                )
    if not allow_extra:
        for key in row:
            if key not in known:
                violations.append(
                    Violation(
                        rule_id="CON002",
                        column=str(key),
                        constraint="column",
                        message="not in the contract",
                    )
                )
    return violations


# --- inferring a contract ----------------------------------------------------------------------


class _ColumnProfile:
    """What one pass over a column's batches learns about it."""

    def __init__(self, name: str, kind: str, cap: int) -> None:
        self.name = name
        self.kind = kind
        self.cap = cap
        self.rows = 0
        self.nulls = 0
        self.minimum: Any = None
        self.maximum: Any = None
        self.max_len = 0
        self.categories: set[str] | None = set() if kind == "string" else None
        self.id_like = kind in ("integer", "string")
        self.hashes: list[numpy.ndarray] = []
        self.increasing = kind in ("integer", "datetime")
        self.last: Any = None

    def add(self, column: pyarrow.Array) -> None:
        import numpy as np
        import pyarrow.compute as pc

        self.rows += len(column)
        nulls = column.null_count
        self.nulls += nulls
        values = column.drop_null() if nulls else column
        if self.kind in ("integer", "number", "datetime") and len(values):
            if self.kind == "number":
                finite = pc.is_finite(values)
                values = values.filter(finite)
            if len(values):
                low, high = pc.min_max(values).values()
                self._extend(low.as_py(), high.as_py())
        if self.kind == "string" and len(values):
            lengths = pc.utf8_length(values)
            self.max_len = max(self.max_len, pc.max(lengths).as_py() or 0)
            if self.categories is not None:
                self.categories.update(pc.unique(values).to_pylist())
                if len(self.categories) > self.cap:
                    self.categories = None
            if self.id_like and (
                pc.max(lengths).as_py() > MAX_ID_TEXT
                or pc.any(pc.match_substring_regex(values, r"\s")).as_py()
            ):
                self.id_like = False
        if self.increasing:
            if nulls:
                self.increasing = False
            elif len(values):
                array = _orderable(values)
                after_last = self.last is None or bool(array[0] > self.last)
                if not after_last or not bool(np.all(array[1:] > array[:-1])):
                    self.increasing = False
                self.last = array[-1]
        if self.id_like and len(values):
            import pandas as pd

            hashed = pd.util.hash_array(np.asarray(values.to_numpy(zero_copy_only=False)))
            if len(np.unique(hashed)) != len(hashed):
                self.id_like = False
                self.hashes = []
            else:
                self.hashes.append(hashed)

    def _extend(self, low: Any, high: Any) -> None:
        if self.minimum is None or low < self.minimum:
            self.minimum = low
        if self.maximum is None or high > self.maximum:
            self.maximum = high

    def spec(self) -> ColumnSpec:
        import numpy as np

        values: dict[str, Any] = {"type": self.kind, "nullable": self.nulls > 0}
        nonnull = self.rows - self.nulls
        if self.kind in ("integer", "number") and self.minimum is not None:
            values["minimum"] = self.minimum
            values["maximum"] = self.maximum
        if self.kind == "datetime" and self.minimum is not None:
            values["minimum"] = _iso(self.minimum)
            values["maximum"] = _iso(self.maximum)
        if self.kind == "string":
            categories = self.categories
            if categories is not None and 0 < len(categories) <= nonnull / 2:
                values["enum"] = tuple(sorted(categories))
            elif nonnull:
                # headroom: twice the longest text seen, so ordinary variation passes and a
                # payload many times longer than any trusted value does not
                values["max_length"] = max(2 * self.max_len, 1)
        if self.id_like and nonnull >= MIN_ROWS_FOR_KEYS and self.hashes:
            every = np.concatenate(self.hashes)
            if len(np.unique(every)) == len(every):
                values["unique"] = True
        if self.increasing and nonnull >= MIN_ROWS_FOR_KEYS:
            values["monotonic"] = "increasing"
        return ColumnSpec(**values)


def _orderable(values: pyarrow.Array) -> numpy.ndarray:
    import numpy as np

    array = np.asarray(values.to_numpy(zero_copy_only=False))
    if array.dtype.kind == "M":
        return array.astype("datetime64[ns]").astype(np.int64)
    return array


def _iso(value: Any) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
        return str(value.isoformat())
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def arrow_kind(arrow_type: pyarrow.DataType) -> str | None:
    """The contract type of an Arrow column, or None for types a contract does not describe
    (lists, structs, binary)."""
    import pyarrow as pa

    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "number"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "datetime"
    if pa.types.is_dictionary(arrow_type):
        return arrow_kind(arrow_type.value_type)
    return None


def profile(dataset: Dataset, options: DataOptions) -> Contract:
    """A contract inferred from a trusted dataset in one pass over its batches.

    Types come from the columnar reader; nullable when a null was seen; minimum/maximum are the
    observed range (numbers, datetimes); a text column with at most
    `options.contract_max_categories` distinct values (and at most one per two rows) becomes a
    category list, other text gets maxLength twice its longest value; integer and short
    space-free text columns whose values are all distinct (at least MIN_ROWS_FOR_KEYS rows) are
    unique; integer/datetime columns strictly increasing from row to row are monotonic ids.
    Columns of types a contract cannot describe (lists, binary) are left out."""
    import pyarrow as pa

    profiles: dict[str, _ColumnProfile] = {}
    cap = options.contract_max_categories
    for field_ in dataset.schema:
        kind = arrow_kind(field_.type)
        if kind is not None:
            profiles[field_.name] = _ColumnProfile(field_.name, kind, cap)
    rows = 0
    for _start, batch in dataset.batches(list(profiles)):
        rows += batch.num_rows
        for name, column_profile in profiles.items():
            column = batch.column(name)
            if pa.types.is_dictionary(column.type):
                column = column.dictionary_decode()
            column_profile.add(column)
    from bastion.version import __version__

    return Contract(
        title=f"contract of {dataset.name}",
        source=ContractSource(dataset=dataset.name, rows=rows, tool=f"bastion {__version__}"),
        columns={name: p.spec() for name, p in profiles.items()},
    )


# --- checking a dataset against a contract -----------------------------------------------------


class _Failures:
    """Failing rows per (rule, column, keyword), gathered across batches."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str], list[numpy.ndarray]] = {}
        self.detail: dict[tuple[str, str, str], str] = {}

    def add(self, rule: str, column: str, keyword: str, rows: Any, detail: str) -> None:
        import numpy as np

        array = np.asarray(rows, dtype=np.int64)
        if array.size:
            self.rows.setdefault((rule, column, keyword), []).append(array)
            self.detail.setdefault((rule, column, keyword), detail)


class _Uniqueness:
    """Rows and 64-bit value hashes of one unique column, across batches; duplicates are found
    once at the end (memory: 16 bytes per row)."""

    def __init__(self) -> None:
        self.hashes: list[numpy.ndarray] = []
        self.rows: list[numpy.ndarray] = []

    def add(self, series: pandas.Series) -> None:
        import numpy as np
        import pandas as pd

        present = series.dropna()
        if len(present):
            self.hashes.append(pd.util.hash_pandas_object(present, index=False).to_numpy())
            self.rows.append(np.asarray(present.index, dtype=np.int64))

    def duplicates(self) -> numpy.ndarray:
        """Rows whose value an earlier row already had (the first occurrence is not listed)."""
        import numpy as np

        if not self.hashes:
            return np.empty(0, dtype=np.int64)
        hashes = np.concatenate(self.hashes)
        rows = np.concatenate(self.rows)
        order = np.lexsort((rows, hashes))
        hashes, rows = hashes[order], rows[order]
        repeat = np.zeros(len(hashes), dtype=bool)
        repeat[1:] = hashes[1:] == hashes[:-1]
        return np.sort(rows[repeat])


def _pandas_frame(batch: pyarrow.RecordBatch, start: int) -> pandas.DataFrame:
    import pandas as pd
    import pyarrow as pa

    mapping = {
        pa.int8(): pd.Int64Dtype(),
        pa.int16(): pd.Int64Dtype(),
        pa.int32(): pd.Int64Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.uint8(): pd.Int64Dtype(),
        pa.uint16(): pd.Int64Dtype(),
        pa.uint32(): pd.Int64Dtype(),
        pa.float32(): pd.Float64Dtype(),
        pa.float64(): pd.Float64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.string(): pd.StringDtype(),
        pa.large_string(): pd.StringDtype(),
    }
    frame = batch.to_pandas(types_mapper=mapping.get)
    frame.index = pd.RangeIndex(start, start + batch.num_rows)
    return frame


def _schema(columns: Iterable[PreparedColumn]) -> Any:
    """The pandera schema of a contract's columns (after cells are read as their type)."""
    import pandera.pandas as pa

    return pa.DataFrameSchema(
        {
            column.name: pa.Column(
                nullable=column.spec.nullable,
                checks=[item.constraint.pandera(item.param) for item in column.constraints],
                required=True,
            )
            for column in columns
        },
        strict=False,
    )


def _validate_frame(
    frame: pandas.DataFrame,
    columns: tuple[PreparedColumn, ...],
    schema: Any,
    failures: _Failures,
) -> pandas.DataFrame:
    """Read each column as its type, then let pandera judge nullability and constraints; returns
    the coerced frame."""
    import pandas as pd
    from pandera.errors import SchemaErrors

    coerced = {}
    bad_cells: dict[str, pandas.Series] = {}
    for column in columns:
        values, bad = cs.coerce_series(column.spec.type, frame[column.name])
        coerced[column.name] = values
        if bool(bad.any()):
            bad_cells[column.name] = bad
            failures.add(
                "CON003",
                column.name,
                "type",
                frame.index[bad.to_numpy()],
                f"type {column.spec.type}",
            )
    typed = pd.DataFrame(coerced, index=frame.index)
    try:
        schema.validate(typed, lazy=True)
    except SchemaErrors as exc:
        _collect(exc.failure_cases, columns, bad_cells, failures)
    return typed


def _collect(
    cases: pandas.DataFrame,
    columns: tuple[PreparedColumn, ...],
    bad_cells: Mapping[str, pandas.Series],
    failures: _Failures,
) -> None:
    by_name = {column.name: column for column in columns}
    for (name, check, number), group in cases.groupby(
        ["column", "check", "check_number"], dropna=False, sort=True
    ):
        column = by_name.get(str(name))
        if column is None:  # pragma: no cover - columns are present (checked before)
            raise RuntimeError(f"pandera reported an unknown column {name!r}")
        rows = group["index"].dropna().astype("int64").to_numpy()
        if check == "not_nullable":
            bad = bad_cells.get(column.name)
            if bad is not None:  # a cell of the wrong type was set to null; CON003 has it
                rows = rows[~bad.loc[rows].to_numpy()]
            failures.add("CON004", column.name, "nullable", rows, "not nullable")
            continue
        if number is None or (isinstance(number, float) and math.isnan(number)):
            raise RuntimeError(f"pandera check {check!r} failed on column {name!r}")
        item = column.constraints[int(number)]
        if rows.size == 0 and len(group):
            # the check failed as a whole (an exception inside it): fail closed
            raise RuntimeError(f"pandera check {check!r} could not run on column {name!r}")
        failures.add(
            item.constraint.rule,
            column.name,
            item.constraint.keyword,
            rows,
            f"must be {item.constraint.describe(item.param)}",
        )


def frame_failures(
    frame: pandas.DataFrame, contract: Contract | tuple[PreparedColumn, ...]
) -> dict[tuple[str, str, str], list[int]]:
    """The per-row constraint failures of an in-memory frame (type, nullability and value
    constraints of the columns it has; not uniqueness or order), keyed by (rule id, column,
    keyword), with the frame's index values of the failing rows: the batch executor on its own,
    the counterpart of validate_row."""
    columns = prepare(contract) if isinstance(contract, Contract) else contract
    checked = tuple(c for c in columns if c.name in frame.columns)
    failures = _Failures()
    _validate_frame(frame, checked, _schema(checked), failures)
    return {
        key: sorted(int(r) for part in parts for r in part) for key, parts in failures.rows.items()
    }


def _out_of_order(values: pandas.Series, last: Any) -> tuple[numpy.ndarray, Any]:
    """Rows whose value is not greater than the greatest value before it (nulls break order
    too); and the greatest value so far."""
    import numpy as np

    if values.dtype.kind == "M" or str(values.dtype).startswith("datetime64"):
        numbers = values.astype("int64", errors="ignore") if not values.isna().any() else None
        if numbers is None:
            numbers = values.map(lambda v: v.value if v is not None and v == v else None)
        array = np.asarray(numbers.to_numpy(dtype="float64", na_value=np.nan))
    else:
        array = np.asarray(values.to_numpy(dtype="float64", na_value=np.nan))
    running = np.fmax.accumulate(np.concatenate([[last if last is not None else -np.inf], array]))
    previous = running[:-1]
    bad = ~(array > previous)  # NaN compares false: a null breaks the order
    greatest = running[-1]
    return np.asarray(values.index[bad], dtype=np.int64), greatest


def check(
    dataset: Dataset, options: DataOptions, contract: Contract | None = None
) -> list[Finding]:
    """CON findings for `dataset` against `contract` (or the file named by options.contract);
    none when no contract is given."""
    if contract is None:
        if not options.contract:
            return []
        contract = load_contract(options.contract)
    columns = prepare(contract)
    failures = _Failures()
    location = dataset.name
    findings: list[Finding] = []
    present = set(dataset.schema.names)
    missing = [c for c in columns if c.name not in present]
    for column in missing:
        findings.append(
            CON001.finding(
                Location(path=location, pointer=f"column:{column.name}"),
                f"column {column.name!r} of the contract is missing",
                evidence=f"declared type {column.spec.type}",
            )
        )
    known = {c.name for c in columns}
    if contract.additional_columns == "refuse":
        for name in dataset.schema.names:
            if name not in known:
                findings.append(
                    CON002.finding(
                        Location(path=location, pointer=f"column:{name}"),
                        f"column {name!r} is not in the contract",
                        evidence="additionalColumns: refuse",
                    )
                )
    checked = tuple(c for c in columns if c.name in present)
    if not checked:
        return findings
    dataset = _declared_text_as_text(dataset, checked)
    schema = _schema(checked)
    unique = {c.name: _Uniqueness() for c in checked if c.spec.unique}
    ordered: dict[str, Any] = {c.name: None for c in checked if c.spec.monotonic}
    for start, batch in dataset.batches([c.name for c in checked]):
        frame = _pandas_frame(batch, start)
        typed = _validate_frame(frame, checked, schema, failures)
        for name, tracker in unique.items():
            tracker.add(typed[name])
        for name, last in ordered.items():
            rows, ordered[name] = _out_of_order(typed[name], last)
            failures.add("CON009", name, "monotonic", rows, "must increase from row to row")
    for name, tracker in unique.items():
        failures.add("CON008", name, "unique", tracker.duplicates(), "must be unique")
    findings.extend(_findings(failures, location, dataset, options))
    return findings


def _declared_text_as_text(dataset: Dataset, columns: tuple[PreparedColumn, ...]) -> Dataset:
    """A CSV file has no types: the reader infers them, and a column of digits (a postcode, an
    account number) comes back as integers, leading zeros gone. A column the contract declares
    text is read as the text the file holds where the source can (CSV); a typed format (Parquet,
    Arrow) keeps its types, and a number there where text is declared is a CON003."""
    import pyarrow as pa

    wanted = [
        c.name
        for c in columns
        if c.spec.type == "string"
        and not pa.types.is_string(dataset.schema.field(c.name).type)
        and not pa.types.is_large_string(dataset.schema.field(c.name).type)
    ]
    if not wanted or getattr(dataset.source, "with_text_columns", None) is None:
        return dataset
    return dataset.with_text_columns(wanted)


def _findings(
    failures: _Failures, location: str, dataset: Dataset, options: DataOptions
) -> list[Finding]:
    import numpy as np

    findings = []
    for key in sorted(failures.rows):
        rule_id, column, keyword = key
        rows = np.unique(np.concatenate(failures.rows[key]))
        rule = _RULES_BY_ID[rule_id]
        detail = failures.detail[key]
        count = len(rows)
        finding = rule.finding(
            Location(path=location, pointer=f"column:{column}"),
            f"column {column!r}: {count:,} row{'s' if count != 1 else ''} break "
            f"'{keyword}' ({detail})",
            evidence=f"{keyword}: {detail}; {count} rows; first row {int(rows[0])}",
        )
        row_list = tuple(int(r) for r in rows)
        update: dict[str, Any] = {"rows": row_list}
        if options.id_column:
            update["row_ids"] = row_ids(dataset, options.id_column, rows)
        findings.append(finding.model_copy(update=update))
    return findings
