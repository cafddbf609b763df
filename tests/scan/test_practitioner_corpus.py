"""Issue #7: ordinary files written by the real libraries the way people save models pass the
default gate. The corpus (tests/corpus/practitioner) is built at test time by the libraries'
own writers; each entry (a file, or a folder written by save_pretrained-style calls) is one test
case and a failure names every file of it that did not pass, with the rule and evidence.

"Passes" means: no finding at or above the default gate, no check error, not incomplete, and no
skip that is a gap (e.g. a missing extra) — a file bastion could not decide is not a pass."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from corpus.practitioner import Built, build_in_subprocess, specs

import bastion
from bastion.config import Settings
from bastion.findings import Report, TargetResult

SPECS = specs()


class Scanned:
    def __init__(self, built: Built, report: Report, seconds: float) -> None:
        self.built, self.report, self.seconds = built, report, seconds
        self.by_path = {r.path: r for r in report.results}


@pytest.fixture(scope="session")
def practitioner(tmp_path_factory: pytest.TempPathFactory) -> Scanned:
    started = time.perf_counter()
    built = build_in_subprocess(tmp_path_factory.mktemp("practitioner") / "corpus")
    report = bastion.scan(built.root, Settings())
    return Scanned(built, report, time.perf_counter() - started)


def problems(result: TargetResult, settings: Settings) -> list[str]:
    """Why one file does not pass the default gate (empty: it passes)."""
    out = [
        f"{f.rule_id} {f.severity.value}: {f.message} (evidence: {f.evidence[:100]})"
        for f in result.findings
        if f.severity.rank >= settings.fail_on.rank
    ]
    out += [f"check error: {e.message}" for e in result.errors]
    out += ["incomplete scan"] if result.incomplete else []
    out += [f"not checked ({s.code}): {s.reason}" for s in result.skips if s.is_gap]
    return out


def test_corpus_is_large_and_complete(practitioner: Scanned) -> None:
    files = practitioner.built.all_files()
    assert len(files) >= 80, len(files)
    assert practitioner.built.failed == {}
    # every file written is in the report (nothing was silently left out of the scan)
    relative = {p.relative_to(practitioner.built.root).as_posix() for p in files}
    assert relative <= set(practitioner.by_path), sorted(relative - set(practitioner.by_path))


def test_build_and_scan_fit_in_ci(practitioner: Scanned) -> None:
    assert practitioner.seconds < 180, practitioner.seconds


@pytest.mark.parametrize("name", [s.name for s in SPECS])
def test_passes_the_default_gate(practitioner: Scanned, name: str) -> None:
    built = practitioner.built
    if name in built.unavailable:
        pytest.skip(built.unavailable[name])
    assert name not in built.failed, built.failed.get(name)
    entry = next(e for e in built.entries if e.name == name)
    settings = Settings()
    failing = {}
    for path in built.files(entry):
        relative = path.relative_to(built.root).as_posix()
        result = practitioner.by_path.get(relative)
        why = problems(result, settings) if result else ["missing from the report"]
        if why:
            failing[relative] = why
    assert failing == {}, f"{entry.what}: " + "; ".join(
        f"{path}: {why}" for path, why in failing.items()
    )


def test_onnx_exports_load_in_onnxruntime(practitioner: Scanned) -> None:
    """The ONNX files are what the real runtime accepts (the converters wrote valid models)."""
    ort = pytest.importorskip("onnxruntime")
    exports = sorted((practitioner.built.root / "onnx").glob("*.onnx"))
    assert exports
    for path in exports:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_checkpoints_load_with_the_real_loaders(practitioner: Scanned) -> None:
    """A few of the files, loaded by the libraries that wrote them (the corpus is real)."""
    torch = pytest.importorskip("torch")
    root: Path = practitioner.built.root
    assert "body.0.weight" in torch.load(root / "torch/state_dict.pt", weights_only=True)
    args = torch.load(root / "torch/fairseq-style.pt", weights_only=False)["args"]
    assert args.arch == "transformer_tiny"
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_pickle(root / "pandas/every-dtype.pkl")
    assert str(frame["datetime_tz"].dtype).startswith("datetime64")
