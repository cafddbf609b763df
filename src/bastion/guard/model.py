"""The served model, loaded only through bastion's safe loader.

`load_served_model` reads the model file once into memory and works only on those bytes: they
are written to a private temporary folder (0700) beside a copy of the signature and verified
there with model-signing against the configured public keys (so the bytes verified are the
bytes loaded: nothing can swap the file between check and use), then scanned and judged by the
policy and loaded by `safe_load`'s restricted loaders (`scan.safe_load`). A model whose
signature does not verify, or whose scan does not pass, is refused with the findings
(`UnsafeArtifactError`). Serving an unsigned model needs `unsafe_unsigned`.

Predictions go through the estimator's own `predict`/`predict_proba` with the rows as a
positional array in the contract's column order, or as a DataFrame when the model was fitted on
one (`feature_names_in_`)."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bastion.config import Settings
from bastion.errors import InputError, UnsafeArtifactError, UsageError
from bastion.findings import Report


class ServedModel:
    """A classifier behind `predict(rows)`: labels and, when it has them, class scores."""

    def __init__(self, estimator: Any, columns: Sequence[str], digest: str, name: str) -> None:
        if not callable(getattr(estimator, "predict", None)):
            raise UsageError(f"{name}: a {type(estimator).__name__} has no predict()")
        self.estimator = estimator
        self.columns = list(columns)
        self.digest = digest
        self.name = name
        classes = getattr(estimator, "classes_", None)
        self.classes: list[str] = [_label(c) for c in classes] if classes is not None else []
        self.has_scores = callable(getattr(estimator, "predict_proba", None)) and bool(self.classes)
        names = getattr(estimator, "feature_names_in_", None)
        self.feature_names = [str(n) for n in names] if names is not None else None
        if self.feature_names is not None and set(self.feature_names) - set(self.columns):
            missing = sorted(set(self.feature_names) - set(self.columns))[:5]
            raise UsageError(
                f"{name} was fitted on columns the contract does not have: {', '.join(missing)}"
            )
        expected = getattr(estimator, "n_features_in_", None)
        if self.feature_names is None and expected is not None and expected != len(self.columns):
            raise UsageError(
                f"{name} takes {expected} features and the contract has {len(self.columns)} "
                "request columns",
                hint="name the label column with --target so it is not a request column",
            )

    def _input(self, rows: Sequence[Mapping[str, Any]]) -> Any:
        import numpy as np

        if self.feature_names is not None:
            import pandas as pd

            return pd.DataFrame(
                [[row.get(c) for c in self.feature_names] for row in rows],
                columns=self.feature_names,
            )
        return np.array([[row.get(c) for c in self.columns] for row in rows], dtype=object)

    def predict(
        self, rows: Sequence[Mapping[str, Any]], scores: bool
    ) -> tuple[list[str], list[list[float]] | None]:
        data = self._input(rows)
        if scores and self.has_scores:
            probabilities = self.estimator.predict_proba(data)
            labels = [self.classes[int(i)] for i in probabilities.argmax(axis=1)]
            return labels, [[float(p) for p in row] for row in probabilities]
        return [_label(v) for v in self.estimator.predict(data)], None


def _label(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _verify_copy(copy: Path, signed: bytes, public_keys: Sequence[Path]) -> Any:
    """None when one key verifies the copy; else the most telling failed Outcome."""
    from bastion.supplychain.signing import Credentials, verify

    bundle = copy.with_name(copy.name + ".sig")
    bundle.write_bytes(signed)
    failed = []
    for key in public_keys:
        outcome = verify(copy, Credentials(key=key), bundle)
        if outcome.ok:
            return None
        failed.append(outcome)
    return next((o for o in failed if o.kind != "wrong-key"), failed[0])


def _signature_report(path: Path, outcome: Any, settings: Settings) -> Report:
    from bastion.findings import TargetResult
    from bastion.runs import build_report, start
    from bastion.supplychain.signing import failure_finding

    result = TargetResult(
        path=str(path), format="signed-artifact", findings=(failure_finding(outcome, str(path)),)
    )
    return build_report([result], [str(path)], settings, start(), "guard", {})


def load_served_model(
    path: Path,
    columns: Sequence[str],
    *,
    public_keys: Sequence[Path] = (),
    signature: Path | None = None,
    unsafe_unsigned: bool = False,
    settings: Settings | None = None,
) -> ServedModel:
    """The model at `path`, read once; those bytes verified, scanned and loaded (see the module
    docstring). UnsafeArtifactError (with the scan report, when there is one) if refused."""
    from bastion.scan.safe_load import DEFAULT_MAX_BYTES, safe_load

    settings = settings or Settings()
    if not unsafe_unsigned and not public_keys:
        raise UsageError(
            "no public key to verify the model's signature with",
            hint="pass --key PUB (or [model] public_keys in guard.toml); serving an unsigned "
            "model needs --unsafe-unsigned",
        )
    signature = signature or path.with_name(path.name + ".sig")
    try:
        if path.stat().st_size > DEFAULT_MAX_BYTES:
            raise InputError(f"{path} is over safe_load's size limit")
        data = path.read_bytes()
        signed = None if unsafe_unsigned else signature.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    with tempfile.TemporaryDirectory(prefix="bastion-guard-") as folder:  # created 0700
        copy = Path(folder) / path.name
        copy.write_bytes(data)
        if signed is not None:
            failed = _verify_copy(copy, signed, public_keys)
            if failed is not None:
                raise UnsafeArtifactError(
                    f"refusing to serve {path}: its signature does not verify ({failed.kind}: "
                    f"{failed.detail})"[:800],
                    _signature_report(path, failed, settings),
                )
        estimator = safe_load(copy, settings)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return ServedModel(estimator, columns, digest, path.name)
