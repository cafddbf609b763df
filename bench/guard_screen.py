"""The guard's row screen on numbers and split fields: false flags, catch rate, cost.

    .venv/bin/python bench/guard_screen.py [--rows 10000] [--cases 400] [--json OUT]

- Benign: `--rows` rows of examples/credit-scoring's 20 features with realistic values: each
  column drawn from the data independently, amounts jittered (and half of them sent as floats
  with cents), durations and ages as integers or integral floats, the field order shuffled in
  half of the rows (a client may send its columns in any order). Every flag is a false flag.
- Personal data: Faker (en_US, nl_NL, pl_PL, de_DE, en_GB, en_IN, sv_SE) card numbers, SSNs,
  BSNs, PESELs and phone numbers sent as a JSON integer, as a float, in a field named for the
  kind, and split over fields (a card in 4 fields of 4 digits, as integers and as strings;
  an SSN in 3-2-4 fields; a phone as country code + national number), each inside a benign
  row; and the same values with the last digit changed (check digit broken: a card, BSN or
  PESEL must then not be flagged). The catch rate is per form.
- Cost: RowScreen.rows on one benign 20-feature row, in-process, this tree against the
  screen of `--before` (a git revision, default HEAD~ of the screen's last change is not
  guessed: pass it), median of 7 runs of 2,000 rows each."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "credit-scoring" / "data" / "german_credit.csv"
TARGET = "creditability"
NUMERIC = (
    "duration_in_month",
    "credit_amount",
    "installment_rate_in_percentage_of_disposable_income",
    "present_residence_since",
    "age_in_years",
    "number_of_existing_credits_at_this_bank",
    "number_of_people_being_liable_to_provide_maintenance_for",
)
LOCALES = ("en_US", "nl_NL", "pl_PL", "de_DE", "en_GB", "en_IN", "sv_SE")


def load() -> tuple[list[dict[str, Any]], dict[str, frozenset[str]]]:
    with DATA.open(newline="", encoding="utf-8") as handle:
        rows = [dict(r) for r in csv.DictReader(handle)]
    for row in rows:
        row.pop(TARGET)
    categories = {c: frozenset(r[c] for r in rows) for c in rows[0] if c not in NUMERIC}
    return rows, categories


def benign_rows(data: list[dict[str, Any]], n: int, rng: random.Random) -> list[dict[str, Any]]:
    columns = list(data[0])
    out = []
    for _ in range(n):
        row: dict[str, Any] = {}
        for c in columns:
            value = rng.choice(data)[c]
            if c == "credit_amount":
                amount = int(value) * rng.uniform(0.8, 1.25)
                row[c] = round(amount, 2) if rng.random() < 0.5 else int(amount)
            elif c in NUMERIC:
                row[c] = float(value) if rng.random() < 0.3 else int(value)
            else:
                row[c] = value
        if rng.random() < 0.5:
            items = list(row.items())
            rng.shuffle(items)
            row = dict(items)
        out.append(row)
    return out


def _broken(digits: str) -> str:
    return digits[:-1] + str((int(digits[-1]) + 1) % 10)


def cases(n: int, rng: random.Random) -> dict[str, list[tuple[dict[str, Any], bool]]]:
    """form -> [(fields to add to a row, whether they are personal data that must be flagged)]"""
    import phonenumbers
    from faker import Faker

    out: dict[str, list[tuple[dict[str, Any], bool]]] = {}

    def add(form: str, fields: dict[str, Any], real: bool) -> None:
        out.setdefault(form, []).append((fields, real))

    fakers = {loc: Faker(loc) for loc in LOCALES}
    for f in fakers.values():
        f.seed_instance(rng.randrange(1 << 30))
    for i in range(n):
        loc = LOCALES[i % len(LOCALES)]
        f = fakers[loc]
        card = f.credit_card_number(card_type=rng.choice(["visa16", "mastercard", "discover"]))
        for digits, real in ((card, True), (_broken(card), False)):
            tag = "" if real else " (check digit broken)"
            add("card as integer" + tag, {"ref": int(digits)}, real)
            add("card as float" + tag, {"ref": float(int(digits))}, real)
            groups = [digits[k : k + 4] for k in range(0, 16, 4)]
            add("card in 4 string fields" + tag, {f"cc{k}": g for k, g in enumerate(groups)}, real)
            add(
                "card in 4 integer fields" + tag,
                {f"cc{k}": int(g) for k, g in enumerate(groups)},
                real,
            )
        ssn = Faker("en_US").ssn().replace("-", "")
        add("US SSN as integer in a field named ssn", {"ssn": int(ssn)}, True)
        add(
            "US SSN in 3 integer fields (3-2-4) named ssn_*",
            {"ssn_area": int(ssn[:3]), "ssn_group": int(ssn[3:5]), "ssn_serial": int(ssn[5:])},
            True,
        )
        bsn = fakers["nl_NL"].ssn()
        add("NL BSN as integer in a field named bsn", {"bsn": int(bsn)}, True)
        add("NL BSN as integer in a field with a neutral name", {"ref": int(bsn)}, True)
        add(
            "NL BSN as integer in a field named bsn (check digit broken)",
            {"bsn": int(_broken(bsn))},
            False,
        )
        pesel = fakers["pl_PL"].ssn()
        add("PL PESEL as integer in a field named pesel", {"pesel": int(pesel)}, True)
        add(
            "PL PESEL as integer in a field named pesel (check digit broken)",
            {"pesel": int(_broken(pesel))},
            False,
        )
        raw = f.phone_number()
        region = loc.split("_")[1]
        try:
            number = phonenumbers.parse(raw, region)
        except phonenumbers.NumberParseException:
            continue
        if not phonenumbers.is_valid_number(number):
            continue  # Faker writes some numbers no numbering plan has
        national = str(number.national_number)
        add(
            "phone as integer in a field named phone (with country code)",
            {"phone": int(f"{number.country_code}{national}")},
            True,
        )
        add(
            "phone as country code + number (integer fields)",
            {"country_code": number.country_code, "phone_number": int(national)},
            True,
        )
    return out


def _old_screen(revision: str) -> Any:
    source = subprocess.run(
        ["git", "show", f"{revision}:src/bastion/guard/screen.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path("/tmp") / f"bastion_screen_{revision.replace('/', '_')}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_screen", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cost(screen: Any, rows: list[dict[str, Any]]) -> float:
    """Median µs per row over 7 runs."""
    runs = []
    for _ in range(7):
        started = time.perf_counter()
        for row in rows:
            screen.rows([row], redact=False)
        runs.append((time.perf_counter() - started) / len(rows) * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--cases", type=int, default=400)
    parser.add_argument("--before", help="git revision of the screen to compare costs with")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from bastion.guard.screen import RowScreen

    rng = random.Random(0)
    data, categories = load()
    screen = RowScreen(categories, 10_000)
    benign = benign_rows(data, args.rows, rng)
    flagged = [kinds for row in benign if (kinds := screen.rows([row], redact=False)[0])]
    results: dict[str, Any] = {"benign_rows": len(benign), "false_flags": len(flagged)}
    print(f"benign rows: {len(benign)}, false flags: {len(flagged)} {flagged[:5]}")
    forms = {}
    for form, items in cases(args.cases, rng).items():
        hits = 0
        for fields, _ in items:
            row = dict(rng.choice(benign))
            row.update(fields)
            hits += bool(screen.rows([row], redact=False)[0])
        real = items[0][1]
        forms[form] = {"cases": len(items), "flagged": hits, "must_flag": real}
        print(f"  {form}: {hits}/{len(items)} flagged ({'catch' if real else 'false flag'})")
    results["forms"] = forms
    sample = benign[:2000]
    results["us_per_row_after"] = cost(screen, sample)
    print(f"screen cost: {results['us_per_row_after']:.1f} us per 20-feature row")
    if args.before:
        old = _old_screen(args.before).RowScreen(categories, 10_000)
        results["us_per_row_before"] = cost(old, sample)
        results["us_per_row_after"] = cost(screen, sample)  # interleaved: after, before, after
        print(
            f"screen cost before ({args.before}): {results['us_per_row_before']:.1f} us; "
            f"after again: {results['us_per_row_after']:.1f} us"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
