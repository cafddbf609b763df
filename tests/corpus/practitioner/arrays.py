"""NumPy, SciPy and pandas objects saved with their own writers and with pickle/joblib."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from .registry import writes


def _pickle(obj: Any, path: Path, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def _numbers() -> Any:
    import numpy as np

    return np.random.default_rng(0).normal(size=(8, 4))


# ---- numpy ------------------------------------------------------------------------------------


@writes("numpy/weights.npy", "numpy", "np.save of a float32 matrix")
def _npy(path: Path) -> None:
    import numpy as np

    np.save(path, _numbers().astype(np.float32))


@writes("numpy/structured.npy", "numpy", "np.save of a structured (record) array")
def _structured(path: Path) -> None:
    import numpy as np

    dtype = np.dtype(
        [("id", "<i8"), ("score", "<f4"), ("flag", "?"), ("code", "S4"), ("pos", "<f8", (3,))]
    )
    np.save(path, np.zeros(5, dtype=dtype))


@writes("numpy/strings-object.npy", "numpy", "np.save of an object array of plain strings")
def _object_strings(path: Path) -> None:
    import numpy as np

    np.save(path, np.array(["cat", "dog", "bird"], dtype=object), allow_pickle=True)


@writes("numpy/utf8-fields.npy", "numpy", "np.save of a record array with non-ASCII field names")
def _utf8_fields(path: Path) -> None:
    import numpy as np

    # non-latin-1 field names make np.save write format version 3.0 (UTF-8 header)
    np.save(path, np.zeros(3, dtype=[("température", "<f4"), ("距离", "<i4")]))


@writes(
    "numpy/object-ragged.npy",
    "numpy",
    "np.save of a ragged object array (variable-length sequences as arrays, lists and dicts)",
)
def _ragged(path: Path) -> None:
    import numpy as np

    ragged = np.empty(4, dtype=object)
    ragged[:] = [np.arange(3), np.arange(5, dtype=np.float32), [1, 2], {"id": 7, "text": "x"}]
    np.save(path, ragged, allow_pickle=True)


@writes("numpy/arrays.npz", "numpy", "np.savez of weights and labels")
def _npz(path: Path) -> None:
    import numpy as np

    np.savez(path, w=_numbers(), b=np.arange(4), labels=np.array(["a", "b"]))


@writes("numpy/compressed.npz", "numpy", "np.savez_compressed of mixed dtypes")
def _npz_compressed(path: Path) -> None:
    import numpy as np

    np.savez_compressed(
        path,
        f16=_numbers().astype(np.float16),
        c64=np.ones(3, dtype=np.complex64),
        u8=np.arange(10, dtype=np.uint8),
        dt=np.array(["2024-01-01"], dtype="datetime64[D]"),
    )


@writes("numpy/masked.pkl", "numpy", "pickle of a masked array")
def _masked(path: Path) -> None:
    import numpy as np

    _pickle(np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False]), path)


@writes(
    "numpy/rng-state.pkl",
    "numpy",
    "pickle of a Generator, its bit generator state, a SeedSequence and legacy RandomState",
)
def _rng(path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(42)
    _pickle(
        {
            "rng": rng,
            "state": rng.bit_generator.state,
            "seed_seq": np.random.SeedSequence(1234),
            "legacy": np.random.RandomState(7),
            "mt19937": np.random.Generator(np.random.MT19937(3)),
        },
        path,
    )


@writes("numpy/ufuncs-dtypes.pkl", "numpy", "pickle of a config holding ufuncs, dtypes, scalars")
def _ufuncs(path: Path) -> None:
    import numpy as np

    _pickle(
        {
            "activation": np.tanh,
            "reduce": np.add,
            "dtype": np.dtype("float32"),
            "type": np.float64,
            "scalar": np.float32(1.5),
            "int": np.int64(3),
            "bool": np.bool_(True),
            "dt": np.datetime64("2024-05-01T12:00"),
            "td": np.timedelta64(5, "m"),
            "matrix": _numbers(),
        },
        path,
    )


@writes("numpy/protocol2.pkl", "numpy", "pickle protocol 2 of arrays (python-2 era files)")
def _proto2(path: Path) -> None:
    import numpy as np

    _pickle({"w": _numbers(), "i": np.arange(3, dtype=np.int32)}, path, protocol=2)


# ---- scipy ------------------------------------------------------------------------------------


def _sparse() -> Any:
    from scipy import sparse

    return sparse.random(20, 10, density=0.2, format="csr", random_state=0)


@writes("scipy/csr.npz", "scipy", "scipy.sparse.save_npz of a CSR matrix")
def _save_npz(path: Path) -> None:
    from scipy import sparse

    sparse.save_npz(path, _sparse())


@writes("scipy/coo-uncompressed.npz", "scipy", "scipy.sparse.save_npz of a COO matrix")
def _save_npz_coo(path: Path) -> None:
    from scipy import sparse

    sparse.save_npz(path, _sparse().tocoo(), compressed=False)


@writes("scipy/sparse-matrices.pkl", "scipy", "pickle of CSR/CSC/COO/LIL/DOK matrices and arrays")
def _sparse_pickle(path: Path) -> None:
    from scipy import sparse

    m = _sparse()
    _pickle(
        {
            "csr": m,
            "csc": m.tocsc(),
            "coo": m.tocoo(),
            "lil": m.tolil(),
            "dok": m.todok(),
            "bsr": m.tobsr(),
            "dia": sparse.eye(4, format="dia"),
            "csr_array": sparse.csr_array(m),
        },
        path,
    )


@writes("scipy/kdtree.pkl", "scipy", "pickle of a scipy.spatial KDTree index")
def _kdtree(path: Path) -> None:
    from scipy.spatial import KDTree

    _pickle(KDTree(_numbers()), path)


@writes("scipy/interpolator.pkl", "scipy", "pickle of fitted interpolators and a spline")
def _interp(path: Path) -> None:
    import numpy as np
    from scipy.interpolate import CubicSpline, interp1d

    x = np.linspace(0, 1, 10)
    _pickle({"interp": interp1d(x, x**2), "spline": CubicSpline(x, np.sin(x))}, path)


# ---- pandas -----------------------------------------------------------------------------------


def _frame() -> Any:
    """A DataFrame with one column of every pandas dtype."""
    import datetime as dt
    import zoneinfo

    import numpy as np
    import pandas as pd

    n = 4
    return pd.DataFrame(
        {
            "int8": np.arange(n, dtype=np.int8),
            "int64": np.arange(n, dtype=np.int64),
            "uint32": np.arange(n, dtype=np.uint32),
            "float16": np.ones(n, dtype=np.float16),
            "float64": np.linspace(0, 1, n),
            "complex": np.ones(n, dtype=np.complex128),
            "bool": [True, False, True, False],
            "object": ["a", 1, None, 2.5],
            "str": pd.array(["w", "x", "y", "z"], dtype="string"),
            "Int64": pd.array([1, None, 3, 4], dtype="Int64"),
            "Float32": pd.array([0.5, None, 1.5, 2.0], dtype="Float32"),
            "boolean": pd.array([True, None, False, True], dtype="boolean"),
            "category": pd.Categorical(
                ["lo", "hi", "lo", "mid"], categories=["lo", "mid", "hi"], ordered=True
            ),
            "datetime": pd.date_range("2024-01-01", periods=n, freq="D"),
            "datetime_tz": pd.date_range(
                "2024-01-01", periods=n, freq="h", tz=zoneinfo.ZoneInfo("Europe/Paris")
            ),
            "datetime_utc": pd.date_range("2024-01-01", periods=n, freq="min", tz="UTC"),
            "datetime_fixed": pd.date_range(
                "2024-01-01", periods=n, freq="s", tz=dt.timezone(dt.timedelta(hours=5, minutes=30))
            ),
            "timedelta": pd.to_timedelta(np.arange(n), unit="s"),
            "period": pd.period_range("2024-01", periods=n, freq="M"),
            "interval": pd.interval_range(0, n),
            "sparse": pd.arrays.SparseArray([0, 0, 1, 0]),
            "decimal_obj": [dt.date(2024, 1, i + 1) for i in range(n)],
        },
        index=pd.Index([f"r{i}" for i in range(n)], name="row"),
    )


@writes("pandas/every-dtype.pkl", "pandas", "DataFrame.to_pickle, one column of every dtype")
def _df_pickle(path: Path) -> None:
    _frame().to_pickle(path)


@writes("pandas/every-dtype.pkl.gz", "pandas", "DataFrame.to_pickle with gzip compression")
def _df_gzip(path: Path) -> None:
    _frame().to_pickle(path, compression="gzip")


@writes("pandas/every-dtype.pkl.bz2", "pandas", "DataFrame.to_pickle with bz2 compression")
def _df_bz2(path: Path) -> None:
    _frame().to_pickle(path, compression="bz2")


@writes("pandas/every-dtype.pkl.xz", "pandas", "DataFrame.to_pickle with xz compression")
def _df_xz(path: Path) -> None:
    _frame().to_pickle(path, compression="xz")


@writes("pandas/every-dtype.pkl.zip", "pandas", "DataFrame.to_pickle with zip compression")
def _df_zip(path: Path) -> None:
    _frame().to_pickle(path, compression="zip")


@writes("pandas/frame-protocol4.pkl", "pandas", "pickle.dump protocol 4 of a DataFrame")
def _df_proto4(path: Path) -> None:
    _pickle(_frame(), path, protocol=4)


@writes("pandas/frame.joblib", "pandas", "joblib.dump of a DataFrame", ("pandas", "joblib"))
def _df_joblib(path: Path) -> None:
    import joblib

    joblib.dump(_frame(), path)


@writes(
    "pandas/series-and-index.pkl",
    "pandas",
    "pickle of Series, MultiIndex, Timestamps with zones, Timedelta, offsets",
)
def _series(path: Path) -> None:
    import zoneinfo

    import pandas as pd

    idx = pd.MultiIndex.from_product([["a", "b"], [1, 2]], names=["k", "n"])
    _pickle(
        {
            "series": pd.Series([1.0, 2.0, 3.0, 4.0], index=idx, name="y"),
            "ts": pd.Timestamp("2024-03-10 12:30", tz=zoneinfo.ZoneInfo("America/New_York")),
            "ts_naive": pd.Timestamp("2024-01-01"),
            "td": pd.Timedelta("1h"),
            "offset": pd.offsets.BusinessDay(2),
            "nat": pd.NaT,
            "na": pd.NA,
            "period": pd.Period("2024Q1"),
            "range": pd.RangeIndex(5),
            "dtindex": pd.DatetimeIndex(["2024-01-01", "2024-02-01"]),
        },
        path,
    )


@writes("pandas/groupby-stats.pkl", "pandas", "pickle of describe()/pivot results (feature stats)")
def _stats(path: Path) -> None:
    frame = _frame()
    _pickle(
        {
            "describe": frame[["float64", "int64", "int8"]].describe(),
            "corr": frame[["float64", "int64"]].corr(),
            "value_counts": frame["category"].value_counts(),
        },
        path,
    )


@writes(
    "pandas/pytz-dateutil.pkl",
    "pandas",
    "DataFrame.to_pickle of timestamps in pytz and dateutil zones",
    ("pandas", "pytz", "dateutil"),
)
def _pytz(path: Path) -> None:
    import pandas as pd
    import pytz
    from dateutil import tz

    pd.DataFrame(
        {
            "pytz": pd.date_range("2024-01-01", periods=3, tz=pytz.timezone("Asia/Tokyo")),
            "dateutil": pd.date_range("2024-01-01", periods=3, tz=tz.gettz("Europe/Berlin")),
            "ts": [pd.Timestamp("2024-06-01", tz=pytz.utc)] * 3,
        }
    ).to_pickle(path)
