"""Train the credit-scoring model: a scikit-learn pipeline (one-hot + scaling + logistic
regression) on the German Credit data, saved with joblib the way most teams ship models.

    python train.py            # writes model/credit_model.joblib and prints hold-out accuracy
"""

from __future__ import annotations

import csv
from pathlib import Path

import joblib
import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

HERE = Path(__file__).parent
DATA = HERE / "data" / "german_credit.csv"
MODEL = HERE / "model" / "credit_model.joblib"
NUMERIC = ["duration_in_month", "credit_amount", "installment_rate_in_percentage_of_disposable_income",
           "present_residence_since", "age_in_years", "number_of_existing_credits_at_this_bank",
           "number_of_people_being_liable_to_provide_maintenance_for"]


def load() -> tuple[np.ndarray, np.ndarray, list[str]]:
    with DATA.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = [c for c in rows[0] if c != "creditability"]
    features = np.array([[row[c] for c in columns] for row in rows], dtype=object)
    for index, column in enumerate(columns):
        if column in NUMERIC:
            features[:, index] = features[:, index].astype(float)
    labels = np.array([row["creditability"] == "good" for row in rows], dtype=int)
    return features, labels, columns


def build(columns: list[str]) -> Pipeline:
    numeric = [i for i, c in enumerate(columns) if c in NUMERIC]
    categorical = [i for i, c in enumerate(columns) if c not in NUMERIC]
    prepare = ColumnTransformer([("numeric", StandardScaler(), numeric),
                                 ("categorical", OneHotEncoder(handle_unknown="ignore"),
                                  categorical)])
    return Pipeline([("prepare", prepare), ("model", LogisticRegression(max_iter=1000))])


def main() -> None:
    features, labels, columns = load()
    x_train, x_test, y_train, y_test = train_test_split(features, labels, test_size=0.25,
                                                        random_state=7, stratify=labels)
    pipeline = build(columns).fit(x_train, y_train)
    print(f"hold-out accuracy: {pipeline.score(x_test, y_test):.3f}")
    MODEL.parent.mkdir(exist_ok=True)
    joblib.dump(pipeline, MODEL)
    print(f"saved {MODEL.relative_to(HERE)}")


if __name__ == "__main__":
    main()
