"""scikit-learn estimators and pipelines of many kinds, saved with joblib, pickle, cloudpickle,
dill and skops the way people ship them."""

from __future__ import annotations

import functools
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

from .registry import writes


def _xy(classes: int = 2) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    return x, (x[:, 0] > 0).astype(int) + (x[:, 1] > 1).astype(int) * (classes > 2)


def _frame() -> tuple[Any, Any]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, 40).astype(float),
            "income": rng.normal(5e4, 1e4, 40),
            "city": rng.choice(["paris", "lyon", "nice"], 40),
            "text": rng.choice(["good loan", "late payment", "new client"], 40),
        }
    )
    frame.loc[3, "age"] = np.nan
    return frame, (frame["income"] > 5e4).astype(int)


def _linear() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression()).fit(*_xy())


def _tabular() -> Any:
    """The credit-scoring pipeline people write: ColumnTransformer with imputing, scaling,
    one-hot and TF-IDF branches, then a gradient-boosted forest."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                ["age", "income"],
            ),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["city"]),
            ("txt", TfidfVectorizer(), "text"),
        ],
        sparse_threshold=0,
    )
    return Pipeline([("prep", columns), ("clf", HistGradientBoostingClassifier(max_iter=5))]).fit(
        *_frame()
    )


def _ensembles() -> dict[str, Any]:
    from sklearn.ensemble import (
        AdaBoostClassifier,
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        IsolationForest,
        RandomForestRegressor,
        StackingClassifier,
        VotingClassifier,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    x, y = _xy()
    return {
        "rf": RandomForestRegressor(n_estimators=3, random_state=0).fit(x, x[:, 0]),
        "et": ExtraTreesClassifier(n_estimators=3, random_state=0).fit(x, y),
        "gb": GradientBoostingClassifier(n_estimators=3).fit(x, y),
        "ada": AdaBoostClassifier(n_estimators=3).fit(x, y),
        "iso": IsolationForest(n_estimators=3, random_state=0).fit(x),
        "vote": VotingClassifier(
            [("lr", LogisticRegression()), ("dt", DecisionTreeClassifier())], voting="soft"
        ).fit(x, y),
        "stack": StackingClassifier(
            [("dt", DecisionTreeClassifier(max_depth=2))],
            final_estimator=LogisticRegression(),
            cv=2,
        ).fit(x, y),
    }


def _assorted() -> dict[str, Any]:
    from sklearn.cluster import DBSCAN, KMeans
    from sklearn.decomposition import PCA, TruncatedSVD
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, WhiteKernel
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import Ridge, SGDClassifier
    from sklearn.mixture import GaussianMixture
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, QuantileTransformer
    from sklearn.svm import SVC, LinearSVC

    x, y = _xy(classes=3)
    return {
        "svc": SVC(random_state=0).fit(x, y),
        "linsvc": LinearSVC().fit(x, y),
        "knn": KNeighborsClassifier(n_neighbors=3, algorithm="kd_tree").fit(x, y),
        "ball": NearestNeighbors(algorithm="ball_tree").fit(x),
        "mlp": MLPClassifier(hidden_layer_sizes=(5,), max_iter=20).fit(x, y),
        "kmeans": KMeans(n_clusters=2, n_init=1, random_state=0).fit(x),
        "dbscan": DBSCAN().fit(x),
        "gmm": GaussianMixture(n_components=2, random_state=0).fit(x),
        "pca_ridge": make_pipeline(PCA(n_components=2), PolynomialFeatures(2), Ridge()).fit(
            x, x[:, 0]
        ),
        "svd": TruncatedSVD(n_components=2).fit(x),
        "gp": GaussianProcessRegressor(kernel=RBF() + WhiteKernel()).fit(x[:10], x[:10, 0]),
        "iso": IsotonicRegression().fit(x[:, 0], x[:, 1]),
        "nb": GaussianNB().fit(x, y),
        "sgd": make_pipeline(QuantileTransformer(n_quantiles=10), SGDClassifier()).fit(x, y),
    }


def _model_selection() -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import GridSearchCV
    from sklearn.tree import DecisionTreeClassifier

    x, y = _xy()
    search = GridSearchCV(DecisionTreeClassifier(), {"max_depth": [1, 2]}, cv=2).fit(x, y)
    return {
        "search": search,
        "calibrated": CalibratedClassifierCV(DecisionTreeClassifier(max_depth=2), cv=2).fit(x, y),
    }


def _function_transformers() -> Any:
    import numpy as np
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    x, _ = _xy()
    clip = functools.partial(np.clip, a_min=-3, a_max=3)
    pipe = make_pipeline(
        FunctionTransformer(clip),
        FunctionTransformer(np.log1p, inverse_func=np.expm1),
        LinearRegression(),
    )
    target = TransformedTargetRegressor(LinearRegression(), func=np.log1p, inverse_func=np.expm1)
    return {"pipe": pipe.fit(np.abs(x), x[:, 0]), "target": target.fit(x, np.abs(x[:, 0]))}


def _text() -> Any:
    from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import LabelEncoder

    docs = ["spam offer now", "meeting at noon", "cheap offer", "lunch meeting"] * 3
    labels = LabelEncoder().fit(["ham", "spam"])
    pipe = make_pipeline(CountVectorizer(ngram_range=(1, 2)), TfidfTransformer(), MultinomialNB())
    return {"pipe": pipe.fit(docs, [1, 0, 1, 0] * 3), "labels": labels}


def _dump_joblib(obj: Any, path: Path, **kwargs: Any) -> None:
    import joblib

    joblib.dump(obj, path, **kwargs)


def _dump_pickle(obj: Any, path: Path, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


SK = ("sklearn", "joblib")


@writes("sklearn/logreg-pipeline.joblib", "scikit-learn", "joblib.dump of scaler + logistic", SK)
def _w1(path: Path) -> None:
    _dump_joblib(_linear(), path)


@writes("sklearn/logreg-pipeline.pkl", "scikit-learn", "pickle.dump of scaler + logistic", SK)
def _w2(path: Path) -> None:
    _dump_pickle(_linear(), path)


@writes(
    "sklearn/logreg-protocol0.pkl",
    "scikit-learn",
    "pickle.dump(protocol=0) of the pipeline: the text protocol of Python 2 era files",
    SK,
)
def _w2b(path: Path) -> None:
    _dump_pickle(_linear(), path, protocol=0)


@writes(
    "sklearn/tabular-pipeline.joblib",
    "scikit-learn",
    "joblib.dump of ColumnTransformer (impute/scale/one-hot/tf-idf) + HistGradientBoosting",
    ("sklearn", "joblib", "pandas"),
)
def _w3(path: Path) -> None:
    _dump_joblib(_tabular(), path)


@writes(
    "sklearn/tabular-pipeline.joblib.gz",
    "scikit-learn",
    "joblib.dump(compress=3) of the tabular pipeline",
    ("sklearn", "joblib", "pandas"),
)
def _w4(path: Path) -> None:
    _dump_joblib(_tabular(), path, compress=("gzip", 3))


@writes(
    "sklearn/tabular-pipeline.joblib.xz",
    "scikit-learn",
    "joblib.dump with lzma compression",
    ("sklearn", "joblib", "pandas"),
)
def _w5(path: Path) -> None:
    _dump_joblib(_tabular(), path, compress=("xz", 1))


@writes(
    "sklearn/ensembles.joblib",
    "scikit-learn",
    "joblib.dump of forests, boosting, isolation forest, voting and stacking",
    SK,
)
def _w6(path: Path) -> None:
    _dump_joblib(_ensembles(), path)


@writes("sklearn/ensembles-protocol2.pkl", "scikit-learn", "pickle protocol 2 of the ensembles", SK)
def _w7(path: Path) -> None:
    _dump_pickle(_ensembles(), path, protocol=2)


@writes(
    "sklearn/assorted.joblib",
    "scikit-learn",
    "joblib.dump of SVC, kNN (kd/ball trees), MLP, KMeans, DBSCAN, GMM, PCA, GP, NB, SGD",
    SK,
)
def _w8(path: Path) -> None:
    _dump_joblib(_assorted(), path)


@writes(
    "sklearn/model-selection.pkl",
    "scikit-learn",
    "pickle of a fitted GridSearchCV and CalibratedClassifierCV",
    SK,
)
def _w9(path: Path) -> None:
    _dump_pickle(_model_selection(), path)


@writes(
    "sklearn/function-transformer.joblib",
    "scikit-learn",
    "joblib.dump of FunctionTransformer with functools.partial and numpy ufuncs",
    SK,
)
def _w10(path: Path) -> None:
    _dump_joblib(_function_transformers(), path)


@writes(
    "sklearn/text-classifier.pkl",
    "scikit-learn",
    "pickle of CountVectorizer + TF-IDF + MultinomialNB and a LabelEncoder",
    SK,
)
def _w11(path: Path) -> None:
    _dump_pickle(_text(), path)


@writes(
    "sklearn/logreg-cloudpickle.pkl",
    "scikit-learn",
    "cloudpickle.dump of the pipeline",
    ("sklearn", "cloudpickle"),
)
def _w12(path: Path) -> None:
    import cloudpickle

    with open(path, "wb") as f:
        cloudpickle.dump(_linear(), f)


@writes(
    "sklearn/ensembles-dill.pkl", "scikit-learn", "dill.dump of the ensembles", ("sklearn", "dill")
)
def _w13(path: Path) -> None:
    # in a child process: importing dill patches pickle._Pickler, which joblib.dump uses, so
    # every joblib file written after it would depend on the builders' order
    code = (
        "import dill, pickle, sys; "
        "dill.dump(pickle.load(sys.stdin.buffer), open(sys.argv[1], 'wb'))"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(path)], input=pickle.dumps(_ensembles()), check=True
    )


@writes(
    "sklearn/tabular.skops",
    "skops",
    "skops.io.dump of the tabular pipeline",
    ("sklearn", "skops", "pandas"),
)
def _w14(path: Path) -> None:
    import skops.io

    skops.io.dump(_tabular(), path)


@writes(
    "sklearn/assorted.skops",
    "skops",
    "skops.io.dump of the assorted estimators",
    ("sklearn", "skops"),
)
def _w15(path: Path) -> None:
    import skops.io

    skops.io.dump(_assorted(), path)


@writes(
    "sklearn/custom-transformer.joblib",
    "scikit-learn",
    "joblib.dump of a pipeline with a transformer class of the user's own package",
    SK,
)
def _w16(path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from .user_estimators import ClipOutliers

    _dump_joblib(make_pipeline(ClipOutliers(), LogisticRegression()).fit(*_xy()), path)


@writes(
    "sklearn/randomized-search.joblib",
    "scikit-learn",
    "joblib.dump of a fitted RandomizedSearchCV: scipy.stats distributions, make_scorer, "
    "SelectKBest(f_classif)",
    ("sklearn", "joblib", "scipy"),
)
def _w17(path: Path) -> None:
    from scipy import stats
    from sklearn.feature_selection import SelectKBest, f_classif
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import fbeta_score, make_scorer
    from sklearn.model_selection import RandomizedSearchCV
    from sklearn.pipeline import Pipeline

    pipe = Pipeline([("select", SelectKBest(f_classif, k=2)), ("clf", LogisticRegression())])
    search = RandomizedSearchCV(
        pipe,
        {"clf__C": stats.loguniform(1e-3, 1e2), "select__k": stats.randint(1, 4)},
        n_iter=2,
        cv=2,
        scoring=make_scorer(fbeta_score, beta=2),
        random_state=0,
    )
    _dump_joblib(search.fit(*_xy()), path)


@writes(
    "sklearn/column-selector.joblib",
    "scikit-learn",
    "joblib.dump of a ColumnTransformer selecting by dtype (make_column_selector(np.number)), "
    "remainder passthrough, KBinsDiscretizer, SplineTransformer, TargetEncoder",
    ("sklearn", "joblib", "pandas"),
)
def _w18(path: Path) -> None:
    import numpy as np
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import KBinsDiscretizer, SplineTransformer, TargetEncoder

    frame, y = _frame()
    frame = frame.fillna(0)
    columns = ColumnTransformer(
        [
            ("bins", KBinsDiscretizer(n_bins=3, quantile_method="averaged_inverted_cdf"), ["age"]),
            ("spline", SplineTransformer(n_knots=3), make_column_selector(dtype_include=np.number)),
            ("target", TargetEncoder(cv=2), ["city"]),
        ],
        remainder="drop",
    )
    _dump_joblib(make_pipeline(columns, LogisticRegression()).fit(frame, y), path)
