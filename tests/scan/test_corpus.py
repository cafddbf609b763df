"""Every malicious sample of the corpus fails the gate; every benign file has no finding."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus import Sample
from helpers import gate_fails, scan_file

from bastion.findings import Severity


def test_corpus_sizes(malicious: list[Sample], benign: list[Sample]) -> None:
    assert len(malicious) >= 60
    assert len(benign) >= 40
    assert len({s.technique for s in malicious}) >= 50


def test_every_malicious_sample_fails_the_gate(malicious: list[Sample], corpus_dir: Path) -> None:
    missed = []
    for sample in malicious:
        result = scan_file(corpus_dir / "malicious" / sample.name)
        if not gate_fails(result) or result.errors:
            missed.append((sample.name, [f.rule_id for f in result.findings], result.errors))
    assert missed == []


def test_every_benign_file_is_clean(benign: list[Sample], corpus_dir: Path) -> None:
    noisy = []
    for sample in benign:
        result = scan_file(corpus_dir / "benign" / sample.name)
        flagged = [f for f in result.findings if f.severity.rank >= Severity.LOW.rank]
        if flagged or result.errors or result.incomplete:
            noisy.append((sample.name, [(f.rule_id, f.message) for f in flagged], result.errors))
    assert noisy == []


@pytest.mark.parametrize(
    "technique,rule",
    [
        ("reduce-os-system", "PKL001"),
        ("memoized-stack-global", "PKL001"),
        ("python2-name-remap", "PKL001"),
        ("dotted-name", "PKL001"),
        ("broken-stream", "PKL005"),
        ("loader-chain-base64", "PKL004"),
        ("joblib-after-raw-array", "PKL001"),
        ("npy-object-array", "NPY001"),
        ("zip-duplicate-names", "ARC006"),
        ("zip-name-mismatch", "ARC007"),
        ("onnx-external-traversal", "ONX001"),
        ("onnx-external-symlink", "ONX001"),
        ("onnx-custom-domain", "ONX002"),
        ("keras-lambda", "KER001"),
        ("keras-module-injection", "KER003"),
        ("keras-get-file", "KER003"),
        ("keras-torch-module-wrapper", "KER004"),
        ("tf-pyfunc-in-function", "TF001"),
        ("gguf-template-injection", "JIN001"),
        ("gguf-named-template-injection", "JIN001"),
        ("gguf-string-length", "GGF001"),
        ("hf-template-injection", "JIN001"),
        ("zip-slip", "ARC001"),
        ("tar-symlink", "ARC002"),
        ("safetensors-overlap", "SFT002"),
        ("safetensors-duplicate-key", "SFT003"),
        ("pickle-named-safetensors", "FMT001"),
        ("polyglot-prefix", "FMT002"),
        ("code-object", "PKL001"),
        ("gadget-numpy-runstring", "PKL001"),
        ("stacked-pickle", "PKL006"),
    ],
)
def test_technique_reported_with_its_rule(
    malicious: list[Sample], corpus_dir: Path, technique: str, rule: str
) -> None:
    sample = next(s for s in malicious if s.technique == technique)
    result = scan_file(corpus_dir / "malicious" / sample.name)
    assert rule in {f.rule_id for f in result.findings}, result.findings


def test_payload_inside_nested_archives_is_located(
    malicious: list[Sample], corpus_dir: Path
) -> None:
    result = scan_file(corpus_dir / "malicious" / "archives/nested.zip")
    critical = [f for f in result.findings if f.rule_id == "PKL001"]
    assert critical and critical[0].location.members == ("level1.zip", "level2.zip", "model.pkl")


def test_torchscript_is_reported_as_information_only(
    benign: list[Sample], corpus_dir: Path
) -> None:
    result = scan_file(corpus_dir / "benign" / "torch/scripted.pt")
    assert {f.rule_id: f.severity for f in result.findings} == {"PT001": Severity.INFO}
