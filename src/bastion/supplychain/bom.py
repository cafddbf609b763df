"""`bastion bom`: a CycloneDX 1.6 ML-BOM for a model project. cyclonedx-python-lib builds the
document (components, hashes, dependencies, vulnerabilities); the `modelCard` of model components
and the `data` of dataset components, which the library does not model, are added to its JSON.
Every BOM is validated against the official CycloneDX 1.6 schema before it is returned."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bastion.discover import walk
from bastion.errors import BastionError, MissingExtra
from bastion.records import Checked, RecordError, field
from bastion.supplychain.digests import file_sha256
from bastion.supplychain.requirements import (
    Dependency,
    is_dependency_file,
    read_any,
    read_environment,
)
from bastion.version import __version__

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MODEL_FORMATS = {
    ".pt",
    ".pth",
    ".bin",
    ".ckpt",
    ".safetensors",
    ".onnx",
    ".keras",
    ".h5",
    ".hdf5",
    ".gguf",
    ".pkl",
    ".pickle",
    ".joblib",
    ".pb",
    ".tflite",
    ".npz",
    ".mar",
    ".nemo",
}
DATA_FORMATS = {".csv", ".tsv", ".parquet", ".jsonl", ".arrow", ".feather", ".npy", ".txt"}
FRAMEWORKS = {
    ".pt": "pytorch",
    ".pth": "pytorch",
    ".ckpt": "pytorch",
    ".bin": "pytorch",
    ".safetensors": "safetensors",
    ".onnx": "onnx",
    ".keras": "keras",
    ".h5": "keras",
    ".hdf5": "keras",
    ".gguf": "gguf",
    ".pkl": "scikit-learn",
    ".joblib": "scikit-learn",
    ".pb": "tensorflow",
    ".tflite": "tensorflow-lite",
}
CARD_FILE = "bastion-model.toml"


class BomError(BastionError):
    pass


class ModelCard(Checked):
    """What `bastion-model.toml` (or flags) say about the model; all optional."""

    task: str | None = None
    architecture: str | None = None
    family: str | None = None
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    considerations: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        """The card in a bastion-model.toml: [model] task, architecture, family, inputs and
        outputs, [metrics] name = number, [considerations] topic = [text, ...]. Other tables
        and keys are the file's own business; a known key with a wrong type is an error."""
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise BomError(f"cannot read {path}: {exc}") from exc
        model = data.get("model", {})
        if not isinstance(model, dict):
            raise BomError(f"{path}: [model] must be a table")
        known = {k: v for k, v in model.items() if k in _CARD_MODEL_KEYS}
        known.update({k: data[k] for k in ("metrics", "considerations") if k in data})
        try:
            return cls.model_validate(known)
        except RecordError as exc:
            raise BomError(f"{path}: {exc}") from exc


_CARD_MODEL_KEYS = ("task", "architecture", "family", "inputs", "outputs")


def _sha256(path: Path) -> str:
    return file_sha256(path).hex()


def _ref(kind: str, rel: str) -> str:
    return f"{kind}:{rel}"


def build_bom(
    project: Path,
    card: ModelCard | None = None,
    findings: list[Any] | None = None,
    environment: bool = False,
) -> dict[str, Any]:
    """The BOM of `project` as a JSON-ready dict (validated against CycloneDX 1.6)."""
    try:
        from cyclonedx.model import HashAlgorithm, HashType, Property
        from cyclonedx.model.bom import Bom
        from cyclonedx.model.component import Component, ComponentType
        from cyclonedx.model.vulnerability import (
            BomTarget,
            Vulnerability,
            VulnerabilityRating,
            VulnerabilitySeverity,
            VulnerabilitySource,
        )
        from cyclonedx.output.json import JsonV1Dot6
        from packageurl import PackageURL
    except ImportError as exc:
        raise MissingExtra("cyclonedx-python-lib", "bom") from exc

    project = project.resolve()
    card_path = project / CARD_FILE
    if card is None and card_path.is_file():
        card = ModelCard.load(card_path)
    found = walk([project], 200_000)
    models, datasets, requirement_files = [], [], []
    for target in found.files:
        suffix = target.path.suffix.lower()
        if is_dependency_file(target.path.name):
            requirement_files.append(target)
        elif suffix in MODEL_FORMATS or target.path.name == "saved_model.pb":
            models.append(target)
        elif suffix in DATA_FORMATS and target.path.name.lower() not in ("readme.txt",):
            datasets.append(target)
    bom = Bom()
    bom.metadata.component = Component(
        name=project.name, type=ComponentType.APPLICATION, bom_ref=_ref("project", project.name)
    )
    bom.metadata.properties.add(Property(name="bastion:version", value=__version__))
    for target in datasets:
        bom.components.add(
            Component(
                name=target.display,
                type=ComponentType.DATA,
                bom_ref=_ref("data", target.display),
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=_sha256(target.path))],
                properties=[Property(name="bastion:size", value=str(target.size))],
            )
        )
    for target in models:
        suffix = target.path.suffix.lower()
        bom.components.add(
            Component(
                name=target.display,
                type=ComponentType.MACHINE_LEARNING_MODEL,
                bom_ref=_ref("model", target.display),
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=_sha256(target.path))],
                properties=[
                    Property(name="bastion:format", value=suffix.lstrip(".") or target.path.name),
                    Property(name="bastion:framework", value=FRAMEWORKS.get(suffix, "unknown")),
                    Property(name="bastion:size", value=str(target.size)),
                ],
            )
        )
    dependencies: dict[str, Dependency] = {}
    for target in requirement_files:
        deps, _problems = read_any(target.path, target.display)
        for dep in deps:
            dependencies.setdefault(dep.name, dep)
    if environment:
        for dep in read_environment():
            dependencies.setdefault(dep.name, dep)
    for dep in sorted(dependencies.values(), key=lambda d: d.name):
        purl = PackageURL(type="pypi", name=dep.name, version=dep.version)
        bom.components.add(
            Component(
                name=dep.name,
                version=dep.version,
                type=ComponentType.LIBRARY,
                bom_ref=_ref("pypi", f"{dep.name}@{dep.version or dep.specifier or '*'}"),
                purl=purl,
                properties=[
                    Property(name="bastion:requirement", value=f"{dep.name}{dep.specifier}"),
                    Property(name="bastion:declared-in", value=dep.source),
                ],
            )
        )
    severities = {
        "critical": VulnerabilitySeverity.CRITICAL,
        "high": VulnerabilitySeverity.HIGH,
        "medium": VulnerabilitySeverity.MEDIUM,
        "low": VulnerabilitySeverity.LOW,
        "info": VulnerabilitySeverity.INFO,
    }
    model_refs = {t.display: _ref("model", t.display) for t in models}
    for finding in findings or []:
        ref = model_refs.get(finding.location.path)
        if ref is None or finding.severity.value == "info":
            continue
        bom.vulnerabilities.add(
            Vulnerability(
                bom_ref=f"bastion:{finding.fingerprint}",
                id=finding.rule_id,
                source=VulnerabilitySource(name="bastion"),
                ratings=[VulnerabilityRating(severity=severities[finding.severity.value])],
                description=finding.message,
                detail=finding.evidence or None,
                recommendation=finding.remediation,
                affects=[BomTarget(ref=ref)],
            )
        )
    root = bom.metadata.component
    bom.register_dependency(root, list(bom.components))
    document = json.loads(JsonV1Dot6(bom).output_as_string(indent=None))
    dataset_refs = [_ref("data", t.display) for t in datasets]
    for component in document.get("components", []):
        if component.get("type") == "machine-learning-model":
            component["modelCard"] = _model_card(card, dataset_refs)
        elif component.get("type") == "data":
            component["data"] = [
                {
                    "type": "dataset",
                    "name": component["name"],
                    "contents": {"url": f"file:{component['name']}"},
                }
            ]
    validate(document)
    return dict(document)


def _model_card(card: ModelCard | None, dataset_refs: list[str]) -> dict[str, Any]:
    card = card or ModelCard()
    parameters: dict[str, Any] = {}
    if card.task:
        parameters["task"] = card.task
    if card.family:
        parameters["architectureFamily"] = card.family
    if card.architecture:
        parameters["modelArchitecture"] = card.architecture
    if dataset_refs:
        parameters["datasets"] = [{"ref": ref} for ref in dataset_refs]
    if card.inputs:
        parameters["inputs"] = [{"format": value} for value in card.inputs]
    if card.outputs:
        parameters["outputs"] = [{"format": value} for value in card.outputs]
    out: dict[str, Any] = {"modelParameters": parameters}
    if card.metrics:
        out["quantitativeAnalysis"] = {
            "performanceMetrics": [
                {"type": name, "value": f"{value:g}"}
                for name, value in sorted(card.metrics.items())
            ]
        }
    considerations: dict[str, Any] = {}
    for key, values in card.considerations.items():
        if key in ("users", "useCases", "technicalLimitations", "performanceTradeoffs"):
            considerations[key] = list(values)
        elif key == "ethicalConsiderations":
            considerations[key] = [{"name": text} for text in values]
        elif key == "fairnessAssessments":
            considerations[key] = [{"groupAtRisk": text} for text in values]
    if considerations:
        out["considerations"] = considerations
    return out


def validate(document: dict[str, Any]) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document))
    if error is not None:
        raise BomError(f"generated BOM does not validate against CycloneDX 1.6: {error}")
