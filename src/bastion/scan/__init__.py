"""Artifact scanning. The scanners of this family are listed here explicitly; third-party
scanners register under the `bastion.scanners` entry-point group."""

from __future__ import annotations

import functools
import os
import sys
import types
from collections.abc import Iterator, Mapping
from importlib import import_module
from typing import Any

from bastion.scan.base import Scanner

# format -> the built-in scanner for it, imported the first time a file of that format appears
BUILTIN_SCANNERS: dict[str, str] = {
    "pickle": "bastion.scan.pickle:PickleScanner",
    "zip": "bastion.scan.archive:ZipScanner",
    "tar": "bastion.scan.archive:TarScanner",
    "7z": "bastion.scan.archive:SevenZipScanner",
    "gzip": "bastion.scan.archive:CompressedScanner",
    "bz2": "bastion.scan.archive:CompressedScanner",
    "xz": "bastion.scan.archive:CompressedScanner",
    "lzma": "bastion.scan.archive:CompressedScanner",
    "zstd": "bastion.scan.archive:CompressedScanner",
    "zlib": "bastion.scan.archive:CompressedScanner",
    "lz4": "bastion.scan.archive:CompressedScanner",
    "npy": "bastion.scan.npy:NpyScanner",
    "safetensors": "bastion.scan.safetensors:SafetensorsScanner",
    "onnx": "bastion.scan.onnx:OnnxScanner",
    "hdf5": "bastion.scan.keras:Hdf5Scanner",
    "savedmodel": "bastion.scan.tensorflow:SavedModelScanner",
    "savedmodel_text": "bastion.scan.tensorflow:SavedModelScanner",
    "keras_metadata": "bastion.scan.tensorflow:SavedModelScanner",
    "tf_graphdef": "bastion.scan.tensorflow:SavedModelScanner",
    "gguf": "bastion.scan.gguf:GgufScanner",
    "json": "bastion.scan.jsonconfig:JsonConfigScanner",
    "jinja": "bastion.scan.templates:TemplateScanner",
}


@functools.cache
def _load(target: str) -> Scanner:
    module, _, name = target.partition(":")
    scanner: Scanner = getattr(import_module(module), name)()
    return scanner


class Registry(Mapping[str, Scanner]):
    """format name -> scanner; built-ins load on first use, plugins were loaded up front."""

    def __init__(self, plugins: dict[str, Scanner]) -> None:
        self._plugins = plugins

    def __getitem__(self, fmt: str) -> Scanner:
        if fmt in BUILTIN_SCANNERS:
            return _load(BUILTIN_SCANNERS[fmt])
        return self._plugins[fmt]

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(BUILTIN_SCANNERS), **dict.fromkeys(self._plugins)})

    def __len__(self) -> int:
        return len(set(BUILTIN_SCANNERS) | set(self._plugins))


# modules that declare rules but are reached through another scanner (zip flavours)
RULE_MODULES = ("bastion.scan.pytorch", "bastion.scan.skops", "bastion.scan.shipped_code")


def load_all() -> None:
    """Import every built-in scanner and rule module (declares all their rules)."""
    for target in sorted(set(BUILTIN_SCANNERS.values())):
        _load(target)
    for module in RULE_MODULES:
        import_module(module)


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
def registry() -> Registry:
    """format name -> scanner: built-ins, then plugins (which may not replace them).
    Built once per process (the engine builds it before forking its workers)."""
    plugins: dict[str, Scanner] = {}
    if _plugins_installed():
        from importlib.metadata import entry_points

        for entry in entry_points(group=PLUGIN_GROUP):
            plugin = entry.load()()
            for fmt in plugin.formats:
                if fmt not in BUILTIN_SCANNERS:
                    plugins.setdefault(fmt, plugin)
    return Registry(plugins)


class _CallableModule(types.ModuleType):
    """`bastion.scan` is both this package and the public function `bastion.scan(paths)`:
    importing the package replaces the function attribute on `bastion`, so the package itself
    forwards calls to the function."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from bastion import run_scan_api

        return run_scan_api(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
