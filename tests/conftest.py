from __future__ import annotations

import os
import sys
from collections.abc import Iterator
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


@pytest.fixture(autouse=True, scope="module")
def _no_thread_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test module must stop the threads it starts (servers, writers, pools): bastion picks
    fork or spawn for its workers by whether the process is threaded, so a leaked thread
    silently changes how every later test runs. Threads of libraries that start them once per
    process (torch, Ray's, OpenBLAS/OpenMP pools are not Python threads) are allowed by name."""
    import threading
    import time

    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + 5
    while True:
        leaked = [
            t
            for t in threading.enumerate()
            if t.ident not in before and t.is_alive() and not _library_thread(t.name)
        ]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"{request.module.__name__} left threads running: {[t.name for t in leaked]}"


def _library_thread(name: str) -> bool:
    # started once per process by libraries and never stopped (not bastion's to join)
    return name.startswith(("ray_", "Thread-QueueFeederThread", "pydevd", "asyncio_"))
