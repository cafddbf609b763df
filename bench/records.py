"""What construction-time validation costs for the records bastion builds most: a Finding as
bastion defines it (msgspec checks its types when a worker's result is decoded; __post_init__
checks the fields the gate needs) against the same record with every field's type checked on
construction (what settings and policy records do), and decoding a worker's result.

    python bench/records.py [-n 20000]
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from typing import Any, cast

from bastion.findings import (
    Confidence,
    Finding,
    Location,
    Severity,
    Stage,
    Tags,
    TargetResult,
    compute_fingerprint,
)
from bastion.records import Checked, force_setattr


class FullyCheckedFinding(Checked):
    """Finding's fields, every one type-checked on construction (Checked)."""

    rule_id: str
    severity: Severity
    confidence: Confidence
    stage: Stage
    message: str
    location: Location
    evidence: str = ""
    remediation: str = ""
    tags: Tags = Tags()
    fingerprint: str = ""

    def _validate(self) -> None:
        if not self.fingerprint:
            force_setattr(self, "fingerprint", compute_fingerprint(cast(Finding, self)))


def per_call_us(function: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(function, number=number, repeat=5)) / number * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=20_000)
    args = parser.parse_args()
    location = Location(path="models/a.pkl", members=("inner.zip",), pointer="opcode 12")
    values: dict[str, Any] = dict(
        rule_id="PKL001",
        severity=Severity.CRITICAL,
        confidence=Confidence.HIGH,
        stage=Stage.ARTIFACT,
        message="calls os.system",
        location=location,
        evidence="os.system",
        tags=Tags(atlas=("AML.T0010",)),
    )
    given = {**values, "fingerprint": "0" * 32}
    rows = [
        ("Finding, fingerprint computed", lambda: Finding(**values)),
        (
            "Finding + every field checked, fingerprint computed",
            lambda: FullyCheckedFinding(**values),
        ),
        ("Finding, fingerprint given (as decoded)", lambda: Finding(**given)),
        ("Finding + every field checked, fingerprint given", lambda: FullyCheckedFinding(**given)),
    ]
    for name, build in rows:
        print(f"{name:55} {per_call_us(build, args.n):6.2f} us")
    result = TargetResult(
        path="a.pkl",
        findings=tuple(Finding(**{**values, "evidence": f"e{i}"}) for i in range(1000)),
    )
    text = result.model_dump_json()
    decode = per_call_us(lambda: TargetResult.model_validate_json(text), max(1, args.n // 1000))
    encode = per_call_us(result.model_dump_json, max(1, args.n // 1000))
    print(f"{'decode a worker result with 1,000 findings':55} {decode / 1000:6.2f} ms")
    print(f"{'encode a worker result with 1,000 findings':55} {encode / 1000:6.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
