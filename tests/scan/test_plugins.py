"""Scanner plugins, as a user installs them: real packages built into wheels and installed with
pip in the test, then `bastion scan` run in a fresh interpreter that sees them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = """
from bastion.findings import Confidence, Severity, Stage
from bastion.rules import Rule

ACME_MACRO = Rule(
    id="ACME001",
    title="ACME model with a macro",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="ACME models may carry macros that run on load.",
    remediation="Strip the macro.",
)


class AcmeScanner:
    name = "acme"
    formats = ("acme", "pickle")  # "pickle" is a built-in format: ignored

    def identify(self, head, size, name):
        return "acme" if head.startswith(b"ACME") else None

    def scan(self, ctx, source, fmt):
        data = source.read_all(1024, "acme model")
        if b"MACRO" in data:
            ctx.add(ACME_MACRO.finding(source.location, "macro in ACME model", evidence="MACRO"))
"""

BROKEN = """
import acme_missing_dependency  # noqa: F401  (the plugin's own dependency is not installed)


class BrokenScanner:
    name = "broken"
    formats = ("broken",)
"""


def _build_and_install(root: Path, dist: str, module: str, source: str, target: Path) -> None:
    project = root / dist
    project.mkdir()
    (project / f"{module}.py").write_text(textwrap.dedent(source))
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist}"
            version = "1.0"

            [tool.setuptools]
            py-modules = ["{module}"]

            [project.entry-points."bastion.scanners"]
            {module} = "{module}:{"AcmeScanner" if module == "acme_plugin" else "BrokenScanner"}"
            """
        )
    )
    wheels = root / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-build-isolation", "--no-deps", "-w", str(wheels), str(project)],
        check=True,
        capture_output=True,
    )
    wheel = next(wheels.glob(f"{dist.replace('-', '_')}-1.0-*.whl"))
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )


def _bastion(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-m", "bastion", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plugin-build")
    site = root / "site"
    _build_and_install(root, "acme-bastion-plugin", "acme_plugin", PLUGIN, site)
    return site


def test_a_plugin_extends_identification_and_scans_its_format(
    plugin_site: Path, tmp_path: Path
) -> None:
    (tmp_path / "model.acme").write_bytes(b"ACME\x00v1 MACRO run()")
    (tmp_path / "clean.acme").write_bytes(b"ACME\x00v1 weights")
    result = _bastion(["scan", "--no-store", "-f", "json", str(tmp_path)], plugin_site, tmp_path)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    by_path = {r["path"]: r for r in report["results"]}
    assert by_path["model.acme"]["format"] == "acme"
    assert [f["rule_id"] for f in by_path["model.acme"]["findings"]] == ["ACME001"]
    assert by_path["clean.acme"]["format"] == "acme" and not by_path["clean.acme"]["findings"]


def test_a_plugin_cannot_relabel_what_bastion_recognises(plugin_site: Path, tmp_path: Path) -> None:
    """A plugin claiming "pickle" does not replace the built-in pickle scanner, and its
    identify() is asked only about content no built-in recognises."""
    import pickle

    payload = pickle.dumps(os.system)  # a global that executes: PKL001 from the built-in scanner
    (tmp_path / "m.bin").write_bytes(payload)
    result = _bastion(["scan", "--no-store", "-f", "json", str(tmp_path)], plugin_site, tmp_path)
    report = json.loads(result.stdout)
    (only,) = report["results"]
    assert only["format"] == "pickle"
    assert "PKL001" in {f["rule_id"] for f in only["findings"]}


def test_a_plugin_that_fails_to_load_is_a_clear_error_naming_it(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _build_and_install(tmp_path, "acme-broken-plugin", "broken_plugin", BROKEN, site)
    model = tmp_path / "data"
    model.mkdir()
    (model / "weights.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    result = _bastion(["scan", "--no-store", str(model)], site, tmp_path)
    assert result.returncode == 2
    assert "broken_plugin" in result.stderr and "acme-broken-plugin" in result.stderr
    assert "acme_missing_dependency" in result.stderr
    assert "Traceback" not in result.stderr
