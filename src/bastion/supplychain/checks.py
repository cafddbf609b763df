"""The supply-chain family's project checks: code analysis of .py/.ipynb, the dependency
audit of requirement and lock files, and signature verification of the models beside
signatures (with SIG002 for models nothing signs)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bastion.checks import ProjectContext
from bastion.discover import Target
from bastion.findings import Confidence, Location, Severity, Stage, TargetResult
from bastion.formats import CODE_SUFFIXES, MODEL_FORMATS
from bastion.rules import Rule

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

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (UNSIGNED,)


class CodeCheck:
    """ML-aware static analysis of Python sources and notebooks (supplychain/code.py)."""

    name = "code"
    extra: str | None = "code"
    requires: tuple[str, ...] = ()  # runs without its extra; secrets then become a gap

    @property
    def rules(self) -> tuple[Rule, ...]:
        from bastion.supplychain import code_rules

        return code_rules.RULES

    def select(self, ctx: ProjectContext) -> Sequence[Target]:
        return [t for t in ctx.found.files if t.path.suffix.lower() in CODE_SUFFIXES]

    def run(self, selected: Sequence[Target], ctx: ProjectContext) -> Sequence[TargetResult]:
        from bastion.supplychain.code import check_code_files

        return check_code_files(selected, ctx.settings, ctx.progress)


class DependencyCheck:
    """Requirement and lock files against bastion's ML advisories and the policy's advisory
    database (supplychain/dependencies.py)."""

    name = "dependencies"
    extra: str | None = "deps"
    requires: tuple[str, ...] = ("packaging", "pip_requirements_parser")

    @property
    def rules(self) -> tuple[Rule, ...]:
        from bastion.supplychain import dependencies

        return dependencies.RULES

    def select(self, ctx: ProjectContext) -> Sequence[Target]:
        from bastion.supplychain.requirements import is_dependency_file

        return [t for t in ctx.found.files if is_dependency_file(t.path.name)]

    def run(self, selected: Sequence[Target], ctx: ProjectContext) -> Sequence[TargetResult]:
        from bastion.supplychain.dependencies import run_deps

        settings = ctx.settings
        database = settings.resolve(settings.advisory_db) if settings.advisory_db else None
        report = run_deps([t.path for t in selected], settings, database)
        by_path = {str(t.path): t.display for t in selected}
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
                                update={
                                    "location": f.location.model_copy(moved),
                                    "fingerprint": "",
                                }
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


def _is_signature(target: Target) -> bool:
    return target.path.name == "model.sig" or (
        target.path.suffix == ".sig" and target.path.with_suffix("").exists()
    )


class SignatureCheck:
    """Every signature is verified against the policy's trusted keys; every model file the
    artifact scan identified that no verified signature covers is SIG002 (high when the
    policy requires signatures). Runs after the artifact check (it reads its formats)."""

    name = "signatures"
    extra: str | None = "signing"
    requires: tuple[str, ...] = ()  # verification reports a missing model-signing itself

    @property
    def rules(self) -> tuple[Rule, ...]:
        from bastion.supplychain import signing

        return signing.RULES + RULES

    def select(self, ctx: ProjectContext) -> Sequence[Target]:
        return ctx.found.files  # signatures to verify and models to find uncovered

    def run(self, selected: Sequence[Target], ctx: ProjectContext) -> Sequence[TargetResult]:
        settings = ctx.settings
        covered: list[str] = []
        out: list[TargetResult] = []
        for target in (t for t in selected if _is_signature(t)):
            model = (
                target.path.parent
                if target.path.name == "model.sig"
                else target.path.with_suffix("")
            )
            prefix = target.display.rsplit("/", 1)[0] + "/" if "/" in target.display else ""
            verified = _verify(model, target, ctx)
            out.append(verified)
            if verified.findings or verified.errors or verified.skips:
                continue  # coverage counts only after a successful verification
            covered.append(
                prefix if target.path.name == "model.sig" else target.display.removesuffix(".sig")
            )
        severity = Severity.HIGH if settings.signing.require else Severity.INFO
        for path, result in ctx.results.items():
            if result.format not in MODEL_FORMATS or path.endswith(".sig"):
                continue
            if any(
                path == c or (c.endswith("/") and path.startswith(c)) or c == "" for c in covered
            ):
                continue
            finding = UNSIGNED.finding(
                Location(path=path),
                "no signature covers this model file",
                evidence="unsigned",
                severity=severity,
            )
            out.append(TargetResult(path=path, format=result.format, findings=(finding,)))
        return out


def _verify(model: Path, target: Target, ctx: ProjectContext) -> TargetResult:
    from bastion.supplychain.signing import signature_result

    return signature_result(model, target.path, target.display, ctx.settings)
