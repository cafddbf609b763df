"""A genuinely predictive rare value against LBL002/LBL003 (issue #9; docs/benchmarks.md §14):
how often the poisoning rules report a category value whose label effect is real.

Credit-like rows (income, debt, a segment that shifts the score by ±1, a postcode and a channel
that do not), and a `tier` column whose value 'gold', on `--gold` random rows, raises the
score by `--effects`; the label is 'good' for the top `--rates` share of the score. No other
column shows 'gold', so a model that never saw the value cannot know its effect: every draw
is a natural look-alike of "approvals planted for one subgroup". A draw counts as a false
positive when an LBL002/LBL003 finding has at least half of its rows in 'gold'.

    nice -n 19 .venv/bin/python bench/poisoning_lookalike.py            # 9 seeds x effects 3, 5
    nice -n 19 .venv/bin/python bench/poisoning_lookalike.py --before   # the veto as at 804a125
    nice -n 19 .venv/bin/python bench/poisoning_lookalike.py --seeds 4 --effects 2,3,5 \\
        --gold 30,100 --rates 0.6,0.3

`--before` runs the code with the small-count veto of `follows_features` switched off (no veto
under FOLLOWS_MIN_OTHERS rows of another label), as before it was added.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bastion.datacheck import labels, poisoning
from bastion.datacheck.dataset import Dataset
from bastion.datacheck.options import DataOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "datacheck"))
from labels_support import predictive_tier


def check(columns: dict[str, Any]) -> list[Any]:
    table = pa.table({k: list(v) if v.dtype == object else v for k, v in columns.items()})
    return labels.check(Dataset.from_table(table, "train.csv"), DataOptions(target="label"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=9, help="draws per setting (seeds 0..N-1)")
    parser.add_argument("--effects", default="3,5", help="score lifts of 'gold'")
    parser.add_argument("--gold", default="60", help="rows of 'gold' (of 700)")
    parser.add_argument("--rates", default="0.6", help="share of 'good' labels")
    parser.add_argument("--before", action="store_true", help="no small-count veto")
    parser.add_argument("--json", type=Path, help="write every draw here")
    args = parser.parse_args()
    if args.before:
        follows = poisoning.follows_features
        poisoning.follows_features = lambda p, has, alpha=None: follows(p, has, None)  # type: ignore[assignment]
    draws = []
    for rate in map(float, args.rates.split(",")):
        for gold in map(int, args.gold.split(",")):
            for effect in map(float, args.effects.split(",")):
                hits = 0
                for seed in range(args.seeds):
                    columns = predictive_tier(seed, effect, gold, rate)
                    members = set(np.flatnonzero(columns["tier"] == "gold").tolist())
                    started = time.perf_counter()
                    findings = [f for f in check(columns) if f.rule_id in ("LBL002", "LBL003")]
                    on_gold = [f for f in findings if len(set(f.rows) & members) >= len(f.rows) / 2]
                    hits += bool(on_gold)
                    draws.append(
                        {
                            "rate": rate,
                            "gold": gold,
                            "effect": effect,
                            "seed": seed,
                            "gold_bad": int(sum(columns["label"][r] == "bad" for r in members)),
                            "reported": bool(on_gold),
                            "other_findings": len(findings) - len(on_gold),
                            "evidence": [f"{f.rule_id} {f.evidence}" for f in on_gold],
                            "seconds": round(time.perf_counter() - started, 1),
                        }
                    )
                print(
                    f"good share {rate:.0%}, gold {gold} rows, effect +{effect:g}: "
                    f"reported on {hits} of {args.seeds} draws",
                    file=sys.stderr,
                )
    if args.json:
        args.json.write_text(json.dumps(draws, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
