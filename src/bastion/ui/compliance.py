"""The compliance matrix the dashboard shows: for each control or technique of a framework
(the taxonomy's ids, `taxonomy/catalogue.toml`), the bastion rules that cover it and the
latest evidence in the store for them (findings, the latest run), and the controls no rule
covers — shown as gaps, not hidden."""

from __future__ import annotations

from typing import Any

from bastion.records import Record


class ControlRow(Record):
    control: str
    title: str
    rules: tuple[str, ...]
    fired: tuple[tuple[str, int, int, str], ...]  # (rule, findings, latest run, its start)
    covered: bool


class Matrix(Record):
    framework: str
    title: str
    url: str
    version: str
    rows: tuple[ControlRow, ...]


def frameworks() -> dict[str, str]:
    from bastion.rules import taxonomy

    return {key: str(value["title"]) for key, value in taxonomy()["frameworks"].items()}


def matrix(
    framework: str,
    rule_tags: dict[str, frozenset[str]],
    evidence: dict[str, tuple[int, int, str]],
) -> Matrix | None:
    """The rows of one framework (None for a framework the taxonomy does not hold)."""
    from bastion.rules import taxonomy

    data: dict[str, Any] = taxonomy()
    spec = data["frameworks"].get(framework)
    if spec is None:
        return None
    rows = []
    for control, title in sorted(spec["ids"].items()):
        rules = tuple(sorted(r for r, tags in rule_tags.items() if control in tags))
        fired = tuple((r, *evidence[r]) for r in rules if r in evidence)
        rows.append(
            ControlRow(
                control=control, title=str(title), rules=rules, fired=fired, covered=bool(rules)
            )
        )
    return Matrix(
        framework=framework,
        title=str(spec["title"]),
        url=str(spec.get("url", "")),
        version=str(data["version"]),
        rows=tuple(rows),
    )
