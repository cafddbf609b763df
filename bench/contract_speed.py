"""Contract validation speed: bastion's `contract.check` against pandera alone (and Great
Expectations, when a Python with it is given) on the same 1,000,000 rows x 20 columns, in one
run, interleaved, medians.

    python bench/contract_speed.py [--rows 1000000] [-n 3] [--gx-python /path/to/venv/bin/python]

The data (mixed types: ids, integers, floats with missing values, categories, free text, a
timestamp; 0.1% of the cells of four columns break the contract) is written once to Parquet under
bench/out/contract/. The contract is profiled by bastion from the clean copy and then read as
plain JSON by the two peers, which get the same constraints through their own built-ins:

- bastion: `contract.check` on a Dataset streamed from the Parquet file in 65,536-row batches:
  reading, per-cell type reading, pandera's lazy validation, uniqueness and order across
  batches, findings with every failing row;
- pandera alone: one DataFrameSchema (dtype, nullable, ge/le, isin, str_length, unique, an
  increasing check) on the whole table in memory, lazy=True; timed with and without reading the
  Parquet file into pandas;
- Great Expectations: an expectation suite with the same constraints (not null, between, in set,
  value lengths, unique, increasing) run on the whole table in memory. GX needs its own
  environment (it pins versions bastion's does not share): pass its interpreter with --gx-python.

Also reported: `contract.validate_row` (the runtime guard's single-row path) in rows per second.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "out" / "contract"


def make_data(rows: int, path: Path, clean_path: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute
    import pyarrow.parquet as pq

    rng = np.random.default_rng(42)
    columns: dict[str, Any] = {"id": np.arange(rows, dtype=np.int64) * 2 + 1000}
    for i in range(6):
        columns[f"int_{i}"] = rng.integers(0, 10 ** (i + 2), rows)
    for i in range(6):
        values = rng.normal(100 * i, 10 + i, rows)
        values[rng.random(rows) < 0.01] = np.nan
        columns[f"float_{i}"] = pa.array(values, from_pandas=True)
    for i in range(4):
        levels = [f"level_{i}_{k}" for k in range(3 + 4 * i)]
        columns[f"cat_{i}"] = (
            pa.array(rng.choice(levels, rows)).dictionary_encode().cast(pa.string())
        )
    words = np.array(["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa"])
    for i in range(2):
        picks = rng.integers(0, len(words), (rows, 3))
        columns[f"text_{i}"] = pa.array([" ".join(w) for w in words[picks]])
    columns["created"] = pa.array(
        np.datetime64("2024-01-01T00:00:00") + np.arange(rows).astype("timedelta64[s]") * 30
    )
    clean = pa.table(columns)
    pq.write_table(clean, clean_path)
    # 0.1% of the rows break the contract in four columns
    bad = np.sort(rng.choice(np.arange(1, rows), rows // 1000, replace=False))
    ids = columns["id"].copy()
    ids[bad[:100]] = ids[bad[:100] - 1]  # duplicated and out of order
    int_0 = columns["int_0"].copy()
    int_0[bad] = -5
    mask = np.zeros(rows, dtype=bool)
    mask[bad] = True
    broken = clean.set_column(0, "id", pa.array(ids))
    broken = broken.set_column(1, "int_0", pa.array(int_0))
    for name, value in (("cat_1", "unknown"), ("text_0", "x" * 200)):
        index = broken.schema.get_field_index(name)
        column = pa.compute.if_else(pa.array(mask), value, broken.column(name))
        broken = broken.set_column(index, name, column)
    pq.write_table(broken, path)


def run_bastion(path: Path, contract_path: Path) -> tuple[float, int]:
    from bastion.datacheck import contract as C
    from bastion.datacheck.options import DataOptions
    from bastion.datacheck.read import open_dataset

    options = DataOptions(contract=str(contract_path))
    began = time.perf_counter()
    dataset = open_dataset(path, options=options)
    findings = C.check(dataset, options)
    elapsed = time.perf_counter() - began
    return elapsed, sum(len(f.rows) for f in findings)


def pandera_schema(document: dict[str, Any]) -> Any:
    import pandas as pd
    import pandera.pandas as pa

    dtypes = {"integer": "Int64", "number": "Float64", "string": "string", "boolean": "boolean"}
    columns = {}
    for name, spec in document["columns"].items():
        checks = []
        if "minimum" in spec and spec["type"] != "datetime":
            checks.append(pa.Check.ge(spec["minimum"]))
        if "maximum" in spec and spec["type"] != "datetime":
            checks.append(pa.Check.le(spec["maximum"]))
        if spec["type"] == "datetime" and "minimum" in spec:
            checks.append(pa.Check.ge(pd.Timestamp(spec["minimum"])))
            checks.append(pa.Check.le(pd.Timestamp(spec["maximum"])))
        if "enum" in spec:
            checks.append(pa.Check.isin(spec["enum"]))
        if "maxLength" in spec:
            checks.append(pa.Check.str_length(max_value=spec["maxLength"]))
        if spec.get("monotonic"):
            checks.append(pa.Check(lambda s: s.diff().iloc[1:] > 0, name="increasing"))
        columns[name] = pa.Column(
            dtypes.get(spec["type"], "datetime64[ns]"),
            nullable=spec.get("nullable", False),
            unique=spec.get("unique", False),
            checks=checks,
        )
    return pa.DataFrameSchema(columns)


def run_pandera(path: Path, document: dict[str, Any]) -> tuple[float, float, int]:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pandera.errors import SchemaErrors

    schema = pandera_schema(document)
    began = time.perf_counter()
    mapping = {
        pa.int64(): pd.Int64Dtype(),
        pa.float64(): pd.Float64Dtype(),
        pa.string(): pd.StringDtype(),
    }
    frame = pq.read_table(path).to_pandas(types_mapper=mapping.get)
    read = time.perf_counter()
    try:
        schema.validate(frame, lazy=True)
        failures = 0
    except SchemaErrors as exc:
        failures = len(exc.failure_cases)
    done = time.perf_counter()
    return done - began, done - read, failures


GX_WORKER = r"""
import json, sys, time
import pandas as pd
import great_expectations as gx
import great_expectations.expectations as gxe

path, contract_path = sys.argv[1], sys.argv[2]
document = json.load(open(contract_path))
context = gx.get_context(mode="ephemeral")
suite = context.suites.add(gx.ExpectationSuite(name="contract"))
for name, spec in document["columns"].items():
    if not spec.get("nullable", False):
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=name))
    if "minimum" in spec:
        low, high = spec["minimum"], spec["maximum"]
        if spec["type"] == "datetime":
            low, high = pd.Timestamp(low), pd.Timestamp(high)
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeBetween(column=name, min_value=low, max_value=high)
        )
    if "enum" in spec:
        suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=name, value_set=spec["enum"]))
    if "maxLength" in spec:
        suite.add_expectation(
            gxe.ExpectColumnValueLengthsToBeBetween(column=name, max_value=spec["maxLength"])
        )
    if spec.get("unique"):
        suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column=name))
    if spec.get("monotonic"):
        suite.add_expectation(gxe.ExpectColumnValuesToBeIncreasing(column=name, strictly=True))
source = context.data_sources.add_pandas("bench")
asset = source.add_dataframe_asset("data")
batch_definition = asset.add_batch_definition_whole_dataframe("all")
began = time.perf_counter()
frame = pd.read_parquet(path)
read = time.perf_counter()
batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
result = batch.validate(suite, result_format="COMPLETE")
done = time.perf_counter()
failed = sum(1 for r in result.results if not r.success)
print(json.dumps({"total": done - began, "validate": done - read, "failed_expectations": failed,
                  "expectations": len(suite.expectations), "version": gx.__version__}))
"""


def run_gx(python: str, path: Path, contract_path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [python, "-c", GX_WORKER, str(path), str(contract_path)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "GX_ANALYTICS_ENABLED": "False"},
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def single_rows(contract_path: Path, path: Path, count: int = 100_000) -> float:
    import pyarrow.parquet as pq

    from bastion.datacheck import contract as C

    prepared = C.prepare(C.load_contract(contract_path))
    rows = pq.read_table(path).slice(0, count).to_pylist()
    began = time.perf_counter()
    for row in rows:
        C.validate_row(prepared, row)
    return count / (time.perf_counter() - began)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("-n", type=int, default=3)
    parser.add_argument("--gx-python", help="a Python with great_expectations installed")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    path, clean_path = OUT / f"data_{args.rows}.parquet", OUT / f"clean_{args.rows}.parquet"
    contract_path = OUT / f"contract_{args.rows}.json"
    if not path.exists():
        make_data(args.rows, path, clean_path)
    import pyarrow.parquet as pq

    from bastion.datacheck import contract as C
    from bastion.datacheck.dataset import Dataset
    from bastion.datacheck.options import DataOptions

    trusted = Dataset.from_table(pq.read_table(clean_path), "clean.parquet")
    C.profile(trusted, DataOptions()).save(contract_path)
    document = json.loads(contract_path.read_text("utf-8"))
    times: dict[str, list[float]] = {
        "bastion": [],
        "pandera (read + validate)": [],
        "pandera (validate only)": [],
    }
    gx_times: dict[str, list[float]] = {"gx (read + validate)": [], "gx (validate only)": []}
    detail: dict[str, Any] = {}
    # warm-up (imports, pandera's first schema) on the clean copy, untimed
    run_bastion(clean_path, contract_path)
    run_pandera(clean_path, document)
    for _ in range(args.n):
        elapsed, failing_rows = run_bastion(path, contract_path)
        times["bastion"].append(elapsed)
        detail["bastion failing rows"] = failing_rows
        total, validate, failures = run_pandera(path, document)
        times["pandera (read + validate)"].append(total)
        times["pandera (validate only)"].append(validate)
        detail["pandera failure cases"] = failures
        if args.gx_python:
            result = run_gx(args.gx_python, path, contract_path)
            gx_times["gx (read + validate)"].append(result["total"])
            gx_times["gx (validate only)"].append(result["validate"])
            detail["gx"] = {
                k: result[k] for k in ("version", "expectations", "failed_expectations")
            }
    if args.gx_python:
        times.update(gx_times)
    print(f"{args.rows:,} rows x 20 columns, {args.n} runs each, interleaved")
    base = statistics.median(times["bastion"])
    for tool, values in times.items():
        median = statistics.median(values)
        print(
            f"  {tool:28} median {median:7.2f} s  ({args.rows / median:,.0f} rows/s; "
            f"{median / base:.2f}x bastion)  min {min(values):.2f} max {max(values):.2f}"
        )
    print(f"  validate_row (single rows): {single_rows(contract_path, path):,.0f} rows/s")
    print(f"  {json.dumps(detail)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
