from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, str(Path(__file__).parent))

from corpus import Sample, build_benign, build_malicious

from bastion.config import Limits, Settings

# CI replays the same examples every run (a green run here is a green run there);
# locally hypothesis explores new ones. Long exploration: `make fuzz`.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("corpus")


@pytest.fixture(scope="session")
def benign(corpus_dir: Path) -> list[Sample]:
    # built first: importing dill (for the malicious set) changes how pickle saves types
    return build_benign(corpus_dir / "benign")


@pytest.fixture(scope="session")
def malicious(corpus_dir: Path, benign: list[Sample]) -> list[Sample]:
    return build_malicious(corpus_dir / "malicious")


@pytest.fixture()
def settings() -> Settings:
    return Settings(workers=2, limits=Limits(timeout_s=60))
