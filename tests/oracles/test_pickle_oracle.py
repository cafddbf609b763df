"""Differential oracle for pickles (issue #7, "How to know it worked"): for 10,000 generated
streams, every name CPython's unpicklers would resolve (recorded with inert stand-ins, both the
C and the pure-Python unpickler, stacked streams included) is reported by bastion for that file
— dangerous names at or above the default gate — or bastion fails closed on the file.

Names in the generator's BENIGN pool carry no claim (bastion may allow them), nor do module names
no import can resolve (not dotted identifiers: the import fails before any code runs). Seeded:
every run generates the same files."""

from __future__ import annotations

from pathlib import Path

from bastion.findings import TargetResult
from oracles.judged import at_gate, fails_closed, naming, scan_folder
from oracles.pickle_gen import BENIGN_NAMES, DANGEROUS_NAMES, generate
from oracles.recording import Resolution, resolved_by_c_unpickler, resolved_globals

COUNT = 10_000
SHOWN = 12


def _importable(module: str) -> bool:
    """A module name `__import__` could resolve: dotted identifiers. Any other text (a line
    cut mid-opcode, `no_newline(ccollections`) fails to import before any code runs."""
    return all(part.isidentifier() for part in module.split("."))


def _problem(resolution: Resolution, result: TargetResult) -> str | None:
    names = resolution.qualnames()
    if names & BENIGN_NAMES or not _importable(resolution.module):
        return None
    found = naming(result, names)
    if names & DANGEROUS_NAMES:
        if not at_gate(found):
            return (
                "dangerous name not reported at the gate"
                if not found
                else f"dangerous name reported below the gate ({found[0].severity.value})"
            )
        return None
    return None if found else "name not reported"


def test_every_resolved_global_is_reported(tmp_path: Path) -> None:
    files = {}
    for seed in range(COUNT):
        name = f"p{seed:05d}.pkl"
        files[name] = generate(seed)
        (tmp_path / name).write_bytes(files[name])
    results = scan_folder(tmp_path)
    failures: list[tuple[int, str, str, bytes]] = []
    closed = resolved_total = 0
    for name, data in files.items():
        resolved = resolved_globals(data)
        by_c = {(r.module, r.name) for r in resolved_by_c_unpickler(data)}
        resolved_total += len(resolved)
        result = results[name]
        if fails_closed(result):
            closed += 1
            continue
        for resolution in sorted(resolved):
            problem = _problem(resolution, result)
            if problem and (resolution.module, resolution.name) not in by_c:
                problem += " (only the pure-Python unpickler, as joblib uses, resolves it)"
            if problem:
                failures.append(
                    (len(data), problem, f"{resolution.module}.{resolution.name}", data)
                )
    assert resolved_total > COUNT  # the generator does reach find_class
    assert closed < COUNT // 20, f"{closed} files failed closed instead of being analysed"
    assert not failures, _summary(failures)


def _summary(failures: list[tuple[int, str, str, bytes]]) -> str:
    """Per kind of miss: how many, and the shortest examples (minimal repros)."""
    by_kind: dict[str, list[tuple[int, str, str, bytes]]] = {}
    for failure in sorted(failures):
        by_kind.setdefault(failure[1], []).append(failure)
    lines = [f"{len(failures)} resolved names missed"]
    for kind, items in sorted(by_kind.items()):
        lines.append(f"{kind}: {len(items)}")
        lines += [f"  {qualname} in {data!r}" for _, _, qualname, data in items[:SHOWN]]
    return "\n".join(lines)


def test_name_line_cut_at_end_of_file_is_reported(tmp_path: Path) -> None:
    """The oracle's pure-Python-only class, proven with the real loader: joblib.load (a
    pickle._Unpickler) takes 'x' as the name line, drops its last byte and imports `this`
    (harmless: it prints the Zen of Python) before it fails."""
    import subprocess
    import sys

    sample = tmp_path / "cut.pkl"
    sample.write_bytes(b"\x80\x02cthis\nxx")
    probe = (
        "import sys, joblib\n"
        "try:\n    joblib.load(sys.argv[1])\nexcept Exception:\n    pass\n"
        "print('imported' if 'this' in sys.modules else 'not imported')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe, str(sample)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert run.stdout.strip().endswith("imported") and "not imported" not in run.stdout
    result = scan_folder(tmp_path)["cut.pkl"]
    assert naming(result, ["this.x", "this"]) or fails_closed(result), result.findings
