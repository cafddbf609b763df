"""Data contracts: inference from a trusted version, validation of new data (pandera, batch by
batch), the single-row validator and its agreement with the batch path, hostile contract files."""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from bastion.datacheck import contract as C
from bastion.datacheck.dataset import Dataset
from bastion.datacheck.options import DataOptions

ROWS = 300
OPTIONS = DataOptions(batch_rows=64)  # several batches: cross-batch state is exercised


def trusted_rows(n: int = ROWS, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    start = dt.datetime(2024, 1, 1)
    return [
        {
            "loan_id": 1000 + 3 * i,
            "age": int(rng.integers(18, 90)),
            "income": None if i % 17 == 0 else round(float(rng.lognormal(10, 0.5)), 2),
            "grade": str(rng.choice(["A", "B", "C", "D"])),
            "purpose": f"purchase of item {int(rng.integers(0, 10**6))}",
            "applied": start + dt.timedelta(hours=i),
            "approved": bool(rng.random() < 0.6),
        }
        for i in range(n)
    ]


SCHEMA = pa.schema(
    [
        ("loan_id", pa.int64()),
        ("age", pa.int64()),
        ("income", pa.float64()),
        ("grade", pa.string()),
        ("purpose", pa.string()),
        ("applied", pa.timestamp("us")),
        ("approved", pa.bool_()),
    ]
)


def dataset(
    rows: list[dict[str, Any]], schema: pa.Schema = SCHEMA, name: str = "new.csv"
) -> Dataset:
    return Dataset.from_table(pa.Table.from_pylist(rows, schema=schema), name, options=OPTIONS)


@pytest.fixture(scope="module")
def contract() -> C.Contract:
    return C.profile(dataset(trusted_rows(), name="trusted.csv"), OPTIONS)


def by_rule(findings: list[Any]) -> dict[tuple[str, str | None], tuple[int, ...]]:
    """Failing rows per (rule, column), merged over the keywords of a rule (minimum and
    maximum are two findings of CON005)."""
    merged: dict[tuple[str, str | None], set[int]] = {}
    for f in findings:
        merged.setdefault((f.rule_id, f.location.pointer), set()).update(f.rows)
    return {key: tuple(sorted(rows)) for key, rows in merged.items()}


def test_profile_infers_the_columns(contract: C.Contract) -> None:
    cols = contract.columns
    assert cols["loan_id"].type == "integer"
    assert cols["loan_id"].unique and cols["loan_id"].monotonic == "increasing"
    assert (cols["loan_id"].minimum, cols["loan_id"].maximum) == (1000, 1000 + 3 * (ROWS - 1))
    assert cols["age"].type == "integer" and not cols["age"].unique
    assert 18 <= cols["age"].minimum <= cols["age"].maximum <= 89  # type: ignore[operator]
    assert cols["income"].type == "number" and cols["income"].nullable
    assert not cols["age"].nullable
    assert cols["grade"].enum == ("A", "B", "C", "D")
    assert cols["purpose"].enum is None and cols["purpose"].max_length is not None
    assert not cols["purpose"].unique  # free text with spaces is not an identifier
    assert cols["applied"].type == "datetime" and cols["applied"].monotonic == "increasing"
    assert cols["applied"].minimum == "2024-01-01T00:00:00"
    assert cols["approved"].type == "boolean"


def test_category_cap_makes_free_text(contract: C.Contract) -> None:
    capped = C.profile(
        dataset(trusted_rows(), name="trusted.csv"),
        OPTIONS.model_copy(update={"contract_max_categories": 3}),
    )
    assert capped.columns["grade"].enum is None
    assert capped.columns["grade"].max_length == 2


def test_round_trip_file_and_clean_data(contract: C.Contract, tmp_path: Path) -> None:
    path = tmp_path / "contract.json"
    contract.save(path)
    document = json.loads(path.read_text("utf-8"))
    assert document["contract"] == "bastion-data-contract" and document["version"] == 1
    assert document["columns"]["purpose"]["maxLength"] > 0  # JSON Schema's keyword
    loaded = C.load_contract(path)
    assert loaded == contract
    options = OPTIONS.model_copy(update={"contract": str(path)})
    assert C.check(dataset(trusted_rows(), name="trusted.csv"), options) == []
    # the rows again in a different batch size: still nothing
    assert C.check(dataset(trusted_rows()), DataOptions(batch_rows=7), contract) == []


def test_each_violation_is_caught_with_its_rows(contract: C.Contract) -> None:
    rows = trusted_rows()
    rows[5]["age"] = 130  # above maximum
    rows[6]["age"] = 3  # below minimum
    rows[8]["grade"] = "Z"  # unknown category
    rows[9]["purpose"] = "x" * 5000  # overlong text
    rows[10]["income"] = None  # nullable: fine
    rows[11]["age"] = None  # not nullable
    rows[70]["loan_id"] = rows[20]["loan_id"]  # duplicate id in another batch (and out of order)
    rows[130]["applied"] = rows[0]["applied"]  # time goes back at a later batch
    found = by_rule(C.check(dataset(rows), OPTIONS, contract))
    assert found == {
        ("CON005", "column:age"): (5, 6),
        ("CON006", "column:grade"): (8,),
        ("CON007", "column:purpose"): (9,),
        ("CON004", "column:age"): (11,),
        ("CON008", "column:loan_id"): (70,),
        ("CON009", "column:loan_id"): (70,),
        ("CON009", "column:applied"): (130,),
    }


def test_order_break_at_a_batch_boundary(contract: C.Contract) -> None:
    rows = trusted_rows()
    rows[64]["loan_id"] = rows[63]["loan_id"] - 1  # first row of the second batch
    found = by_rule(C.check(dataset(rows), OPTIONS, contract))
    assert found[("CON009", "column:loan_id")] == (64,)


def test_type_violations_fail_alone(contract: C.Contract) -> None:
    rows = trusted_rows()
    text = [dict(r, age=str(r["age"])) for r in rows]  # age arrives as text (a CSV change)
    text[3]["age"] = "abc"
    text[4]["age"] = "12.5"
    text[5]["age"] = " 40 "  # a numeral with spaces reads as 40
    schema = SCHEMA.set(1, pa.field("age", pa.string()))
    found = by_rule(C.check(dataset(text, schema), OPTIONS, contract))
    # the unreadable cells are type failures, not also missing values or range failures
    assert found == {("CON003", "column:age"): (3, 4)}
    floats = [dict(r, age=float(r["age"])) for r in rows]
    floats[7]["age"] = 30.5
    schema = SCHEMA.set(1, pa.field("age", pa.float64()))
    assert by_rule(C.check(dataset(floats, schema), OPTIONS, contract)) == {
        ("CON003", "column:age"): (7,)
    }


def test_missing_and_unknown_columns(contract: C.Contract) -> None:
    table = pa.Table.from_pylist(trusted_rows(), schema=SCHEMA).drop_columns(["grade"])
    table = table.append_column("ssn", pa.array(["000-00-0000"] * ROWS))
    findings = C.check(Dataset.from_table(table, "new.csv", options=OPTIONS), OPTIONS, contract)
    assert {(f.rule_id, f.location.pointer) for f in findings} == {
        ("CON001", "column:grade"),
        ("CON002", "column:ssn"),
    }
    allowing = contract.model_copy(update={"additional_columns": "allow"})
    findings = C.check(Dataset.from_table(table, "new.csv", options=OPTIONS), OPTIONS, allowing)
    assert [f.rule_id for f in findings] == ["CON001"]


def test_row_ids_and_no_values_in_findings(contract: C.Contract) -> None:
    rows = trusted_rows()
    rows[12]["grade"] = "secret-value-XYZ"
    options = OPTIONS.model_copy(update={"id_column": "loan_id"})
    (finding,) = C.check(dataset(rows), options, contract)
    assert finding.rows == (12,) and finding.row_ids == (str(rows[12]["loan_id"]),)
    assert "secret-value-XYZ" not in finding.model_dump_json()


def test_pattern_constraint(contract: C.Contract) -> None:
    spec = contract.columns["purpose"].model_copy(update={"pattern": r"^purchase of item \d+$"})
    patterned = contract.model_copy(update={"columns": {**contract.columns, "purpose": spec}})
    rows = trusted_rows()
    rows[2]["purpose"] = "purchase of item 12; DROP TABLE loans"
    assert by_rule(C.check(dataset(rows), OPTIONS, patterned)) == {
        ("CON007", "column:purpose"): (2,)
    }


def test_no_contract_no_findings() -> None:
    assert C.check(dataset(trusted_rows()), OPTIONS) == []


# --- the two executors agree ------------------------------------------------------------------

AGREEMENT_CONTRACT = {
    "contract": "bastion-data-contract",
    "version": 1,
    "columns": {
        "n": {"type": "integer", "minimum": -5, "maximum": 1000},
        "x": {"type": "number", "nullable": True, "minimum": 0.5, "maximum": 99.5},
        "s": {"type": "string", "minLength": 2, "maxLength": 6, "pattern": "^[a-z]+$"},
        "c": {"type": "string", "nullable": True, "enum": ["red", "green", "blue"]},
        "b": {"type": "boolean"},
        "t": {
            "type": "datetime",
            "nullable": True,
            "minimum": "2020-01-01T00:00:00",
            "maximum": "2030-01-01T00:00:00+00:00",
        },
    },
}

POOLS: dict[str, list[Any]] = {
    "n": [
        0,
        -5,
        -6,
        1000,
        1001,
        7.0,
        7.5,
        "42",
        " 8 ",
        "1e3",
        "abc",
        "",
        True,
        None,
        float("nan"),
        2**70,
        -(2**64),
        "9" * 80,
        np.int64(5),
    ],
    "x": [
        0.5,
        0.49,
        99.5,
        100,
        3,
        "2.5",
        "nan",
        "inf",
        "x",
        True,
        None,
        float("nan"),
        float("inf"),
        -1.0,
        np.float64(7.0),
    ],
    "s": ["ab", "a", "abcdef", "abcdefg", "AB", "a b", "", None, 5, "héllo", "zz"],
    "c": ["red", "green", "blue", "Red", "", None, 3, "purple"],
    "b": [True, False, None, 1, 0, "true", np.bool_(True)],
    "t": [
        dt.datetime(2021, 5, 1),
        dt.datetime(2019, 12, 31, 23, 59),
        dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc),
        dt.datetime(2030, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        dt.date(2025, 1, 1),
        "2022-02-02T10:00:00",
        "2022-02-02T10:00:00+05:00",
        "2031-01-01",
        "not a date",
        "3000-01-01",
        None,
        17,
    ],
}


def generated_rows(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{name: rng.choice(pool) for name, pool in POOLS.items()} for _ in range(count)]


def test_batch_and_single_row_executors_agree() -> None:
    import pandas as pd

    contract = C.parse_contract(json.dumps(AGREEMENT_CONTRACT))
    prepared = C.prepare(contract)
    rows = generated_rows(3000, seed=7)
    frame = pd.DataFrame({name: pd.Series([r[name] for r in rows], dtype=object) for name in POOLS})
    batch = C.frame_failures(frame, contract)
    by_row: dict[int, set[tuple[str, str, str]]] = {}
    for key, failing in batch.items():
        for row in failing:
            by_row.setdefault(row, set()).add(key)
    disagreements = []
    for index, row in enumerate(rows):
        single = {(v.rule_id, v.column, v.constraint) for v in C.validate_row(prepared, row)}
        if single != by_row.get(index, set()):
            disagreements.append((index, row, single, by_row.get(index)))
    assert not disagreements, disagreements[:5]
    # the generated set exercises every rule the executors share, and passing rows
    rules = {key[0] for key in batch}
    assert rules == {"CON003", "CON004", "CON005", "CON006", "CON007"}
    assert len(by_row) < len(rows)


def test_single_row_presence_and_unknown_keys() -> None:
    contract = C.parse_contract(json.dumps(AGREEMENT_CONTRACT))
    row = {"n": 1, "x": 1.0, "s": "ab", "c": "red", "b": True, "t": None}
    assert C.validate_row(contract, row) == []
    missing = {k: v for k, v in row.items() if k != "s"}
    assert [(v.rule_id, v.column) for v in C.validate_row(contract, missing)] == [("CON001", "s")]
    extra = dict(row, admin=True)
    assert [(v.rule_id, v.column) for v in C.validate_row(contract, extra)] == [("CON002", "admin")]


# --- hostile contract files -------------------------------------------------------------------


HEAD = '{"contract": "bastion-data-contract", "version": 1, "columns": {"n": {"type": "integer", '


def valid_document() -> dict[str, Any]:
    return json.loads(json.dumps(AGREEMENT_CONTRACT))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(version=2), "'const'"),
        (lambda d: d.update(contract="something-else"), "contract"),
        (lambda d: d["columns"]["n"].update(type="pickle"), "columns/n/type"),
        (lambda d: d["columns"]["n"].update(minimum="zero"), "number"),
        (lambda d: d["columns"]["n"].update(enum=["1"]), "string columns only"),
        (lambda d: d["columns"]["s"].update(minimum=3), "does not apply"),
        (lambda d: d["columns"]["t"].update(minimum="yesterday"), "ISO 8601"),
        (lambda d: d["columns"]["n"].update(unknown_keyword=True), "additionalProperties"),
        (lambda d: d["columns"]["c"].update(enum=["x"] * 3), "uniqueItems"),
        (lambda d: d["columns"]["c"].update(enum=[str(i) for i in range(10_001)]), "maxItems"),
        (lambda d: d["columns"]["s"].update(pattern="a" * 1001), "maxLength"),
        (lambda d: d.update(columns=[1, 2]), "'type'"),
        (lambda d: d["columns"]["s"].update(pattern=r"(a)\1"), "pattern refused"),
        (lambda d: d["columns"]["s"].update(pattern=r"(?=a)b"), "pattern refused"),
        (lambda d: d["columns"]["s"].update(pattern=r"((a{100}){100}){100}"), "pattern refused"),
    ],
)
def test_hostile_contracts_are_refused(mutate: Any, message: str) -> None:
    document = valid_document()
    mutate(document)
    with pytest.raises(C.ContractError, match="contract") as caught:
        C.parse_contract(json.dumps(document))
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested"),
        ('{"a": ' * 50 + "1" + "}" * 50, "nested"),
        (
            HEAD + '"minimum": NaN}}}',
            "NaN",
        ),
        (
            HEAD + '"minimum": 1e999}}}',
            "out of range",
        ),
        (
            HEAD + '"minimum": ' + "9" * 5000 + "}}}",
            "40 digits",
        ),
        ("{not json", "not valid JSON"),
        (b"\xff\xfe{}", "UTF-8"),
    ],
)
def test_malformed_contract_text_is_refused(text: str | bytes, message: str) -> None:
    with pytest.raises(C.ContractError) as caught:
        C.parse_contract(text)
    assert message in str(caught.value)


def test_huge_contract_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as handle:
        handle.write(b" " * (C.MAX_CONTRACT_BYTES + 10))
    with pytest.raises(C.ContractError, match="larger than"):
        C.load_contract(path)
    with pytest.raises(C.ContractError, match="cannot read"):
        C.load_contract(tmp_path / "absent.json")


def test_backtracking_pattern_runs_in_linear_time() -> None:
    document = valid_document()
    document["columns"]["s"]["pattern"] = r"^(a+)+$"  # catastrophic for a backtracking engine
    document["columns"]["s"]["maxLength"] = 100_000
    contract = C.parse_contract(json.dumps(document))
    row = {"n": 1, "x": 1.0, "s": "a" * 50_000 + "!", "c": "red", "b": True, "t": None}
    began = time.perf_counter()
    violations = C.validate_row(contract, row)
    assert time.perf_counter() - began < 1.0
    assert [(v.rule_id, v.constraint) for v in violations] == [("CON007", "pattern")]


def test_schema_file_is_valid_json_schema() -> None:
    import jsonschema

    schema = json.loads(C.SCHEMA_PATH.read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)


def test_single_row_path_does_not_import_pandas(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "contract.json"
    path.write_text(json.dumps(AGREEMENT_CONTRACT), "utf-8")
    code = (
        "import sys\n"
        "from bastion.datacheck.contract import load_contract, validate_row\n"
        f"contract = load_contract({str(path)!r})\n"
        "row = {'n': 1, 'x': 1.0, 's': 'ab', 'c': 'red', 'b': True, 't': '2021-01-01'}\n"
        "assert validate_row(contract, row) == []\n"
        "assert validate_row(contract, dict(row, n='x'))[0].rule_id == 'CON003'\n"
        "print(sorted(m for m in ('pandas', 'pandera', 'pyarrow', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_text_declared_columns_of_a_csv_are_read_as_text(tmp_path: Path) -> None:
    """A contract profiled from a typed file (postcode text) and new data arriving as CSV, where
    the reader would infer integers from the digits (and drop leading zeros): the declared text
    columns are read as the text the file holds. A typed file with numbers there still fails."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from bastion.datacheck.read import open_dataset

    rng = np.random.default_rng(3)
    postcodes = [f"{int(p):05d}" for p in rng.integers(0, 99_999, 400)]
    postcodes[:3] = ["01067", "00501", "09999"]  # leading zeros
    typed = pa.table({"postcode": postcodes, "amount": rng.integers(100, 5_000, 400)})
    pq.write_table(typed, tmp_path / "trusted.parquet")
    options = DataOptions()
    trusted = open_dataset(tmp_path / "trusted.parquet", options, name="trusted.parquet")
    contract = C.profile(trusted, options)
    assert contract.columns["postcode"].type == "string"
    pcsv.write_csv(typed, tmp_path / "new.csv")
    new = open_dataset(tmp_path / "new.csv", options, name="new.csv")
    assert pa.types.is_integer(new.schema.field("postcode").type)  # what the reader infers
    assert C.check(new, options, contract) == []
    as_numbers = typed.set_column(0, "postcode", pa.array([int(p) for p in postcodes]))
    pq.write_table(as_numbers, tmp_path / "numbers.parquet")
    numbers = open_dataset(tmp_path / "numbers.parquet", options, name="numbers.parquet")
    found = by_rule(C.check(numbers, options, contract))
    assert found == {("CON003", "column:postcode"): tuple(range(400))}


def test_coercing_repeated_dates_once_gives_what_each_value_gives() -> None:
    """_coerce_cells parses each distinct date once (a memo): the result must be what
    coerce_value gives value by value, invalid and out-of-range values included."""
    import pandas as pd

    from bastion.datacheck.constraints import Invalid, _coerce_cells, coerce_value

    berlin = dt.timezone(dt.timedelta(hours=1))
    distinct = [
        dt.date(2020, 1, 2),
        dt.datetime(2020, 1, 2),
        dt.datetime(2020, 1, 2, 1, 0, tzinfo=berlin),
        dt.datetime(2020, 1, 2, 0, 0, tzinfo=dt.timezone.utc),
        "2020-01-02",
        " 2020-01-02T03:04:05+02:00 ",
        "2020-13-02",
        "not a date",
        "1500-01-01",
        7,
        None,
    ]
    values = [distinct[i % len(distinct)] for i in range(200)]
    series = pd.Series(values, dtype="object")
    null = pd.Series([v is None for v in values])
    out, bad = _coerce_cells("datetime", series, null)
    for value, got, failed in zip(values, out.tolist(), bad.tolist(), strict=True):
        if value is None:
            assert pd.isna(got) and not failed
            continue
        try:
            expected = coerce_value("datetime", value)
        except Invalid:
            assert failed and pd.isna(got)
        else:
            assert not failed and got == pd.Timestamp(expected)
