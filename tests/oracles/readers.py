"""What the consuming loaders' zip readers return: Python's zipfile (numpy's npz, Keras,
joblib-in-zip) and miniz through PyTorch's own reader (torch.load). Only bytes are read."""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path


def zipfile_members(data: bytes) -> dict[str, bytes]:
    """Every central-directory entry zipfile reads to the end without an error (its CRC
    check included), keyed '<name>#<position>' so duplicate names stay apart."""
    out: dict[str, bytes] = {}
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return out
    with archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for position, info in enumerate(archive.infolist()):
            try:
                out[f"{info.filename}#{position}"] = archive.read(info)
            except (
                zipfile.BadZipFile,
                OSError,
                ValueError,
                EOFError,
                NotImplementedError,
                RuntimeError,
                KeyError,
            ):
                continue
    return out


def miniz_members(path: Path) -> dict[str, bytes]:
    """Every record torch._C.PyTorchFileReader (miniz) lists and returns."""
    import torch

    out: dict[str, bytes] = {}
    try:
        reader = torch._C.PyTorchFileReader(str(path))
        records = reader.get_all_records()
    except Exception:  # the reader refused the archive: torch.load cannot load it either
        return out
    for name in records:
        try:
            out[name] = bytes(reader.get_record(name))
        except Exception:
            continue
    return out
