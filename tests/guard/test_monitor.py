"""QueryMonitor: each detector catches its attack on a real model and stays quiet on traffic
replayed from the data; bounds and hostile profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bastion.errors import ConfigError, InputError
from bastion.guard.monitor import (
    ALL_KEYS,
    MonitorSettings,
    QueryMonitor,
    TrainingProfile,
)
from bastion.records import RecordError


class Credit:
    """sklearn's breast-cancer data stands in for a tabular model: 30 real-valued features,
    a logistic regression, the profile fitted on the training half."""

    def __init__(self) -> None:
        from sklearn.datasets import load_breast_cancer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        data = load_breast_cancer()
        rng = np.random.default_rng(0)
        order = rng.permutation(len(data.target))
        self.x = data.data[order]
        self.y = data.target[order]
        half = len(self.x) // 2
        self.train, self.rest = self.x[:half], self.x[half:]
        self.model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        self.model.fit(self.train, self.y[:half])
        self.profile = TrainingProfile.fit(
            self.train, self.score(self.train), features=list(data.feature_names)
        )

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_proba(x)[:, 1])


@pytest.fixture(scope="module")
def credit() -> Credit:
    return Credit()


def feed(monitor: QueryMonitor, key: str, x: np.ndarray, scores: np.ndarray | None) -> list[Any]:
    alerts = []
    for i in range(len(x)):
        alerts += monitor.observe(key, x[i : i + 1], None if scores is None else scores[i : i + 1])
    return alerts


def first_alert(
    monitor: QueryMonitor, key: str, x: np.ndarray, s: np.ndarray
) -> tuple[int, set[str]]:
    for i in range(len(x)):
        alerts = monitor.observe(key, x[i : i + 1], s[i : i + 1])
        if alerts:
            return i + 1, {a.kind for a in alerts}
    return -1, set()


def test_benign_replay_raises_nothing(credit: Credit) -> None:
    monitor = QueryMonitor(credit.profile)
    rng = np.random.default_rng(1)
    rows = credit.x[rng.integers(0, len(credit.x), 2000)]
    owners = rng.integers(0, 5, len(rows))
    scores = credit.score(rows)
    alerts = []
    for i in range(len(rows)):
        alerts += monitor.observe(f"k{owners[i]}", rows[i : i + 1], scores[i : i + 1])
    assert alerts == []
    assert monitor.keys_tracked == 5


def test_uniform_random_queries_are_off_distribution(credit: Credit) -> None:
    rng = np.random.default_rng(2)
    low, high = credit.train.min(axis=0), credit.train.max(axis=0)
    rows = rng.uniform(low, high, size=(600, len(low)))
    count, kinds = first_alert(QueryMonitor(credit.profile), "thief", rows, credit.score(rows))
    assert 0 < count <= 300 and "off-distribution" in kinds


def test_perturbed_seeds_trip_prada(credit: Credit) -> None:
    """PRADA's setting: a few seed rows and small steps around them (JbDA-like)."""
    rng = np.random.default_rng(3)
    seeds = credit.rest[:5]
    spread = credit.train.std(axis=0)
    steps = rng.choice([-1.0, 1.0], size=(800, seeds.shape[1])) * spread * 0.05
    rows = seeds[rng.integers(0, 5, 800)] + steps * rng.uniform(0.5, 3, (800, 1))
    monitor = QueryMonitor(credit.profile, MonitorSettings(offdist_psi=50.0))
    count, kinds = first_alert(monitor, "thief", rows, credit.score(rows))
    assert 0 < count <= 400 and "extraction" in kinds


def test_line_search_hugs_the_boundary(credit: Credit) -> None:
    rng = np.random.default_rng(4)
    labels = credit.score(credit.rest) >= 0.5
    good, bad = credit.rest[labels], credit.rest[~labels]
    rows = []
    for _ in range(60):
        a, b = good[rng.integers(len(good))], bad[rng.integers(len(bad))]
        low, high = 0.0, 1.0
        for _ in range(10):
            t = (low + high) / 2
            row = a + t * (b - a)
            rows.append(row)
            if credit.score(row[None])[0] >= 0.5:
                low = t
            else:
                high = t
    x = np.asarray(rows)
    monitor = QueryMonitor(credit.profile)
    alerts = feed(monitor, "prober", x, credit.score(x))
    hugging = [a for a in alerts if a.kind == "boundary-hugging"]
    assert hugging and hugging[0].queries <= 200
    assert hugging[0].score > hugging[0].threshold
    assert "decision threshold" in hugging[0].message


def test_sweeping_one_feature(credit: Credit) -> None:
    base = credit.rest[7]
    rows = []
    for j in range(10):
        for value in np.linspace(credit.train[:, j].min(), credit.train[:, j].max(), 15):
            row = base.copy()
            row[j] = value
            rows.append(row)
    x = np.asarray(rows)
    alerts = feed(QueryMonitor(credit.profile), "sweeper", x, credit.score(x))
    sweeps = [a for a in alerts if a.kind == "sweep"]
    assert sweeps and sweeps[0].queries <= 60 and sweeps[0].score >= 0.25


def test_recombined_pool_rows() -> None:
    """Rows recombined from a pool of real records reuse exact high-cardinality values."""
    rng = np.random.default_rng(5)
    n = 3000
    amount = rng.lognormal(8, 0.7, n).round(0)
    age = rng.integers(19, 75, n).astype(float)
    duration = rng.integers(4, 72, n).astype(float)
    categories = rng.integers(0, 4, (n, 5)).astype(float)
    data = np.column_stack([amount, age, duration, categories])
    profile = TrainingProfile.fit(data[:1500])
    assert set(profile.repeat_features) == {0, 1, 2} and profile.repeat_rate < 0.01
    benign = feed(QueryMonitor(profile), "honest", data[1500:], None)
    assert [a for a in benign if a.kind == "recombination"] == []
    pool = data[1500:1750]
    base = pool[rng.integers(0, len(pool), 1500)]
    donors = pool[rng.integers(0, len(pool), 1500)]
    mask = rng.random(base.shape) < 0.33
    attack = np.where(mask, donors, base)
    alerts = feed(QueryMonitor(profile), "thief", attack, None)
    found = [a for a in alerts if a.kind == "recombination"]
    assert found and found[0].queries <= 1000


def test_drift_and_prediction_shift_are_global(credit: Credit) -> None:
    settings = MonitorSettings(drift_window=300, drift_every=100)
    monitor = QueryMonitor(credit.profile, settings)
    rng = np.random.default_rng(6)
    calm = credit.x[rng.integers(0, len(credit.x), 600)]
    assert feed(monitor, "a", calm, credit.score(calm)) == []
    shifted = calm.copy()
    shifted[:, 0] *= 1.6  # mean radius grows: a population or sensor change
    shifted[:, 20] *= 1.6
    alerts = feed(monitor, "b", shifted, credit.score(shifted))
    drift = [a for a in alerts if a.kind == "drift"]
    assert drift and drift[0].key_id == ALL_KEYS and drift[0].score >= 0.25
    assert drift[0].feature in {"mean radius", "worst radius"}
    shift = [a for a in alerts if a.kind == "prediction-shift"]
    assert shift and "positive rate" in shift[0].message
    # an alert is not repeated on every window
    assert len(drift) == 1


def test_alerts_are_not_repeated_before_realert_after(credit: Credit) -> None:
    base = credit.rest[3]
    rows = np.repeat(base[None], 400, axis=0)
    rows[:, 0] = np.linspace(5, 30, 400)
    monitor = QueryMonitor(credit.profile, MonitorSettings(realert_after=150))
    alerts = [a for a in feed(monitor, "s", rows, credit.score(rows)) if a.kind == "sweep"]
    assert [a.queries for a in alerts] == [51, 201, 351]  # the first query has no previous


def test_memory_is_bounded(credit: Credit) -> None:
    settings = MonitorSettings(max_keys=10, max_stored=32)
    monitor = QueryMonitor(credit.profile, settings)
    rng = np.random.default_rng(7)
    for k in range(50):
        rows = credit.x[rng.integers(0, len(credit.x), 40)]
        monitor.observe(f"k{k}", rows, credit.score(rows))
    assert monitor.keys_tracked == 10 and monitor.dropped_keys == 40
    state = monitor._keys["k49"]
    assert all(len(g.points) == 32 for g in state.groups.values())
    assert len(state.repeats.order) <= 32
    assert next(iter(monitor._keys)) == "k40"  # least recently seen went first
    monitor.observe("k40", credit.x[:1], credit.score(credit.x[:1]))
    monitor.observe("new", credit.x[:1], credit.score(credit.x[:1]))
    assert "k40" in monitor._keys and "k41" not in monitor._keys


def test_scores_are_optional_and_shapes_checked(credit: Credit) -> None:
    monitor = QueryMonitor(credit.profile)
    assert monitor.observe("k", credit.x[:3]) == []
    proba = credit.model.predict_proba(credit.x[:3])
    assert monitor.observe("k", credit.x[:3], proba) == []  # two columns: the positive class
    with pytest.raises(InputError, match="features"):
        monitor.observe("k", credit.x[:3, :5])
    with pytest.raises(InputError, match="scores for"):
        monitor.observe("k", credit.x[:3], np.zeros(2))
    nan_row = credit.x[:1].copy()
    nan_row[0, 0] = np.nan
    monitor.observe("k", nan_row, np.array([np.nan]))  # no crash on missing values


def test_profile_round_trip_and_hostile_files(credit: Credit, tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    credit.profile.save(path)
    assert TrainingProfile.load(path) == credit.profile
    document = path.read_text()
    bad = document.replace('"scale":[', '"scale":[0.0,', 1)
    path.write_text(bad)
    with pytest.raises(ConfigError):
        TrainingProfile.load(path)
    path.write_text(document.replace('"rows":', '"surprise":1,"rows":', 1))
    with pytest.raises(ConfigError, match="not a monitoring profile"):
        TrainingProfile.load(path)
    path.write_bytes(b" " * (4 * 1024 * 1024 + 10))
    with pytest.raises(ConfigError, match="larger than"):
        TrainingProfile.load(path)
    with pytest.raises(InputError, match=r"does not exist|cannot read"):
        TrainingProfile.load(tmp_path / "missing.json")
    with pytest.raises(InputError, match="at least 20 rows"):
        TrainingProfile.fit(credit.x[:5])


def test_settings_are_checked() -> None:
    with pytest.raises(RecordError) as error:
        MonitorSettings(prada_delta=1.5)
    assert error.value.path == "prada_delta"
    with pytest.raises(RecordError):
        MonitorSettings(min_distances=6000)
    with pytest.raises(RecordError):
        MonitorSettings(max_keys=0)


@pytest.mark.parametrize("column", [0, 3, 21, 27])
def test_a_batch_client_sending_real_rows_sorted_raises_nothing(
    credit: Credit, column: int
) -> None:
    """A batch-scoring client that sends its rows sorted by one column is legitimate: its
    window of queries is a slice of the data, compared with the training rows of that slice.
    Every real row, sent once, ascending then (another key) descending."""
    monitor = QueryMonitor(credit.profile)
    order = np.argsort(credit.x[:, column], kind="stable")
    for key, rows in (("up", credit.x[order]), ("down", credit.x[order[::-1]])):
        assert feed(monitor, key, rows, credit.score(rows)) == []
        state = monitor._keys[key]
        assert state.slice is not None and state.slice.ordered[column]


def test_unsorted_windows_are_compared_with_the_whole_data(credit: Credit) -> None:
    monitor = QueryMonitor(credit.profile)
    rng = np.random.default_rng(8)
    rows = credit.x[rng.permutation(len(credit.x))]
    assert feed(monitor, "k", rows, credit.score(rows)) == []
    assert monitor._keys["k"].slice is None


def test_sorting_does_not_hide_random_queries(credit: Credit) -> None:
    """The allowance for ordered batches is not an evasion: uniformly random queries sent
    sorted by a feature are still far from the data's slice in the other features."""
    rng = np.random.default_rng(9)
    low, high = credit.train.min(axis=0), credit.train.max(axis=0)
    rows = rng.uniform(low, high, size=(600, len(low)))
    rows = rows[np.argsort(rows[:, 0])]
    count, kinds = first_alert(QueryMonitor(credit.profile), "thief", rows, credit.score(rows))
    assert 0 < count <= 300 and "off-distribution" in kinds


def test_a_sorted_line_search_still_hugs_the_boundary(credit: Credit) -> None:
    """Ordering only changes the base the boundary share is tested against to the slice's:
    boundary queries stay far above it."""
    labels = credit.score(credit.rest) >= 0.5
    good, bad = credit.rest[labels], credit.rest[~labels]
    rng = np.random.default_rng(10)
    pairs = [(good[rng.integers(len(good))], bad[rng.integers(len(bad))]) for _ in range(40)]
    rows = []
    for a, b in pairs:  # the boundary point of each segment, then near it
        low, high = 0.0, 1.0
        for _ in range(12):
            t = (low + high) / 2
            if credit.score((a + t * (b - a))[None])[0] >= 0.5:
                low = t
            else:
                high = t
        rows += [a + (t + d) * (b - a) for d in np.linspace(-0.01, 0.01, 10)]
    x = np.asarray(rows)
    x = x[np.argsort(x[:, 0], kind="stable")]
    alerts = feed(QueryMonitor(credit.profile), "prober", x, credit.score(x))
    assert "boundary-hugging" in {a.kind for a in alerts}


def test_repeats_count_once_in_the_windows(credit: Credit) -> None:
    """A row sent again (a retry, a batch resent) is not a new sample of the key's traffic."""
    monitor = QueryMonitor(credit.profile)
    rows = np.repeat(credit.x[:60], 5, axis=0)
    feed(monitor, "k", rows, credit.score(rows))
    state = monitor._keys["k"]
    assert state.window.seen == 60 and len(state.near) == 60


def test_profile_slice_counts_are_checked(credit: Credit, tmp_path: Path) -> None:
    profile = credit.profile
    total = sum(len(b.counts) for b in profile.bins)
    assert len(profile.joint) == total * total and len(profile.near_joint) == total
    path = tmp_path / "profile.json"
    profile.model_copy(update={"joint": profile.joint[:-1]}).save(path)
    with pytest.raises(ConfigError, match="joint"):
        TrainingProfile.load(path)
    profile.model_copy(update={"near_joint": (-1.0,) * total}).save(path)
    with pytest.raises(ConfigError, match="negative"):
        TrainingProfile.load(path)
    bare = profile.model_copy(update={"joint": (), "score_joint": (), "near_joint": ()})
    monitor = QueryMonitor(bare)  # an older profile: ordered windows are not recognised
    rows = credit.x[np.argsort(credit.x[:, 0])][:300]
    assert monitor.observe("k", rows, credit.score(rows)) is not None


def test_shapiro_is_scipys_w_exactly() -> None:
    """The monitor calls scipy's swilk directly: the same W as scipy.stats.shapiro, bit for
    bit, for every window size the distance sample takes, in the ring's order."""
    from scipy.stats import shapiro

    from bastion.guard.monitor import _Ring, _shapiro

    rng = np.random.default_rng(11)
    ring = _Ring(300)
    for step in range(900):
        ring.append(float(abs(rng.standard_normal()) * (1 + step % 7)))
        if step % 37 == 0 and len(ring) >= 3:
            values = ring.values()
            assert values.flags.c_contiguous and len(values) == min(step + 1, 300)
            assert _shapiro(values) == float(shapiro(values).statistic)
    assert _shapiro(np.ones(50)) == 0.0


def test_incremental_windows_match_a_recount() -> None:
    """Windows bin their rows when read and flags keep their yes-count as they move: the same
    counts as binning and summing everything again."""
    from bastion.guard.monitor import _Flags, _Ring, _Window

    rng = np.random.default_rng(12)
    edges = [np.array([-1.0, 0.0, 1.0]), np.array([0.5]), np.array([])]
    window = _Window(50, edges)
    rows: list[np.ndarray] = []
    for _ in range(40):
        batch = rng.standard_normal((int(rng.integers(1, 30)), 3))
        batch[rng.random(batch.shape) < 0.02] = np.nan
        window.add(batch)
        rows += list(batch)
        if rng.random() < 0.5:
            recent = np.array(rows[-50:])
            fresh = _Window(50, edges)
            fresh.add(recent)
            assert window.counts.tolist() == fresh.counts.tolist()
            assert window.recent().tolist() == fresh.recent().tolist()
    flags, ring = _Flags(20), _Ring(20)
    history: list[bool] = []
    for i in range(100):
        flag = bool(rng.random() < 0.3)
        flags.append(flag)
        ring.append(float(i))
        history.append(flag)
        assert flags.yes == sum(history[-20:]) and len(flags) == len(history[-20:])
        assert ring.values().tolist() == [float(j) for j in range(max(0, i - 19), i + 1)]
