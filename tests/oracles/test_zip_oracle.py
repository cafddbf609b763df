"""Differential oracle for zip archives (issue #7, "How to know it worked"): for generated
archives (zip64, duplicate names, data descriptors, bad CRCs, bytes before/after, several end
records, a zip64 locator pointing elsewhere, stored/deflated, payloads after megabytes of
padding), every member that Python's zipfile or miniz (torch._C.PyTorchFileReader, what
torch.load uses) returns is scanned by bastion: the global its pickle calls is reported for
that file, or bastion fails closed on the file. Seeded: every run builds the same archives."""

from __future__ import annotations

from pathlib import Path

from oracles.judged import fails_closed, naming, scan_folder
from oracles.readers import miniz_members, zipfile_members
from oracles.recording import resolved_globals
from oracles.zip_gen import generate

COUNT = 600
SHOWN = 10


def _returned(path: Path, data: bytes) -> dict[str, set[str]]:
    """Oracle global -> the readers that returned a member calling it."""
    out: dict[str, set[str]] = {}
    for reader, members in (("zipfile", zipfile_members(data)), ("miniz", miniz_members(path))):
        for content in members.values():
            for resolution in resolved_globals(content):
                out.setdefault(f"{resolution.module}.{resolution.name}", set()).add(reader)
    return out


def test_every_member_a_loader_reads_is_scanned(tmp_path: Path) -> None:
    archives = {}
    for seed in range(COUNT):
        name = f"z{seed:04d}.pt"
        archives[name] = generate(seed).data
        (tmp_path / name).write_bytes(archives[name])
    results = scan_folder(tmp_path)
    failures: list[tuple[int, str, str, int]] = []
    returned_total = closed = 0
    for name, data in archives.items():
        returned = _returned(tmp_path / name, data)
        returned_total += len(returned)
        if fails_closed(results[name]):
            closed += 1
            continue
        for qualname, readers in sorted(returned.items()):
            if not naming(results[name], [qualname]):
                failures.append((len(data), "+".join(sorted(readers)), qualname, int(name[1:5])))
    assert returned_total > COUNT
    assert closed < COUNT // 10, f"{closed} archives failed closed instead of being analysed"
    failures.sort()
    by_reader: dict[str, list[str]] = {}
    for _, readers, qualname, seed in failures:
        by_reader.setdefault(readers, []).append(
            f"  oracles.zip_gen.generate({seed}).data: member calling {qualname}"
        )
    lines = [f"{len(failures)} members read by a loader but not scanned"]
    for readers, items in sorted(by_reader.items()):
        lines += [f"returned by {readers}: {len(items)}", *items[:SHOWN]]
    assert not failures, "\n".join(lines)
