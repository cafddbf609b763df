"""JSON report: the Report plus the verdict, with `schema_version`. Its JSON Schema is checked
in (schema/report.schema.json) and regenerated with `python -m bastion.report.json`."""

from __future__ import annotations

import json as _json
from pathlib import Path
from typing import Any

from bastion.findings import Report
from bastion.policy import Verdict
from bastion.records import Record, json_schema


class VerdictDocument(Record):
    """The policy's verdict on the report."""

    status: str
    exit_code: int
    fail_on: str
    reasons: tuple[str, ...]
    failing: tuple[str, ...]
    waived: tuple[str, ...]
    baselined: tuple[str, ...]


class ReportDocument(Report):
    """A bastion report: what was checked, what was found, and the policy's verdict."""

    verdict: VerdictDocument


def document(report: Report, verdict: Verdict) -> dict[str, Any]:
    data = report.model_dump(mode="json")
    data["verdict"] = VerdictDocument(
        status=verdict.status.value,
        exit_code=verdict.exit_code,
        fail_on=verdict.fail_on,
        reasons=verdict.reasons,
        failing=verdict.failing,
        waived=verdict.waived,
        baselined=verdict.baselined,
    ).model_dump(mode="json")
    return data


def render(report: Report, verdict: Verdict) -> str:
    return _json.dumps(document(report, verdict), indent=2, sort_keys=False) + "\n"


def generated_schema() -> dict[str, Any]:
    schema = json_schema(ReportDocument)
    schema["$id"] = "https://github.com/bastion-mlsec/bastion/schema/report.schema.json"
    return schema


def checked_in_schema() -> dict[str, Any]:
    text = (Path(__file__).parent / "schema" / "report.schema.json").read_text("utf-8")
    return dict(_json.loads(text))


if __name__ == "__main__":  # regenerate the checked-in schema
    target = Path(__file__).parent / "schema" / "report.schema.json"
    target.write_text(_json.dumps(generated_schema(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {target}")
