"""One probe run: the model, the test data (rows it never saw), optionally its training rows,
the spec, and the attacks asked for → one Report with findings, skips and the metrics.

The report holds one target (the model file or endpoint); its metrics, the curves the HTML
report plots and the cheapest flips are in `metadata["probe"]`. Attacks that cannot run say so
as a Skip with the reason (membership inference without --train, an ART attack without ART);
nothing is silently left out."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bastion.config import ProbeSettings, Settings
from bastion.errors import BastionError, UsageError
from bastion.findings import (
    CheckError,
    Finding,
    Location,
    Report,
    Skip,
    TargetResult,
    ToolInfo,
    sort_findings,
)
from bastion.probe.inputs import Table, favourable_class, model_labels
from bastion.probe.model import Model
from bastion.probe.refusals import answered_rows
from bastion.probe.spec import ProbeSpec, check_against, check_types, infer
from bastion.rules import taxonomy_version
from bastion.version import __version__

ATTACKS = ("evasion", "membership", "extraction")  # consistency always runs


class ProbeError(BastionError):
    """The model cannot be probed with this data."""


def parse_attacks(text: str) -> tuple[str, ...]:
    names = tuple(a.strip() for a in text.split(",") if a.strip())
    unknown = [a for a in names if a not in ATTACKS]
    if unknown or not names:
        raise UsageError(
            f"unknown attack {unknown[0]!r}" if unknown else "no attack named",
            hint=f"choose from {', '.join(ATTACKS)} (consistency always runs)",
        )
    return names


def run_probe(model: Model, data: Table, **kwargs: Any) -> Report:
    """Probe `model` and return the Report (library API: nothing printed). Native thread
    pools are held to one thread meanwhile: attacks send small batches, for which OpenMP's
    start-up costs more than it gives (five times the wall time of a gradient-boosting probe)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        return _run_probe(model, data, **kwargs)
    with threadpool_limits(limits=1):
        return _run_probe(model, data, **kwargs)


def _run_probe(
    model: Model,
    data: Table,
    *,
    settings: Settings | None = None,
    train: Table | None = None,
    spec: ProbeSpec | None = None,
    attacks: Sequence[str] = ATTACKS,
    favourable: str | None = None,
    label_map: Mapping[str, str] | None = None,
    budgets: Sequence[float] | None = None,
    queries: int | None = None,
    target_name: str | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
) -> Report:
    import datetime as dt

    settings = settings or Settings()
    options: ProbeSettings = settings.probe
    if queries is not None:
        options = options.model_copy(update={"queries": queries})
    mapping = dict(label_map or {})
    started_at = dt.datetime.now(dt.timezone.utc)
    clock = time.monotonic()
    name = target_name or model.name
    location = Location(path=name)
    features = data.features
    if spec is None:
        spec = infer(features, favourable=favourable, name=data.name)
    check_against(spec, list(features.columns), None)
    check_types(spec, features)
    features = features[spec.names]
    favourable = favourable or spec.favourable
    mapping = {**spec.labels, **mapping}
    # also tells an ONNX model's classes; a row the model refuses is marked, not fatal
    baseline = model.query(features, partial=True)
    if len(features) and baseline.refused is not None and bool(baseline.refused.all()):
        raise ProbeError(
            f"{name} refused every row of {data.name} (an exception or a 4xx for each)",
            hint="check that the data's columns are the model's input",
        )
    truth = model_labels(data.labels, model, mapping) if data.labels is not None else None
    metrics: dict[str, Any] = {
        "model": {
            "name": name,
            "kind": model.kind,
            "classes": list(model.classes),
            "scores": model.gives_scores,
        },
        "data": {"name": data.name, "rows": len(features)},
        "attacks": list(attacks),
    }
    if truth is not None:
        import numpy as np

        answered = answered_rows(baseline)  # a refused row has no decision to judge
        metrics["accuracy"] = round(float(np.mean(baseline.labels[answered] == truth[answered])), 6)
    findings: list[Finding] = []
    skips: list[Skip] = []
    errors: list[CheckError] = []
    timings: dict[str, float] = {}

    def attempt(attack: str, work: Any) -> None:
        began = time.monotonic()
        try:
            result = work()
        except BastionError:
            raise
        except Exception as exc:  # an attack that crashed leaves the verdict undecided
            errors.append(
                CheckError(
                    location=location.model_copy(update={"pointer": attack}),
                    check=f"probe.{attack}",
                    message=f"{type(exc).__name__}: {exc}"[:500],
                )
            )
            return
        finally:
            timings[attack] = round(time.monotonic() - began, 3)
        if result is None:
            return
        metrics[attack] = result.metrics
        findings.extend(result.findings)
        skips.extend(getattr(result, "skips", ()))
        errors.extend(getattr(result, "errors", ()))

    from bastion.probe.consistency import run_consistency

    attempt("consistency", lambda: run_consistency(model, features, location, options.seed))
    if "evasion" in attacks:
        from bastion.probe.evasion import run_evasion

        cls = favourable_class(favourable, data.labels, mapping, model)
        attempt(
            "evasion",
            lambda: run_evasion(
                model,
                spec,
                features,
                truth,
                baseline.labels,
                baseline.scores,
                cls,
                options,
                location,
                budgets,
            ),
        )
    if "membership" in attacks:
        if train is None or train.labels is None or truth is None:
            why = "no --train rows" if train is None else "no --target labels"
            skips.append(
                Skip(
                    location=location.model_copy(update={"pointer": "membership"}),
                    reason=f"membership inference not run: {why} (it compares the model's "
                    "answers on rows it was trained on with rows it never saw)",
                    code="unsupported",
                )
            )
        else:
            from bastion.probe.membership import run_membership

            members = train.features[spec.names]
            member_truth = model_labels(train.labels, model, mapping)
            attempt(
                "membership",
                lambda: run_membership(
                    model, members, member_truth, features, truth, options, location
                ),
            )
    if "extraction" in attacks:
        from bastion.probe.extraction import run_extraction

        attempt(
            "extraction",
            lambda: run_extraction(model, spec, features, truth, options, location),
        )
    metrics["queries"] = model.queries
    metrics["timings_s"] = timings
    metadata: dict[str, Any] = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - clock, 3),
        "files": 1,
        "taxonomy_version": taxonomy_version(),
        "policy": settings.policy_name,
        "settings": {
            "fail_on": settings.fail_on.value,
            "strict": settings.strict,
            "source": settings.source,
            "probe": options.model_dump(mode="json"),
        },
        "probe": metrics,
        "spec": spec.model_dump(mode="json"),
        **(extra_metadata or {}),
    }
    result = TargetResult(
        path=name,
        format=model.kind,
        findings=sort_findings(findings),
        skips=tuple(skips),
        errors=tuple(errors),
        incomplete=bool(errors),
        duration_ms=round((time.monotonic() - clock) * 1000, 1),
    )
    return Report(
        tool=ToolInfo(version=__version__),
        command="probe",
        targets=(name,),
        metadata=metadata,
        results=(result,),
    )


def probe_file(model_path: Path, data: Table, settings: Settings, **kwargs: Any) -> Report:
    """Load a model file through the scan gate and probe it."""
    from bastion.probe.model import load_model

    model = load_model(model_path, settings)
    return run_probe(model, data, settings=settings, target_name=model_path.name, **kwargs)
