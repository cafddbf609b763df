"""Gradient-boosting libraries: XGBoost, LightGBM and CatBoost models saved with their own
formats and pickled/joblib-dumped through their scikit-learn wrappers."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from .registry import writes


def _xy() -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4))
    return x, (x[:, 0] + x[:, 1] > 0).astype(int)


def _pickle(obj: Any, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)


def _xgb() -> Any:
    import xgboost

    return xgboost.XGBClassifier(n_estimators=3, max_depth=2).fit(*_xy())


def _lgbm() -> Any:
    import lightgbm

    return lightgbm.LGBMClassifier(
        n_estimators=3, num_leaves=4, min_child_samples=2, verbose=-1
    ).fit(*_xy())


def _catboost() -> Any:
    import catboost

    return catboost.CatBoostClassifier(
        iterations=3, depth=2, verbose=False, allow_writing_files=False
    ).fit(*_xy())


@writes("xgboost/model.json", "xgboost", "XGBClassifier.save_model(.json)")
def _xgb_json(path: Path) -> None:
    _xgb().save_model(path)


@writes("xgboost/model.ubj", "xgboost", "Booster.save_model(.ubj), the binary JSON format")
def _xgb_ubj(path: Path) -> None:
    _xgb().get_booster().save_model(path)


@writes("xgboost/classifier.pkl", "xgboost", "pickle of a fitted XGBClassifier")
def _xgb_pickle(path: Path) -> None:
    _pickle(_xgb(), path)


@writes(
    "xgboost/pipeline.joblib",
    "xgboost",
    "joblib.dump of scaler + XGBRegressor pipeline",
    ("xgboost", "sklearn", "joblib"),
)
def _xgb_pipeline(path: Path) -> None:
    import joblib
    import xgboost
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _xy()
    joblib.dump(
        make_pipeline(StandardScaler(), xgboost.XGBRegressor(n_estimators=2)).fit(x, y), path
    )


@writes("lightgbm/model.txt", "lightgbm", "Booster.save_model(.txt)")
def _lgb_txt(path: Path) -> None:
    _lgbm().booster_.save_model(str(path))


@writes("lightgbm/classifier.pkl", "lightgbm", "pickle of a fitted LGBMClassifier")
def _lgb_pickle(path: Path) -> None:
    _pickle(_lgbm(), path)


@writes(
    "lightgbm/booster.joblib",
    "lightgbm",
    "joblib.dump of a lightgbm.train() Booster",
    ("lightgbm", "joblib"),
)
def _lgb_booster(path: Path) -> None:
    import joblib
    import lightgbm

    x, y = _xy()
    booster = lightgbm.train(
        {"objective": "binary", "num_leaves": 4, "verbose": -1, "min_data_in_leaf": 2},
        lightgbm.Dataset(x, y),
        num_boost_round=2,
    )
    joblib.dump(booster, path)


@writes("catboost/model.cbm", "catboost", "CatBoostClassifier.save_model(.cbm)")
def _cb_cbm(path: Path) -> None:
    _catboost().save_model(str(path))


@writes("catboost/model.json", "catboost", "CatBoostClassifier.save_model(format='json')")
def _cb_json(path: Path) -> None:
    _catboost().save_model(str(path), format="json")


@writes("catboost/classifier.pkl", "catboost", "pickle of a fitted CatBoostClassifier")
def _cb_pickle(path: Path) -> None:
    _pickle(_catboost(), path)


@writes("catboost/model.onnx", "catboost", "CatBoostClassifier.save_model(format='onnx')")
def _cb_onnx(path: Path) -> None:
    _catboost().save_model(str(path), format="onnx")
