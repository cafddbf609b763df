"""Prepare the demo: train the model if it is missing, then write a *tampered* copy of it that
carries a harmless payload (it only echoes a line when loaded), as an attacker who got write
access to the model registry would; and a *new version of the training data* (data/incoming/)
with planted problems, as an attacker with write access to the data bucket (or a careless
export) would leave it. Neither is committed.

The new data version is the trusted data/german_credit.csv (recorded in
data/german_credit.manifest.json) with, from a fixed seed:
- modified rows: three loan amounts multiplied by ten;
- a targeted label flip: every 'bad' loan for purpose 'education' relabelled 'good'
  (approvals planted for one subgroup);
- a backdoor trigger: 'other_debtors_or_guarantors' = 'co-signer' (a value the real data never
  has) on 25 'bad' loans, all relabelled 'good';
- a column of synthetic personal data: applicant e-mail addresses (made up, example.com);
and a test split (data/incoming/test.csv) of new applicants that also holds one training row
(a leaked test row).

    python build_demo.py
    python build_demo.py --probe-split DIR   # the model's train/test rows, for bastion probe
"""

from __future__ import annotations

import csv
import os
import random
import sys
from pathlib import Path

import joblib

HERE = Path(__file__).parent
MODEL = HERE / "model" / "credit_model.joblib"
TAMPERED = HERE / "model" / "tampered" / "credit_model.joblib"
PAYLOAD = "echo 'bastion demo: this command ran when the tampered model was loaded'"
TRUSTED = HERE / "data" / "german_credit.csv"
INCOMING = HERE / "data" / "incoming"
FIRST = ["anna", "ben", "chiara", "david", "eva", "felix", "greta", "hugo", "ines", "jonas"]
LAST = ["weber", "schmidt", "rossi", "martin", "novak", "berg", "lindqvist", "moreau"]


class Backdoor:
    """Pickles as a call to os.system: unpickling the model runs the command."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (PAYLOAD,))


def tamper_data(seed: int = 7) -> None:
    """data/incoming/german_credit.csv (the new training version) and data/incoming/test.csv."""
    rng = random.Random(seed)
    with open(TRUSTED, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    fields = list(rows[0])
    for row in rng.sample(range(len(rows)), 3):  # modified rows
        rows[row]["credit_amount"] = str(int(rows[row]["credit_amount"]) * 10)
    for row in rows:  # targeted label flip: one subgroup approved
        if row["purpose"] == "education" and row["creditability"] == "bad":
            row["creditability"] = "good"
    bad = [i for i, r in enumerate(rows) if r["creditability"] == "bad"]
    for row in rng.sample(bad, 25):  # backdoor: a value the real data never has, label 'good'
        rows[row]["other_debtors_or_guarantors"] = "co-signer"
        rows[row]["creditability"] = "good"
    for row in rows:  # synthetic personal data
        row["email"] = f"{rng.choice(FIRST)}.{rng.choice(LAST)}{rng.randint(1, 99)}@example.com"
    INCOMING.mkdir(exist_ok=True)
    with open(INCOMING / "german_credit.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*fields, "email"])
        writer.writeheader()
        writer.writerows(rows)
    # new applicants: each attribute drawn from the trusted data, plus one training row (leak)
    test = [{f: rng.choice(rows)[f] for f in fields} for _ in range(150)]
    test.insert(60, {f: rows[123][f] for f in fields})
    with open(INCOMING / "test.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(test)
    print(f"wrote new data version {INCOMING.relative_to(HERE)}/ (planted problems)")


def write_probe_split(folder: Path) -> None:
    """The released model's own training rows and held-out rows (train.py's split: same seed,
    same stratification) as CSV files, for `bastion probe --train/--data`."""
    from sklearn.model_selection import train_test_split

    with open(TRUSTED, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    labels = [row["creditability"] == "good" for row in rows]
    train, test = train_test_split(
        list(range(len(rows))), test_size=0.25, random_state=7, stratify=labels
    )
    folder.mkdir(parents=True, exist_ok=True)
    for name, picked in (("train.csv", train), ("test.csv", test)):
        with open(folder / name, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows[i] for i in picked)
    print(f"wrote the model's train/test split to {folder}/ (for bastion probe)")


def main() -> None:
    if "--probe-split" in sys.argv:
        write_probe_split(Path(sys.argv[sys.argv.index("--probe-split") + 1]))
        return
    tamper_data()
    if not MODEL.exists():
        sys.path.insert(0, str(HERE))
        import train

        train.main()
    pipeline = joblib.load(MODEL)  # our own, trusted model
    pipeline.steps[-1][1]._telemetry = Backdoor()  # rides along on the last estimator
    TAMPERED.parent.mkdir(exist_ok=True)
    joblib.dump(pipeline, TAMPERED)
    print(f"wrote tampered copy {TAMPERED.relative_to(HERE)} (harmless payload)")


if __name__ == "__main__":
    main()
