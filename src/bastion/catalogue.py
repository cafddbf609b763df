"""The rule catalogue: every rule of every built-in check, gathered from the checks the
project front door runs and from the commands that run beside it. Nothing registers itself on
import; a rule is in the catalogue because a module listed here exports it in `RULES`."""

from __future__ import annotations

import functools
from importlib import import_module

from bastion.rules import Rule

# modules that declare rules outside the project checks' families (each exports RULES)
OTHER_RULE_MODULES = (
    "bastion.runs",
    # bastion probe (model testing)
    "bastion.probe.evasion",
    "bastion.probe.consistency",
    "bastion.probe.membership",
    "bastion.probe.extraction",
    # bastion guard (the runtime guard's pipeline decisions)
    "bastion.guard.rules",
    "bastion.guard.monitor",
    "bastion.guard.audit_verify",
    # bastion gate (the release decision over the evidence in the store)
    "bastion.lineage.gate",
)


class DuplicateRuleError(ValueError):
    """Two modules declare the same rule id with different content (a programming error)."""


@functools.cache
def rules_by_id() -> dict[str, Rule]:
    """rule id -> Rule for every built-in rule."""
    from bastion.project import registered_checks

    catalogue: dict[str, Rule] = {}
    rules = [rule for check in registered_checks() for rule in check.rules]
    rules += [rule for name in OTHER_RULE_MODULES for rule in import_module(name).RULES]
    for rule in rules:
        existing = catalogue.setdefault(rule.id, rule)
        if existing != rule:
            raise DuplicateRuleError(f"rule id {rule.id} declared twice with different content")
    return catalogue


def all_rules() -> list[Rule]:
    """Every built-in rule, sorted by id."""
    return sorted(rules_by_id().values(), key=lambda r: r.id)
