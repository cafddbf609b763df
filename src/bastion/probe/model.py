"""The model under test, behind one small interface every attack uses.

`Model.query(frame)` takes raw feature rows (a pandas DataFrame whose columns are the features,
in the data's order and dtypes), counts each row as one query against the budget, and returns
the predicted labels and, when the model gives them, class scores. Adapters: scikit-learn-style
estimators and pipelines (also XGBoost's and LightGBM's scikit-learn classes), XGBoost boosters,
ONNX models (onnxruntime) and PyTorch modules; HTTP endpoints are in endpoint.py.

Files are loaded only through the scan gate (`load_model`): the bytes are read once, scanned,
judged by the policy, and only those bytes are loaded — pickles and joblib files through
safe_load's allowlisting unpickler, ONNX into an onnxruntime session built from the bytes (no
custom-op libraries), XGBoost JSON/UBJSON and LightGBM text into their Boosters (after the
scanner checked their tree structure). A model that fails the scan is refused with the scan's
findings (UnsafeArtifactError); a pickled XGBClassifier/LGBMClassifier needs the named allowance
for its Booster class (`--allow-global`, see safe_load)."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from bastion.errors import BastionError, MissingExtra, UsageError

if TYPE_CHECKING:
    import numpy
    import pandas

    from bastion.config import Settings


class QueryBudgetExceeded(BastionError):
    """The attack asked for more queries than the model's budget allows."""


class Output(NamedTuple):
    labels: numpy.ndarray  # (n,) the model's labels, as label_text() strings
    scores: numpy.ndarray | None  # (n, k) class scores in `Model.classes` order; None: labels only
    # (n,) rows the model refused (or raised on) in a partial query; their label is "" (no
    # class) and their scores NaN. None: every row was answered.
    refused: numpy.ndarray | None = None


REFUSED_LABEL = ""  # the label of a row the model refused in a partial query


class Allowance:
    """The rows one query may still send, re-sends and retries included (None: no limit but
    the model's budget); shared by the threads that send its parts."""

    def __init__(self, model: Model, spare: int | None) -> None:
        self.model = model
        self.spare = spare

    def take(self, rows: int) -> bool:
        """Charge `rows` more rows sent when the budget and the spare rows allow; False when
        they do not (nothing charged)."""
        with self.model._lock:
            if self.spare is not None and rows > self.spare:
                return False
            if self.model.budget is not None and self.model.queries + rows > self.model.budget:
                return False
            self.model.queries += rows
            if self.spare is not None:
                self.spare -= rows
            return True


def _answered(out: Output) -> Output:
    import numpy as np

    return out._replace(refused=np.zeros(len(out.labels), dtype=bool))


def refused_output(model: Model, rows: int) -> Output:
    """`rows` rows the model refused: no label, NaN scores."""
    import numpy as np

    scores = np.full((rows, len(model.classes)), np.nan) if model.gives_scores else None
    return Output(np.array([REFUSED_LABEL] * rows, dtype=object), scores, np.ones(rows, dtype=bool))


def join_outputs(parts: Sequence[Output]) -> Output:
    """Outputs of consecutive parts of one frame, as one."""
    import numpy as np

    labels = np.concatenate([p.labels for p in parts]).astype(object)
    scores = None
    if parts and all(p.scores is not None for p in parts):
        scores = np.concatenate([np.asarray(p.scores, dtype=float) for p in parts])
    refused = np.concatenate(
        [p.refused if p.refused is not None else np.zeros(len(p.labels), bool) for p in parts]
    )
    return Output(labels, scores, refused)


def label_text(value: Any) -> str:
    """One spelling per label, whatever type the model returns (1, 1.0, np.int64(1), "1")."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        number = float(value)
        if math.isfinite(number) and number == int(number):
            return str(int(number))
        return repr(number)
    return str(value)


class Model:
    """A classifier under test. Subclasses implement `_predict(frame) -> Output`."""

    kind = "model"
    positional = True  # input is a positional array: column names do not reach the model

    def __init__(self, name: str, classes: Sequence[Any], budget: int | None = None) -> None:
        self.name = name
        self.classes: tuple[str, ...] = tuple(label_text(c) for c in classes)
        self.budget = budget
        self.queries = 0  # every row sent: re-sends and retries included
        self._lock = threading.Lock()

    budget_hint = "raise the model's query budget, or probe fewer rows"

    @property
    def gives_scores(self) -> bool:
        return True

    def budget_exceeded(self, rows: int) -> QueryBudgetExceeded:
        return QueryBudgetExceeded(
            f"query budget of {self.budget:,} exhausted ({self.queries:,} used, "
            f"{rows:,} more asked)",
            hint=self.budget_hint,
        )

    def query(
        self, frame: pandas.DataFrame, *, partial: bool = False, allowance: int | None = None
    ) -> Output:
        """Predict rows, counting each as one query; QueryBudgetExceeded past the budget (or
        past `allowance` rows). A partial query does not fail on rows the model refuses (an
        endpoint's 4xx, an exception from an in-process model): the refused part is split and
        re-sent (each row sent counts) until the refused rows are found, and they come back
        marked in `Output.refused`; rows the allowance leaves no room to re-send count as
        refused."""
        rows = len(frame)
        charge = Allowance(self, allowance)
        if not charge.take(rows):
            if allowance is not None and rows > allowance:
                raise QueryBudgetExceeded(f"{rows:,} rows asked, {allowance:,} allowed")
            raise self.budget_exceeded(rows)
        if rows == 0:
            import numpy as np

            empty = np.zeros((0, len(self.classes))) if self.gives_scores else None
            return Output(np.array([], dtype=object), empty)
        if not partial:
            return self._predict(frame)
        return self._partial(frame, charge)

    def _refusal(self, exc: Exception) -> bool:
        """Whether an exception from `_predict` is the model refusing its input (not a failure
        of the probe): anything an in-process model raises that is not bastion's own error."""
        return not isinstance(exc, BastionError)

    def _partial(self, frame: pandas.DataFrame, charge: Allowance) -> Output:
        """`frame` (already charged) answered, the refused rows found by halving."""
        try:
            return _answered(self._predict(frame))
        except Exception as exc:
            if not self._refusal(exc):
                raise
        n = len(frame)
        if n == 1:
            return refused_output(self, 1)
        parts = []
        for half in (frame.iloc[: n // 2], frame.iloc[n // 2 :]):
            if charge.take(len(half)):
                parts.append(self._partial(half, charge))
            else:
                parts.append(refused_output(self, len(half)))
        return join_outputs(parts)

    def raw_query(self, frame: pandas.DataFrame) -> Output:
        """As `query`, for the consistency checks that send unusual input on purpose."""
        return self.query(frame)

    def _predict(self, frame: pandas.DataFrame) -> Output:
        raise NotImplementedError

    def class_index(self, label: str) -> int:
        try:
            return self.classes.index(label)
        except ValueError:
            raise UsageError(
                f"the model has no class {label!r}",
                hint=f"its classes are {', '.join(self.classes[:20])}; map the data's labels "
                "to them with --label-map VALUE=CLASS",
            ) from None


def _texts(values: Any) -> numpy.ndarray:
    import numpy as np

    flat = np.asarray(values).reshape(-1)
    return np.array([label_text(v) for v in flat], dtype=object)


def numeric_matrix(frame: pandas.DataFrame, dtype: str = "float32") -> numpy.ndarray:
    """Every column as a number; a text column is a usage error naming it."""
    import numpy as np
    import pandas as pd

    for column in frame.columns:
        if not (
            pd.api.types.is_numeric_dtype(frame[column])
            or pd.api.types.is_bool_dtype(frame[column])
        ):
            raise UsageError(
                f"this model takes numbers only, and column {str(column)[:60]!r} holds text",
                hint="encode the column as the model was trained on it, or probe the pipeline "
                "that does",
            )
    return np.asarray(frame.to_numpy(dtype=float), dtype=dtype)


class EstimatorModel(Model):
    """A scikit-learn-style estimator or pipeline (also XGBoost's and LightGBM's sklearn
    classes): `predict`, and `predict_proba` when it has one. A model fitted on a DataFrame
    (`feature_names_in_`) gets a DataFrame in its own column order; one fitted on an array gets
    the rows as an array in the data's column order."""

    kind = "estimator"

    def __init__(self, estimator: Any, name: str = "model", budget: int | None = None) -> None:
        if not callable(getattr(estimator, "predict", None)):
            raise UsageError(f"{name}: a {type(estimator).__name__} has no predict()")
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise UsageError(
                f"{name}: {type(estimator).__name__} has no classes_: probe classifiers only"
            )
        super().__init__(name, list(classes), budget)
        self.estimator = estimator
        names = getattr(estimator, "feature_names_in_", None)
        self.feature_names = [str(n) for n in names] if names is not None else None
        self.positional = self.feature_names is None
        self._has_proba = callable(getattr(estimator, "predict_proba", None))
        self._argmax = self._has_proba and _predicts_argmax(estimator)

    @property
    def gives_scores(self) -> bool:
        return self._has_proba

    def _input(self, frame: pandas.DataFrame) -> Any:
        if self.feature_names is not None:
            return frame
        if all(str(t) != "object" and str(t) != "str" for t in frame.dtypes):
            try:
                return frame.to_numpy(dtype=float)
            except (TypeError, ValueError):
                pass
        return frame.to_numpy(dtype=object)

    def _predict(self, frame: pandas.DataFrame) -> Output:
        if self.feature_names is not None and list(frame.columns) != self.feature_names:
            missing = [n for n in self.feature_names if n not in frame.columns]
            if not missing:
                frame = frame[self.feature_names]
        data = self._input(frame)
        if self._has_proba:
            import numpy as np

            scores = np.asarray(self.estimator.predict_proba(data), dtype=float)
            if self._argmax:  # predict() would compute the same scores again
                classes = np.array(self.classes, dtype=object)
                return Output(classes[scores.argmax(axis=1)], scores)
            labels = _texts(self.estimator.predict(data))
            return Output(labels, scores)
        return Output(_texts(self.estimator.predict(data)), None)

    def raw_query(self, frame: pandas.DataFrame) -> Output:
        self.queries += len(frame)
        data = frame if self.feature_names is not None else self._input(frame)
        labels = _texts(self.estimator.predict(data))
        return Output(labels, None)


# Classifiers whose predict() is, by their code, classes_[argmax(predict_proba())] (binary
# ties at 0.5 go to the first class either way). Anything else (SVC with probability=True,
# threshold-tuned classifiers, unknown estimators) is asked predict() as well.
_ARGMAX_CLASSIFIERS = frozenset(
    {
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.ensemble._forest.ExtraTreesClassifier",
        "sklearn.ensemble._gb.GradientBoostingClassifier",
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
        "sklearn.naive_bayes.GaussianNB",
        "sklearn.neighbors._classification.KNeighborsClassifier",
    }
)


def _predicts_argmax(estimator: Any) -> bool:
    """Whether labels may be read off the scores (a scikit-learn Pipeline: its last step)."""
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list) and steps and type(estimator).__name__ == "Pipeline":
        estimator = steps[-1][1]
    kind = type(estimator)
    return f"{kind.__module__}.{kind.__qualname__}" in _ARGMAX_CLASSIFIERS


class BoosterModel(Model):
    """An XGBoost or LightGBM Booster (loaded from its JSON/UBJSON or text file, or handed
    over): numbers only; binary boosters give the positive class's probability."""

    def __init__(self, booster: Any, name: str, classes: Sequence[Any], budget: int | None = None):
        super().__init__(name, classes, budget)
        self.booster = booster
        self.kind = "lightgbm" if type(booster).__module__.startswith("lightgbm") else "xgboost"
        if self.kind == "lightgbm":
            names = list(booster.feature_name())
            if all(n == f"Column_{i}" for i, n in enumerate(names)):  # fitted on an array
                names = []
        else:
            names = list(booster.feature_names or [])
        self.feature_names = [str(n) for n in names] if names else None
        self.positional = self.feature_names is None

    def _predict(self, frame: pandas.DataFrame) -> Output:
        import numpy as np

        if self.feature_names is not None and set(self.feature_names) <= set(frame.columns):
            frame = frame[self.feature_names]
        if self.kind == "lightgbm":
            raw = np.asarray(self.booster.predict(numeric_matrix(frame, "float64")), dtype=float)
        else:
            import xgboost

            matrix = xgboost.DMatrix(numeric_matrix(frame), feature_names=self.feature_names)
            raw = np.asarray(self.booster.predict(matrix), dtype=float)
        scores = np.column_stack([1 - raw, raw]) if raw.ndim == 1 else raw
        if scores.shape[1] != len(self.classes):
            raise UsageError(
                f"{self.name}: the booster gives {scores.shape[1]} scores for "
                f"{len(self.classes)} classes",
                hint="name the classes in score order (--classes)",
            )
        return Output(np.array(self.classes, dtype=object)[scores.argmax(axis=1)], scores)


class OnnxModel(Model):
    """An ONNX classifier in onnxruntime: one numeric input holding every feature, or one input
    per feature (skl2onnx pipelines with text columns); a label output and, when present, a
    probability output (a tensor or skl2onnx's list of per-class maps)."""

    kind = "onnx"

    def __init__(
        self, session: Any, name: str, classes: Sequence[Any] = (), budget: int | None = None
    ):
        self.session = session
        self.inputs = session.get_inputs()
        outputs = session.get_outputs()
        self.label_output = next(
            (o.name for o in outputs if "int64" in o.type or "string" in o.type), None
        )
        self.score_output = next(
            (o.name for o in outputs if o.name != self.label_output),
            None,
        )
        if self.label_output is None and self.score_output is None:
            raise UsageError(f"{name}: the ONNX model has no outputs")
        super().__init__(name, classes, budget)
        self.positional = len(self.inputs) == 1

    @property
    def gives_scores(self) -> bool:
        return self.score_output is not None

    def _feeds(self, frame: pandas.DataFrame) -> dict[str, Any]:
        import numpy as np

        if len(self.inputs) == 1:
            kind = self.inputs[0].type
            dtype = "float64" if "double" in kind else "int64" if "int64" in kind else "float32"
            return {self.inputs[0].name: numeric_matrix(frame, dtype)}
        feeds = {}
        for item in self.inputs:
            if item.name not in frame.columns:
                raise UsageError(f"the ONNX model needs an input column {item.name!r}")
            column = frame[item.name].to_numpy()
            if "string" in item.type:
                values = np.array([str(v) for v in column], dtype=object)
            elif "int64" in item.type:
                values = column.astype("int64")
            elif "double" in item.type:
                values = column.astype("float64")
            else:
                values = column.astype("float32")
            feeds[item.name] = values.reshape(-1, 1)
        return feeds

    def _predict(self, frame: pandas.DataFrame) -> Output:
        import numpy as np

        wanted = [n for n in (self.label_output, self.score_output) if n]
        results = dict(zip(wanted, self.session.run(wanted, self._feeds(frame)), strict=True))
        scores = None
        if self.score_output is not None:
            raw = results[self.score_output]
            if isinstance(raw, list):  # ZipMap: one {class: probability} per row
                keys = sorted(raw[0], key=label_text) if raw else []
                if not self.classes:
                    self.classes = tuple(label_text(k) for k in keys)
                scores = np.array([[row[k] for k in keys] for row in raw], dtype=float)
            else:
                scores = np.asarray(raw, dtype=float)
                if scores.ndim == 1:
                    scores = np.column_stack([1 - scores, scores])
        labels = _texts(results[self.label_output]) if self.label_output is not None else None
        if not self.classes and scores is not None:
            self.classes = self._classes_from(labels, scores)
        if labels is None:
            assert scores is not None
            labels = np.array(self.classes, dtype=object)[scores.argmax(axis=1)]
        return Output(labels, scores)

    def _classes_from(self, labels: numpy.ndarray | None, scores: numpy.ndarray) -> tuple[str, ...]:
        """The classes in score order, when the graph gives a score tensor (no ZipMap): from
        the label each row got against its highest score. A class that is never the top
        score in the first batch cannot be named: a usage error asking for --classes."""
        if labels is None:
            return tuple(str(i) for i in range(scores.shape[1]))
        top = scores.argmax(axis=1)
        named: dict[int, str] = {}
        for index, label in zip(top, labels, strict=True):
            if named.setdefault(int(index), str(label)) != str(label):
                raise UsageError(
                    f"{self.name}: the ONNX model's labels do not follow its scores",
                    hint="name the classes in score order (--classes)",
                )
        if len(named) != scores.shape[1]:
            raise UsageError(
                f"{self.name}: cannot tell the ONNX model's classes from its answers",
                hint="name the classes in score order (--classes)",
            )
        return tuple(named[i] for i in range(scores.shape[1]))


class TorchModel(Model):
    """A PyTorch module taking a float tensor of every feature and returning logits: (n, k)
    for k classes (softmax), or (n,) / (n, 1) for two (sigmoid)."""

    kind = "torch"

    def __init__(
        self, module: Any, name: str, classes: Sequence[Any] = (0, 1), budget: int | None = None
    ):
        super().__init__(name, classes, budget)
        self.module = module.eval()

    def _predict(self, frame: pandas.DataFrame) -> Output:
        import numpy as np
        import torch

        with torch.no_grad():
            logits = self.module(torch.from_numpy(numeric_matrix(frame)))
        out = logits.detach().cpu().numpy().astype(float)
        if out.ndim == 1 or out.shape[1] == 1:
            positive = 1 / (1 + np.exp(-out.reshape(-1)))
            scores = np.column_stack([1 - positive, positive])
        else:
            shifted = np.exp(out - out.max(axis=1, keepdims=True))
            scores = shifted / shifted.sum(axis=1, keepdims=True)
        if scores.shape[1] != len(self.classes):
            raise UsageError(
                f"{self.name}: the module gives {scores.shape[1]} scores for "
                f"{len(self.classes)} classes"
            )
        return Output(np.array(self.classes, dtype=object)[scores.argmax(axis=1)], scores)


def wrap(
    model: Any, name: str = "model", classes: Sequence[Any] = (), budget: int | None = None
) -> Model:
    """An adapter for a model handed over as a Python object."""
    if isinstance(model, Model):
        return model
    kind = type(model).__module__.split(".")[0]
    if kind == "torch" or _is_torch_module(model):
        return TorchModel(model, name, classes or (0, 1), budget)
    if kind == "onnxruntime":
        return OnnxModel(model, name, classes, budget)
    if kind in ("xgboost", "lightgbm") and type(model).__name__ == "Booster":
        return BoosterModel(model, name, classes or (0, 1), budget)
    return EstimatorModel(model, name, budget)


def _is_torch_module(model: Any) -> bool:
    return any(c.__module__.startswith("torch.nn") for c in type(model).__mro__)


def load_model(
    path: Path,
    settings: Settings | None = None,
    classes: Sequence[Any] = (),
    budget: int | None = None,
    allow_globals: Sequence[str] = (),
) -> Model:
    """A model file loaded through the scan gate (see the module docstring). `allow_globals`
    is safe_load's named allowance for pickled classes outside the allowlist."""
    from bastion.scan.safe_load import load_scanned, read_checked

    data, report = read_checked(path, settings)
    fmt = report.results[0].format
    name = path.name
    try:
        loaded = load_scanned(data, fmt, report=report, allow_globals=allow_globals)
    except ModuleNotFoundError as exc:
        raise MissingExtra(exc.name or "a model library", "probe") from None
    if fmt == "onnx":
        return OnnxModel(loaded, name, classes, budget)
    if isinstance(loaded, dict) and fmt == "zip":
        raise UsageError(
            f"{name} holds PyTorch weights, not a model bastion can run (weights-only loading "
            "never rebuilds the module's code)",
            hint="export the model to ONNX, or pass the module through the Python API "
            "(bastion.probe.run_probe(model=module, ...))",
        )
    return wrap(loaded, name, classes, budget)
