"""One data shape (DESIGN.md conventions): values are frozen msgspec records. No module may add a
NamedTuple, dataclass or TypedDict; the result tuples the data stage, the probe, the report rows,
the HDF5 superblock reader and the store's dataset versions were written with before the
convention landed are listed here, to be converted — the list may only shrink."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "bastion"

# module (relative to src/bastion) -> NamedTuple classes still to convert
STILL_TO_CONVERT = {
    "datacheck/engine.py": {"Candidate", "Checked"},
    "datacheck/features.py": {"LabelFrame"},
    "datacheck/kanonymity.py": {"KAnonymity"},
    "datacheck/labels.py": {"Analysis", "_Constant"},
    "datacheck/manifest.py": {"Indexed", "CellChange", "RowChange", "Diff"},
    "datacheck/poisoning.py": {"Detection", "Candidate", "Candidates"},
    "datacheck/read.py": {"Named", "Opened"},
    "probe/consistency.py": {"ConsistencyResult"},
    "probe/evasion.py": {"EvasionResult"},
    "probe/extraction.py": {"ExtractionResult"},
    "probe/inputs.py": {"Table"},
    "probe/membership.py": {"MembershipResult"},
    "probe/model.py": {"Output"},
    "probe/search.py": {"Flip", "Outcome"},
    "personal/detectors.py": {"Match", "_Candidate"},
    "report/rows.py": {"ShownRow", "RowSample"},
    "scan/hdf5_superblock.py": {"Superblock"},
    "store.py": {"DatasetVersion"},
}
_SHAPES = {"NamedTuple", "TypedDict"}


def _shape_classes(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if not isinstance(node, ast.ClassDef):
            continue
        bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
        decorators = {
            getattr(d, "id", getattr(getattr(d, "func", None), "id", ""))
            for d in node.decorator_list
        }
        if bases & _SHAPES or "dataclass" in decorators:
            found.add(node.name)
    return found


def test_no_new_namedtuples_dataclasses_or_typeddicts() -> None:
    seen: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        classes = _shape_classes(path)
        if classes:
            seen[path.relative_to(SRC).as_posix()] = classes
    extra = {m: c - STILL_TO_CONVERT.get(m, set()) for m, c in seen.items()}
    assert not {m: c for m, c in extra.items() if c}, "use bastion.records.Record"
    converted = {m: c - seen.get(m, set()) for m, c in STILL_TO_CONVERT.items()}
    assert not {m: c for m, c in converted.items() if c}, "converted: remove from the list"
