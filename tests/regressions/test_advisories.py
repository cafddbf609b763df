"""One regression test per published scanner bypass or loader advisory that bastion can
reproduce. Every sample is built in code with a harmless payload."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus import Sample
from corpus import opcodes as op
from helpers import gate_fails, rules, scan_data, scan_file

from bastion.findings import Severity


def _critical(data: bytes, name: str = "model.pkl") -> set[str]:
    return rules(scan_data(data, name), Severity.CRITICAL)


def test_picklescan_issue_22_memoized_stack_global() -> None:
    """https://github.com/mmaitre314/picklescan/issues/22 — STACK_GLOBAL operands from memo."""
    assert "PKL001" in _critical(op.memoized_stack_global())


def test_cve_2025_1716_pip_main() -> None:
    """https://osv.dev/vulnerability/CVE-2025-1716 — pip.main installs an attacker package."""
    assert "PKL001" in _critical(op.gadget("pip", "main", "install"))


def test_ghsa_xp4f_hrf8_rxw7_ensurepip() -> None:
    """https://github.com/advisories/GHSA-xp4f-hrf8-rxw7 — ensurepip._run_pip."""
    assert "PKL001" in _critical(op.gadget("ensurepip", "_run_pip", "x"))


def test_ghsa_v7x6_rv5q_mhwc_timeit() -> None:
    """https://github.com/advisories/GHSA-v7x6-rv5q-mhwc — timeit.timeit runs a statement."""
    assert "PKL001" in _critical(op.gadget("timeit", "timeit", "__import__('os')"))


def test_pkgutil_resolve_name_universal_bypass() -> None:
    """https://www.promptfoo.dev/blog/open-sourcing-modelaudit — pkgutil.resolve_name('os:system')
    resolves any callable from a string, so a denylist never sees 'os.system'."""
    resolved = op.call1(op.stack_global("pkgutil", "resolve_name"), op.s("os:system"))
    data = op.proto(4) + resolved + op.s(op.MARK_CMD) + b"\x85R."
    assert "PKL001" in _critical(data)


def test_fickling_popped_call_result() -> None:
    """https://www.promptfoo.dev/blog/open-sourcing-modelaudit — a call whose result is POPped
    vanished from fickling's AST; the call still runs."""
    data = op.proto(2) + op.system_call()[2:-1] + b"0" + b"N."
    assert "PKL001" in _critical(data)


def test_ghsa_955r_x9j8_7rhh_operator_module() -> None:
    """https://github.com/mmaitre314/picklescan/pull/54 — _operator.methodcaller/attrgetter."""
    assert "PKL001" in _critical(op.gadget("_operator", "methodcaller", "system"))


def test_cve_2025_10155_extension_does_not_decide(tmp_path: Path) -> None:
    """https://jfrog.com/blog/unveiling-3-zero-day-vulnerabilities-in-picklescan/ — scanners
    that pick files by extension miss a pickle under another name; bastion reads content."""
    for name in ("weights.dat", "model.txt", "LICENSE"):
        path = tmp_path / name
        path.write_bytes(op.system_call())
        assert "PKL001" in rules(scan_file(path))


def test_cve_2025_10156_zip_crc_mismatch(malicious: list[Sample], corpus_dir: Path) -> None:
    """JFrog, CVE-2025-10156 — a bad CRC makes zipfile raise; torch loads the member anyway."""
    assert "PKL001" in rules(scan_file(corpus_dir / "malicious/torch/bad_crc.pt"))


def test_cve_2025_10157_submodule_of_dangerous_module() -> None:
    """JFrog, CVE-2025-10157 — globals from submodules of unsafe modules slipped through exact
    module matching."""
    assert _critical(op.gadget("asyncio.unix_events", "_UnixSubprocessTransport", "x"))
    assert _critical(op.gadget("os.path", "os.system", "x"))


@pytest.mark.parametrize(
    "technique,reference",
    [
        (
            "broken-stream",
            "https://www.reversinglabs.com/blog/rl-identifies-malware-ml-model-hosted-on-hugging-face",
        ),
        (
            "7z-torch",
            "https://www.reversinglabs.com/blog/rl-identifies-malware-ml-model-hosted-on-hugging-face",
        ),
        ("keras-module-injection", "https://nvd.nist.gov/vuln/detail/CVE-2025-1550"),
        ("keras-safe-mode-off", "https://nvd.nist.gov/vuln/detail/CVE-2025-1550"),
        ("keras-get-file", "https://nvd.nist.gov/vuln/detail/CVE-2025-8747"),
        ("keras-h5-lambda", "https://nvd.nist.gov/vuln/detail/CVE-2025-9905"),
        ("keras-torch-module-wrapper", "https://nvd.nist.gov/vuln/detail/CVE-2025-49655"),
        ("onnx-external-traversal", "https://nvd.nist.gov/vuln/detail/CVE-2022-25882"),
        ("onnx-external-absolute", "https://nvd.nist.gov/vuln/detail/CVE-2024-27318"),
        ("gguf-template-injection", "https://nvd.nist.gov/vuln/detail/CVE-2024-34359"),
        (
            "dill-function",
            "https://huggingface.co/AM-Core/modelscan-cloudpickle-dill-false-negative-poc",
        ),
        (
            "cloudpickle-function",
            "https://huggingface.co/AM-Core/modelscan-cloudpickle-dill-false-negative-poc",
        ),
        ("exception-oriented", "Art of Hide and Seek: exception-oriented pickle streams (2025)"),
        ("loader-chain-base64", "Art of Hide and Seek: loader chains (2025)"),
        ("gadget-numpy-runstring", "https://github.com/mmaitre314/picklescan/issues/42"),
        ("joblib-after-raw-array", "modelscan/picklescan parse errors on joblib raw array bytes"),
    ],
)
def test_published_technique(
    malicious: list[Sample], corpus_dir: Path, technique: str, reference: str
) -> None:
    sample = next(s for s in malicious if s.technique == technique)
    result = scan_file(corpus_dir / "malicious" / sample.name)
    assert gate_fails(result, Severity.HIGH), (reference, result.findings)


def test_keras_module_outside_keras_is_flagged(tmp_path: Path) -> None:
    """CVE-2025-1550 class: any module outside keras in a config is imported on load."""
    from corpus import _keras_layer, _keras_zip, _sequential

    path = tmp_path / "custom.keras"
    path.write_bytes(_keras_zip(_sequential(_keras_layer("acme.layers", "Dense2", {}))))
    assert "KER002" in rules(scan_file(path))
