"""Load an artifact only when its scan passes the policy. The file is read once into memory;
the scan and the load both use those bytes, so nothing can change between check and use.
Loading still goes through restricted loaders (allowlisted pickle globals, torch weights_only,
np.load without pickles) as a second line of defence."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from bastion.config import Settings
from bastion.errors import InputError, MissingExtra, UnsafeArtifactError, UsageError
from bastion.findings import Report
from bastion.policy import Status, evaluate
from bastion.scan.engine import scan_bytes
from bastion.scan.pickle_globals import ANY_USE, classify

DEFAULT_MAX_BYTES = 8 * 1024**3


class _AllowlistUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if not classify(module, name).permits(ANY_USE):
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return super().find_class(module, name)


def _joblib_load(data: bytes) -> Any:
    try:
        from joblib import numpy_pickle
    except ImportError as exc:
        raise MissingExtra("joblib", "all") from exc

    class _Restricted(numpy_pickle.NumpyUnpickler):  # type: ignore[misc]
        def find_class(self, module: str, name: str) -> Any:
            if not classify(module, name).permits(ANY_USE):
                raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
            return super().find_class(module, name)

    with numpy_pickle._validate_fileobject_and_memmap(  # type: ignore[attr-defined]
        io.BytesIO(data), "<bytes>", None
    ) as (fobj, _):
        try:
            unpickler = _Restricted("<bytes>", fobj, ensure_native_byte_order=True)
        except TypeError:  # joblib < 1.5
            unpickler = _Restricted("<bytes>", fobj)
        return unpickler.load()


def read_checked(
    path: Path, settings: Settings | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[bytes, Report]:
    """The file's bytes, read once, and their scan report; UnsafeArtifactError (carrying the
    report) when the scan does not pass the policy. Load only these bytes."""
    settings = settings or Settings()  # built-in defaults: nothing near the file counts
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(f"{path} is {size} bytes, over safe_load's limit of {max_bytes}")
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    report = scan_bytes(data, path.name, settings)
    verdict = evaluate(report, settings)
    if verdict.status is not Status.PASSED:
        detail = "; ".join(verdict.reasons) or verdict.status.value
        raise UnsafeArtifactError(f"refusing to load {path}: {detail}", report)
    return data, report


def safe_load(
    path: Path,
    settings: Settings | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    map_location: str = "cpu",
) -> Any:
    data, report = read_checked(path, settings, max_bytes=max_bytes)
    return load_scanned(data, report.results[0].format, map_location=map_location)


def load_scanned(data: bytes, formats: str, *, map_location: str = "cpu") -> Any:
    """Load bytes that `read_checked` passed, as the format the scan identified, with the
    restricted loaders. ONNX gives an onnxruntime session built from the bytes (CPU, no
    custom-op libraries)."""
    if formats == "pickle" or formats in ("gzip", "bz2", "xz", "zlib"):
        if b"NumpyArrayWrapper" in data or formats != "pickle":
            return _joblib_load(data)
        return _AllowlistUnpickler(io.BytesIO(data), encoding="latin1").load()
    if formats == "onnx":
        try:
            import onnxruntime
        except ImportError as exc:
            raise MissingExtra("onnxruntime", "probe") from exc
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise InputError(f"onnxruntime cannot load the model: {exc}") from exc
    if formats == "zip" and (b"data.pkl" in data[-65_536:] or b"data.pkl" in data[:4096]):
        try:
            import torch
        except ImportError as exc:
            raise MissingExtra("torch", "torch") from exc
        return torch.load(io.BytesIO(data), weights_only=True, map_location=map_location)
    if formats in ("npy", "zip"):
        try:
            import numpy as np
        except ImportError as exc:
            raise MissingExtra("numpy", "numpy") from exc
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if hasattr(loaded, "files"):
            return {name: loaded[name] for name in loaded.files}
        return loaded
    if formats == "safetensors":
        try:
            from safetensors.numpy import load as load_safetensors
        except ImportError as exc:
            raise MissingExtra("safetensors", "safetensors") from exc
        return load_safetensors(data)
    raise UsageError(
        f"safe_load does not load {formats} files",
        hint="scan them with `bastion scan`, then use the framework's loader",
    )
