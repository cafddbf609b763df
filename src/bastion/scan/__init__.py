"""Artifact scanning. The scanners of this family are listed here explicitly; third-party
scanners register under the `bastion.scanners` entry-point group."""

from __future__ import annotations

import functools
import os
import sys
import types
import typing
from collections.abc import Iterator, Mapping
from importlib import import_module
from typing import TYPE_CHECKING, Any

from bastion.scan.base import Scanner

if TYPE_CHECKING:
    from bastion.scan.zipmembers import ZipFlavour

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
    "xgboost_json": "bastion.scan.boosters:BoosterScanner",
    "xgboost_ubj": "bastion.scan.boosters:BoosterScanner",
    "lightgbm_text": "bastion.scan.boosters:BoosterScanner",
}


# zips that a loader reads its own way, asked in this order (scan/zipmembers.py ZipFlavour);
# the torch.package check looks at every zip, then the first exclusive flavour that claims one
# scans it
ZIP_FLAVOURS: tuple[str, ...] = (
    "bastion.scan.pytorch:TorchPackage",
    "bastion.scan.pytorch:TorchZip",
    "bastion.scan.keras:KerasZip",
    "bastion.scan.skops:SkopsZip",
)


@functools.cache
def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)()


@functools.cache
def zip_flavours() -> tuple[ZipFlavour, ...]:
    """The zip flavours, built on first use (each imports its format's module)."""
    return tuple(_load(target) for target in ZIP_FLAVOURS)


class Registry(Mapping[str, Scanner]):
    """format name -> scanner; built-ins load on first use, plugins were loaded up front."""

    def __init__(self, plugins: dict[str, Scanner], identifiers: tuple[Scanner, ...] = ()):
        self._plugins = plugins
        self._identifiers = identifiers

    def identify(self, head: bytes, size: int, name: str) -> str | None:
        """A plugin's format for content no built-in identification claims, or None. Plugins
        extend identification only: they cannot re-label what bastion already recognises
        (a pickle stays a pickle, whatever a plugin says)."""
        for plugin in self._identifiers:
            fmt = plugin.identify(head, size, name)  # type: ignore[attr-defined]
            if isinstance(fmt, str) and fmt in self._plugins and self._plugins[fmt] is plugin:
                return fmt
        return None

    def __getitem__(self, fmt: str) -> Scanner:
        if fmt in BUILTIN_SCANNERS:
            scanner: Scanner = _load(BUILTIN_SCANNERS[fmt])
            return scanner
        return self._plugins[fmt]

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(BUILTIN_SCANNERS), **dict.fromkeys(self._plugins)})

    def __len__(self) -> int:
        return len(set(BUILTIN_SCANNERS) | set(self._plugins))


def load_all() -> None:
    """Import every built-in scanner and every module of this family that declares rules
    (the fuzzer imports them inside its instrumentation block)."""
    from bastion.scan.checks import RULE_MODULES

    for target in sorted(set(BUILTIN_SCANNERS.values()) | set(ZIP_FLAVOURS)):
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
    Built once per process (the engine builds it before forking its workers). A plugin that
    cannot be loaded stops the run with a PluginError naming it."""
    plugins: dict[str, Scanner] = {}
    identifiers: list[Scanner] = []
    if _plugins_installed():
        from importlib.metadata import entry_points

        for entry in entry_points(group=PLUGIN_GROUP):
            plugin = _load_plugin(entry)
            claimed = [fmt for fmt in plugin.formats if fmt not in BUILTIN_SCANNERS]
            for fmt in claimed:
                plugins.setdefault(fmt, plugin)
            if claimed and callable(getattr(plugin, "identify", None)):
                identifiers.append(plugin)
    return Registry(plugins, tuple(identifiers))


def _load_plugin(entry: Any) -> Scanner:
    """One entry point of the plugin group, loaded and instantiated, or a PluginError."""
    from bastion.errors import PluginError

    dist = getattr(entry, "dist", None)
    label = f"'{entry.name}' ({entry.value}" + (f", from {dist.name}" if dist else "") + ")"
    try:
        plugin = entry.load()()
    except Exception as exc:  # whatever the plugin's import does: it is named, never a traceback
        raise PluginError(label, f"{type(exc).__name__}: {exc}"[:500]) from exc
    formats = getattr(plugin, "formats", None)
    if (
        not isinstance(getattr(plugin, "name", None), str)
        or not isinstance(formats, tuple)
        or not all(isinstance(f, str) for f in formats)
        or not callable(getattr(plugin, "scan", None))
    ):
        raise PluginError(
            label, "not a scanner: it needs `name` (str), `formats` (tuple of str) and scan()"
        )
    return typing.cast(Scanner, plugin)


class _CallableModule(types.ModuleType):
    """`bastion.scan` is both this package and the public function `bastion.scan(paths)`:
    importing the package replaces the function attribute on `bastion`, so the package itself
    forwards calls to the function."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from bastion import run_scan_api

        return run_scan_api(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
