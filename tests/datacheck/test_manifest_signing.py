"""A data manifest is signed and verified like a model or dataset folder (`bastion sign`,
`bastion verify`): a manifest regenerated to hide tampered rows, or edited by hand, no longer
verifies; the signed manifest is what `bastion data check --baseline-manifest` trusts."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from supplychain.keys import write_key_pair

from bastion.cli.main import main


def _write(path: Path, amounts: list[int]) -> Path:
    table = pa.table(
        {
            "id": [f"L-{i:05d}" for i in range(len(amounts))],
            "amount": amounts,
            "purpose": [["car", "education", "furniture", "business"][i % 4] for i in amounts],
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pcsv.write_csv(table, path)
    return path


def _amounts() -> list[int]:
    return [250 + (i * 7919) % 15000 for i in range(500)]


def _run(*args: str) -> int:
    """`bastion ARGS...`, its exit code."""
    return main(list(args))


def _manifest(data: Path, out: Path) -> int:
    return _run("data", "manifest", str(data), "--id", "id", "-o", str(out), "-q", "--no-store")


def test_signed_manifest_verifies_and_fails_after_an_edit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private, public = write_key_pair(tmp_path)
    data = _write(tmp_path / "data" / "train.csv", _amounts())
    manifest = tmp_path / "release" / "train.manifest.json"
    manifest.parent.mkdir()
    assert _manifest(data, manifest) == 0
    assert _run("sign", str(manifest), "--key", str(private)) == 0
    signature = manifest.with_name(manifest.name + ".sig")
    assert signature.is_file()
    assert _run("verify", str(manifest), "--key", str(public), "--no-store", "-q") == 0
    # the signed manifest is the baseline the data is checked against: unchanged data passes
    check = ("data", "check", str(data), "--id", "id", "--baseline-manifest", str(manifest))
    assert _run(*check, "--no-store", "-q") == 0

    # someone changes three amounts and regenerates the manifest so that the data matches it
    amounts = _amounts()
    for row in (17, 230, 499):
        amounts[row] = 99_999
    _write(data, amounts)
    signed = manifest.read_bytes()
    assert _manifest(data, manifest) == 0
    assert manifest.read_bytes() != signed
    capsys.readouterr()
    assert _run("verify", str(manifest), "--key", str(public), "--no-store", "-f", "json") == 1
    report = json.loads(capsys.readouterr().out)
    failures = [f for r in report["results"] for f in r["findings"]]
    assert report["verdict"]["status"] == "failed"
    [tampered] = failures
    assert tampered["rule_id"] == "SIG001" and tampered["location"]["pointer"] == "tampered"
    assert tampered["location"]["path"].endswith(manifest.name)

    # with the signed manifest restored, the check names exactly the changed rows
    manifest.write_bytes(signed)
    assert _run("verify", str(manifest), "--key", str(public), "--no-store", "-q") == 0
    capsys.readouterr()
    assert _run(*check, "--no-store", "-f", "json") == 1
    findings = [f for r in json.loads(capsys.readouterr().out)["results"] for f in r["findings"]]
    [modified] = [f for f in findings if f["rule_id"] == "DAT005"]
    assert modified["rows"] == [17, 230, 499]
    assert modified["row_ids"] == ["L-00017", "L-00230", "L-00499"]

    # an edit by hand (one fingerprint character) fails too, and so does another key
    text = signed.decode()
    document = json.loads(text)
    fingerprint = document["datasets"][0]["fingerprint"]
    forged = fingerprint[:-1] + ("0" if fingerprint[-1] != "0" else "1")
    manifest.write_text(text.replace(fingerprint, forged))
    assert _run("verify", str(manifest), "--key", str(public), "--no-store", "-q") == 1
    manifest.write_bytes(signed)
    _other_private, other_public = write_key_pair(tmp_path, "other")
    assert _run("verify", str(manifest), "--key", str(other_public), "--no-store", "-q") == 1


def test_a_dataset_folder_with_its_manifest_signs_as_one(tmp_path: Path) -> None:
    private, public = write_key_pair(tmp_path)
    folder = tmp_path / "dataset"
    data = _write(folder / "train.csv", _amounts())
    _write(folder / "test.csv", _amounts()[:100])
    manifest = folder / "data.manifest.json"
    assert _manifest(folder, manifest) == 0
    assert _run("sign", str(folder), "--key", str(private)) == 0
    assert _run("verify", str(folder), "--key", str(public), "--no-store", "-q") == 0
    amounts = _amounts()
    amounts[3] += 1
    _write(data, amounts)
    assert _run("verify", str(folder), "--key", str(public), "--no-store", "-q") == 1
