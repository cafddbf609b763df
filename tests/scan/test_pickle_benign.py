"""Ordinary pickles written by the real libraries pass the default gate (issue #7, "False
positives on ordinary files", pickle side). Each case failed before the exact-object allowlist
judged by use."""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.util
import io
import pathlib
import pickle
import warnings
import zoneinfo
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers import scan_data

from bastion.findings import Severity


def flagged(data: bytes, name: str = "x.pkl", at_least: Severity = Severity.LOW) -> list[str]:
    result = scan_data(data, name)
    assert not result.incomplete and not result.errors
    return [
        f"{f.rule_id} {f.severity.value} {f.evidence}"
        for f in result.findings
        if f.severity.rank >= at_least.rank
    ]


def _frame() -> Any:
    pd = pytest.importorskip("pandas")
    pytz = pytest.importorskip("pytz")
    n = 4
    return pd.DataFrame(
        {
            "int": np.arange(n),
            "float": np.linspace(0, 1, n),
            "bool": [True, False] * 2,
            "obj": ["a", "b", "c", "d"],
            "cat": pd.Categorical(["x", "y", "x", "y"]),
            "dt": pd.date_range("2026-01-01", periods=n),
            "dt_zoneinfo": pd.date_range(
                "2026-01-01", periods=n, tz=zoneinfo.ZoneInfo("Europe/Paris")
            ),
            "dt_pytz": pd.date_range("2026-01-01", periods=n, tz=pytz.timezone("US/Eastern")),
            "dt_utc": pd.date_range("2026-01-01", periods=n, tz="UTC"),
            "td": pd.to_timedelta(np.arange(n), unit="s"),
            "period": pd.period_range("2026-01", periods=n, freq="M"),
            "interval": pd.interval_range(0, n),
            "sparse": pd.arrays.SparseArray([0, 0, 1, 0]),
            "Int64": pd.array([1, None, 3, 4], dtype="Int64"),
            "boolean": pd.array([True, None, False, True], dtype="boolean"),
            "string": pd.array(["a", None, "c", "d"], dtype="string"),
            "Float64": pd.array([0.5, None, 1.5, 2.0], dtype="Float64"),
        },
        index=pd.Index(list("wxyz"), name="key"),
    )


def _arrow_backed(dtype: Any) -> bool:
    """pandas 3 keeps strings ("str", "string") in Arrow arrays when pyarrow is installed."""
    categories = getattr(dtype, "categories", None)
    if categories is not None and _arrow_backed(categories.dtype):
        return True
    return getattr(dtype, "storage", None) == "pyarrow" or type(dtype).__name__ == "ArrowDtype"


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pandas_frame_of_every_dtype(protocol: int) -> None:
    """Clean, Arrow-backed data included: pandas 3 keeps strings ("str", "string") in Arrow
    arrays when pyarrow is installed, and every pickled Arrow array is rebuilt by
    pyarrow.lib._restore_array without validation (PKL010 when the data is inconsistent,
    test_pickle_arrow.py). bastion checks the pickled lengths, offsets and buffers as
    pyarrow's full validation would, and what pandas writes is consistent. The same frame
    with Python-object strings is clean too."""
    pd = pytest.importorskip("pandas")
    frame = _frame()
    dtypes = [*frame.dtypes, frame.index.dtype]
    if importlib.util.find_spec("pyarrow") and int(pd.__version__.split(".")[0]) >= 3:
        assert any(map(_arrow_backed, dtypes))  # the case this test is about
    assert flagged(pickle.dumps(frame, protocol=protocol)) == []
    assert flagged(pickle.dumps(frame.set_index(["obj", "int"]), protocol=protocol)) == []
    assert flagged(pickle.dumps(frame["dt_zoneinfo"], protocol=protocol)) == []  # str index
    options = ["mode.string_storage", "python"]
    if "future.infer_string" in pd.options.future.__dir__():
        options += ["future.infer_string", False]
    with warnings.catch_warnings(), pd.option_context(*options):
        warnings.simplefilter("ignore")  # pandas 3 deprecates turning string inference off
        plain = _frame()
    assert not any(map(_arrow_backed, [*plain.dtypes, plain.index.dtype]))
    assert flagged(pickle.dumps(plain, protocol=protocol)) == []
    assert flagged(pickle.dumps(plain.set_index(["obj", "int"]), protocol=protocol)) == []
    assert flagged(pickle.dumps(plain["dt_zoneinfo"], protocol=protocol)) == []


def test_zoneinfo_timestamp_is_not_critical() -> None:
    pd = pytest.importorskip("pandas")
    stamp = pd.Timestamp("2026-01-01", tz=zoneinfo.ZoneInfo("Asia/Tokyo"))
    assert flagged(pickle.dumps(stamp, protocol=4)) == []
    assert (
        flagged(pickle.dumps(datetime.datetime(2026, 1, 1, tzinfo=zoneinfo.ZoneInfo("UTC")))) == []
    )


def test_scipy_sparse_matrices_and_arrays() -> None:
    sparse = pytest.importorskip("scipy.sparse")
    dense = np.eye(3)
    for kind in ("csr", "csc", "coo", "lil", "dok", "bsr", "dia"):
        for make in (getattr(sparse, f"{kind}_matrix"), getattr(sparse, f"{kind}_array")):
            assert flagged(pickle.dumps(make(dense), protocol=4)) == [], (kind, make)


def test_numpy_ufuncs_seedsequence_generators_masked_arrays() -> None:
    values: list[Any] = [
        np.add,
        np.log1p,
        np.random.SeedSequence(1),
        np.random.default_rng(0),
        np.random.RandomState(0),
        np.ma.masked_array([1, 2], mask=[0, 1]),
        np.float64(1.5),
        np.datetime64("2026-01-01"),
        np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")]),
        np.array(["a", "bc"], dtype=object),
        np.dtype("O"),
    ]
    for value in values:
        for protocol in (2, 4):
            assert flagged(pickle.dumps(value, protocol=protocol)) == [], value


def _sklearn_models() -> list[Any]:
    pytest.importorskip("sklearn")
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        IsolationForest,
        RandomForestClassifier,
    )
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
    from sklearn.svm import SVC

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    models = [
        LogisticRegression(),
        RandomForestClassifier(n_estimators=3),
        GradientBoostingClassifier(n_estimators=3),
        HistGradientBoostingClassifier(max_iter=3),
        SVC(),
        KMeans(n_clusters=2, n_init=1),
        IsolationForest(n_estimators=3),
        KNeighborsClassifier(algorithm="kd_tree"),
        KNeighborsClassifier(algorithm="ball_tree"),
        MLPClassifier(max_iter=5),
        make_pipeline(
            FunctionTransformer(functools.partial(np.clip, a_min=-1, a_max=1)),
            StandardScaler(),
            PCA(2),
            LogisticRegression(),
        ),
        make_pipeline(FunctionTransformer(np.log1p), LogisticRegression()),
    ]
    fitted = [m.fit(np.abs(x) if "log1p" in repr(m) else x, y) for m in models]
    text = TfidfVectorizer().fit(["red apple", "green pear", "rare words here"])
    encoder = ColumnTransformer([("oh", OneHotEncoder(), [0])]).fit(np.array([["a"], ["b"]]))
    return [*fitted, text, encoder]


def test_scikit_learn_estimators_private_classes_and_cython_helpers() -> None:
    import joblib

    for model in _sklearn_models():
        assert flagged(pickle.dumps(model, protocol=4)) == [], model
        buffer = io.BytesIO()
        joblib.dump(model, buffer)
        assert flagged(buffer.getvalue(), "m.joblib") == [], model


def _torch_save(obj: Any) -> bytes:
    torch = pytest.importorskip("torch")
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_torch_checkpoints_with_quantized_tensors_hooks_namespace_and_paths() -> None:
    torch = pytest.importorskip("torch")
    linear = torch.nn.utils.weight_norm(torch.nn.Linear(2, 2))
    checkpoint = {
        "model": torch.nn.Linear(2, 2).state_dict(),
        "q": torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.qint8),
        "dtype": torch.qint8,
        "args": argparse.Namespace(lr=0.1, arch="transformer", path=pathlib.PurePosixPath("/d")),
        "posix": pathlib.PurePosixPath("/data/run"),
        "path": pathlib.Path("runs/1"),
        "device": torch.device("cpu"),
        "size": torch.Size([2, 3]),
    }
    assert flagged(_torch_save(checkpoint), "ckpt.pt") == []
    assert flagged(_torch_save(linear), "weight-norm.pt") == []
    assert (
        flagged(
            _torch_save(
                torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.GELU())
            ),
            "seq.pt",
        )
        == []
    )


def test_optimizer_and_amp_state() -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": torch.amp.GradScaler("cpu").state_dict(),
        "rng": torch.get_rng_state(),
    }
    assert flagged(_torch_save(state), "opt.pt") == []


def test_lightning_checkpoint(tmp_path: pathlib.Path) -> None:
    pl = pytest.importorskip("lightning.pytorch")
    torch = pytest.importorskip("torch")

    class Tiny(pl.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self, lr: float = 0.1) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch: Any, _index: int) -> Any:
            return self.layer(batch[0]).pow(2).mean()

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.ones(4, 2)), batch_size=2
    )
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
    )
    trainer.fit(Tiny(), data)
    trainer.save_checkpoint(tmp_path / "tiny.ckpt")
    assert flagged((tmp_path / "tiny.ckpt").read_bytes(), "tiny.ckpt") == []


@pytest.mark.parametrize(
    "make",
    [
        lambda: {"a": 1, "nested": [b"\x80\x04K\x01.", "relu"]},
        lambda: pickle.dumps({"inner": [1, 2]}, protocol=4),  # a benign pickle carried as data
    ],
)
def test_values_carrying_benign_pickles_are_clean(make: Callable[[], Any]) -> None:
    assert flagged(pickle.dumps(make(), protocol=4)) == []


def test_fickling_benign_samples_builtins_len_and_future_feature() -> None:
    """fickling's own tests call these benign (test_safe_builtins_not_flagged): the peer-suite
    benchmark found bastion flagging them."""
    import __future__

    import pickle as _pickle

    from helpers import gate_fails, scan_data

    for data in (b"cbuiltins\nlen\n]\x85R.", _pickle.dumps(__future__.annotations)):
        assert not gate_fails(scan_data(data, "m.pkl")), data
