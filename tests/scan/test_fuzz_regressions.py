"""Inputs the CI fuzzer found (tests/data/fuzz_regressions): each must be judged — a finding or
a limit — never a scanner error."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import gate_fails, scan_data

FOUND = Path(__file__).parent.parent / "data" / "fuzz_regressions"


@pytest.mark.parametrize("path", sorted(FOUND.iterdir()), ids=lambda p: p.name)
def test_fuzzer_finding_is_judged_not_an_error(path: Path) -> None:
    """Corrupt HDF5 structures (libhdf5: 'Object visitation failed', 'bad symbol table node
    signature') escaped the HDF5 scanner as RuntimeError; they are malformed files."""
    result = scan_data(path.read_bytes(), path.name)
    assert not result.errors, result.errors
    assert "FMT004" in {f.rule_id for f in result.findings}
    assert gate_fails(result)
