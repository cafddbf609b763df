"""The release gate over a table of evidence situations: each row builds the store's evidence
for a model (scans, verifications, data checks, probes, lineage links, waivers, ages) and names
the decision and the status of the requirements it is about."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from bastion.config import GateSettings, ProbeSettings, Settings, SigningSettings, WaiverSpec
from bastion.findings import Location, Report, Severity, Skip, TargetResult, ToolInfo
from bastion.lineage.digests import file_digest
from bastion.lineage.gate import decide
from bastion.policy import evaluate
from bastion.probe.evasion import RULES as PROBE_RULES
from bastion.records import Record, field
from bastion.rules import Rule
from bastion.scan.pickle import RULES as PICKLE_RULES
from bastion.store import Link, Seen, Store
from bastion.supplychain.signing import SIGNATURE_FAILED, default_signature

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
PKL = next(r for r in PICKLE_RULES if r.id == "PKL001")  # critical: code execution
PRB = PROBE_RULES[0]


class Case(Record):
    name: str
    expect: str  # passed | failed | undecided
    reqs: dict[str, str] = field(default_factory=dict)  # requirement -> expected status
    # evidence; None means absent
    scan: dict[str, Any] | None = field(default_factory=dict)
    sign: dict[str, Any] | None = field(default_factory=dict)
    data: dict[str, Any] | None = field(default_factory=dict)
    probe: dict[str, Any] | None = field(default_factory=dict)
    waivers: tuple[tuple[str, str, int], ...] = ()  # (rule, path, days until expiry)
    gate: dict[str, Any] = field(default_factory=dict)
    folder: bool = False
    changed_after: bool = False  # the model file changes after all evidence was recorded
    policy_keys: bool = True  # the policy names the trusted key


OK = "passed"
FAIL = "failed"
UND = "undecided"

CASES = [
    # --- everything in place -----------------------------------------------------------------
    Case(name="all evidence fresh and clean", expect=OK),
    Case(name="signature verified inside a project scan", expect=OK, sign={"how": "scan"}),
    Case(name="evidence a day under the age limit", expect=OK, scan={"age": 29}, sign={"age": 29}),
    Case(
        name="evidence within a raised age limit",
        expect=OK,
        scan={"age": 80},
        gate={"max_age_days": 90},
    ),
    Case(name="low finding below fail_on", expect=OK, scan={"severity": "low"}),
    Case(
        name="blocking finding under an active waiver",
        expect=OK,
        scan={"severity": "critical"},
        waivers=(("PKL001", "model.pkl", 30),),
    ),
    Case(name="probe low finding only", expect=OK, probe={"severity": "low"}),
    Case(name="data low finding only", expect=OK, data={"severity": "low"}),
    Case(name="two datasets both checked", expect=OK, data={"second": "checked"}),
    Case(
        name="newer clean scan after an older failing one", expect=OK, scan={"older_failing": True}
    ),
    Case(name="folder model, every file scanned clean", expect=OK, folder=True),
    Case(
        name="probe not required by the policy",
        expect=OK,
        probe=None,
        gate={"require": ("scan", "signature", "data")},
        reqs={"probe": "not-required"},
    ),
    Case(
        name="nothing required but waivers, no evidence",
        expect=OK,
        scan=None,
        sign=None,
        data=None,
        probe=None,
        gate={"require": ()},
    ),
    Case(
        name="stricter probe thresholds at probe time",
        expect=OK,
        probe={"thresholds": {"max_flippable_share": 0.1}},
    ),
    # --- scan ----------------------------------------------------------------------------------
    Case(name="missing scan", expect=FAIL, scan=None, reqs={"scan": "missing"}),
    Case(name="stale scan", expect=FAIL, scan={"age": 31}, reqs={"scan": "unmet"}),
    Case(name="very old scan", expect=FAIL, scan={"age": 400}, reqs={"scan": "unmet"}),
    Case(
        name="scan with a critical finding",
        expect=FAIL,
        scan={"severity": "critical"},
        reqs={"scan": "unmet"},
    ),
    Case(
        name="scan with a medium finding",
        expect=FAIL,
        scan={"severity": "medium"},
        reqs={"scan": "unmet"},
    ),
    Case(
        name="low finding with fail_on low",
        expect=FAIL,
        scan={"severity": "low"},
        gate={"fail_on": "low"},
        reqs={"scan": "unmet"},
    ),
    Case(
        name="newer failing scan after an older clean one",
        expect=FAIL,
        scan={"newer_failing": True},
        reqs={"scan": "unmet"},
    ),
    Case(
        name="scan undecided (a file not fully checked)",
        expect=UND,
        scan={"undecided": True},
        reqs={"scan": "undecided"},
    ),
    Case(
        name="waiver expired on a blocking finding",
        expect=FAIL,
        scan={"severity": "critical"},
        waivers=(("PKL001", "model.pkl", -1),),
        reqs={"scan": "unmet", "waivers": "unmet"},
    ),
    Case(
        name="waiver for another path",
        expect=FAIL,
        scan={"severity": "critical"},
        waivers=(("PKL001", "other/*.pkl", 30),),
        reqs={"scan": "unmet"},
    ),
    Case(
        name="folder model, one file never scanned",
        expect=FAIL,
        folder=True,
        scan={"members": 1},
        reqs={"scan": "missing"},
    ),
    Case(
        name="folder model, one file blocking",
        expect=FAIL,
        folder=True,
        scan={"member_severity": "critical"},
        reqs={"scan": "unmet"},
    ),
    Case(
        name="digest changed after the scan",
        expect=FAIL,
        changed_after=True,
        reqs={"scan": "missing"},
    ),
    Case(name="scan undated", expect=FAIL, scan={"undated": True}, reqs={"scan": "unmet"}),
    # --- signature -----------------------------------------------------------------------------
    Case(name="unsigned", expect=FAIL, sign=None, reqs={"signature": "missing"}),
    Case(
        name="signed by an untrusted key",
        expect=FAIL,
        sign={"key": "untrusted"},
        reqs={"signature": "unmet"},
    ),
    Case(
        name="verification recorded without a key",
        expect=FAIL,
        sign={"key": None},
        reqs={"signature": "unmet"},
    ),
    Case(name="verification failed", expect=FAIL, sign={"ok": False}, reqs={"signature": "unmet"}),
    Case(
        name="newer failed verification after a pass",
        expect=FAIL,
        sign={"newer_failed": True},
        reqs={"signature": "unmet"},
    ),
    Case(name="stale verification", expect=FAIL, sign={"age": 45}, reqs={"signature": "unmet"}),
    Case(
        name="policy names no trusted key",
        expect=FAIL,
        policy_keys=False,
        reqs={"signature": "missing"},
    ),
    Case(
        name="digest changed after signing",
        expect=FAIL,
        changed_after=True,
        reqs={"signature": "unmet"},
    ),
    Case(
        name="the signature beside the model covers other content",
        expect=FAIL,
        sign={"other_model": True},
        reqs={"signature": "unmet"},
    ),
    Case(
        name="a signature over a different model elsewhere",
        expect=FAIL,
        sign={"other_model": True, "elsewhere": True},
        reqs={"signature": "missing"},
    ),
    Case(
        name="scan-verified signature under an untrusted key",
        expect=FAIL,
        sign={"how": "scan", "key": "untrusted"},
        reqs={"signature": "unmet"},
    ),
    Case(
        name="scan-verified signature, stale",
        expect=FAIL,
        sign={"how": "scan", "age": 60},
        reqs={"signature": "unmet"},
    ),
    Case(
        name="newer pass after an older failed verification", expect=OK, sign={"older_failed": True}
    ),
    # --- training data ---------------------------------------------------------------------------
    Case(name="no lineage to training data", expect=FAIL, data=None, reqs={"data": "missing"}),
    Case(
        name="training data never checked",
        expect=FAIL,
        data={"checked": None},
        reqs={"data": "missing"},
    ),
    Case(
        name="data changed between check and training",
        expect=FAIL,
        data={"checked": "other"},
        reqs={"data": "unmet"},
    ),
    Case(name="data check failing", expect=FAIL, data={"severity": "high"}, reqs={"data": "unmet"}),
    Case(name="stale data check", expect=FAIL, data={"age": 40}, reqs={"data": "unmet"}),
    Case(
        name="one of two datasets never checked",
        expect=FAIL,
        data={"second": "unchecked"},
        reqs={"data": "missing"},
    ),
    Case(
        name="data check undecided",
        expect=UND,
        data={"undecided": True},
        reqs={"data": "undecided"},
    ),
    Case(
        name="data check failing but waived",
        expect=OK,
        data={"severity": "high"},
        waivers=(("PRB001", "train.csv", 30),),
    ),
    # --- probe -----------------------------------------------------------------------------------
    Case(name="never probed", expect=FAIL, probe=None, reqs={"probe": "missing"}),
    Case(
        name="probe over threshold",
        expect=FAIL,
        probe={"severity": "high"},
        reqs={"probe": "unmet"},
    ),
    Case(name="stale probe", expect=FAIL, probe={"age": 31}, reqs={"probe": "unmet"}),
    Case(
        name="probed under looser thresholds than today",
        expect=FAIL,
        probe={"thresholds": {"max_membership_auc": 0.9}},
        reqs={"probe": "unmet"},
    ),
    Case(
        name="probed under a lower robust-accuracy floor",
        expect=FAIL,
        probe={"thresholds": {"min_robust_accuracy": 0.3}},
        reqs={"probe": "unmet"},
    ),
    Case(
        name="probed with a smaller evasion budget",
        expect=FAIL,
        probe={"thresholds": {"budgets": [0.25]}},
        reqs={"probe": "unmet"},
    ),
    Case(
        name="probe incomplete", expect=UND, probe={"undecided": True}, reqs={"probe": "undecided"}
    ),
    Case(
        name="probe over threshold but waived",
        expect=OK,
        probe={"severity": "high"},
        waivers=(("PRB001", "model.pkl", 10),),
    ),
    Case(
        name="probe over threshold, waiver expired",
        expect=FAIL,
        probe={"severity": "high"},
        waivers=(("PRB001", "model.pkl", -3),),
        reqs={"probe": "unmet", "waivers": "unmet"},
    ),
    # --- waivers and combinations ---------------------------------------------------------------
    Case(
        name="an expired waiver unrelated to the model",
        expect=FAIL,
        waivers=(("PKL003", "vendor/*", -10),),
        reqs={"waivers": "unmet", "scan": "met"},
    ),
    Case(
        name="waiver expiring today still counts",
        expect=OK,
        scan={"severity": "critical"},
        waivers=(("PKL001", "model.pkl", 0),),
    ),
    Case(
        name="nothing at all",
        expect=FAIL,
        scan=None,
        sign=None,
        data=None,
        probe=None,
        reqs={"scan": "missing", "signature": "missing", "data": "missing", "probe": "missing"},
    ),
    Case(
        name="failure outranks undecided",
        expect=FAIL,
        scan={"undecided": True},
        sign=None,
        reqs={"scan": "undecided", "signature": "missing"},
    ),
    Case(
        name="everything stale",
        expect=FAIL,
        scan={"age": 90},
        sign={"age": 90},
        data={"age": 90},
        probe={"age": 90},
        reqs={"scan": "unmet", "signature": "unmet", "data": "unmet", "probe": "unmet"},
    ),
    Case(
        name="everything stale but a long age limit",
        expect=OK,
        scan={"age": 90},
        sign={"age": 90},
        data={"age": 90},
        probe={"age": 90},
        gate={"max_age_days": 365},
    ),
]


class World:
    """Builds one case's evidence in a fresh store."""

    def __init__(self, tmp: Path, case: Case) -> None:
        self.tmp = tmp
        self.case = case
        self.store = Store(tmp / "h.db")
        keys = tmp / "keys"
        keys.mkdir()
        (keys / "release.pub").write_text("trusted public key\n")
        (keys / "other.pub").write_text("some other key\n")
        self.trusted = file_digest(keys / "release.pub")
        self.untrusted = file_digest(keys / "other.pub")
        if case.folder:
            self.model = tmp / "model"
            self.model.mkdir()
            (self.model / "weights.bin").write_bytes(b"weights v1")
            (self.model / "config.json").write_bytes(b"{}")
        else:
            self.model = tmp / "model.pkl"
            self.model.write_bytes(b"model v1")

    def settings(self) -> Settings:
        gate = {k: v for k, v in self.case.gate.items() if k != "fail_on"}
        return Settings(
            source=str(self.tmp / "bastion.toml"),
            fail_on=Severity(self.case.gate.get("fail_on", "medium")),
            signing=SigningSettings(
                public_keys=("keys/release.pub",) if self.case.policy_keys else ()
            ),
            waivers=tuple(
                WaiverSpec(
                    rule=r, path=p, reason="reviewed", expires=NOW.date() + dt.timedelta(days=d)
                )
                for r, p, d in self.case.waivers
            ),
            gate=GateSettings(**gate),
        )

    def run(
        self,
        command: str,
        path: str,
        seen: list[Seen],
        age: float = 1,
        severity: str | None = None,
        rule: Rule = PKL,
        undecided: bool = False,
        metadata: dict[str, Any] | None = None,
        undated: bool = False,
    ) -> int:
        findings = ()
        if severity:
            findings = (
                rule.finding(
                    Location(path=path), "found", evidence=path, severity=Severity(severity)
                ),
            )
        skips = (
            (Skip(location=Location(path=path), reason="not read", code="limit"),)
            if undecided
            else ()
        )
        started = "" if undated else (NOW - dt.timedelta(days=age)).isoformat(timespec="seconds")
        report = Report(
            tool=ToolInfo(version="0"),
            command=command,
            targets=(path,),
            metadata={"started_at": started, **(metadata or {})},
            results=(
                TargetResult(
                    path=path, format="pickle", findings=findings, skips=skips, incomplete=undecided
                ),
            ),
        )
        verdict = evaluate(report, Settings(fail_on=Severity.MEDIUM))
        if command == "verify" and severity:
            verdict = verdict.model_copy(update={"status": verdict.status.FAILED})
        return self.store.record(report, verdict, seen)

    def build(self) -> None:
        case = self.case
        from bastion.lineage.digests import identify

        found = identify(self.model)
        digest = found.digest
        files = [(m.path, m.digest) for m in found.members] or [("model.pkl", digest)]
        if case.folder:
            self.store.add_links(
                Link(recorded_at="t", upstream=d, downstream=digest, relation="part-of")
                for _, d in files
            )
        name = str(self.model)
        if case.scan is not None:
            s = case.scan
            members = files[: s.get("members", len(files))]
            for i, (path, d) in enumerate(members):
                seen = [Seen(digest=d, kind="model", role="subject", path=path)]
                if s.get("older_failing"):
                    self.run("scan", path, seen, age=5, severity="critical")
                if s.get("newer_failing"):
                    self.run("scan", path, seen, age=5)
                severity = s.get("severity")
                if i == 0 and s.get("member_severity"):
                    severity = s["member_severity"]
                self.run(
                    "scan",
                    path,
                    seen,
                    age=s.get("age", 1),
                    severity=severity,
                    undecided=s.get("undecided", False),
                    undated=s.get("undated", False),
                )
                if s.get("newer_failing"):
                    self.run("scan", path, seen, age=0.5, severity="critical")
            self.store.add_artifacts(
                [Seen(digest=digest, kind="model", role="subject", path=name)], "t"
            )
        if case.sign is not None:
            g = case.sign
            target = "sha256:" + "9" * 64 if g.get("other_model") else digest
            key = {"trusted": self.trusted, "untrusted": self.untrusted, None: None}[
                g.get("key", "trusted")
            ]
            seen = [
                Seen(
                    digest=target,
                    kind="model",
                    role="subject" if g.get("how", "verify") == "verify" else "signed",
                    path=name,
                )
            ]
            if key:
                seen.append(Seen(digest=key, kind="key", role="key", path="k.pub"))
            command = "verify" if g.get("how", "verify") == "verify" else "scan"
            if g.get("older_failed"):
                self.run("verify", name, seen, age=3, severity="critical", rule=SIGNATURE_FAILED)
            self.run(
                command,
                name,
                seen,
                age=g.get("age", 1),
                severity=None if g.get("ok", True) else "critical",
                rule=SIGNATURE_FAILED,
            )
            # the signature beside the model, linked as record_run links a verified one
            signature = default_signature(self.model)
            if g.get("elsewhere"):
                signature = self.tmp / "elsewhere.sig"
            signature.write_bytes(b"bundle over " + target.encode())
            if g.get("ok", True):
                self.store.add_links(
                    [
                        Link(
                            recorded_at="t",
                            upstream=target,
                            downstream=file_digest(signature),
                            relation="signed-by",
                        )
                    ]
                )
            if g.get("newer_failed"):
                self.run("verify", name, seen, age=0.5, severity="critical", rule=SIGNATURE_FAILED)
        if case.data is not None:
            d = case.data
            trained = "sha256:" + "d" * 64
            datasets = [(trained, "train.csv", d.get("checked", "same"))]
            if "second" in d:
                datasets.append(
                    (
                        "sha256:" + "e" * 64,
                        "extra.csv",
                        "same" if d["second"] == "checked" else None,
                    )
                )
            for ds, path, checked in datasets:
                self.store.add_artifacts(
                    [Seen(digest=ds, kind="dataset", role="input", path=path)], "t"
                )
                self.store.add_links(
                    [Link(recorded_at="t", upstream=ds, downstream=digest, relation="trained-on")]
                )
                if checked is None:
                    continue
                checked_digest = ds if checked == "same" else "sha256:" + "f" * 64
                seen = [Seen(digest=checked_digest, kind="dataset", role="subject", path=path)]
                self.run(
                    "data",
                    path,
                    seen,
                    age=d.get("age", 1),
                    severity=d.get("severity"),
                    rule=PRB if path == "train.csv" and d.get("severity") else PKL,
                    undecided=d.get("undecided", False),
                )
        if case.probe is not None:
            p = case.probe
            used = {**ProbeSettings().model_dump(mode="json"), **p.get("thresholds", {})}
            seen = [Seen(digest=digest, kind="model", role="subject", path="model.pkl")]
            self.run(
                "probe",
                "model.pkl",
                seen,
                age=p.get("age", 1),
                severity=p.get("severity"),
                rule=PRB,
                undecided=p.get("undecided", False),
                metadata={"settings": {"probe": used}},
            )
        if case.changed_after:
            if case.folder:
                (self.model / "weights.bin").write_bytes(b"weights v2")
            else:
                self.model.write_bytes(b"model v2")


def test_the_table_has_at_least_fifty_situations() -> None:
    assert len(CASES) >= 50
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_gate_decision(case: Case, tmp_path: Path) -> None:
    world = World(tmp_path, case)
    try:
        world.build()
        decision = decide(world.store, str(world.model), world.settings(), now=NOW)
    finally:
        world.store.close()
    statuses = {r.name: r.status for r in decision.requirements}
    assert decision.status.value == case.expect, statuses
    for name, expected in case.reqs.items():
        assert statuses[name] == expected, (name, decision.requirements)
    if case.expect == OK:
        assert all(s in ("met", "not-required") for s in statuses.values())
    for requirement in decision.requirements:  # every met requirement names its proof
        if requirement.status == "met" and requirement.name != "waivers":
            assert requirement.runs, requirement
