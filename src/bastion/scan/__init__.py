"""Artifact scanning. The scanners of this family are listed here explicitly; third-party
scanners register under the `bastion.scanners` entry-point group."""

from __future__ import annotations

import functools
import os
import sys

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


PLUGIN_GROUP = "bastion.scanners"


def _plugins_installed() -> bool:
    """Cheap pre-check: does any installed distribution declare a bastion scanner? (Building
    importlib.metadata's full view of every distribution costs tens of milliseconds.)"""
    for folder in sys.path:
        try:
            entries = os.scandir(folder or ".")
        except OSError:
            continue
        with entries:
            for entry in entries:
                if not entry.name.endswith((".dist-info", ".egg-info")):
                    continue
                try:
                    with open(os.path.join(entry.path, "entry_points.txt"), "rb") as handle:
                        if PLUGIN_GROUP.encode() in handle.read():
                            return True
                except OSError:
                    continue
    return False


@functools.cache
def registry() -> dict[str, Scanner]:
    """format name -> scanner, built-ins first, then plugins (which may not replace them).
    Built once per process (the engine builds it before forking its workers)."""
    table: dict[str, Scanner] = {}
    for scanner in SCANNERS:
        for fmt in scanner.formats:
            table[fmt] = scanner
    if not _plugins_installed():
        return table
    from importlib.metadata import entry_points

    for entry in entry_points(group=PLUGIN_GROUP):
        plugin = entry.load()()
        for fmt in plugin.formats:
            table.setdefault(fmt, plugin)
    return table
