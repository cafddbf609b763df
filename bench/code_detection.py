"""`bastion code` against bandit on the same labelled snippets (tests/code_samples.py), in the
same run: precision and recall over (snippet, rule) pairs.

    python bench/code_detection.py        # needs bandit in the environment ([dev] extra)

bandit test ids are mapped to the bastion rule they correspond to; bandit has no check for
np.load(allow_pickle=True), Keras safe_mode=False or trust_remote_code=True, so it is also
scored on only the rules it covers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from common import OUT, ROOT

sys.path.insert(0, str(ROOT / "tests"))

BANDIT_TO_RULE = {
    "B614": "COD001",
    "B301": "COD002",
    "B506": "COD006",
    "B307": "COD007",
    "B102": "COD007",
    "B501": "COD008",
    "B323": "COD008",
    "B310": "COD008",
    "B105": "COD009",
    "B106": "COD009",
    "B107": "COD009",
}
BANDIT_COVERS = set(BANDIT_TO_RULE.values())


def score(
    found: dict[str, set[str]], expected: dict[str, set[str]], rules: set[str] | None = None
) -> dict[str, float]:
    tp = fp = fn = 0
    for name, want in expected.items():
        got = found.get(name, set())
        if rules is not None:
            want, got = want & rules, got & rules
        tp += len(got & want)
        fp += len(got - want)
        fn += len(want - got)
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": round(tp / (tp + fp), 3) if tp + fp else 1.0,
        "recall": round(tp / (tp + fn), 3) if tp + fn else 1.0,
    }


def main() -> int:
    from code_samples import SNIPPETS

    folder = OUT / "code_snippets"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, source, _expected in SNIPPETS:
        (folder / f"{name}.py").write_text(source)
    expected = {name: rules for name, _source, rules in SNIPPETS}
    bin_dir = Path(sys.executable).parent
    ours = subprocess.run(
        [str(bin_dir / "bastion"), "code", str(folder), "-f", "json", "--no-store", "-q"],
        capture_output=True,
        text=True,
    )
    report = json.loads(ours.stdout)
    bastion_found = {
        r["path"].removesuffix(".py"): {f["rule_id"] for f in r["findings"]}
        for r in report["results"]
    }
    theirs = subprocess.run(
        [str(bin_dir / "bandit"), "-r", str(folder), "-f", "json", "-q"],
        capture_output=True,
        text=True,
    )
    bandit_found: dict[str, set[str]] = {}
    for issue in json.loads(theirs.stdout)["results"]:
        rule = BANDIT_TO_RULE.get(issue["test_id"])
        if rule:
            name = Path(issue["filename"]).stem
            bandit_found.setdefault(name, set()).add(rule)
    rows = {
        "bastion (all rules)": score(bastion_found, expected),
        "bandit (all rules)": score(bandit_found, expected),
        "bastion (rules bandit covers)": score(bastion_found, expected, BANDIT_COVERS),
        "bandit (rules bandit covers)": score(bandit_found, expected, BANDIT_COVERS),
    }
    (OUT / "code_detection.json").write_text(json.dumps(rows, indent=1))
    print(
        f"{len(SNIPPETS)} snippets, "
        f"{sum(len(v) for v in expected.values())} expected (snippet, rule) pairs\n"
    )
    print("| tool | precision | recall | TP | FP | FN |")
    print("|---|---|---|---|---|---|")
    for tool, row in rows.items():
        print(
            f"| {tool} | {row['precision']:.3f} | {row['recall']:.3f} | {row['tp']} | "
            f"{row['fp']} | {row['fn']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
