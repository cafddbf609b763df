"""Detection benchmark: bastion and the peer scanners on the same labelled corpus (malicious
samples of every technique, benign files written by the real libraries), in the same run.

    python bench/detection.py            # writes bench/out/detection.json and prints tables

Each tool is judged by its own exit code on each file (1 = it reports a problem). Recall is
over malicious files, the false-positive rate over benign ones."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import OUT, ROOT, TOOLS, ensure_peers, timed

sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("KERAS_BACKEND", "torch")


def build(folder: Path):  # type: ignore[no-untyped-def]
    from corpus import build_benign, build_malicious

    if folder.exists():
        shutil.rmtree(folder)
    benign = build_benign(folder / "benign")
    malicious = build_malicious(folder / "malicious")
    return malicious, benign


def main() -> int:
    ensure_peers()
    folder = OUT / "corpus"
    malicious, benign = build(folder)
    jobs = [
        (tool, sample, folder / ("malicious" if sample.malicious else "benign") / sample.name)
        for sample in [*malicious, *benign]
        for tool in TOOLS
    ]

    def run(job):  # type: ignore[no-untyped-def]
        tool, sample, path = job
        result = timed([*TOOLS[tool], str(path)], timeout=300)
        return tool, sample, result

    rows = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for done, (tool, sample, result) in enumerate(pool.map(run, jobs), 1):
            rows.append(
                {
                    "tool": tool,
                    "sample": sample.name,
                    "format": sample.fmt,
                    "technique": sample.technique,
                    "malicious": sample.malicious,
                    "exit_code": result.exit_code,
                    "flagged": result.exit_code == 1,
                    "timed_out": result.timed_out,
                    "wall_s": round(result.wall_s, 3),
                }
            )
            if done % 50 == 0:
                print(f"{done}/{len(jobs)}", file=sys.stderr)
    summary = summarise(rows)
    OUT.mkdir(exist_ok=True)
    (OUT / "detection.json").write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    print_tables(summary, len(malicious), len(benign))
    return 0


def summarise(rows: list[dict]) -> dict:  # type: ignore[type-arg]
    out: dict = {"tools": {}, "by_format": defaultdict(dict), "missed": defaultdict(list)}  # type: ignore[type-arg]
    for tool in TOOLS:
        mine = [r for r in rows if r["tool"] == tool]
        bad = [r for r in mine if r["malicious"]]
        good = [r for r in mine if not r["malicious"]]
        out["tools"][tool] = {
            "detected": sum(r["flagged"] for r in bad),
            "malicious": len(bad),
            "recall": round(sum(r["flagged"] for r in bad) / len(bad), 3),
            "false_positives": sum(r["flagged"] for r in good),
            "benign": len(good),
            "fp_rate": round(sum(r["flagged"] for r in good) / len(good), 3),
            "errors": sum(r["exit_code"] not in (0, 1) for r in mine),
        }
        out["missed"][tool] = sorted(r["technique"] for r in bad if not r["flagged"])
        formats = sorted({r["format"] for r in mine})
        for fmt in formats:
            of = [r for r in bad if r["format"] == fmt]
            fp = [r for r in good if r["format"] == fmt]
            out["by_format"][fmt][tool] = {
                "detected": sum(r["flagged"] for r in of),
                "malicious": len(of),
                "false_positives": sum(r["flagged"] for r in fp),
                "benign": len(fp),
            }
    return out


def print_tables(summary: dict, n_mal: int, n_ben: int) -> None:  # type: ignore[type-arg]
    tools = list(TOOLS)
    print(f"\n{n_mal} malicious, {n_ben} benign files\n")
    print("| tool | detected | recall | false positives | FP rate | other exit codes |")
    print("|---|---|---|---|---|---|")
    for tool in tools:
        s = summary["tools"][tool]
        print(
            f"| {tool} | {s['detected']}/{s['malicious']} | {s['recall']:.1%} | "
            f"{s['false_positives']}/{s['benign']} | {s['fp_rate']:.1%} | {s['errors']} |"
        )
    print("\n| format | " + " | ".join(tools) + " |")
    print("|---|" + "---|" * len(tools))
    for fmt, per in sorted(summary["by_format"].items()):
        cells = []
        for tool in tools:
            s = per[tool]
            cells.append(
                f"{s['detected']}/{s['malicious']} det, {s['false_positives']}/{s['benign']} FP"
            )
        print(f"| {fmt} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
