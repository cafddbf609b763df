"""atheris harness for one parser: python fuzz/fuzz_one.py TARGET [libFuzzer options]."""

from __future__ import annotations

import resource
import sys
import tempfile
from pathlib import Path

import atheris

# the same address-space bound the scan workers run under
resource.setrlimit(resource.RLIMIT_AS, (3 * 1024**3, 3 * 1024**3))

with atheris.instrument_imports():
    from targets import TARGETS, run

    import bastion.scan  # noqa: F401

TARGET = sys.argv.pop(1)
FMT, NAME, SEEDS = TARGETS[TARGET]


def test_one_input(data: bytes) -> None:
    run(FMT, NAME, data)


if __name__ == "__main__":
    seeds = Path(tempfile.mkdtemp(prefix=f"bastion-fuzz-{TARGET}-"))
    for index, seed in enumerate(SEEDS()):
        (seeds / f"seed{index}").write_bytes(seed)
    atheris.Setup([sys.argv[0], *sys.argv[1:], str(seeds)], test_one_input)
    atheris.Fuzz()
