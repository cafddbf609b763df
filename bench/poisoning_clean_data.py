"""False alarms of the poisoning rules on clean data bastion's team did not write (issue #9;
docs/benchmarks.md §14): every LBL002/LBL003 finding on these tables claims tampering that
nobody did.

The tables are the ones installed packages ship, read as they are: scikit-learn's bundled sets
(iris, wine, breast cancer, digits; diabetes with its target split at the median), the OpenML
tables scikit-learn's own tests carry (penguins, glass2, kr-vs-kp, titanic), and, when plotly is
installed, its copies of the tips and gapminder data. Nothing is fetched.

    nice -n 19 .venv/bin/python bench/poisoning_clean_data.py [--only NAME,...] [--json F]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from bastion.datacheck import labels
from bastion.datacheck.dataset import Dataset
from bastion.datacheck.options import DataOptions

RULES = ("LBL001", "LBL002", "LBL003", "LBL004", "LBL005")
PLANTED_CLAIMS = ("LBL002", "LBL003")


def _sklearn(name: str) -> Any:
    from sklearn import datasets

    if name == "diabetes":
        frame = datasets.load_diabetes(as_frame=True, scaled=False).frame
        frame["target"] = (frame["target"] > frame["target"].median()).astype(int)
        return frame
    return getattr(datasets, f"load_{name}")(as_frame=True).frame


def _openml(folder: str) -> Any:
    """An ARFF file of scikit-learn's test data (sklearn/datasets/tests/data/openml)."""
    import pandas as pd
    import sklearn
    from sklearn.externals import _arff

    root = Path(sklearn.__file__).parent / "datasets" / "tests" / "data" / "openml" / folder
    path = next(root.glob("data-v1*.arff.gz"))
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        loaded = _arff.load(io.StringIO(handle.read()))
    names = [attribute[0] for attribute in loaded["attributes"]]
    return pd.DataFrame(loaded["data"], columns=names)


def _plotly(name: str) -> Any:
    import pandas as pd
    import plotly

    folder = Path(plotly.__file__).parent / "package_data" / "datasets"
    return pd.read_csv(folder / f"{name}.csv.gz")


# name -> (loader, target column, provenance)
TABLES: dict[str, tuple[Callable[[], Any], str, str]] = {
    "iris": (lambda: _sklearn("iris"), "target", "scikit-learn load_iris"),
    "wine": (lambda: _sklearn("wine"), "target", "scikit-learn load_wine"),
    "breast_cancer": (lambda: _sklearn("breast_cancer"), "target", "scikit-learn"),
    "digits": (lambda: _sklearn("digits"), "target", "scikit-learn load_digits"),
    "diabetes": (lambda: _sklearn("diabetes"), "target", "scikit-learn, target > median"),
    "penguins": (lambda: _openml("id_42585"), "species", "OpenML 42585, sklearn's tests"),
    "glass2": (lambda: _openml("id_40675"), "class", "OpenML 40675, sklearn's tests"),
    "kr_vs_kp": (lambda: _openml("id_3"), "class", "OpenML 3, sklearn's tests"),
    "titanic": (lambda: _openml("id_40945"), "survived", "OpenML 40945, sklearn's tests"),
    "tips_time": (lambda: _plotly("tips"), "time", "plotly's copy of seaborn's tips"),
    "tips_sex": (lambda: _plotly("tips"), "sex", "plotly's copy of seaborn's tips"),
    "gapminder": (lambda: _plotly("gapminder"), "continent", "plotly's gapminder"),
}


def run(name: str) -> dict[str, Any]:
    loader, target, provenance = TABLES[name]
    try:
        frame = loader()
    except (ImportError, OSError, StopIteration) as exc:
        return {"table": name, "skipped": f"{type(exc).__name__}: {exc}"}
    frame[target] = frame[target].astype(str)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    started = time.perf_counter()
    findings = labels.check(Dataset.from_table(table, f"{name}.csv"), DataOptions(target=target))
    counts = {rule: 0 for rule in RULES}
    claims = []
    for finding in findings:
        if finding.rule_id in counts:
            counts[finding.rule_id] += len(finding.rows)
        if finding.rule_id in PLANTED_CLAIMS:
            claims.append(f"{finding.rule_id} ({len(finding.rows)} rows): {finding.evidence}")
    return {
        "table": name,
        "provenance": provenance,
        "rows": table.num_rows,
        "columns": table.num_columns,
        "target": target,
        "rows_by_rule": counts,
        "false_claims": claims,
        "seconds": round(time.perf_counter() - started, 1),
    }


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| table | rows × columns | target | LBL001 / 002 / 003 / 004 / 005 rows "
        "| LBL002/LBL003 findings (false) | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        if "skipped" in result:
            lines.append(f"| {result['table']} | skipped: {result['skipped']} | | | | |")
            continue
        counts = " / ".join(str(result["rows_by_rule"][rule]) for rule in RULES)
        lines.append(
            f"| {result['table']} ({result['provenance']}) | {result['rows']:,} × "
            f"{result['columns']} | {result['target']} | {counts} | "
            f"{len(result['false_claims'])} | {result['seconds']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated table names (default: all)")
    parser.add_argument("--json", type=Path, help="write every result here")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(TABLES)
    unknown = sorted(set(names) - set(TABLES))
    if unknown:
        parser.error(f"unknown tables {unknown}; known: {', '.join(TABLES)}")
    results = []
    for name in names:
        result = run(name)
        results.append(result)
        for claim in result.get("false_claims", []):
            print(f"{name}: {claim}", file=sys.stderr)
    print(markdown(results))
    total = sum(len(r.get("false_claims", [])) for r in results)
    flagged = sum(bool(r.get("false_claims")) for r in results)
    print(f"\n{total} LBL002/LBL003 findings on {flagged} of {len(results)} clean tables")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
