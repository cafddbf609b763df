"""Policy files inside the scanned content: reported (POL001), never read as policy (DESIGN.md
principle 12)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bastion.checks import ProjectContext
from bastion.config import POLICY_FILE_NAMES, declares_policy
from bastion.discover import Target
from bastion.findings import Confidence, Location, Severity, Stage, TargetResult
from bastion.rules import Rule

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

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (SHIPPED_POLICY,)


class ShippedPolicyCheck:
    """bastion.toml / pyproject.toml files that declare a bastion policy, other than the one
    in use."""

    name = "policy-files"
    extra: str | None = None
    requires: tuple[str, ...] = ()
    rules = RULES

    def select(self, ctx: ProjectContext) -> Sequence[Target]:
        in_use = Path(ctx.settings.source).resolve() if ctx.settings.source else None
        return [
            t
            for t in ctx.found.files
            if t.path.name in POLICY_FILE_NAMES
            and t.path.resolve() != in_use
            and declares_policy(t.path)
        ]

    def run(self, selected: Sequence[Target], ctx: ProjectContext) -> Sequence[TargetResult]:
        out = []
        for target in selected:
            finding = SHIPPED_POLICY.finding(
                Location(path=target.display),
                f"{target.path.name} inside the scanned content is "
                f"ignored; the policy in use is {ctx.settings.policy_name}",
                evidence=target.path.name,
            )
            out.append(TargetResult(path=target.display, format="policy", findings=(finding,)))
        return out
