"""Practitioner corpus benchmark: benign files written by the real libraries the way people save
models (tests/corpus/practitioner), scanned by bastion and by the peer scanners in the same run.

    python bench/practitioner.py                  # build, scan, peers; bench/out/practitioner.json
    python bench/practitioner.py --no-peers --status /work/briefs/status-G.md

bastion scans the whole folder once (`bastion scan FOLDER -f json --no-store`) and each file is
judged by the report at the default gate: "flagged" = a finding at or above the gate's severity,
"undecided" = a check error, an incomplete scan or a gap skip (exit 2 territory). Each peer is
run on each entry (a file, or the folder a save_pretrained-style writer produced) and judged by
its own exit code (1 = it reports a problem; anything else but 0 = error); bastion's entry
verdict is the worst of its files'. Every file is benign, so every flag is a false positive."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import BASTION, OUT, ROOT, TOOLS, ensure_peers, precompile_bastion, timed

sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("KERAS_BACKEND", "torch")

SEVERITIES = ("info", "low", "medium", "high", "critical")
PEERS = [t for t in TOOLS if t != "bastion"]


def build(folder: Path, only: tuple[str, ...] = ()) -> Any:
    from corpus.practitioner import build_in_subprocess

    if folder.exists():
        shutil.rmtree(folder)
    return build_in_subprocess(folder, only)


def scan_with_bastion(folder: Path) -> tuple[dict[str, Any], float]:
    """One `bastion scan FOLDER` run; returns the JSON report and the wall time."""
    out = OUT / f"{folder.name}-bastion.json"
    started = time.perf_counter()
    proc = subprocess.run(
        [*BASTION, "scan", str(folder), "-f", "json", "--no-store", "-q", "-o", str(out)],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1, 2) or not out.exists():
        sys.exit(f"bastion failed ({proc.returncode}): {proc.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(out.read_text())
    return report, wall


def judge(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per file: verdict (clean/flagged/undecided/out-of-scope) and what made it so."""
    gate = SEVERITIES.index(report["verdict"]["fail_on"])
    files: dict[str, dict[str, Any]] = {}
    for result in report["results"]:
        failing = [f for f in result["findings"] if SEVERITIES.index(f["severity"]) >= gate]
        below = [f for f in result["findings"] if SEVERITIES.index(f["severity"]) < gate]
        gaps = [s for s in result["skips"] if s.get("code") != "out-of-scope"]
        if failing:
            verdict = "flagged"
        elif result["errors"] or result["incomplete"] or gaps:
            verdict = "undecided"
        elif not result["findings"] and result["skips"]:
            verdict = "out-of-scope"
        else:
            verdict = "clean"
        files[result["path"]] = {
            "verdict": verdict,
            "format": result["format"],
            "failing": [
                {
                    "rule": f["rule_id"],
                    "severity": f["severity"],
                    "message": f["message"],
                    "evidence": f["evidence"],
                }
                for f in failing
            ],
            "below_gate": sorted({f"{f['rule_id']}:{f['severity']}" for f in below}),
            "errors": result["errors"],
            "incomplete": result["incomplete"],
            "skips": [s["reason"] for s in result["skips"]],
        }
    return files


def run_peers(built: Any) -> dict[str, dict[str, int]]:
    """tool -> entry -> exit code. Each peer gets each entry as a practitioner would hand it
    over: the file, or the save_pretrained-style folder (fickling takes one file at a time, so
    it gets each file of a folder; the entry is flagged when one of them is). ModelAudit, whose
    start-up dominates its time, runs once over every entry (see modelaudit_by_entry)."""
    jobs = [(tool, entry) for entry in built.entries for tool in PEERS if tool != "modelaudit"]

    def run(job: tuple[str, Any]) -> tuple[str, str, int]:
        tool, entry = job
        path = built.root / entry.name
        targets = built.files(entry) if tool == "fickling" and path.is_dir() else [path]
        codes = [timed([*TOOLS[tool], str(t)], timeout=300).exit_code for t in targets]
        code = 1 if 1 in codes else max(codes, key=lambda c: c != 0)
        return tool, entry.name, code

    codes: dict[str, dict[str, int]] = {tool: {} for tool in PEERS}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for done, (tool, name, code) in enumerate(pool.map(run, jobs), 1):
            codes[tool][name] = code
            if done % 50 == 0:
                print(f"peers {done}/{len(jobs)}", file=sys.stderr)
    if "modelaudit" in PEERS:
        codes["modelaudit"] = modelaudit_by_entry(built)
    return codes


def modelaudit_by_entry(built: Any) -> dict[str, int]:
    """One `modelaudit scan --format json` over all entries; an entry counts as flagged (1) when
    an issue of severity warning or critical is located in it — the findings that make
    ModelAudit exit 1. Operational errors are not attributed per entry (0 otherwise)."""
    out = OUT / "practitioner-modelaudit.json"
    root = built.root.resolve()
    paths = [str(root / e.name) for e in built.entries]
    subprocess.run(
        [*TOOLS["modelaudit"], "--format", "json", "-o", str(out), *paths],
        capture_output=True,
        timeout=3600,
    )
    issues = json.loads(out.read_text()).get("issues", [])
    flagged = {
        str(i.get("location") or "").split(" (pos")[0]
        for i in issues
        if i.get("severity") in ("warning", "critical")
    }
    codes = {}
    for entry in built.entries:
        path = str(root / entry.name)
        codes[entry.name] = int(any(f == path or f.startswith(path + "/") for f in flagged))
    return codes


def by_entry(files: dict[str, dict[str, Any]], built: Any) -> dict[str, str]:
    """bastion's verdict per entry: the worst of its files' (flagged > undecided > clean)."""
    order = ["out-of-scope", "clean", "undecided", "flagged"]
    verdicts = {}
    for entry in built.entries:
        mine = [p.relative_to(built.root).as_posix() for p in built.files(entry)]
        verdicts[entry.name] = max(
            (files[p]["verdict"] for p in mine if p in files), key=order.index, default="undecided"
        )
    return verdicts


def family(path: str) -> str:
    return path.split("/", 1)[0]


def table(
    files: dict[str, dict[str, Any]], entries: dict[str, str], peers: dict[str, dict[str, int]]
) -> str:
    """Markdown: flagged/undecided counts per tool over entries (and bastion over files), and
    per library family."""
    rows = [
        "| tool | entries flagged (false positives) | could not decide / error | entries |",
        "|---|---|---|---|",
        f"| bastion | {sum(v == 'flagged' for v in entries.values())} | "
        f"{sum(v == 'undecided' for v in entries.values())} | {len(entries)} |",
    ]
    for tool, codes in peers.items():
        rows.append(
            f"| {tool} | {sum(c == 1 for c in codes.values())} | "
            f"{sum(c not in (0, 1) for c in codes.values())} | {len(codes)} |"
        )
    rows += [
        "",
        f"bastion over files: {sum(f['verdict'] == 'flagged' for f in files.values())} of "
        f"{len(files)} flagged, {sum(f['verdict'] == 'undecided' for f in files.values())} "
        "undecided.",
        "",
        "| family | entries | files | " + " | ".join(["bastion", *peers]) + " |",
        "|---|---|---|" + "---|" * (1 + len(peers)),
    ]
    for fam in sorted({family(p) for p in entries}):
        mine = [n for n in entries if family(n) == fam]
        cells = [str(sum(entries[n] == "flagged" for n in mine))]
        cells += [str(sum(peers[t].get(n) == 1 for n in mine)) for t in peers]
        n_files = sum(family(p) == fam for p in files)
        rows.append(f"| {fam} | {len(mine)} | {n_files} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def status(files: dict[str, dict[str, Any]], built: Any, wall: float) -> str:
    """The flagged list other helpers work from (rule ids and evidence per file)."""
    verdicts = Counter(f["verdict"] for f in files.values())
    by_rule: Counter[str] = Counter(
        f"{x['rule']} ({x['severity']})" for f in files.values() for x in f["failing"]
    )
    lines = [
        "# status-G — practitioner corpus at the default gate",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} on "
        f"`{_commit()}` (+ uncommitted work in the tree).",
        "Reproduce: `.venv/bin/python bench/practitioner.py --no-peers` (builds the corpus into "
        "bench/out/practitioner/, scans it with `bastion scan FOLDER -f json --no-store`).",
        "Builders: tests/corpus/practitioner/ (one module per library family).",
        "",
        f"{len(built.entries)} entries, {len(files)} files scanned in {wall:.1f} s: "
        + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())),
        "",
        "Not built (library missing): "
        + (", ".join(f"{k} ({v})" for k, v in built.unavailable.items()) or "none"),
        "",
        "Writer raised: " + (", ".join(f"{k} ({v})" for k, v in built.failed.items()) or "none"),
        "",
        "The tree is shared with helpers whose work is in progress: a transient error (a file "
        "missing mid-edit) shows up here until the next run.",
        "",
        "## Failing findings by rule (owner by the issue's parts: PKL -> B, KER/NPY/ONX/TF -> D, "
        "JIN/configs -> E, FMT/ARC identification -> whoever owns identify.py)",
        "",
        *[f"- {rule}: {n}" for rule, n in by_rule.most_common()],
        "",
        "## Flagged files (finding at or above the gate)",
        "",
    ]
    for path, f in sorted(files.items()):
        if f["verdict"] != "flagged":
            continue
        lines.append(f"- `{path}` [{f['format']}]")
        seen = set()
        for x in f["failing"]:
            key = (x["rule"], x["evidence"])
            if key in seen:
                continue
            seen.add(key)
            lines.append(
                f"  - {x['rule']} {x['severity']}: {x['message']} — evidence "
                f"`{x['evidence'][:120]}`"
            )
    lines += ["", "## Undecided files (check error, incomplete scan, or a skip that is a gap)", ""]
    for path, f in sorted(files.items()):
        if f["verdict"] == "undecided":
            lines.append(
                f"- `{path}` [{f['format']}]: errors={f['errors']} "
                f"incomplete={f['incomplete']} skips={f['skips']}"
            )
    lines += ["", "## Out of scope (skipped as not a model/config format; passes the gate)", ""]
    for path, f in sorted(files.items()):
        if f["verdict"] == "out-of-scope":
            lines.append(f"- `{path}`: {'; '.join(f['skips'])}")
    return "\n".join(lines) + "\n"


def _commit() -> str:
    proc = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return proc.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=OUT / "practitioner")
    parser.add_argument("--no-peers", action="store_true", help="bastion only")
    parser.add_argument("--status", type=Path, help="also write the flagged list here")
    parser.add_argument("--only", nargs="*", default=[], help="entries starting so (a trial)")
    args = parser.parse_args(argv)
    if args.no_peers:
        precompile_bastion()
    else:
        ensure_peers()
    OUT.mkdir(exist_ok=True)
    started = time.perf_counter()
    built = build(args.folder, tuple(args.only))
    build_s = time.perf_counter() - started
    report, wall = scan_with_bastion(args.folder)
    files = judge(report)
    entries = by_entry(files, built)
    peers = {} if args.no_peers else run_peers(built)
    text = table(files, entries, peers)
    (OUT / f"{args.folder.name}.json").write_text(
        json.dumps(
            {
                "entries": len(built.entries),
                "failed": built.failed,
                "files": files,
                "entry_verdicts": entries,
                "unavailable": built.unavailable,
                "peers": peers,
                "build_s": round(build_s, 1),
                "bastion_scan_s": round(wall, 1),
            },
            indent=1,
        )
    )
    if args.status:
        args.status.write_text(status(files, built, wall))
    print(
        f"\n{len(built.entries)} entries, {len(files)} files (built in {build_s:.0f} s, "
        f"bastion scanned the folder in {wall:.1f} s); not built: "
        f"{built.unavailable or 'none'}; writer raised: {built.failed or 'none'}\n"
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
