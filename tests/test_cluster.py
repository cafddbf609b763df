"""The Ray backend (issue #8 item 4), against a local Ray instance started by the test on
loopback: results identical to the local run, the same per-item bounds, failures typed."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from bastion.cli.main import main  # noqa: E402
from bastion.cluster import run_on_ray  # noqa: E402
from bastion.config import Limits, Settings  # noqa: E402
from bastion.findings import Report  # noqa: E402
from bastion.parallel import Failure, Outcome  # noqa: E402
from bastion.scan.engine import run_scan  # noqa: E402

EVIL = b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00echo\x85R."


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    here = str(Path(__file__).parent)  # so Ray's workers can import this module's `work`
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": here}},
    )
    try:
        yield
    finally:
        ray.shutdown()


def work(item: int) -> str:
    if item == 1:
        import time

        time.sleep(60)
    if item == 2:
        return str(len(bytearray(1024 * 1024 * 1024)))  # over a 256 MiB budget
    return f'"done {item}"'


def folder_of_models(root: Path) -> Path:
    root.mkdir()
    for index in range(20):
        (root / f"ok{index}.pkl").write_bytes(pickle.dumps({"w": [float(index)]}))
    (root / "evil.pkl").write_bytes(EVIL)
    (root / "broken.pkl").write_bytes(EVIL[:-3])
    return root


def rules(report: Report) -> list[tuple[str, list[str], bool]]:
    return [(r.path, sorted(f.rule_id for f in r.findings), r.incomplete) for r in report.results]


def test_results_on_ray_equal_the_local_run(local_ray: None, tmp_path: Path) -> None:
    folder = folder_of_models(tmp_path / "models")
    local = run_scan([folder], Settings(workers=2))
    clustered = run_scan([folder], Settings(executor="ray"))
    assert rules(clustered) == rules(local)
    assert any("PKL001" in r[1] for r in rules(clustered))


def test_per_item_bounds_hold_on_ray(local_ray: None) -> None:
    outcomes: list[Outcome] = []
    run_on_ray(
        [0, 1, 2, 3], work, timeout_s=3.0, memory_mb=256, on_outcome=outcomes.append, chunk=2
    )
    by_index = {o.index: o for o in outcomes}
    assert by_index[0].result == '"done 0"', by_index[0].failure
    assert by_index[3].result == '"done 3"'
    assert by_index[1].kind is Failure.TIMEOUT
    assert by_index[2].kind is Failure.MEMORY


def test_cli_executor_ray(
    local_ray: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = folder_of_models(tmp_path / "models")
    assert main(["scan", str(folder), "--executor", "ray", "--no-store", "-f", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert any(f["rule_id"] == "PKL001" for r in report["results"] for f in r["findings"])


def test_address_without_ray_executor_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps([1]))
    assert main(["scan", str(tmp_path), "--address", "127.0.0.1:1", "--no-store"]) == 2
    assert "--executor ray" in capsys.readouterr().err


def test_unknown_executor_is_refused() -> None:
    from bastion.records import RecordError

    with pytest.raises(RecordError, match="executor"):
        Settings(executor="kubernetes")
    assert Settings(executor="ray", limits=Limits()).executor == "ray"
