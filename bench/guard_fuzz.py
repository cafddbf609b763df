"""The long schemathesis run over the guard's OpenAPI document: the checks of
tests/guard/test_guard_openapi_fuzz.py (no server error, documented statuses, content types
and answer schemas, valid rows accepted, invalid ones refused, credentials not ignored) with
many more generated requests per operation than the test suite's bounded run.

    python bench/guard_fuzz.py [--examples 1000]

Exit status 0 when every check held."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=1000, help="per operation")
    args = parser.parse_args()
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(ROOT / "tests" / "guard" / "test_guard_openapi_fuzz.py"),
        ],
        env={**os.environ, "GUARD_FUZZ_EXAMPLES": str(args.examples)},
        cwd=ROOT,
        check=False,
    )
    print(
        f"schemathesis, {args.examples} examples per operation: "
        f"{'every check held' if result.returncode == 0 else 'FAILED'} "
        f"in {time.perf_counter() - started:.0f} s"
    )
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
