"""Records on msgspec: construction, validation on construction, immutability, value semantics,
copies that re-validate, typed decoding with key paths, JSON round trips and the JSON Schema."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import msgspec
import pytest

from bastion.config import (
    Limits,
    Settings,
    SigningSettings,
    SigstoreIdentity,
    WaiverSpec,
    load_settings,
)
from bastion.errors import ConfigError
from bastion.findings import (
    CheckError,
    Confidence,
    Finding,
    Location,
    Report,
    Severity,
    Skip,
    Stage,
    TargetResult,
    ToolInfo,
)
from bastion.policy import Status, Verdict
from bastion.records import Checked, FrozenRecordError, Record, RecordError, field, json_schema


class Base(Checked):
    name: str
    tags: tuple[str, ...] = ()
    extra: dict[str, int] = field(default_factory=dict)


class Child(Base):
    when: dt.date | None = None
    size: int  # a required field may follow fields with defaults: every field is keyword-only


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


def test_records_are_frozen_keyword_only_msgspec_structs() -> None:
    assert issubclass(Finding, msgspec.Struct) and issubclass(Settings, msgspec.Struct)
    for cls in (Finding, Location, Report, Settings, Limits, WaiverSpec, Verdict, Child):
        config = cls.__struct_config__
        assert config.frozen and config.forbid_unknown_fields, cls
    one, two = Base(name="a"), Base(name="b")
    assert one.extra == {} and one.extra is not two.extra  # a fresh default per instance
    with pytest.raises(TypeError, match=r"[Mm]issing required argument 'name'"):
        Base()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"[Uu]nexpected keyword argument 'colour'"):
        Base(name="a", colour="red")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Base("a")  # type: ignore[misc]  # keyword-only
    assert Child(name="c", size=1).when is None
    record = Base(name="a", tags=("x",))
    with pytest.raises(FrozenRecordError):
        record.name = "b"  # type: ignore[misc]
    with pytest.raises(FrozenRecordError):
        del record.tags  # type: ignore[misc]


def test_equality_and_hash_by_value() -> None:
    assert Location(path="p", members=("m",)) == Location(path="p", members=("m",))
    assert hash(Location(path="p", members=("m",))) == hash(Location(path="p", members=("m",)))
    assert Location(path="p") != Location(path="p", pointer="x")
    assert Base(name="a") != Child(name="a", size=0)  # another type is never equal
    assert len({finding(), finding(), finding(evidence="other")}) == 2
    assert Settings(workers=2) == Settings(workers=2)
    assert (
        repr(Location(path="p"))
        == "Location(path='p', members=(), pointer=None, line=None, column=None)"
    )


def test_settings_with_a_wrong_type_fail_where_they_are_built() -> None:
    # before msgspec, Settings(fail_on="high") was accepted and broke later with AttributeError
    with pytest.raises(RecordError, match=r"^fail_on: expected a Severity .*got str 'high'"):
        Settings(fail_on="high")  # type: ignore[arg-type]
    for values, where in (
        ({"workers": "4"}, "workers"),
        ({"strict": "yes"}, "strict"),
        ({"workers": True}, "workers"),  # a bool is not a count
        (
            {"waivers": [WaiverSpec(rule="A1", path="m/*", reason="r", expires=dt.date.max)]},
            "waivers",
        ),
        ({"limits": {"timeout_s": 5}}, "limits"),
        ({"baseline": Path("b.json")}, "baseline"),
        ({"advisory_db": 3}, "advisory_db"),
    ):
        with pytest.raises(RecordError) as caught:
            Settings(**values)  # type: ignore[arg-type]
        assert caught.value.path == where, values
        assert isinstance(caught.value, ValueError)
    with pytest.raises(RecordError, match=r"^timeout_s: must be at least 0.1"):
        Limits(timeout_s=0)
    assert Limits(timeout_s=5).timeout_s == 5  # an int is a number
    with pytest.raises(RecordError, match=r"^expires: expected a date"):
        WaiverSpec(rule="A1", path="m/*", reason="r", expires="2030-01-01")  # type: ignore[arg-type]
    with pytest.raises(RecordError, match=r"^expires: expected a date"):
        WaiverSpec(rule="A1", path="m/*", reason="r", expires=dt.datetime(2030, 1, 1))
    with pytest.raises(RecordError, match=r"^status: expected a Status"):
        Verdict(status="passed", reasons=(), fail_on="medium")  # type: ignore[arg-type]
    with pytest.raises(RecordError, match=r"^identities\[1\]: expected SigstoreIdentity"):
        SigningSettings(identities=(_identity(), "x"))  # type: ignore[arg-type]


def _identity() -> SigstoreIdentity:
    return SigstoreIdentity(identity="me@example.com", issuer="https://accounts.example.com")


def test_result_records_check_what_the_gate_depends_on() -> None:
    with pytest.raises(RecordError, match=r"^severity: expected a Severity"):
        finding(severity="critical")
    with pytest.raises(RecordError, match=r"^location: expected Location"):
        finding(location="a.pkl")
    with pytest.raises(RecordError, match=r"^findings\[0\]: expected Finding"):
        TargetResult(path="a", findings=({"rule_id": "X"},))  # type: ignore[arg-type]
    with pytest.raises(RecordError, match=r"^incomplete: expected true or false"):
        TargetResult(path="a", incomplete=1)  # type: ignore[arg-type]
    with pytest.raises(RecordError, match=r"^reason: expected a string"):
        Skip(location=Location(path="a"), reason=None)  # type: ignore[arg-type]
    with pytest.raises(RecordError, match=r"^tool: expected ToolInfo"):
        Report(tool="bastion", targets=())  # type: ignore[arg-type]


def test_copies_are_validated_and_rederive_fields() -> None:
    original = finding()
    assert len(original.fingerprint) == 32
    moved = original.model_copy(update={"location": Location(path="b.pkl"), "fingerprint": ""})
    assert moved.fingerprint != original.fingerprint and moved.rule_id == "PKL001"
    assert original.model_copy() == original
    settings = Settings(workers=2)
    assert settings.model_copy(update={"strict": True}).strict is True
    with pytest.raises(RecordError, match=r"^fail_on"):
        settings.model_copy(update={"fail_on": "low"})
    with pytest.raises(RecordError, match=r"^workers: must be at least 1"):
        settings.model_copy(update={"workers": 0})
    with pytest.raises(RecordError, match=r"^severity"):
        original.model_copy(update={"severity": "low"})
    with pytest.raises(TypeError):
        settings.model_copy(update={"colour": "red"})


def test_plain_data_is_decoded_by_type_with_key_paths() -> None:
    # policy files and BASTION_* values: strings are accepted for numbers and booleans
    settings = Settings.model_validate(
        {"workers": "3", "strict": "true", "fail_on": "high", "limits": {"timeout_s": "2.5"}}
    )
    assert settings.workers == 3 and settings.strict is True
    assert settings.fail_on is Severity.HIGH and settings.limits.timeout_s == 2.5
    waiver = {"rule": "PKL003", "path": "m/*", "reason": "ours", "expires": "2030-01-02"}
    assert Settings.model_validate({"waivers": [waiver]}).waivers[0].expires == dt.date(2030, 1, 2)
    for data, path, message in (
        ({"limits": {"max_depth": "deep"}}, "limits.max_depth", "Expected `int`"),
        ({"limits": {"max_dept": 3}}, "limits", "unknown key 'max_dept'"),
        ({"colour": "red"}, "", "unknown key 'colour'"),
        ({"fail_on": "severe"}, "fail_on", "must be one of 'info', 'low'"),
        ({"waivers": [{**waiver, "reason": " "}]}, "waivers[0].reason", "needs a reason"),
        ({"waivers": [{**waiver, "rule": "PKL*"}]}, "waivers[0].rule", "wildcard"),
        ({"waivers": [{"rule": "A1"}]}, "waivers[0].path", "is required"),
        ({"limits": {"timeout_s": 0}}, "limits.timeout_s", "at least 0.1"),
        ({"signing": {"require": True}}, "signing.require", "trusted signers"),
        ({"signing": {"identities": [{"identity": 1}]}}, "signing.identities[0].identity", ""),
        ({"waivers": "PKL001"}, "waivers", "Expected `array`"),
    ):
        with pytest.raises(RecordError) as caught:
            Settings.model_validate(data)
        assert caught.value.path == path, (data, caught.value)
        assert message in caught.value.message, (data, caught.value)


def test_wrong_types_in_a_policy_file_name_the_key(tmp_path: Path) -> None:
    policy = tmp_path / "bastion.toml"
    for text, key in (
        ('workers = "many"\n', "workers"),
        ("strict = 3\n", "strict"),
        ("[limits]\nmemory_mb = [1]\n", "limits.memory_mb"),
        ("[limits]\nmemroy_mb = 128\n", "memroy_mb"),
        ("[signing]\npublic_keys = 'key.pem'\n", "signing.public_keys"),
        (
            '[[waivers]]\nrule = "PKL001"\npath = "m/*"\nreason = "r"\nexpires = "soon"\n',
            "waivers[0].expires",
        ),
        ("fail_on = 3\n", "fail_on"),
    ):
        policy.write_text(text)
        with pytest.raises(ConfigError, match="invalid settings") as caught:
            load_settings(policy_file=policy, environ={})
        assert key in str(caught.value), (text, str(caught.value))
        assert str(policy) in str(caught.value)
    with pytest.raises(ConfigError, match=r"limits.max_files"):
        load_settings(environ={"BASTION_LIMIT_MAX_FILES": "lots"})


def test_json_round_trip_of_a_report() -> None:
    hostile = "evil\udcff\ud800.pkl"  # lone surrogates, as Python decodes non-UTF-8 bytes
    result = TargetResult(
        path="models/a.pkl",
        format="pickle",
        size=12,
        findings=(finding(), finding(location=Location(path=hostile, members=("x", "y")))),
        skips=(Skip(location=Location(path="b.bin"), reason="unknown", code="out-of-scope"),),
        errors=(CheckError(location=Location(path="c.pt", line=3), check="zip", message="é"),),
        incomplete=True,
        duration_ms=1.5,
    )
    report = Report(
        tool=ToolInfo(version="1"),
        targets=("models",),
        metadata={"policy": "built-in", "counts": [1, 2], "nested": {"a": None}},
        results=(result,),
    )
    for text in (report.model_dump_json(), json.dumps(report.model_dump(mode="json"))):
        assert Report.model_validate_json(text) == report
        assert Report.model_validate_json(text.encode("utf-8")) == report
    assert TargetResult.model_validate_json(result.model_dump_json()) == result
    plain = report.model_dump()
    assert plain["results"][0]["findings"][0]["severity"] is Severity.CRITICAL
    assert report.model_dump(mode="json")["results"][0]["findings"][0]["severity"] == "critical"
    verdict = Verdict(status=Status.FAILED, reasons=("r",), failing=("f",), fail_on="medium")
    assert Verdict.model_validate_json(verdict.model_dump_json()) == verdict


def test_json_decoding_is_strict_and_says_where() -> None:
    good = json.loads(TargetResult(path="a", findings=(finding(),)).model_dump_json())
    bad = {**good, "findings": [{**good["findings"][0], "severity": "catastrophic"}]}
    with pytest.raises(RecordError) as caught:
        TargetResult.model_validate_json(json.dumps(bad))
    assert caught.value.path == "findings[0].severity"
    with pytest.raises(RecordError, match="size"):
        TargetResult.model_validate_json(json.dumps({**good, "size": "12"}))  # no coercion
    with pytest.raises(RecordError, match="unknown key 'verdict'"):
        TargetResult.model_validate_json(json.dumps({**good, "verdict": 1}))
    with pytest.raises(RecordError, match="not JSON"):
        Base.model_validate_json("{")


def test_schema_of_a_record() -> None:
    schema = json_schema(Child)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == ["name", "size"]
    assert schema["properties"]["when"] == {
        "anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]
    }
    assert schema["properties"]["extra"] == {
        "type": "object",
        "additionalProperties": {"type": "integer"},
    }
    finding_schema = json_schema(Finding)
    assert finding_schema["properties"]["severity"] == {"enum": [s.value for s in Severity]}
    assert set(finding_schema["$defs"]) == {"Location", "Tags"}


def test_plain_records_are_not_checked_on_construction() -> None:
    class Loose(Record):
        name: str

    # a Record relies on msgspec's checks when decoded; a Checked record checks when built
    assert msgspec.structs.asdict(Loose(name=3)) == {"name": 3}  # type: ignore[arg-type]
    with pytest.raises(RecordError, match="name"):
        Loose.model_validate({"name": 3})


@pytest.mark.parametrize(
    "where",
    [
        "bastion.coverage:Kind",
        "bastion.discover:Target",
        "bastion.discover:Link",
        "bastion.discover:Found",
        "bastion.parallel:Outcome",
        "bastion.runs:Started",
        "bastion.store:RunSummary",
        "bastion.cli.main:Command",
        "bastion.supplychain.requirements:Dependency",
        "bastion.supplychain.advisories:Advisory",
        "bastion.supplychain.signing:Credentials",
        "bastion.supplychain.signing:Outcome",
        "bastion.supplychain.bom:ModelCard",
        "bastion.supplychain.code:CodeFinding",
        "bastion.scan.ziparchive:ZipEntry",
        "bastion.scan.ziparchive:ZipDirectory",
        "bastion.scan.ziparchive:MemberData",
        "bastion.scan.pytorch:TorchLayout",
        "bastion.scan.pytorch:OperatorTable",
        "bastion.scan.dtypes:DtypeInfo",
        "bastion.scan.skops:SkopsName",
        "bastion.scan.source:Source",
        "bastion.scan.embedded:Payload",
        "bastion.scan.pickle_globals:Verdict",
        "bastion.scan.remote_code:Switch",
        "bastion.scan.shipped_code:Entry",
        "bastion.scan.shipped_code:Problem",
        "bastion.scan.templates:TemplateIssue",
        "bastion.scan.template_static:StaticIssue",
        "bastion.scan.template_sandbox:Refusal",
    ],
)
def test_data_records_share_one_shape(where: str) -> None:
    import importlib

    module, name = where.split(":")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, Record) and cls.__struct_config__.frozen, where
    assert not issubclass(cls, tuple), where  # no NamedTuple: fields are read by name


def test_a_parallel_outcome_has_a_failure_kind_exactly_when_it_has_no_result() -> None:
    from bastion.parallel import Failure, Outcome

    assert Outcome(index=0, result="{}", failure=None, kind=Failure.ERROR).kind is None
    assert Outcome(index=0, result=None, failure="died").kind is Failure.CRASH
    assert (
        Outcome(index=0, result=None, failure="slow", kind=Failure.TIMEOUT).kind is Failure.TIMEOUT
    )
