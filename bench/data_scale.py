"""The data stage at scale: 1,000,000 rows x 20 columns (mixed types, some free text) through the
integrity pass (the manifest), the contract, personal data and leakage checks, as CSV and as
Parquet; and the label checks on 100,000 rows. Targets (issue #9): the four checks on 1,000,000
rows in at most 60 s wall with a peak RSS of at most 1 GB; the label checks on 100,000 rows in
at most 120 s.

    python bench/data_scale.py [--rows 1000000] [--label-rows 100000] [-n 3] [--formats csv,parquet]

The data is generated in code with a fixed seed (numpy, seed 20240917) and written once under
bench/out/data_scale/: a trusted version (its manifest and contract are made from it), and a
train/test split of a new version (800,000 / 200,000 rows) with planted problems: 100 training
rows copied into the test split, 50 changed amounts, e-mail addresses and phone numbers in 1%
of the free-text notes, 0.1% of ages out of the contract's range.

Each measurement runs in a child process of its own (a fresh interpreter: nothing cached, the
whole cost of importing pyarrow/pandas/pandera counted), and its peak RSS is the child's own
`ru_maxrss` from os.wait4. Measured:

- end to end: `bastion data check --train ... --test ... --id id --contract ...
  --baseline-manifest ... -f json` (integrity with the comparison to the manifest, personal
  data, contract, leakage between the splits: every check but labels, which need --target);
- each check on its own, to give rows/s per check: the manifest (`bastion data manifest`), the
  contract, personal data and leakage, each in a child that opens the data and runs one check;
- labels: `bastion data check --target default` on the first --label-rows rows (Parquet).

Medians of -n runs; the machine's load average is printed with the figures (it is shared).
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out" / "data_scale"
PYTHON = str(ROOT / ".venv" / "bin" / "python")
SEED = 20240917
WORDS = [
    *("payment", "late", "account", "balance", "transfer", "customer", "branch", "loan"),
    *("request", "approved", "review", "note", "salary", "employer", "address", "changed"),
    *("income", "verified", "document", "missing", "call", "back", "scheduled"),
]


# -- the data -------------------------------------------------------------------------------------


def make_table(rows: int, seed: int) -> Any:
    """rows x 20 columns: an id, integers, floats with missing values, categories, a date, an
    e-mail-free text column, quasi-identifiers (age, postcode, sex) and a binary label."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    ids = np.char.add("C-", np.char.zfill(np.arange(rows).astype(str), 7))
    age = rng.integers(18, 80, rows)
    duration = rng.integers(4, 72, rows)
    amount = np.round(rng.lognormal(8, 0.7, rows)).astype(np.int64)
    income = rng.normal(42_000, 12_000, rows).round(2)
    income[rng.random(rows) < 0.02] = np.nan
    rate = rng.uniform(1.5, 14.0, rows).round(3)
    balance = rng.normal(2_500, 1_800, rows).round(2)
    score_a = rng.normal(0, 1, rows).round(5)
    score_b = rng.normal(10, 3, rows).round(5)
    dependents = rng.integers(0, 5, rows)
    existing = rng.integers(0, 4, rows)
    purpose = rng.choice(["car", "furniture", "education", "business", "repairs", "holiday"], rows)
    housing = rng.choice(["rent", "own", "free"], rows, p=[0.4, 0.5, 0.1])
    employment = rng.choice(["<1y", "1-4y", "4-7y", ">7y", "unemployed"], rows)
    sex = rng.choice(["f", "m"], rows)
    postcode = np.char.zfill(rng.integers(1000, 99999, rows).astype(str), 5)
    start = np.datetime64("2019-01-01")
    applied = start + rng.integers(0, 5 * 365, rows).astype("timedelta64[D]")
    picks = rng.integers(0, len(WORDS), (rows, 6))
    notes = np.array([" ".join(w) for w in np.array(WORDS)[picks]], dtype=object)
    logit = -1.2 + 0.00004 * amount + 0.02 * duration - 0.00002 * np.nan_to_num(income) + score_a
    default = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pa.table(
        {
            "id": ids,
            "age": age,
            "sex": sex,
            "postcode": postcode,
            "duration_months": duration,
            "amount": amount,
            "income": pa.array(income, from_pandas=True),
            "interest_rate": rate,
            "balance": balance,
            "score_a": score_a,
            "score_b": score_b,
            "dependents": dependents,
            "existing_credits": existing,
            "purpose": purpose,
            "housing": housing,
            "employment": employment,
            "applied_on": applied,
            "notes": notes.astype(str),
            "branch_code": rng.choice([f"B{n:03d}" for n in range(40)], rows),
            "default": default,
        }
    )


def plant(table: Any, seed: int) -> tuple[Any, dict[str, Any]]:
    """The new version: changed amounts, personal data in notes, ages out of range."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed + 1)
    rows = table.num_rows
    planted: dict[str, Any] = {}
    amount = table.column("amount").to_numpy().copy()
    changed = np.sort(rng.choice(rows, 50, replace=False))
    amount[changed] += 1_000
    planted["changed_amount_rows"] = changed.tolist()
    notes = table.column("notes").to_numpy(zero_copy_only=False).astype(object)
    personal = np.sort(rng.choice(rows, rows // 100, replace=False))
    for k, row in enumerate(personal.tolist()):
        if k % 2:
            notes[row] = f"{notes[row]} call +44 20 7946 {k % 10000:04d}"
        else:
            notes[row] = f"{notes[row]} mail jane.doe{k}@example.org"
    planted["personal_rows"] = len(personal)
    age = table.column("age").to_numpy().copy()
    bad_age = np.sort(rng.choice(rows, rows // 1000, replace=False))
    age[bad_age] = 150
    planted["bad_age_rows"] = len(bad_age)
    new = table.set_column(table.schema.get_field_index("amount"), "amount", pa.array(amount))
    new = new.set_column(new.schema.get_field_index("notes"), "notes", pa.array(notes.tolist()))
    new = new.set_column(new.schema.get_field_index("age"), "age", pa.array(age))
    return new, planted


def build(rows: int, label_rows: int) -> dict[str, Any]:
    """Write the data (once per size), the trusted version's manifests and its contract:
    {rows}/trusted/{train,test}.{csv,parquet} and {rows}/new/{train,test}.{csv,parquet}. The
    rows are in time order (applied_on) and split 80/20 by time, as a time-aware split would."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    folder = OUT / f"{rows}"
    meta_path = folder / "planted.json"
    if meta_path.is_file():
        return dict(json.loads(meta_path.read_text()))
    started = time.monotonic()
    trusted = make_table(rows, SEED).sort_by("applied_on")
    trusted = trusted.set_column(0, "id", make_table(rows, SEED).column("id"))
    new, planted = plant(trusted, SEED)
    cut = rows * 4 // 5
    # 100 training rows copied over test rows of the new version (leakage between the splits)
    rng = np.random.default_rng(SEED + 2)
    leaked_from = np.sort(rng.choice(cut, 100, replace=False))
    leaked_to = np.sort(rng.choice(rows - cut, 100, replace=False))
    take = np.arange(rows)
    take[cut + leaked_to] = leaked_from
    new = new.take(pa.array(take))
    planted.update(leaked_test_rows=leaked_to.tolist(), rows=rows, train_rows=cut)
    for version, table in (("trusted", trusted), ("new", new)):
        (folder / version).mkdir(parents=True, exist_ok=True)
        for split, part in (("train", table.slice(0, cut)), ("test", table.slice(cut))):
            pq.write_table(part, folder / version / f"{split}.parquet")
            pcsv.write_csv(part, folder / version / f"{split}.csv")
    pq.write_table(new.slice(0, label_rows), folder / "labels.parquet")
    for fmt in ("csv", "parquet"):
        files = [str(folder / "trusted" / f"{split}.{fmt}") for split in ("train", "test")]
        out = str(folder / f"trusted.{fmt}.manifest.json")
        command = [PYTHON, "-m", "bastion", "data", "manifest", *files, "--id", "id", "-o", out]
        subprocess.run([*command, "--no-store", "-q"], check=True)
    trusted_train = str(folder / "trusted" / "train.parquet")
    contract = str(folder / "contract.json")
    subprocess.run(
        [PYTHON, "-m", "bastion", "data", "profile", trusted_train, "-o", contract, "-q"],
        check=True,
    )
    # the rows are in time order: every new row is later than the trusted version's latest,
    # so the profiled maximum of the date is dropped, as a reviewer would (the minimum stays)
    document = json.loads(Path(contract).read_text())
    document["columns"]["applied_on"].pop("maximum", None)
    Path(contract).write_text(json.dumps(document, indent=2))
    planted["build_s"] = round(time.monotonic() - started, 1)
    meta_path.write_text(json.dumps(planted))
    return planted


# -- one measurement in a child process ------------------------------------------------------------

CHILD = r"""
import json, sys, time
from pathlib import Path
from bastion.datacheck.options import DataOptions
from bastion.datacheck.read import open_dataset
check, folder, fmt = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
options = DataOptions(id_column="id", contract=str(folder / "contract.json"))
started = time.monotonic()
new = folder / "new"
train = open_dataset(new / f"train.{fmt}", options, name=f"train.{fmt}", split="train")
test = open_dataset(new / f"test.{fmt}", options, name=f"test.{fmt}", split="test")
if check == "manifest":
    from bastion.datacheck.manifest import index_dataset
    found = [index_dataset(d, "id", keep_key_values=True).rows.fingerprint for d in (train, test)]
elif check == "contract":
    from bastion.datacheck import contract
    found = contract.check(train, options) + contract.check(test, options)
elif check == "pii":
    from bastion.datacheck import pii
    found = pii.check(train, options) + pii.check(test, options)
elif check == "leakage":
    from bastion.datacheck import leakage
    found = leakage.check_splits({"train": train, "test": test}, options)
print(json.dumps({"s": time.monotonic() - started, "findings": len(found)}))
"""


class RunQueue:
    """What a process tree waited for a CPU: every thread's /proc schedstat (time on a CPU,
    time runnable but waiting for one), polled while the tree runs and summed per thread at its
    last reading. Wall time beyond CPU + run-queue wait is time the threads were blocked (I/O,
    locks, pipes). Linux only; zeros elsewhere."""

    def __init__(self, pid: int) -> None:
        import threading

        self.pid = pid
        self.threads: dict[tuple[int, int], tuple[int, int]] = {}
        self.done = threading.Event()
        self.poller = threading.Thread(target=self._poll, daemon=True)
        self.poller.start()

    def _tree(self) -> list[int]:
        pids, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                    todo.extend(int(c) for c in children)
            except OSError:
                continue
        return pids

    def _poll(self) -> None:
        while not self.done.wait(0.25):
            for pid in self._tree():
                try:
                    tasks = os.listdir(f"/proc/{pid}/task")
                except OSError:
                    continue
                for task in tasks:
                    try:
                        fields = Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()
                    except OSError:
                        continue
                    self.threads[(pid, int(task))] = (int(fields[0]), int(fields[1]))

    def stop(self) -> tuple[float, float]:
        """(seconds on a CPU, seconds waiting for one), summed over every thread seen."""
        self.done.set()
        self.poller.join()
        on_cpu = sum(c for c, _w in self.threads.values()) / 1e9
        waiting = sum(w for _c, w in self.threads.values()) / 1e9
        return on_cpu, waiting


def measured(argv: list[str]) -> tuple[float, float, float, str, int, float]:
    """(wall seconds, CPU seconds, peak RSS in MB, stdout, exit code, seconds runnable but
    waiting for a CPU) of one child, its own rusage read with os.wait4 (RUSAGE_CHILDREN would
    give the largest child so far)."""
    started = time.monotonic()
    with open(os.devnull, "wb") as devnull:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=devnull, cwd=ROOT)
        queue = RunQueue(proc.pid)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _on_cpu, waiting = queue.stop()
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024, out.decode(), proc.returncode, waiting


def median_of(runs: int, argv: list[str], ok: tuple[int, ...] = (0, 1)) -> dict[str, Any]:
    walls, cpus, rss, inner, queued, loads = [], [], [], [], [], []
    out = ""
    for _ in range(runs):
        wall, cpu, peak, out, code, waiting = measured(argv)
        if code not in ok:
            sys.exit(f"{' '.join(argv[:8])} ... exited {code}")
        walls.append(wall)
        cpus.append(cpu)
        rss.append(peak)
        queued.append(waiting)
        loads.append(os.getloadavg()[0])
        try:
            inner.append(float(json.loads(out.splitlines()[-1]).get("s", "nan")))
        except (ValueError, IndexError, AttributeError):
            pass
    return {
        "wall_s": statistics.median(walls),
        "walls": [round(w, 2) for w in walls],
        "cpu_s": statistics.median(cpus),
        "peak_rss_mb": statistics.median(rss),
        "max_rss_mb": max(rss),
        "run_queue_s": [round(q, 1) for q in queued],  # runnable, waiting for a CPU
        "load_1min": [round(x, 1) for x in loads],  # after each run
        "inner_s": statistics.median(inner) if inner else None,
        "out": out,
    }


def end_to_end(folder: Path, fmt: str, runs: int) -> dict[str, Any]:
    argv = [PYTHON, "-m", "bastion", "data", "check"]
    new = folder / "new"
    argv += ["--train", str(new / f"train.{fmt}"), "--test", str(new / f"test.{fmt}")]
    argv += ["--id", "id", "--contract", str(folder / "contract.json")]
    argv += ["--baseline-manifest", str(folder / f"trusted.{fmt}.manifest.json")]
    argv += ["--no-store", "-q", "-f", "json"]
    result = median_of(runs, argv)
    report = json.loads(result.pop("out"))
    counts: dict[str, int] = {}
    rows: dict[str, int] = {}
    for target in report["results"]:
        for finding in target["findings"]:
            counts[finding["rule_id"]] = counts.get(finding["rule_id"], 0) + 1
            rows[finding["rule_id"]] = rows.get(finding["rule_id"], 0) + len(finding["rows"])
    result["findings"] = counts
    result["finding_rows"] = rows
    result["errors"] = [e["message"][:200] for e in report.get("errors", [])]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--label-rows", type=int, default=100_000)
    parser.add_argument("-n", "--runs", type=int, default=3)
    parser.add_argument("--formats", default="csv,parquet")
    parser.add_argument("--only", default="e2e,checks,labels", help="what to measure")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_only:
        build(args.rows, args.label_rows)
        return 0
    # the data is built in a child: a child forked from a parent holding the tables would start
    # with the parent's RSS as its own peak (Linux keeps the high-water mark across exec)
    command = [PYTHON, __file__, "--build-only", "--rows", str(args.rows)]
    subprocess.run([*command, "--label-rows", str(args.label_rows)], check=True)
    planted = build(args.rows, args.label_rows)
    folder = OUT / f"{args.rows}"
    only = set(args.only.split(","))
    print(f"data: {args.rows:,} rows x 20 columns under {folder} (built in {planted['build_s']} s)")
    print(f"load average before: {os.getloadavg()}")
    results: dict[str, Any] = {"rows": args.rows, "load_before": os.getloadavg()}
    for fmt in args.formats.split(","):
        if "e2e" in only:
            r = end_to_end(folder, fmt, args.runs)
            results[f"e2e_{fmt}"] = r
            print(
                f"{fmt:8} end to end: {r['wall_s']:.1f} s wall (runs {r['walls']}), "
                f"{args.rows / r['wall_s']:,.0f} rows/s, CPU {r['cpu_s']:.1f} s, "
                f"waiting for a CPU {r['run_queue_s']} s, load {r['load_1min']}, "
                f"peak RSS {r['max_rss_mb']:.0f} MB; "
                f"findings {r['findings']} rows {r['finding_rows']} errors {r['errors']}"
            )
        if "checks" in only:
            for check in ("manifest", "contract", "pii", "leakage"):
                r = median_of(args.runs, [PYTHON, "-c", CHILD, check, str(folder), fmt], (0,))
                r.pop("out")
                results[f"{check}_{fmt}"] = r
                print(
                    f"{fmt:8} {check:9}: {r['inner_s']:.1f} s in the check "
                    f"({args.rows / r['inner_s']:,.0f} rows/s), {r['wall_s']:.1f} s with start-up, "
                    f"CPU {r['cpu_s']:.1f} s, "
                    f"peak RSS {r['max_rss_mb']:.0f} MB (runs {r['walls']})"
                )
    if "labels" in only:
        argv = [PYTHON, "-m", "bastion", "data", "check", str(folder / "labels.parquet")]
        argv += ["--target", "default", "--id", "id", "--no-store", "-q", "-f", "json"]
        r = median_of(args.runs, argv)
        report = json.loads(r.pop("out"))
        r["findings"] = sorted({f["rule_id"] for t in report["results"] for f in t["findings"]})
        results["labels"] = r
        print(
            f"labels on {args.label_rows:,} rows: {r['wall_s']:.1f} s wall (runs {r['walls']}), "
            f"CPU {r['cpu_s']:.1f} s, "
            f"peak RSS {r['max_rss_mb']:.0f} MB, rules {r['findings']}"
        )
    results["load_after"] = os.getloadavg()
    print(f"load average after: {os.getloadavg()}")
    name = f"results-{args.rows}-{args.only.replace(',', '+')}.json"
    (OUT / name).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
