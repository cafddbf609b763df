"""Personal data and secrets in a dataset, column by column and inside free text, and the
k-anonymity of the columns that together identify a person.

One pass over the dataset's batches. Per text column, a vectorised pre-filter (pyarrow.compute
regex, RE2) keeps only the cells that could hold anything a detector recognises; those go
through `detectors.scan` (shapes, then check digits, numbering plans, address rules). Integer
columns are examined as digit strings (a card number stored as int64 is still one). Names,
addresses and dates of birth are found by column semantics (names in eight languages, and the
shape of the values); quasi-identifiers (age, postcode, sex, birth date, …) are grouped for
k-anonymity. Findings list every affected row and show redacted samples only."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from bastion.datacheck import semantics, shape_filter
from bastion.findings import Confidence, Finding, Location, Severity, Stage
from bastion.personal import detectors
from bastion.rules import Rule

if TYPE_CHECKING:
    import pyarrow

    from bastion.datacheck.dataset import Dataset
    from bastion.datacheck.options import DataOptions

_PROFILE = "personal-data"
CONTACT = Rule(
    id="PII001",
    title="Contact data in a dataset",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.DATA,
    profile=_PROFILE,
    description="A column holds e-mail addresses or phone numbers (numbers are checked against "
    "the numbering plans of the phonenumbers library), as values or inside free text. Contact "
    "data identifies a person directly (personal data, GDPR Art. 4(1)); a model trained on it "
    "can memorise and repeat it.",
    remediation="Drop the column or replace the values with pseudonyms before training; if the "
    "data must stay, record the legal basis and restrict who can read the dataset.",
)
FINANCIAL = Rule(
    id="PII002",
    title="Payment card numbers or IBANs in a dataset",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.DATA,
    profile=_PROFILE,
    description="A column holds payment card numbers (Luhn check digit and a card scheme's "
    "issuer range and length) or IBANs (mod-97 and the country's registered length). Columns "
    "where no more values pass the check than random numbers would by chance are not reported.",
    remediation="Remove card numbers entirely (PCI DSS forbids storing them unprotected) and "
    "tokenise account numbers; train on derived features, never on the numbers.",
)
NATIONAL_ID = Rule(
    id="PII003",
    title="National identity numbers in a dataset",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.DATA,
    profile=_PROFILE,
    description="A column holds national identity numbers that pass their check-digit and "
    "structure rules: US SSN, UK National Insurance number, German Steuer-ID, French NIR, "
    "Spanish DNI/NIE, Italian codice fiscale, Dutch BSN, Polish PESEL, Swedish personnummer, "
    "Indian Aadhaar. Numbers whose shape random values fit often (a bare nine-digit BSN) count "
    "only next to a keyword naming them or in a column named for them. National identification "
    "numbers have their own conditions of processing (GDPR Art. 87).",
    remediation="Remove the identifiers or replace them with keyed pseudonyms (HMAC with a "
    "secret held outside the dataset); national ids are special-category-adjacent data in most "
    "jurisdictions.",
)
NETWORK = Rule(
    id="PII004",
    title="IP addresses in a dataset",
    severity=Severity.LOW,
    confidence=Confidence.MEDIUM,
    stage=Stage.DATA,
    profile=_PROFILE,
    description="A column holds IPv4 or IPv6 addresses (loopback, unspecified, multicast, "
    "link-local and reserved addresses are not counted). Under the GDPR an IP address is "
    "personal data when it can be linked to a person (CJEU C-582/14, Breyer).",
    remediation="Truncate addresses (IPv4 /24, IPv6 /48) or drop them unless the model needs them.",
)
IDENTITY = Rule(
    id="PII005",
    title="Names, addresses or dates of birth in a dataset",
    severity=Severity.MEDIUM,
    confidence=Confidence.MEDIUM,
    stage=Stage.DATA,
    profile=_PROFILE,
    description="A column is named for a person's name or address (in English, German, "
    "French, Spanish, Italian, Dutch, Polish or Swedish) and most of its values have that "
    "shape; or a column of dates of birth sits next to direct identifiers; or free text states "
    "a date of birth. Names in free text without such a column need a language model and are "
    "not looked for.",
    remediation="Drop direct identifiers before training; generalise dates of birth to a year "
    "or an age band.",
)
SECRET = Rule(
    id="PII006",
    title="Secrets in a dataset",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.DATA,
    profile=_PROFILE,
    description="A cell holds a credential (cloud key, access token, private key, password "
    "assignment) found by detect-secrets — the same engine as `bastion code`. A model trained "
    "on it can repeat it.",
    remediation="Revoke the credential, then remove it from the dataset and every copy of it.",
)
K_ANONYMITY = Rule(
    id="PII007",
    title="Rows singled out by their quasi-identifiers",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.DATA,
    profile=_PROFILE,
    description="Grouped by the columns that together identify a person (age, date or year of "
    "birth, postcode, sex, nationality, ethnicity, marital status), some rows fall in groups "
    "smaller than the k-anonymity threshold (pii_min_k): anyone who knows those attributes of a "
    "person can find their row (singling out, GDPR Recital 26: such data is not anonymous). The "
    "smallest k and the rows that are unique are reported.",
    remediation="Generalise (age bands, postcode prefixes, year of birth) or suppress the rows "
    "listed until every group has at least k rows.",
)
NOT_EXAMINED = Rule(
    id="PII008",
    title="Values not examined for personal data",
    severity=Severity.LOW,
    confidence=Confidence.HIGH,
    stage=Stage.DATA,
    profile=_PROFILE,
    description="Some cells are longer than the bound on characters examined per cell "
    "(pii_max_cell_chars) and were examined only up to it, or a column's type (binary, maps, "
    "nested lists) is not examined. What lies past the bound was not checked.",
    remediation="Review the listed cells; raise pii_max_cell_chars in the policy's [data] table "
    "if such long values are expected.",
)
RULES: tuple[Rule, ...] = (
    CONTACT,
    FINANCIAL,
    NATIONAL_ID,
    NETWORK,
    IDENTITY,
    SECRET,
    K_ANONYMITY,
    NOT_EXAMINED,
)
_BY_CATEGORY = {
    "contact": CONTACT,
    "financial": FINANCIAL,
    "national_id": NATIONAL_ID,
    "network": NETWORK,
    "identity": IDENTITY,
    "secret": SECRET,
}
SAMPLES = 3
# cells no detector can match skip detectors.scan (False only to compare both paths in tests)
NUMBER_FILTER = True
# chance that a value of a kind's shape passes its check digit (or structure rule) at random; a
# column where no more than twice that share passes holds random numbers, not identifiers
_CHANCE = {
    "credit_card": 0.1,
    "iban": 1 / 97,
    "de_tax_id": 0.1,
    "fr_nir": 1 / 97,
    "es_dni": 1 / 23,
    "es_nie": 1 / 23,
    "it_fiscal_code": 1 / 26,
    "nl_bsn": 1 / 11,
    "pl_pesel": 0.1,
    "se_personnummer": 0.1,
    "in_aadhaar": 0.1,
}
_CHANCE_MIN_SHAPES = 20
PHONE_SAMPLE = 2_000  # phone-shaped values validated before a column can count by shape
PHONE_COLUMN_SHARE = 0.8  # share of them that must be valid phone numbers
_NAME_SHARE = 0.5  # share of a name/address column's values that must have the shape
_BARE_NAME_SHARE = 0.8  # the same for a column called only "name"


class _Tally:
    """What one kind of personal data looks like in one column."""

    __slots__ = ("details", "matches", "rows", "samples", "shapes", "valid", "whole")

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.matches = 0
        self.whole = 0  # cells that are exactly one value of this kind
        self.samples: list[str] = []
        self.shapes = 0
        self.valid = 0
        self.details: Counter[str] = Counter()


class _Column:
    """The scan of one column across batches."""

    def __init__(self, name: str, semantic: str | None, cap: int) -> None:
        self.name = name
        self.semantic = semantic
        self.hint = semantic if semantic in detectors.KINDS else None
        self.cap = cap
        self.tallies: dict[str, _Tally] = {}
        self.nonnull = 0
        self.long_rows: list[int] = []
        self.shaped_rows: list[int] = []  # rows whose value has the semantic's shape
        self.shaped_samples: list[str] = []
        self.nonnull_rows: list[int] = []  # for dates of birth
        # phone-column sampling: None while undecided, then True/False
        self.phone_column: bool | None = None
        self.phone_sampled = 0
        self.phone_valid = 0
        self.phone_by_shape = 0

    def tally(self, kind: str) -> _Tally:
        found = self.tallies.get(kind)
        if found is None:
            found = self.tallies[kind] = _Tally()
        return found

    def feed(self, start: int, array: pyarrow.Array) -> None:
        import pyarrow as pa

        kind = array.type
        if pa.types.is_dictionary(kind):
            array = array.cast(kind.value_type)
            kind = array.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            self._feed_text(start, array)
        elif pa.types.is_integer(kind):
            self._feed_integers(start, array)
        elif pa.types.is_temporal(kind) and self.semantic == "date_of_birth":
            self._feed_present(start, array)

    def _feed_present(self, start: int, array: pyarrow.Array) -> None:
        import numpy as np

        valid = array.is_valid().to_numpy(zero_copy_only=False)
        self.nonnull += int(valid.sum())
        self.nonnull_rows.extend((np.flatnonzero(valid) + start).tolist())

    def _feed_text(self, start: int, array: pyarrow.Array) -> None:
        import numpy as np
        import pyarrow.compute as pc

        if self.semantic == "date_of_birth":
            self._feed_present(start, array)
        else:
            self.nonnull += len(array) - array.null_count
        too_long = pc.fill_null(pc.greater(pc.utf8_length(array), self.cap), False)
        if pc.any(too_long).as_py():
            self.long_rows.extend((np.flatnonzero(_np(too_long)) + start).tolist())
            array = pc.utf8_slice_codeunits(array, 0, self.cap)
        if self.semantic in ("person_name", "name?", "address"):
            pattern = (
                semantics.ADDRESS_PATTERN
                if self.semantic == "address"
                else semantics.PERSON_NAME_PATTERN
            )
            shaped = _np(pc.fill_null(pc.match_substring_regex(array, pattern), False))
            where = np.flatnonzero(shaped)
            self.shaped_rows.extend((where + start).tolist())
            if len(self.shaped_samples) < SAMPLES and len(where):
                kind = "address" if self.semantic == "address" else "person_name"
                for value in array.take(where[:SAMPLES]).to_pylist():
                    if len(self.shaped_samples) < SAMPLES:
                        self.shaped_samples.append(detectors.mask(kind, value))
        candidate = _np(_matches(array, detectors.PREFILTER_PATTERN))
        # RE2 stands in for detect()'s Python patterns only on text it reads the same way:
        # any other text goes to detect(), which works out its groups itself (detectors)
        python_only = _np(_matches(array, detectors.NOT_RE2_SAFE_PATTERN))
        candidate |= python_only
        if not candidate.any():
            return
        # a value that is exactly one e-mail address needs no Python: count it vectorised
        email = _np(_matches(array, detectors.EMAIL_VALUE_PATTERN)) & candidate
        if email.any():
            where = np.flatnonzero(email)
            tally = self.tally("email")
            tally.matches += len(where)
            tally.whole += len(where)
            tally.rows.extend((where + start).tolist())
            tally.shapes += len(where)
            tally.valid += len(where)
            self._sample(tally, "email", array, where)
            candidate &= ~email
        # in a column whose first PHONE_SAMPLE phone-shaped values phonenumbers found valid, the
        # rest of the phone-shaped values are counted by shape (phonenumbers costs ~40 µs each)
        if self.phone_column:
            phone = _np(_matches(array, detectors.PHONE_VALUE_PATTERN)) & candidate
            if phone.any():
                where = np.flatnonzero(phone)
                tally = self.tally("phone")
                tally.matches += len(where)
                tally.whole += len(where)
                tally.rows.extend((where + start).tolist())
                self.phone_by_shape += len(where)
                candidate &= ~phone
        where = np.flatnonzero(candidate)
        if not len(where):
            return
        subset = array.take(where)
        unsure = python_only[where]
        masks = {
            name: _np(_matches(subset, pattern))
            for name, pattern in detectors.GROUP_PATTERNS.items()
        }
        digits = masks.get("digits")
        if NUMBER_FILTER and digits is not None and digits.any():
            # seven digits close together let an id such as "C-0012345" through on every row;
            # only a cell one of the number detectors can match is worth their Python
            # (shape_filter: a superset of each detector's pattern, so none is lost)
            at = np.flatnonzero(digits)
            numbers = _np(_matches(subset.take(at), shape_filter.numbers_pattern()))
            digits[at[~numbers]] = False
        shaped = None
        if self.phone_column is None:
            shaped = _np(_matches(subset, detectors.PHONE_VALUE_PATTERN))
        if NUMBER_FILTER:
            # a cell no detector group can match is found empty by detectors.scan: skip the call
            keep = np.logical_or.reduce([*masks.values(), unsure])
            if shaped is not None:
                keep |= shaped  # phone-shaped cells still feed the phone-column sample
            if not keep.all():
                kept = np.flatnonzero(keep)
                where = where[kept]
                subset = subset.take(kept)
                masks = {name: mask[kept] for name, mask in masks.items()}
                shaped = shaped[kept] if shaped is not None else None
                unsure = unsure[kept]
        if not len(where):
            return
        groups = list(masks.items())
        per_value: list[list[str] | None] = [
            None if unsure[i] else [name for name, mask in groups if mask[i]]
            for i in range(len(where))
        ]
        self._examine(start, where, subset.to_pylist(), per_value, shaped)

    def _sample(self, tally: _Tally, kind: str, array: pyarrow.Array, where: Any) -> None:
        if len(tally.samples) < SAMPLES:
            for value in array.take(where[: SAMPLES * 4]).to_pylist():
                masked = detectors.mask(kind, value.strip())
                if len(tally.samples) < SAMPLES and masked not in tally.samples:
                    tally.samples.append(masked)

    def _feed_integers(self, start: int, array: pyarrow.Array) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        self.nonnull += len(array) - array.null_count
        # seven digits and more: the shortest phone numbers; ids and cards are longer
        big = pc.fill_null(
            pc.greater_equal(pc.abs_checked(array.cast(pa.int64())), 1_000_000), False
        )
        where = np.flatnonzero(_np(big))
        if len(where):
            values = [str(v) for v in array.take(where).to_pylist()]
            self._examine(start, where, values)

    def _examine(
        self,
        start: int,
        where: Any,
        values: list[str],
        groups: list[list[str] | None] | None = None,
        phone_shaped: Any = None,
    ) -> None:
        cache: dict[str, tuple[list[detectors.Match], list[tuple[str, bool]]]] = {}
        for position, (index, value) in enumerate(zip(where.tolist(), values, strict=True)):
            if phone_shaped is not None and self.phone_column is None and phone_shaped[position]:
                self._phone_sampled(value)
            result = cache.get(value)
            if result is None:
                result = detectors.scan(
                    value,
                    hint=self.hint,
                    max_chars=self.cap,
                    groups=None if groups is None else groups[position],
                )
                if len(cache) < 100_000:
                    cache[value] = result
            matches, shapes = result
            for kind, valid in shapes:
                tally = self.tally(kind)
                tally.shapes += 1
                tally.valid += valid
            seen: set[str] = set()
            stripped = value.strip()
            for match in matches:
                tally = self.tally(match.kind)
                tally.matches += 1
                if match.detail:
                    tally.details[match.detail] += 1
                if match.kind not in seen:
                    seen.add(match.kind)
                    tally.rows.append(start + index)
                    if match.end - match.start == len(stripped):
                        tally.whole += 1
                    if len(tally.samples) < SAMPLES and match.redacted not in tally.samples:
                        tally.samples.append(match.redacted)

    def _phone_sampled(self, value: str) -> None:
        matches = detectors.detect(value, hint=self.hint, max_chars=self.cap)
        self.phone_sampled += 1
        stripped = value.strip()
        self.phone_valid += (
            len(matches) == 1
            and matches[0].kind == "phone"
            and matches[0].end - matches[0].start == len(stripped)
        )
        if self.phone_sampled >= PHONE_SAMPLE:
            self.phone_column = self.phone_valid >= PHONE_COLUMN_SHARE * self.phone_sampled


def _matches(array: pyarrow.Array, pattern: str) -> pyarrow.Array:
    import pyarrow.compute as pc

    return pc.fill_null(pc.match_substring_regex(array, pattern), False)


def _np(array: pyarrow.Array) -> Any:
    return array.to_numpy(zero_copy_only=False)


def check(dataset: Dataset, options: DataOptions) -> list[Finding]:
    """Every PII finding of one dataset (a single pass over its batches)."""
    import pyarrow as pa

    cap = options.pii_max_cell_chars
    columns: dict[str, _Column] = {}
    unexamined: list[str] = []
    flat_names = list(_flatten_schema(dataset.schema))
    for name, field_type in flat_names:
        if _examinable(field_type):
            columns[name] = _Column(name, semantics.column_semantic(name), cap)
        else:
            unexamined.append(f"{name} ({field_type})")
    quasi = [n for n, c in columns.items() if c.semantic in semantics.QUASI_IDENTIFIERS]
    quasi_parts: dict[str, list[pa.Array]] = {n: [] for n in quasi}
    id_parts: list[pa.Array] = []
    total = 0
    for start, batch in dataset.batches():
        total = start + batch.num_rows
        flat = dict(_flatten_batch(batch))
        for name, column in columns.items():
            array = flat.get(name)
            if array is not None:
                column.feed(start, array)
        for name in quasi:
            quasi_parts[name].append(flat[name])
        if options.id_column is not None and options.id_column in flat:
            id_parts.append(flat[options.id_column])
    findings = list(_findings(dataset, columns, total))
    flagged = {f.location.pointer for f in findings}
    id_values = None
    if id_parts and f"column:{options.id_column}" not in flagged:
        id_values = pa.chunked_array(id_parts).cast(pa.string())
    if len(quasi) >= 2 and total:
        findings += _k_anonymity(dataset, quasi_parts, options.pii_min_k)
    findings += _not_examined(dataset, columns, unexamined, cap)
    return [_with_rows(f, id_values) for f in findings]


def _examinable(field_type: pyarrow.DataType) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(field_type):
        field_type = field_type.value_type
    return bool(
        pa.types.is_string(field_type)
        or pa.types.is_large_string(field_type)
        or pa.types.is_integer(field_type)
        or pa.types.is_temporal(field_type)
        or pa.types.is_floating(field_type)
        or pa.types.is_boolean(field_type)
        or pa.types.is_decimal(field_type)
        or pa.types.is_null(field_type)
    )


def _flatten_schema(schema: pyarrow.Schema) -> Iterator[tuple[str, pyarrow.DataType]]:
    import pyarrow as pa

    def walk(prefix: str, field_type: pa.DataType) -> Iterator[tuple[str, pa.DataType]]:
        if pa.types.is_struct(field_type):
            for child in field_type:
                yield from walk(f"{prefix}.{child.name}", child.type)
        else:
            yield prefix, field_type

    for item in schema:
        yield from walk(item.name, item.type)


def _flatten_batch(batch: pyarrow.RecordBatch) -> Iterator[tuple[str, pyarrow.Array]]:
    import pyarrow as pa

    def walk(prefix: str, array: pa.Array) -> Iterator[tuple[str, pa.Array]]:
        if pa.types.is_struct(array.type):
            for index, child in enumerate(array.type):
                yield from walk(f"{prefix}.{child.name}", array.field(index))
        else:
            yield prefix, array

    for name, array in zip(batch.schema.names, batch.columns, strict=True):
        yield from walk(name, array)


def _findings(dataset: Dataset, columns: dict[str, _Column], total: int) -> Iterator[Finding]:
    direct = False
    for column in columns.values():
        for kind, tally in sorted(column.tallies.items()):
            if not tally.rows:
                continue
            chance = _CHANCE.get(kind)
            if (
                chance is not None
                and tally.shapes >= _CHANCE_MIN_SHAPES
                and tally.valid <= 2 * chance * tally.shapes
            ):
                continue  # random numbers of that shape, some passing the check by chance
            direct = direct or kind != "ip_address"
            yield _kind_finding(dataset, column, kind, tally, total)
        shaped = _shaped(dataset, column)
        if shaped:
            direct = True
            yield shaped
    for column in columns.values():
        if column.semantic == "date_of_birth" and column.nonnull_rows and direct:
            yield IDENTITY.finding(
                _location(dataset, column.name),
                f"column {column.name!r} holds dates of birth ({len(column.nonnull_rows):,} of "
                f"{total:,} rows, {_share(len(column.nonnull_rows), total)}) next to direct "
                f"identifiers in the same dataset{_cap_note(column)}",
                evidence="date_of_birth by column name",
            ).model_copy(update={"rows": tuple(column.nonnull_rows)})


def _kind_finding(
    dataset: Dataset, column: _Column, kind: str, tally: _Tally, total: int
) -> Finding:
    category, label = detectors.KINDS[kind]
    rule = _BY_CATEGORY[category]
    rows = len(tally.rows)
    where = (
        "as the column's values"
        if tally.whole == rows
        else "inside free text"
        if tally.whole == 0
        else f"({tally.whole:,} whole values, the rest inside free text)"
    )
    detail = ""
    if tally.details:
        detail = " (" + ", ".join(f"{name}: {n}" for name, n in sorted(tally.details.items())) + ")"
    message = (
        f"column {column.name!r}: {tally.matches:,} {label} match(es){detail} in {rows:,} of "
        f"{total:,} rows ({_share(rows, total)}), {where}; redacted samples: "
        f"{', '.join(tally.samples)}{_cap_note(column)}"
    )
    if kind == "phone" and column.phone_by_shape:
        message += (
            f" (the first {column.phone_sampled:,} phone-shaped values were checked with "
            f"phonenumbers and {_share(column.phone_valid, column.phone_sampled)} were valid; "
            f"{column.phone_by_shape:,} later ones were counted by their shape)"
        )
    confidence = None
    if kind in ("phone", "ip_address", "es_dni", "es_nie") and tally.whole == 0:
        confidence = Confidence.MEDIUM
    finding = rule.finding(
        _location(dataset, column.name),
        message,
        evidence=f"{kind}; samples: {', '.join(tally.samples)}",
        confidence=confidence,
    )
    return finding.model_copy(update={"rows": tuple(tally.rows)})


def _shaped(dataset: Dataset, column: _Column) -> Finding | None:
    semantic = column.semantic
    if semantic not in ("person_name", "name?", "address") or not column.nonnull:
        return None
    needed = _BARE_NAME_SHARE if semantic == "name?" else _NAME_SHARE
    count = len(column.shaped_rows)
    if count < needed * column.nonnull:
        return None
    label = "addresses" if semantic == "address" else "person names"
    return IDENTITY.finding(
        _location(dataset, column.name),
        f"column {column.name!r} holds {label}: {count:,} of {column.nonnull:,} non-empty "
        f"values ({_share(count, column.nonnull)}) have the shape, and the column's name says "
        f"so; redacted samples: {', '.join(column.shaped_samples)}{_cap_note(column)}",
        evidence=f"{'address' if semantic == 'address' else 'person_name'} by column name and "
        f"value shape; samples: {', '.join(column.shaped_samples)}",
        confidence=Confidence.MEDIUM if semantic == "name?" else None,
    ).model_copy(update={"rows": tuple(column.shaped_rows)})


def _k_anonymity(
    dataset: Dataset, parts: dict[str, list[pyarrow.Array]], threshold: int
) -> list[Finding]:
    import pyarrow as pa

    from bastion.datacheck.kanonymity import k_anonymity

    result = k_anonymity({n: pa.chunked_array(p) for n, p in parts.items()}, threshold)
    if result.min_k >= threshold:
        return []
    names = ", ".join(result.columns)
    finding = K_ANONYMITY.finding(
        Location(path=dataset.name, pointer="columns:" + ",".join(result.columns)),
        f"quasi-identifiers ({names}): smallest group k = {result.min_k}; "
        f"{result.unique_rows:,} of {result.rows:,} rows "
        f"({_share(result.unique_rows, result.rows)}) "
        f"are unique on them, and {len(result.below):,} rows are in groups smaller than "
        f"k = {threshold} ({result.classes:,} distinct combinations)",
        evidence=f"quasi-identifiers: {names}; threshold k = {threshold}",
    )
    return [finding.model_copy(update={"rows": result.below})]


def _not_examined(
    dataset: Dataset, columns: dict[str, _Column], unexamined: list[str], cap: int
) -> list[Finding]:
    found = []
    for column in columns.values():
        if column.long_rows:
            finding = NOT_EXAMINED.finding(
                _location(dataset, column.name),
                f"column {column.name!r}: {len(column.long_rows):,} cell(s) longer than "
                f"{cap:,} characters were examined only up to {cap:,}",
                evidence=f"cells past {cap} characters",
            )
            found.append(finding.model_copy(update={"rows": tuple(column.long_rows)}))
    if unexamined:
        found.append(
            NOT_EXAMINED.finding(
                Location(path=dataset.name),
                f"{len(unexamined)} column(s) of a type not examined for personal data: "
                + ", ".join(unexamined[:20]),
                evidence="not examined: " + ", ".join(sorted(unexamined)),
            )
        )
    return found


def _with_rows(finding: Finding, id_values: pyarrow.ChunkedArray | None) -> Finding:
    if id_values is None or not finding.rows:
        return finding
    import pyarrow as pa

    ids = id_values.take(pa.array(finding.rows, type=pa.int64())).to_pylist()
    return finding.model_copy(update={"row_ids": tuple("" if v is None else v for v in ids)})


def _location(dataset: Dataset, column: str) -> Location:
    return Location(path=dataset.name, pointer=f"column:{column}")


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "0%"


def _cap_note(column: _Column) -> str:
    if not column.long_rows:
        return ""
    return (
        f" ({len(column.long_rows):,} cell(s) longer than {column.cap:,} characters were "
        f"examined up to {column.cap:,})"
    )
