"""Artifact scanning. The scanners of this family are listed here explicitly; third-party
scanners register under the `bastion.scanners` entry-point group."""

from __future__ import annotations

from bastion.scan.archive import CompressedScanner, SevenZipScanner, TarScanner, ZipScanner
from bastion.scan.base import Scanner
from bastion.scan.gguf import GgufScanner
from bastion.scan.jsonconfig import JsonConfigScanner
from bastion.scan.keras import Hdf5Scanner
from bastion.scan.npy import NpyScanner
from bastion.scan.onnx import OnnxScanner
from bastion.scan.pickle import PickleScanner
from bastion.scan.safetensors import SafetensorsScanner
from bastion.scan.tensorflow import SavedModelScanner

SCANNERS: tuple[Scanner, ...] = (
    PickleScanner(),
    ZipScanner(),
    TarScanner(),
    SevenZipScanner(),
    CompressedScanner(),
    NpyScanner(),
    SafetensorsScanner(),
    OnnxScanner(),
    Hdf5Scanner(),
    SavedModelScanner(),
    GgufScanner(),
    JsonConfigScanner(),
)


def registry() -> dict[str, Scanner]:
    """format name -> scanner, built-ins first, then plugins (which may not replace them)."""
    table: dict[str, Scanner] = {}
    for scanner in SCANNERS:
        for fmt in scanner.formats:
            table[fmt] = scanner
    from importlib.metadata import entry_points

    for entry in entry_points(group="bastion.scanners"):
        plugin = entry.load()()
        for fmt in plugin.formats:
            table.setdefault(fmt, plugin)
    return table
