"""Differential oracle for .npy headers (issue #7, "How to know it worked"): for generated
headers, when NumPy's own header parse says the file holds objects (numpy.load with
allow_pickle=False refuses exactly the dtypes with `hasobject`), numpy.load(allow_pickle=True)
unpickles the data, so bastion must have analysed it: the global the payload calls is
reported, or bastion fails closed on the file.
Files NumPy rejects or reads as plain numbers carry no claim. Seeded."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from oracles.judged import fails_closed, naming, scan_folder
from oracles.npy_gen import ORACLE_MODULE, generate

COUNT = 3_000
SHOWN = 12


def _numpy_unpickles(data: bytes) -> bool:
    """Ask numpy.load itself, with pickles refused: it parses the header and builds the
    dtype as always, and refuses exactly when it would otherwise unpickle the data."""
    try:
        np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        return "allow_pickle=False" in str(exc)
    except Exception:  # NumPy refuses the header or the data: nothing is unpickled
        return False
    return False


def test_object_headers_have_their_payload_analysed(tmp_path: Path) -> None:
    files = {}
    for seed in range(COUNT):
        name = f"a{seed:04d}.npy"
        files[name] = generate(seed)
        (tmp_path / name).write_bytes(files[name])
    results = scan_folder(tmp_path)
    object_files = closed = 0
    failures: list[tuple[int, bytes]] = []
    for name, data in files.items():
        if not _numpy_unpickles(data):
            continue
        object_files += 1
        if fails_closed(results[name]):
            closed += 1
            continue
        if not naming(results[name], [f"{ORACLE_MODULE}.g{int(name[1:5])}"]):
            failures.append((len(data), data))
    assert object_files > COUNT // 5
    assert closed < object_files // 10, f"{closed} object arrays failed closed"
    failures.sort()
    headers = [data.split(b"\n", 1)[0][10:] for _, data in failures[:SHOWN]]
    shown = "\n".join(f"  {header!r}" for header in headers)
    assert not failures, (
        f"{len(failures)} of {object_files} object-dtype files whose pickle "
        f"bastion did not analyse; shortest headers:\n{shown}"
    )
