"""The record base behind the result model and settings: construction, immutability, value
semantics, copies, strict validation and the JSON Schema."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

import pytest

from bastion.findings import Confidence, Finding, Location, Report, Severity, Stage, ToolInfo
from bastion.records import FrozenRecordError, Record, RecordError, field, json_schema


class Base(Record):
    name: str
    tags: tuple[str, ...] = ()
    extra: dict[str, int] = field(default_factory=dict)
    LIMIT: ClassVar[int] = 3


class Child(Base):
    when: dt.date | None = None
    name: str = "child"  # a redeclared field keeps its place and takes the new default


def finding(**changes: object) -> Finding:
    values: dict[str, object] = dict(
        rule_id="PKL001",
        severity=Severity.CRITICAL,
        confidence=Confidence.HIGH,
        stage=Stage.ARTIFACT,
        message="m",
        location=Location(path="a.pkl"),
        evidence="os.system",
    )
    values.update(changes)
    return Finding(**values)  # type: ignore[arg-type]


def test_fields_defaults_and_factories() -> None:
    assert Base.record_fields == ("name", "tags", "extra")
    assert Child.record_fields == ("name", "tags", "extra", "when")
    assert Child().name == "child"
    one, two = Base(name="a"), Base(name="b")
    assert one.extra == {} and one.extra is not two.extra  # a fresh default per instance
    assert "LIMIT" not in Base.record_fields


def test_wrong_construction_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="missing required argument: 'name'"):
        Base()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected argument"):
        Base(name="a", colour="red")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Base("a")  # type: ignore[misc]  # keyword-only


def test_records_are_frozen_values() -> None:
    record = Base(name="a", tags=("x",))
    with pytest.raises(FrozenRecordError):
        record.name = "b"  # type: ignore[misc]
    with pytest.raises(FrozenRecordError):
        del record.tags  # type: ignore[misc]
    assert record == Base(name="a", tags=("x",))
    assert record != Base(name="a") and record != Child(name="a", tags=("x",))
    assert hash(Location(path="p", members=("m",))) == hash(Location(path="p", members=("m",)))
    assert (
        repr(Location(path="p"))
        == "Location(path='p', members=(), pointer=None, line=None, column=None)"
    )


def test_copy_reruns_post_init() -> None:
    original = finding()
    assert len(original.fingerprint) == 32
    moved = original.model_copy(update={"location": Location(path="b.pkl"), "fingerprint": ""})
    assert moved.fingerprint != original.fingerprint and moved.rule_id == "PKL001"
    assert original.model_copy() == original


def test_dump_and_validate_round_trip() -> None:
    report = Report(tool=ToolInfo(version="1"), targets=("a.pkl",), metadata={"k": [1]})
    assert Report.model_validate_json(report.model_dump_json()) == report
    assert Child.model_validate({"when": "2026-01-02"}).when == dt.date(2026, 1, 2)
    for data, where in (
        ({"name": 3}, "name"),
        ({"name": "a", "tags": "x"}, "tags"),
        ({"colour": 1}, "unknown key"),
        ({}, "name: is required"),
    ):
        with pytest.raises(RecordError, match=where):
            Base.model_validate(data)
    with pytest.raises(RecordError, match="not JSON"):
        Base.model_validate_json("{")


def test_schema_lists_required_fields_and_forbids_others() -> None:
    schema = json_schema(Child)
    assert "required" not in schema and schema["additionalProperties"] is False
    assert json_schema(Base)["required"] == ["name"]
    assert schema["properties"]["when"] == {
        "anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]
    }
