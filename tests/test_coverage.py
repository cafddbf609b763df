"""What "not checked" means (bastion.coverage), kind by kind: a real input that leaves each kind
of gap, and the verdict and exit code it yields by default and under --strict. Plus: the
policy can only tighten a kind, every producer uses a kind of the table, and docs/policy.md
shows the table."""

from __future__ import annotations

import ast
import io
import json
import pickle
import struct
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from zipcraft import Member, simple_zip

from bastion import coverage
from bastion.cli.main import main
from bastion.config import Settings
from bastion.errors import ConfigError
from bastion.findings import Location, Report, Skip, TargetResult, ToolInfo
from bastion.policy import evaluate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from an empty folder: no policy is found implicitly."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


def safetensors_bytes() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\x00\x00\x80\x3f"


def project(tmp_path: Path, files: dict[str, bytes | str]) -> Path:
    root = tmp_path / "project"
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
    return root


def scan(root: Path, *options: str) -> tuple[int, dict[str, Any]]:
    out = root.parent / "report.json"
    code = main(["scan", str(root), "--no-store", "-q", "-f", "json", "-o", str(out), *options])
    return code, json.loads(out.read_text())


def skips_of(document: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [s for r in document["results"] for s in r["skips"] if s["code"] == kind]


def assert_kind(
    root: Path, kind: str, default: int, strict: int, *options: str
) -> list[dict[str, Any]]:
    """The scan of `root` leaves gaps of `kind` and exits `default`, and `strict` with
    --strict; the verdict names the kind and its treatment."""
    code, document = scan(root, *options)
    gaps = skips_of(document, kind)
    if kind == coverage.CHECK_ERROR:
        gaps = [e for r in document["results"] for e in r["errors"]]
    elif kind == coverage.INCOMPLETE:
        gaps = [r for r in document["results"] if r["incomplete"]]
    assert gaps, document["results"]
    assert code == default, document["verdict"]
    expected = coverage.treatment(kind).value
    if expected != "ignored":
        assert any(kind in reason for reason in document["verdict"]["reasons"])
    code_strict, document_strict = scan(root, "--strict", *options)
    assert code_strict == strict, document_strict["verdict"]
    return gaps


# --- one test per kind ----------------------------------------------------------------------


def test_out_of_scope_is_ignored_even_under_strict(tmp_path: Path) -> None:
    root = project(tmp_path, {"model.safetensors": safetensors_bytes(), "README.md": "# model\n"})
    gaps = assert_kind(root, coverage.OUT_OF_SCOPE, 0, 0)
    assert gaps[0]["location"]["path"] == "README.md"


def test_unsupported_signature_without_trusted_key(tmp_path: Path) -> None:
    root = project(
        tmp_path, {"model.safetensors": safetensors_bytes(), "model.sig": b'{"not": "verified"}'}
    )
    gaps = assert_kind(root, coverage.UNSUPPORTED, 0, 1)
    assert "no trusted key" in gaps[0]["reason"]


def test_missing_extra_secret_detection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "detect_secrets", None)  # workers are forked
    root = project(tmp_path, {"train.py": "import json\nprint(json.dumps({}))\n"})
    gaps = assert_kind(root, coverage.MISSING_EXTRA, 0, 1)
    assert gaps[0]["extra"] == "code" and "detect-secrets" in gaps[0]["reason"]
    out = tmp_path / "report.txt"
    assert main(["scan", str(root), "--no-store", "-q", "-f", "text", "-o", str(out)]) == 0
    assert "bastion-mlsec[code]" in out.read_text()


def test_format_needs_extra_7z_without_py7zr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    py7zr = pytest.importorskip("py7zr")
    buffer = io.BytesIO()
    with py7zr.SevenZipFile(buffer, "w") as archive:
        archive.writestr(pickle.dumps({"lr": 0.1}), "state.pkl")
    root = project(tmp_path, {"bundle.7z": buffer.getvalue()})
    monkeypatch.setitem(sys.modules, "py7zr", None)
    monkeypatch.setitem(sys.modules, "py7zr.io", None)
    gaps = assert_kind(root, coverage.FORMAT_NEEDS_EXTRA, 2, 1)
    assert gaps[0]["extra"] == "archives"


def test_no_advisory_db(tmp_path: Path) -> None:
    root = project(tmp_path, {"requirements.txt": "requests==2.32.3\n"})
    gaps = assert_kind(root, coverage.NO_ADVISORY_DB, 0, 1)
    assert "advisory database" in gaps[0]["reason"]


def notebook(*cells: str) -> str:
    return json.dumps(
        {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {},
            "cells": [
                {
                    "cell_type": "code",
                    "id": f"c{i}",
                    "metadata": {},
                    "execution_count": None,
                    "outputs": [],
                    "source": source,
                }
                for i, source in enumerate(cells)
            ],
        },
        indent=1,
    )


def test_unreadable_notebook_and_cell(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "explore.ipynb": notebook(
                "x = 1\n",
                "def broken(:\n    pass\n",
                "import asyncio\nawait asyncio.sleep(0)\n",  # IPython runs top-level await
                "import torch\nm = torch.load('m.pt')\n",
            ),
            "broken.ipynb": "{not json",
        },
    )
    gaps = assert_kind(root, coverage.UNREADABLE, 1, 1)  # COD001 in cell 4 fails the gate
    where = {(g["location"]["path"], g["location"]["pointer"]) for g in gaps}
    assert where == {("explore.ipynb", "cell 2"), ("broken.ipynb", None)}
    code, document = scan(root, "--fail-on", "critical")
    assert code == 0  # the gaps alone are reported, not blocking
    cells = {f["location"]["pointer"] for r in document["results"] for f in r["findings"]}
    assert cells == {"cell 4"}  # later cells are still analysed


def test_limit_on_config_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion.scan import config_values

    monkeypatch.setattr(config_values, "MAX_SECRET_LINES", 2)
    config = {"model_type": "bert", **{f"session_layout_{i}": f"column-{i}" for i in range(5)}}
    root = project(tmp_path, {"config.json": json.dumps(config)})
    gaps = assert_kind(root, coverage.LIMIT, 0, 1)
    assert "3 more" in gaps[0]["reason"]


def test_encrypted_member(tmp_path: Path) -> None:
    data = simple_zip([Member(b"model/data.pkl", pickle.dumps(1), flags=0x1)])
    root = project(tmp_path, {"archive.zip": data})
    assert_kind(root, coverage.ENCRYPTED, 2, 1, "--fail-on", "critical")


def test_partial_7z_extraction(tmp_path: Path) -> None:
    py7zr = pytest.importorskip("py7zr")
    first, second = b"A" * 64 + b"first member", b"B" * 64 + b"second member"
    buffer = io.BytesIO()
    with py7zr.SevenZipFile(buffer, "w", filters=[{"id": py7zr.FILTER_COPY}]) as archive:
        archive.writestr(first, "a.bin")
        archive.writestr(second, "b.bin")
    data = bytearray(buffer.getvalue())
    at = data.index(second)  # stored as is: break the second member's CRC
    data[at] ^= 0xFF
    root = project(tmp_path, {"bundle.7z": bytes(data)})
    gaps = assert_kind(root, coverage.PARTIAL, 2, 1, "--fail-on", "critical")
    assert "could not be extracted" in gaps[0]["reason"]


def _signed_model(tmp_path: Path) -> Path:
    from supplychain.keys import write_key_pair

    from bastion.supplychain.signing import Credentials, sign

    root = project(tmp_path, {"model/model.safetensors": safetensors_bytes()})
    private, _public = write_key_pair(tmp_path)
    sign(root / "model", Credentials(key=private))
    return root


def test_verification_unavailable_without_sigstore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("model_signing")
    import sigstore._internal.tuf as tuf
    import sigstore.models
    from sigstore._utils import read_embedded

    root = _signed_model(tmp_path)
    # Sigstore's production trust root, served from a local port nothing listens on
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    url = "http://127.0.0.1:9"
    monkeypatch.setattr(sigstore.models, "DEFAULT_TUF_URL", url)
    metadata, _targets = tuf._get_dirs(url)
    metadata.mkdir(parents=True)
    (metadata / "root.json").write_bytes(read_embedded("root.json", tuf.DEFAULT_TUF_URL))
    policy = tmp_path / "policy" / "bastion.toml"
    policy.parent.mkdir()
    policy.write_text(
        '[signing]\nidentities = [{identity = "release@example.org", '
        'issuer = "https://accounts.google.com"}]\n'
    )
    gaps = assert_kind(root, coverage.VERIFICATION_UNAVAILABLE, 2, 1, "--policy", str(policy))
    assert "trust root" in gaps[0]["reason"]
    _code, document = scan(root, "--policy", str(policy))
    assert not [f for r in document["results"] for f in r["findings"] if f["rule_id"] == "SIG001"]
    sigstore_args = ["--sigstore", "--identity", "release@example.org"]
    sigstore_args += ["--issuer", "https://accounts.google.com", "--no-store"]
    assert main(["verify", str(root / "model"), *sigstore_args]) == 2  # undecided, not failed


def test_io_and_network_errors_are_not_a_wrong_key() -> None:
    import socket

    from bastion.supplychain.signing import _unavailable

    wrapped = ValueError("verification failed")
    wrapped.__cause__ = socket.gaierror("Name or service not known")
    assert _unavailable(wrapped, io=False)
    assert _unavailable(PermissionError("denied"), io=True)
    assert not _unavailable(PermissionError("denied"), io=False)  # a policy key file: InputError
    assert not _unavailable(ValueError("signature does not match"), io=True)


def test_check_error_from_an_unusable_policy_key(tmp_path: Path) -> None:
    pytest.importorskip("model_signing")
    root = _signed_model(tmp_path)
    policy = tmp_path / "policy" / "bastion.toml"
    policy.parent.mkdir()
    (policy.parent / "release.pub").write_text("not a PEM key\n")
    policy.write_text('[signing]\npublic_keys = ["release.pub"]\n')
    errors = assert_kind(root, coverage.CHECK_ERROR, 2, 1, "--policy", str(policy))
    assert errors[0]["check"] == "signature"


def test_incomplete_at_a_depth_limit(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("state.pkl", pickle.dumps({"lr": 0.1}))
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w") as archive:
        archive.writestr("inner.zip", inner.getvalue())
    root = project(tmp_path, {"bundle.zip": outer.getvalue()})
    policy = tmp_path / "policy" / "bastion.toml"
    policy.parent.mkdir()
    policy.write_text('fail_on = "critical"\n[limits]\nmax_depth = 1\n')
    assert_kind(root, coverage.INCOMPLETE, 2, 1, "--policy", str(policy))


def test_every_kind_has_a_test_above() -> None:
    tested = {
        coverage.OUT_OF_SCOPE: test_out_of_scope_is_ignored_even_under_strict,
        coverage.UNSUPPORTED: test_unsupported_signature_without_trusted_key,
        coverage.MISSING_EXTRA: test_missing_extra_secret_detection,
        coverage.FORMAT_NEEDS_EXTRA: test_format_needs_extra_7z_without_py7zr,
        coverage.NO_ADVISORY_DB: test_no_advisory_db,
        coverage.UNREADABLE: test_unreadable_notebook_and_cell,
        coverage.LIMIT: test_limit_on_config_values,
        coverage.ENCRYPTED: test_encrypted_member,
        coverage.PARTIAL: test_partial_7z_extraction,
        coverage.VERIFICATION_UNAVAILABLE: test_verification_unavailable_without_sigstore,
        coverage.CHECK_ERROR: test_check_error_from_an_unusable_policy_key,
        coverage.INCOMPLETE: test_incomplete_at_a_depth_limit,
    }
    assert set(tested) == set(coverage.KINDS)


# --- the policy can tighten, never loosen ---------------------------------------------------


def report_with(kind: str) -> Report:
    skip = Skip(location=Location(path="requirements.txt"), reason="r", code=kind)
    return Report(
        tool=ToolInfo(version="0"),
        targets=("p",),
        results=(TargetResult(path="requirements.txt", format="dependencies", skips=(skip,)),),
    )


def test_policy_tightens_a_kind(tmp_path: Path) -> None:
    rep = report_with(coverage.NO_ADVISORY_DB)
    assert evaluate(rep, Settings()).exit_code == 0
    undecided = Settings(coverage={"no-advisory-db": "undecided"})
    assert evaluate(rep, undecided).exit_code == 2
    blocking = Settings(coverage={"no-advisory-db": "blocking"})
    verdict = evaluate(rep, blocking)
    assert verdict.exit_code == 1 and verdict.gaps == {"no-advisory-db": "blocking"}
    root = project(tmp_path, {"requirements.txt": "requests==2.32.3\n"})
    policy = tmp_path / "strict-deps.toml"
    policy.write_text('[coverage]\nno-advisory-db = "blocking"\n')
    assert scan(root, "--policy", str(policy))[0] == 1


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"check-error": "reported"}, "more lenient"),
        ({"format-needs-extra": "ignored"}, "more lenient"),
        ({"out-of-scope": "reported"}, "never a gap"),
        ({"no-such-kind": "blocking"}, "unknown kind"),
        ({"unreadable": "fatal"}, "treatment must be one of"),
    ],
)
def test_policy_cannot_loosen_or_invent(
    tmp_path: Path, table: dict[str, str], message: str
) -> None:
    policy = tmp_path / "bastion.toml"
    policy.write_text("[coverage]\n" + "".join(f'{k} = "{v}"\n' for k, v in table.items()))
    from bastion.config import load_settings

    with pytest.raises(ConfigError, match=message):
        load_settings(policy_file=policy, environ={})


def test_unknown_kind_in_a_report_is_not_trusted() -> None:
    assert evaluate(report_with("plugin-specific-gap"), Settings()).exit_code == 2


# --- producers and docs use the table -------------------------------------------------------


def _kind_argument(call: ast.Call) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == "code":
            return keyword.value
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr == "skip" and len(call.args) >= 3:
        return call.args[2]
    return None


def test_every_producer_uses_a_kind_of_the_table() -> None:
    """Each Skip(...) / ctx.skip(...) in the source names its kind as a literal or a
    coverage constant, and the kind is in the table."""
    used: set[str] = set()
    for path in (ROOT / "src" / "bastion").rglob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "coverage"
                and getattr(coverage, node.attr, None) in coverage.KINDS
            ):
                used.add(getattr(coverage, node.attr))  # e.g. a helper's argument
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name not in ("Skip", "skip"):
                continue
            argument = _kind_argument(node)
            if argument is None:
                continue
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                kind = argument.value
            elif isinstance(argument, ast.Attribute) and isinstance(argument.value, ast.Name):
                kind = getattr(coverage, argument.attr, argument.attr)
            elif isinstance(argument, ast.Name) and argument.id == "OUT_OF_SCOPE":
                kind = coverage.OUT_OF_SCOPE
            else:
                continue  # passed through (ScanContext.skip's own parameter)
            assert kind in coverage.KINDS, f"{path.name}:{node.lineno}: {kind!r}"
            used.add(kind)
    assert used >= {
        coverage.OUT_OF_SCOPE,
        coverage.UNSUPPORTED,
        coverage.MISSING_EXTRA,
        coverage.FORMAT_NEEDS_EXTRA,
        coverage.NO_ADVISORY_DB,
        coverage.UNREADABLE,
        coverage.LIMIT,
        coverage.ENCRYPTED,
        coverage.PARTIAL,
        coverage.VERIFICATION_UNAVAILABLE,
    }


def test_docs_show_the_table() -> None:
    text = (ROOT / "docs" / "policy.md").read_text("utf-8")
    assert coverage.markdown_table() in text, "regenerate with: python -m bastion.coverage"


def test_gaps_are_visible_in_every_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import xml.etree.ElementTree as ET

    monkeypatch.setitem(sys.modules, "lz4", None)
    monkeypatch.setitem(sys.modules, "lz4.frame", None)
    root = project(
        tmp_path,
        {
            "requirements.txt": "requests==2.32.3\n",
            "data.lz4": b"\x04\x22\x4d\x18" + b"\x00" * 16,
        },
    )
    outputs = {}
    for fmt in ("text", "json", "sarif", "junit", "html"):
        out = tmp_path / f"report.{fmt}"
        assert main(["scan", str(root), "--no-store", "-q", "-f", fmt, "-o", str(out)]) == 2
        outputs[fmt] = out.read_text()
    for fmt, text in outputs.items():
        assert "no-advisory-db" in text or "advisory database" in text, fmt
        assert "lz4" in text, fmt
    assert "- SKIPPED  format-needs-extra  data.lz4" in outputs["text"]
    sarif = json.loads(outputs["sarif"])["runs"][0]["invocations"][0]
    notes = {n["descriptor"]["id"]: n for n in sarif["toolExecutionNotifications"]}
    assert notes["no-advisory-db"]["level"] == "note"
    assert notes["format-needs-extra"]["level"] == "warning"
    assert notes["format-needs-extra"]["properties"]["extra"] == "archives"
    cases = {c.get("name"): c for c in ET.fromstring(outputs["junit"]).iter("testcase")}
    error = cases["data.lz4"].find("error")
    assert error is not None and error.get("type") == "format-needs-extra"
    assert cases["requirements.txt"].find("error") is None  # reported only
    assert "no-advisory-db" in (cases["requirements.txt"].findtext("system-out") or "")
