"""Write docs/rules/<ID>.md for every rule of the catalogue (run after adding or editing a rule;
a test fails when a page is missing or stale)."""

from __future__ import annotations

import sys
from pathlib import Path

from bastion.catalogue import all_rules
from bastion.rules import Rule, taxonomy

FRAMEWORKS = (
    ("atlas", "MITRE ATLAS"),
    ("owasp_ml", "OWASP ML Top 10 (2023)"),
    ("owasp_llm", "OWASP LLM Top 10 (2025)"),
    ("owasp_api", "OWASP API Security Top 10 (2023)"),
    ("nist_ai_rmf", "NIST AI RMF"),
    ("eu_ai_act", "EU AI Act"),
)


def page(rule: Rule) -> str:
    names = taxonomy()["frameworks"]
    lines = [
        f"# {rule.id}: {rule.title}",
        "",
        f"- **Severity:** {rule.severity.value} (confidence {rule.confidence.value})",
        f"- **Lifecycle stage:** {rule.stage.value}",
        "",
        "## What it means",
        "",
        rule.description,
        "",
        "## What to do",
        "",
        rule.remediation,
        "",
        "## Taxonomy",
        "",
    ]
    tags = rule.tags.model_dump()
    for key, title in FRAMEWORKS:
        ids = tags[key]
        labels = ", ".join(f"{i} ({names[key]['ids'].get(i, '')})" for i in ids)
        lines.append(f"- **{title}:** {labels or 'none'}")
    lines += [
        "",
        "## Handling it in a policy",
        "",
        "Accept a reviewed finding for a limited time with a waiver in `bastion.toml`:",
        "",
        "```toml",
        "[[waivers]]",
        f'rule = "{rule.id}"',
        'path = "models/vendor/*"',
        'reason = "why this is acceptable, and who reviewed it"',
        "expires = 2027-06-30",
        "```",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    folder = Path(__file__).parent / "rules"
    folder.mkdir(exist_ok=True)
    for rule in all_rules():
        (folder / f"{rule.id}.md").write_text(page(rule))
    print(f"wrote {len(all_rules())} rule pages to {folder}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
