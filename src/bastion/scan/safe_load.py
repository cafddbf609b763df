"""Load an artifact only when its scan passes the policy. The file is read once into memory;
the scan and the load both use those bytes, so nothing can change between check and use.
Loading still goes through restricted loaders (allowlisted pickle globals, torch weights_only,
np.load without pickles) as a second line of defence.

The allowlisting unpickler cannot see how the stream uses a global (called, instantiated or
kept as a value), so on its own it resolves only globals allowlisted for every use. The scan of
the same bytes does see the use, and the unpickler is keyed to it: a global allowlisted for
narrower uses (a class listed for instantiation only, such as xgboost.sklearn.XGBClassifier)
resolves when no finding of this scan names it, which means the scan saw only its allowed uses.
A global outside the allowlist never resolves unless the caller names it in `allow_globals` and
every finding naming it is PKL007 (instantiated, not called, below the default gate): an
explicit, named allowance for a class the caller trusts, such as xgboost.core.Booster, whose
restore hands the pickled bytes to xgboost's native parser. Names in a dangerous category are
never resolved, whatever is allowed."""

from __future__ import annotations

import io
import pickle
from collections.abc import Collection
from pathlib import Path
from typing import Any

from bastion.config import Settings
from bastion.errors import InputError, MissingExtra, UnsafeArtifactError, UsageError
from bastion.findings import Report
from bastion.policy import Status, evaluate
from bastion.scan.engine import scan_bytes
from bastion.scan.pickle_globals import ANY_USE, classify

DEFAULT_MAX_BYTES = 8 * 1024**3


ALLOWANCE_RULES = frozenset({"PKL007"})  # the findings a named allowance may cover


class Permits:
    """Which globals one load may resolve, from the scan of its bytes (see the docstring)."""

    def __init__(self, report: Report | None = None, allow: Collection[str] = ()) -> None:
        self.named: dict[str, set[str]] = {}  # qualname -> rules of the findings naming it
        if report is not None:
            for finding in report.findings:
                if finding.rule_id.startswith("PKL") and finding.evidence:
                    self.named.setdefault(finding.evidence, set()).add(finding.rule_id)
        self.scanned = report is not None
        self.allow = frozenset(allow)

    def check(self, module: str, name: str) -> None:
        verdict = classify(module, name)
        if verdict.permits(ANY_USE):
            return
        qualname = verdict.qualname
        if verdict.category is None and self.scanned:
            rules = self.named.get(qualname, set()) | self.named.get(f"{module}.{name}", set())
            if verdict.allowed and not rules:
                return  # listed for the uses the scan saw, and the scan saw no other
            if qualname in self.allow and rules and rules <= ALLOWANCE_RULES:
                return  # the caller's named allowance, for a below-gate instantiation
        raise pickle.UnpicklingError(self.refusal(module, name, verdict.category))

    def refusal(self, module: str, name: str, category: str | None) -> str:
        qualname = f"{module}.{name}"
        if category is not None:
            return f"global {qualname} is not allowed ({category})"
        rules = self.named.get(qualname, set())
        if rules and rules <= ALLOWANCE_RULES:
            return (
                f"global {qualname} is not allowed: the scan reports it as PKL007 (a class "
                "outside the allowlist, instantiated); if you trust it, name it in "
                f"allow_globals (--allow-global {qualname})"
            )
        return f"global {qualname} is not allowed"


class _AllowlistUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, permits: Permits, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.permits = permits

    def find_class(self, module: str, name: str) -> Any:
        self.permits.check(module, name)
        return super().find_class(module, name)


def _joblib_load(data: bytes, permits: Permits) -> Any:
    try:
        from joblib import numpy_pickle
    except ImportError as exc:
        raise MissingExtra("joblib", "all") from exc

    class _Restricted(numpy_pickle.NumpyUnpickler):  # type: ignore[misc]
        def find_class(self, module: str, name: str) -> Any:
            permits.check(module, name)
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
    allow_globals: Collection[str] = (),
) -> Any:
    """Load `path` if its scan passes the policy (see the module docstring). `allow_globals`
    names pickle globals outside the allowlist that the caller trusts ("module.Class"); each
    resolves only where the scan reports it as PKL007 and nothing worse."""
    data, report = read_checked(path, settings, max_bytes=max_bytes)
    return load_scanned(
        data,
        report.results[0].format,
        map_location=map_location,
        report=report,
        allow_globals=allow_globals,
    )


def load_scanned(
    data: bytes,
    formats: str,
    *,
    map_location: str = "cpu",
    report: Report | None = None,
    allow_globals: Collection[str] = (),
) -> Any:
    """Load bytes that `read_checked` passed, as the format the scan identified, with the
    restricted loaders. ONNX gives an onnxruntime session built from the bytes (CPU, no
    custom-op libraries); XGBoost JSON/UBJSON a Booster and LightGBM text a Booster, parsed by
    their libraries after the scan checked their structure. Pass the scan's `report` to key the
    unpickler to it (without it, only globals allowlisted for every use resolve)."""
    if formats == "pickle" or formats in ("gzip", "bz2", "xz", "zlib"):
        permits = Permits(report, allow_globals)
        try:
            if b"NumpyArrayWrapper" in data or formats != "pickle":
                return _joblib_load(data, permits)
            return _AllowlistUnpickler(io.BytesIO(data), permits, encoding="latin1").load()
        except pickle.UnpicklingError as exc:
            if report is None:
                raise
            raise UnsafeArtifactError(f"refusing to load: {exc}", report) from None
    if formats in ("xgboost_json", "xgboost_ubj"):
        try:
            import xgboost
        except ImportError as exc:
            raise MissingExtra("xgboost", "probe") from exc
        booster = xgboost.Booster()
        try:
            booster.load_model(bytearray(data))
        except xgboost.core.XGBoostError as exc:
            raise InputError(f"xgboost cannot load the model: {exc}"[:500]) from None
        return booster
    if formats == "lightgbm_text":
        try:
            import lightgbm
        except ImportError as exc:
            raise MissingExtra("lightgbm", "probe") from exc
        try:
            return lightgbm.Booster(model_str=data.decode("utf-8"))
        except (lightgbm.basic.LightGBMError, UnicodeDecodeError) as exc:
            raise InputError(f"lightgbm cannot load the model: {exc}"[:500]) from None
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
