"""`bastion scan PROJECT`: the front door. Runs every check that applies to what is found —
artifact scanning for every file, code checks for .py/.ipynb, the dependency audit for
requirement and lock files, signature verification where signatures sit next to models — and
merges them into one Report."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from bastion.config import Settings
from bastion.discover import Found, walk
from bastion.findings import (
    CheckError,
    Confidence,
    Location,
    Report,
    Severity,
    Skip,
    Stage,
    TargetResult,
)
from bastion.rules import Rule
from bastion.runs import Progress
from bastion.scan.shipped_code import MODEL_FORMATS
from bastion.supplychain.requirements import is_dependency_file

UNSIGNED = Rule(
    id="SIG002",
    title="Model artifact without a signature",
    severity=Severity.INFO,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-integrity",
    description="No model-signing signature covers this model file, so nothing ties what is "
    "deployed to what was reviewed. High severity when the policy requires "
    "signatures ([signing] require = true).",
    remediation="Sign the model folder with `bastion sign` and keep the signature next to it.",
)
SHIPPED_POLICY = Rule(
    id="POL001",
    title="A bastion policy file inside the scanned content",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="masquerading",
    description="The scanned folder carries its own bastion policy (bastion.toml or "
    "[tool.bastion] in pyproject.toml). bastion ignores it: the policy comes from "
    "the invoking project (--policy, BASTION_POLICY, or the working directory), "
    "because content under review must not be able to waive its own findings. A "
    "downloaded model that ships a policy is trying to, or was packed carelessly.",
    remediation="Remove the policy file from the artifact. If this folder is a project of your "
    "own scanned from outside it, waive POL001 for its path.",
)
CODE_SUFFIXES = (".py", ".ipynb")


def scan_project(
    paths: Sequence[Path], settings: Settings, progress: Progress | None = None
) -> Report:
    from bastion.scan.engine import run_scan

    found = walk(paths, settings.limits.max_files)  # once, for every check below
    report = run_scan(paths, settings, progress, found=found)
    results = {r.path: r for r in report.results}
    code_files = [t for t in found.files if t.path.suffix.lower() in CODE_SUFFIXES]
    if code_files:
        _merge(results, _code_results(paths, settings, found))
    requirement_files = [t for t in found.files if is_dependency_file(t.path.name)]
    if requirement_files:
        _merge(results, _dependency_results(requirement_files, settings))
    _merge(results, _signature_results(found.files, results, settings))
    _merge(results, _shipped_policies(found.files, settings))
    _shipped_code(results, found)
    return report.model_copy(
        update={"results": tuple(sorted(results.values(), key=lambda r: r.path))}
    )


def _merge(results: dict[str, TargetResult], extra: Sequence[TargetResult]) -> None:
    for result in extra:
        current = results.get(result.path)
        if current is None or (not current.findings and current.out_of_scope):
            results[result.path] = result
        else:
            results[result.path] = current.model_copy(
                update={
                    "findings": current.findings + result.findings,
                    "skips": current.skips + result.skips,
                    "errors": current.errors + result.errors,
                    "incomplete": current.incomplete or result.incomplete,
                }
            )


def _code_results(paths: Sequence[Path], settings: Settings, found: Found) -> list[TargetResult]:
    from bastion.supplychain.code import run_code_scan

    # discovery problems are already in the artifact scan's results
    return [
        r
        for r in run_code_scan(paths, settings, found=found).results
        if not r.errors or r.errors[0].check != "discover"
    ]


def _dependency_results(files: Sequence, settings: Settings) -> list[TargetResult]:  # type: ignore[type-arg]
    from bastion.supplychain.dependencies import run_deps

    database = settings.resolve(settings.advisory_db) if settings.advisory_db else None
    report = run_deps([t.path for t in files], settings, database)
    by_path = {str(t.path): t.display for t in files}
    out = []
    for result in report.results:
        display = by_path.get(result.path, result.path)
        moved = {"path": display}
        out.append(
            result.model_copy(
                update={
                    "path": display,
                    "findings": tuple(
                        f.model_copy(
                            update={"location": f.location.model_copy(moved), "fingerprint": ""}
                        )
                        for f in result.findings
                    ),
                    "skips": tuple(
                        s.model_copy(update={"location": s.location.model_copy(moved)})
                        for s in result.skips
                    ),
                }
            )
        )
    return out


def _shipped_code(results: dict[str, TargetResult], found: Found) -> None:
    """Python shipped beside models: shadowing modules, bytecode, native code, and classes of
    shipped code instantiated by a pickle (scan/shipped_code.py)."""
    from pathlib import PurePosixPath

    from bastion.scan.shipped_code import Entry, check_entries, regrade, shipped_modules

    def head(path: Path) -> bytes:
        try:
            with open(path, "rb") as handle:
                return handle.read(16)
        except OSError:
            return b""

    entries = [
        Entry(
            t.display,
            results[t.display].format if t.display in results else "",
            functools.partial(head, t.path),
        )
        for t in found.files
    ]
    for problem in check_entries(entries, Location(path="")):
        finding = problem.finding.model_copy(
            update={"location": Location(path=problem.path), "fingerprint": ""}
        )
        _merge(results, [TargetResult(path=problem.path, format="python", findings=(finding,))])
    modules = shipped_modules(entries)
    for path, result in list(results.items()):
        folder = str(PurePosixPath(path).parent)
        regraded = tuple(regrade(f, folder, modules) for f in result.findings)
        if regraded != result.findings:
            results[path] = result.model_copy(update={"findings": regraded})


def _shipped_policies(files: Sequence, settings: Settings) -> list[TargetResult]:  # type: ignore[type-arg]
    """Policy files inside the scanned paths other than the one in use: reported, never read
    as policy."""
    from bastion.config import POLICY_FILE_NAMES, declares_policy

    in_use = Path(settings.source).resolve() if settings.source else None
    out = []
    for target in files:
        if (
            target.path.name not in POLICY_FILE_NAMES
            or target.path.resolve() == in_use
            or not declares_policy(target.path)
        ):
            continue
        finding = SHIPPED_POLICY.finding(
            Location(path=target.display),
            f"{target.path.name} inside the scanned content is "
            f"ignored; the policy in use is {settings.policy_name}",
            evidence=target.path.name,
        )
        out.append(TargetResult(path=target.display, format="policy", findings=(finding,)))
    return out


def _signature_results(
    files: Sequence,  # type: ignore[type-arg]
    results: dict[str, TargetResult],
    settings: Settings,
) -> list[TargetResult]:
    signatures = [
        t
        for t in files
        if t.path.name == "model.sig"
        or (t.path.suffix == ".sig" and t.path.with_suffix("").exists())
    ]
    covered: list[str] = []
    out: list[TargetResult] = []
    for target in signatures:
        model = (
            target.path.parent if target.path.name == "model.sig" else target.path.with_suffix("")
        )
        prefix = target.display.rsplit("/", 1)[0] + "/" if "/" in target.display else ""
        verified = _verify(model, target, settings)
        out.append(verified)
        if verified.findings or verified.errors or verified.skips:
            continue  # coverage counts only after a successful verification
        covered.append(
            prefix if target.path.name == "model.sig" else target.display.removesuffix(".sig")
        )
    severity = Severity.HIGH if settings.signing.require else Severity.INFO
    for path, result in results.items():
        if result.format not in MODEL_FORMATS or path.endswith(".sig"):
            continue
        if any(path == c or (c.endswith("/") and path.startswith(c)) or c == "" for c in covered):
            continue
        finding = UNSIGNED.finding(
            Location(path=path),
            "no signature covers this model file",
            evidence="unsigned",
            severity=severity,
        )
        out.append(TargetResult(path=path, format=result.format, findings=(finding,)))
    return out


def _verify(model: Path, target, settings: Settings) -> TargetResult:  # type: ignore[no-untyped-def]
    from bastion.supplychain.signing import Credentials, failure_finding, verify

    location = Location(path=target.display)
    trusted = [Credentials(key=settings.resolve(k)) for k in settings.signing.public_keys]
    trusted += [
        Credentials(chain=(settings.resolve(c),)) for c in settings.signing.certificate_chains
    ]
    trusted += [
        Credentials(sigstore=True, identity=i.identity, issuer=i.issuer)
        for i in settings.signing.identities
    ]
    if not trusted:
        return TargetResult(
            path=target.display,
            format="signature",
            skips=(
                Skip(
                    location=location,
                    code="unsupported",
                    reason="signature present but no trusted key in the policy ([signing] "
                    "public_keys); not verified",
                ),
            ),
        )
    outcomes = []
    for credentials in trusted:
        try:
            outcome = verify(model, credentials, target.path)
        except Exception as exc:  # a broken key file in the policy is an error, not a pass
            return TargetResult(
                path=target.display,
                format="signature",
                incomplete=True,
                errors=(
                    CheckError(
                        location=location, check="signature", message=f"cannot verify: {exc}"
                    ),
                ),
            )
        if outcome.ok:
            return TargetResult(path=target.display, format="signature")
        outcomes.append(outcome)
    worst = next((o for o in outcomes if o.kind != "wrong-key"), outcomes[0])
    return TargetResult(
        path=target.display, format="signature", findings=(failure_finding(worst, target.display),)
    )
