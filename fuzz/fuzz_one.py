"""atheris harness for one parser: python fuzz/fuzz_one.py TARGET [libFuzzer options] [DIRS].

Every scanner module is imported inside the instrumentation block (scanners are imported lazily
by bastion, so importing only the package would leave the parsing code uninstrumented and the
fuzzer blind to its branches). DIRS are corpus folders as libFuzzer takes them: the first one
receives the new inputs it finds (a persistent corpus), the others only seed."""

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

    from bastion.scan import load_all

    load_all()  # every scanner module, instrumented
    import bastion.datacheck.csvfile
    import bastion.datacheck.read
    import bastion.datacheck.streams  # noqa: F401  (the data stage's readers, instrumented)

TARGET = sys.argv.pop(1)
FMT, NAME, SEEDS = TARGETS[TARGET]


def test_one_input(data: bytes) -> None:
    run(FMT, NAME, data)


if __name__ == "__main__":
    options = [arg for arg in sys.argv[1:] if arg.startswith("-")]
    folders = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    seeds = Path(tempfile.mkdtemp(prefix=f"bastion-fuzz-{TARGET}-"))
    for index, seed in enumerate(SEEDS()):
        (seeds / f"seed{index}").write_bytes(seed)
    atheris.Setup([sys.argv[0], *options, *folders, str(seeds)], test_one_input)
    atheris.Fuzz()
