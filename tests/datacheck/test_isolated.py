"""The data checks run in an isolated worker: a native crash or an overrun in the readers or the
libraries under them fails the datasets closed instead of taking the run down."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bastion.cli.main import main
from bastion.config import Settings
from bastion.datacheck.options import DataOptions
from bastion.records import RecordError


def _data(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    rows = "\n".join(f"{i},{i % 7},{'yes' if i % 3 else 'no'}" for i in range(200))
    (folder / "train.csv").write_text("id,x,label\n" + rows + "\n")
    (folder / "test.csv").write_text("id,x,label\n" + rows + "\n")
    return folder


def _crash(*_args: object, **_kwargs: object) -> None:
    os.abort()  # what a segfault in pyarrow's C++ looks like to the parent


@pytest.fixture(autouse=True)
def _forked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker is forked so the test's stand-in for the checks reaches it (a real run in a
    process with native threads spawns; test_the_worker_method_* checks that choice)."""
    import bastion.datacheck.isolated as isolated

    monkeypatch.setattr(isolated, "worker_method", lambda: "fork")


def test_the_worker_method_spawns_beside_native_threads() -> None:
    import subprocess
    import sys

    code = (
        "from bastion.datacheck.isolated import worker_method\n"
        "print(worker_method())\n"
        "import numpy, pyarrow.compute as pc, pyarrow as pa\n"
        "pc.sum(pa.array(list(range(100000))))\n"
        "import os; print(worker_method(), len(os.listdir('/proc/self/task')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0] == "fork"
    method, threads = out[1].split()
    assert (method == "spawn") == (int(threads) > 1)


def test_a_native_crash_fails_every_dataset_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import bastion.datacheck.engine as engine

    monkeypatch.setattr(engine, "run_data_checks", _crash)  # the CLI is single-threaded: fork
    folder = _data(tmp_path)
    code = main(["data", "check", str(folder), "--no-store", "-q", "-f", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 2  # undecided, never a pass
    assert {r["path"] for r in report["results"]} == {str(folder)}
    assert all(r["incomplete"] and r["errors"] for r in report["results"])


def test_an_overrun_is_a_limit_finding_on_each_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    import bastion.datacheck.engine as engine

    monkeypatch.setattr(engine, "run_data_checks", lambda *a, **k: time.sleep(30))
    folder = _data(tmp_path)
    policy = tmp_path / "bastion.toml"
    policy.write_text("[data]\nworker_timeout_s = 1.0\n")
    code = main(
        ["data", "check", str(folder), "--no-store", "-q", "-f", "json", "--policy", str(policy)]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    (result,) = report["results"]
    assert result["incomplete"] and result["findings"][0]["rule_id"] == "LIM001"


def test_the_project_scan_isolates_its_data_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bastion
    import bastion.datacheck.engine as engine

    monkeypatch.setattr(engine, "run_data_checks", _crash)
    report = bastion.scan([_data(tmp_path)], Settings())
    by_path = {r.path: r for r in report.results}
    for name in ("train.csv", "test.csv"):
        assert by_path[name].incomplete and by_path[name].errors


def test_worker_bounds_are_validated() -> None:
    with pytest.raises(RecordError, match="worker_timeout_s"):
        DataOptions(worker_timeout_s=float("nan"))
    with pytest.raises(RecordError, match="worker_memory_mb"):
        DataOptions(worker_memory_mb=1)
