"""The release gate: may this model be deployed? Decided from the evidence the store holds for
the model's digest, judged under the current policy — never from the model's own files:

- scan: the latest scan of each of its files finds nothing blocking under today's policy;
- signature: a signature over this digest verified with a key the policy trusts;
- data: the datasets it was trained on (lineage) were checked, in exactly that version, and
  pass today's policy;
- probe: its latest probe passes today's policy with thresholds at least as strict as today's;
- waivers: none of the policy's waivers has expired;
- every piece of evidence is younger than [gate] max_age_days.

Each requirement is met, unmet, missing or undecided, with the runs (or links) that prove it.
Unmet or missing fails the gate (exit 1); otherwise an undecided requirement leaves it
undecided (exit 2)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bastion.findings import Confidence, Location, Report, Severity, Stage
from bastion.lineage.digests import file_digest, identify, is_digest, sigstore_reference
from bastion.policy import Status, evaluate, load_baseline
from bastion.records import Record
from bastion.rules import Rule
from bastion.store import RunEvidence, Store
from bastion.supplychain.signing import default_signature

if TYPE_CHECKING:
    from bastion.config import Settings

MET, UNMET, MISSING, UNDECIDED, NOT_REQUIRED = (
    "met",
    "unmet",
    "missing",
    "undecided",
    "not-required",
)


_WHY = " A model released without it ships unexamined or altered content."
SCAN_RULE = Rule(
    id="GAT001",
    title="Release gate: artifact scan missing, stale or blocking",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.DEPLOYMENT,
    profile="release-gate",
    description="`bastion gate` found no recent artifact scan of the model's files (by digest) "
    "without blocking findings under the current policy." + _WHY,
    remediation="Scan the exact files to be released (`bastion scan MODEL`) and fix or waive "
    "what blocks.",
)
SIGNATURE_RULE = Rule(
    id="GAT002",
    title="Release gate: no verified signature by a trusted key",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.DEPLOYMENT,
    profile="release-gate",
    description="`bastion gate` found no recent verification of a signature over this exact "
    "digest with a key or identity the current policy trusts." + _WHY,
    remediation="Sign the model with the release key and verify it (`bastion verify MODEL "
    "--key KEY`); if the digest changed after signing, find out why before re-signing.",
)
DATA_RULE = Rule(
    id="GAT003",
    title="Release gate: training data not checked in the version trained on",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.DEPLOYMENT,
    profile="release-gate",
    description="`bastion gate` found no lineage to training data, or no recent passing data "
    "check of the exact dataset version (by digest) the model was trained on." + _WHY,
    remediation="Record lineage (`bastion lineage record --model M --dataset D`) and check "
    "that data version (`bastion data check`).",
)
PROBE_RULE = Rule(
    id="GAT004",
    title="Release gate: probe missing, stale or over threshold",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.DEPLOYMENT,
    profile="release-gate",
    description="`bastion gate` found no recent probe of this digest that passes the current "
    "policy with thresholds at least as strict as today's." + _WHY,
    remediation="Probe the model (`bastion probe MODEL --data D`) under the current policy.",
)
WAIVER_RULE = Rule(
    id="GAT005",
    title="Release gate: expired waiver in the policy",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.DEPLOYMENT,
    profile="release-gate",
    description="The policy holds a waiver whose expiry date has passed: the finding it "
    "accepted was accepted for a time that is over, and nobody has reviewed it since.",
    remediation="Renew the waiver with a new review and date, or fix the finding it covered.",
)

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (SCAN_RULE, SIGNATURE_RULE, DATA_RULE, PROBE_RULE, WAIVER_RULE)
RULE_OF = {
    "scan": SCAN_RULE,
    "signature": SIGNATURE_RULE,
    "data": DATA_RULE,
    "probe": PROBE_RULE,
    "waivers": WAIVER_RULE,
}


class Requirement(Record):
    """One requirement of the gate, its status, why, and the evidence (run ids, link ids)."""

    name: str
    status: str
    detail: str
    runs: tuple[int, ...] = ()
    links: tuple[int, ...] = ()
    digests: tuple[str, ...] = ()


class Decision(Record):
    """The gate's answer for one model digest."""

    model: str
    digest: str
    status: Status
    requirements: tuple[Requirement, ...]
    policy: str
    decided_at: str
    max_age_days: int

    @property
    def exit_code(self) -> int:
        return {Status.PASSED: 0, Status.FAILED: 1, Status.UNDECIDED: 2}[self.status]


class _Context(Record):
    settings: Settings
    now: dt.datetime
    baseline: frozenset[str]


def _age_days(started_at: str, now: dt.datetime) -> float | None:
    try:
        when = dt.datetime.fromisoformat(started_at)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return (now - when).total_seconds() / 86400


def _stale(run: RunEvidence, ctx: _Context) -> str | None:
    """Why a run is too old to count (or undated), or None."""
    age = _age_days(run.started_at, ctx.now)
    limit = ctx.settings.gate.max_age_days
    if age is None:
        return f"run #{run.run_id} has no start date"
    if age > limit:
        return f"run #{run.run_id} is {age:.0f} days old (max_age_days = {limit})"
    return None


def _rejudge(store: Store, run: RunEvidence, paths: Sequence[str], ctx: _Context) -> Status:
    """The run's results for `paths`, judged under today's policy (expired waivers apart:
    they are their own requirement, and a finding they covered is no longer waived)."""
    report, _ = store.load(run.run_id)
    wanted = set(paths)
    results = tuple(r for r in report.results if r.path in wanted)
    part = Report(
        tool=report.tool,
        command=report.command,
        targets=report.targets,
        metadata=report.metadata,
        results=results,
    )
    today = ctx.now.date()
    settings = ctx.settings.model_copy(
        update={"waivers": tuple(w for w in ctx.settings.waivers if w.expires >= today)}
    )
    return evaluate(part, settings, ctx.baseline, today).status


def _escaping_links(folder: Path, links: Sequence[str]) -> list[str]:
    """The symlinks of a model folder whose target is not inside it (or does not resolve): the
    folder's digest holds their target's name, never its content, so no scan of the folder's
    files vouches for what they load."""
    root = folder.resolve()
    out = []
    for rel in links:
        try:
            target = (folder / rel).resolve(strict=True)
        except (OSError, RuntimeError):
            out.append(rel)
            continue
        if not target.is_relative_to(root):
            out.append(rel)
    return out


def _scan(
    store: Store, files: Sequence[str], ctx: _Context, escaping: Sequence[str] = ()
) -> Requirement:
    runs: list[int] = []
    problems: list[str] = [
        f"{rel}: a symlink out of the model folder: its target's content is not part of the "
        "model's digest"
        for rel in escaping[:5]
    ]
    undecided: list[str] = []
    missing: list[str] = []
    for digest in files:
        evidence = store.evidence(digest, command="scan", role="subject", limit=1)
        if not evidence:
            missing.append(digest)
            continue
        run = evidence[0]
        runs.append(run.run_id)
        stale = _stale(run, ctx)
        if stale:
            problems.append(f"{run.path}: {stale}")
            continue
        status = _rejudge(store, run, [run.path], ctx)
        if status is Status.FAILED:
            problems.append(
                f"{run.path}: blocking findings under the current policy (run #{run.run_id})"
            )
        elif status is Status.UNDECIDED:
            undecided.append(f"{run.path}: not fully checked (run #{run.run_id})")
    if problems:
        return Requirement(
            name="scan",
            status=UNMET,
            detail="; ".join(problems),
            runs=tuple(runs),
            digests=tuple(files),
        )
    if missing:
        return Requirement(
            name="scan",
            status=MISSING,
            detail=f"no scan of {len(missing)} of {len(files)} file(s) in this version: "
            + ", ".join(m[:23] + "…" for m in missing[:5]),
            runs=tuple(runs),
            digests=tuple(files),
        )
    if undecided:
        return Requirement(
            name="scan",
            status=UNDECIDED,
            detail="; ".join(undecided),
            runs=tuple(runs),
            digests=tuple(files),
        )
    return Requirement(
        name="scan",
        status=MET,
        detail=f"{len(files)} file(s) scanned clean under the current policy",
        runs=tuple(runs),
        digests=tuple(files),
    )


def _trusted_keys(settings: Settings) -> set[str]:
    keys = set()
    for key in (*settings.signing.public_keys, *settings.signing.certificate_chains):
        try:
            keys.add(file_digest(settings.resolve(key)))
        except OSError:
            continue
    keys.update(sigstore_reference(i.identity, i.issuer) for i in settings.signing.identities)
    return keys


def _signed_before(store: Store, digest: str, name: str, signature: Path | None) -> str | None:
    """Another digest of the same model that was signed: the signature file beside the model
    verified over it (a 'signed-by' link), or a signed artifact last seen under the same name."""
    if signature is not None and signature.is_file():
        try:
            sig: str | None = file_digest(signature)
        except OSError:
            sig = None
        if sig is not None:
            for link in store.links(sig, "upstream", "signed-by"):
                if link.upstream != digest:
                    return link.upstream
    for artifact in store.artifacts_named(name, limit=10):
        if artifact.digest != digest and (
            store.evidence(artifact.digest, role="signed", limit=1)
            or store.evidence(artifact.digest, command="verify", role="subject", limit=1)
        ):
            return artifact.digest
    return None


def _signature(
    store: Store, digest: str, name: str, signature: Path | None, ctx: _Context
) -> Requirement:
    trusted = _trusted_keys(ctx.settings)
    if not trusted:
        return Requirement(
            name="signature",
            status=MISSING,
            detail="the policy names no trusted signer ([signing] public_keys, "
            "certificate_chains or identities), so no signature can count",
        )
    candidates = [
        *store.evidence(digest, command="verify", role="subject", limit=20),
        *store.evidence(digest, command="scan", role="signed", limit=20),
    ]
    candidates.sort(key=lambda r: r.run_id, reverse=True)
    problems: list[str] = []
    for run in candidates:
        keys = {s.digest for s in store.seen_by(run.run_id) if s.role == "key"}
        if run.command == "verify" and run.status != "passed":
            problems.append(f"verification failed in run #{run.run_id}")
            break  # a newer failure outranks an older success
        if not keys:
            problems.append(f"run #{run.run_id} recorded no key it verified with")
            continue
        if not keys <= trusted:
            problems.append(f"run #{run.run_id} trusted a key the current policy does not")
            continue
        stale = _stale(run, ctx)
        if stale:
            problems.append(stale)
            continue
        return Requirement(
            name="signature",
            status=MET,
            detail=f"signature verified with a trusted key in run #{run.run_id}",
            runs=(run.run_id,),
            digests=(digest,),
        )
    runs = tuple(r.run_id for r in candidates[:5])
    if problems:
        return Requirement(
            name="signature",
            status=UNMET,
            detail="; ".join(problems[:3]),
            runs=runs,
            digests=(digest,),
        )
    earlier = _signed_before(store, digest, name, signature)
    if earlier:
        return Requirement(
            name="signature",
            status=UNMET,
            detail=f"{name} was signed as {earlier[:23]}…, but this digest was never verified: "
            "the content changed after signing",
            digests=(digest, earlier),
        )
    return Requirement(
        name="signature",
        status=MISSING,
        detail="no verified signature over this digest",
        digests=(digest,),
    )


def _data(store: Store, digest: str, ctx: _Context) -> Requirement:
    links = store.links(digest, "upstream", "trained-on")
    if not links:
        return Requirement(
            name="data",
            status=MISSING,
            detail="no training data recorded for this digest (bastion lineage record "
            "--model M --dataset D)",
        )
    datasets = list(dict.fromkeys(link.upstream for link in links))
    link_ids = tuple(link.id for link in links)
    runs: list[int] = []
    problems: list[str] = []
    missing: list[str] = []
    undecided: list[str] = []
    for dataset in datasets:
        known = store.artifact(dataset)
        name = known.name if known else dataset
        evidence = store.evidence(dataset, command="data", role="subject", limit=1)
        if not evidence:
            others = [
                a
                for a in store.artifacts_named(name, limit=10)
                if a.digest != dataset and store.evidence(a.digest, command="data", limit=1)
            ]
            if others:
                problems.append(
                    f"{name}: the version trained on ({dataset[:23]}…) is not the version "
                    f"checked ({others[0].digest[:23]}…): the data changed between check and "
                    "training"
                )
            else:
                missing.append(name)
            continue
        run = evidence[0]
        runs.append(run.run_id)
        stale = _stale(run, ctx)
        if stale:
            problems.append(f"{name}: {stale}")
            continue
        status = _rejudge(store, run, [run.path], ctx)
        if status is Status.FAILED:
            problems.append(
                f"{name}: data check fails under the current policy (run #{run.run_id})"
            )
        elif status is Status.UNDECIDED:
            undecided.append(f"{name}: not fully checked (run #{run.run_id})")

    def answer(status: str, detail: str) -> Requirement:
        return Requirement(
            name="data",
            status=status,
            detail=detail,
            runs=tuple(runs),
            links=link_ids,
            digests=tuple(datasets),
        )

    if problems:
        return Requirement(name="data", status=UNMET, detail="; ".join(problems))
    if missing:
        return answer(MISSING, f"never checked: {', '.join(missing[:5])}")
    if undecided:
        return answer(UNDECIDED, "; ".join(undecided))
    return answer(MET, f"{len(datasets)} dataset(s) checked in the version trained on")


_STRICTER_IS_LOWER = ("max_flippable_share", "max_membership_auc", "max_extraction_fidelity")
_STRICTER_IS_HIGHER = ("min_robust_accuracy",)


def _looser_thresholds(report: Report, ctx: _Context) -> list[str]:
    """Thresholds the probe ran with that are looser than today's policy."""
    used = ((report.metadata.get("settings") or {}).get("probe")) or {}
    now = ctx.settings.probe
    looser = []
    for name in _STRICTER_IS_LOWER + _STRICTER_IS_HIGHER:
        value = used.get(name)
        if not isinstance(value, (int, float)):
            looser.append(f"{name} unknown")
            continue
        current = getattr(now, name)
        if (name in _STRICTER_IS_LOWER and value > current) or (
            name in _STRICTER_IS_HIGHER and value < current
        ):
            looser.append(f"{name} {value} (now {current})")
    if max(used.get("budgets") or [0]) < max(now.budgets):
        looser.append(f"evasion budget {max(used.get('budgets') or [0])} (now {max(now.budgets)})")
    return looser


def _probe(store: Store, digests: Sequence[str], ctx: _Context) -> Requirement:
    evidence = sorted(
        (r for d in digests for r in store.evidence(d, command="probe", role="subject", limit=1)),
        key=lambda r: r.run_id,
        reverse=True,
    )
    if not evidence:
        return Requirement(
            name="probe",
            status=MISSING,
            detail="this digest was never probed",
            digests=tuple(digests),
        )
    run = evidence[0]

    def answer(status: str, detail: str) -> Requirement:
        return Requirement(
            name="probe", status=status, detail=detail, runs=(run.run_id,), digests=tuple(digests)
        )

    stale = _stale(run, ctx)
    if stale:
        return Requirement(name="probe", status=UNMET, detail=stale)
    report, _ = store.load(run.run_id)
    looser = _looser_thresholds(report, ctx)
    if looser:
        return answer(
            UNMET,
            f"probed under looser thresholds than today's: {', '.join(looser)} "
            f"(run #{run.run_id}); probe again",
        )
    status = _rejudge(store, run, [r.path for r in report.results], ctx)
    if status is Status.FAILED:
        return answer(UNMET, f"over threshold under the current policy (run #{run.run_id})")
    if status is Status.UNDECIDED:
        return answer(UNDECIDED, f"probe incomplete (run #{run.run_id})")
    return answer(MET, f"thresholds met (run #{run.run_id})")


def _waivers(ctx: _Context) -> Requirement:
    today = ctx.now.date()
    expired = [w for w in ctx.settings.waivers if w.expires < today]
    if expired:
        return Requirement(
            name="waivers",
            status=UNMET,
            detail="; ".join(
                f"{w.rule} on '{w.path}' expired on {w.expires.isoformat()}" for w in expired[:5]
            ),
        )
    return Requirement(
        name="waivers", status=MET, detail=f"{len(ctx.settings.waivers)} waiver(s), none expired"
    )


def decide(
    store: Store,
    model: str,
    settings: Settings,
    now: dt.datetime | None = None,
) -> Decision:
    """The gate's decision for a model (a file, a folder, or a digest) under `settings`."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if is_digest(model):
        digest, name = model, model
        known = store.artifact(digest)
        if known is not None:
            name = known.name
        members = [link.upstream for link in store.links(digest, "upstream", "part-of")]
        escaping = []
    else:
        found = identify(Path(model))
        digest, name = found.digest, model
        members = [m.digest for m in found.members]
        escaping = _escaping_links(Path(model), [link.path for link in found.links])
        known = store.artifact(digest)
        if known is not None:
            name = known.name
    files = members or [digest]
    signature = None if is_digest(model) else default_signature(Path(model))
    baseline: frozenset[str] = frozenset()
    if settings.baseline:
        baseline = load_baseline(settings.resolve(settings.baseline))
    ctx = _Context(settings=settings, now=now, baseline=baseline)
    required = set(settings.gate.require)
    checks = {
        "scan": lambda: _scan(store, files, ctx, escaping),
        "signature": lambda: _signature(store, digest, name, signature, ctx),
        "data": lambda: _data(store, digest, ctx),
        "probe": lambda: _probe(store, [digest, *members], ctx),
    }
    requirements = [
        checks[name_]()
        if name_ in required
        else Requirement(name=name_, status=NOT_REQUIRED, detail="not required by [gate] require")
        for name_ in ("scan", "signature", "data", "probe")
    ]
    requirements.append(_waivers(ctx))
    statuses = {r.status for r in requirements}
    if statuses & {UNMET, MISSING}:
        status = Status.FAILED
    elif UNDECIDED in statuses:
        status = Status.UNDECIDED
    else:
        status = Status.PASSED
    return Decision(
        model=model,
        digest=digest,
        status=status,
        requirements=tuple(requirements),
        policy=settings.policy_name,
        decided_at=now.isoformat(timespec="seconds"),
        max_age_days=settings.gate.max_age_days,
    )


def decision_report(decision: Decision, settings: Settings, started: dt.datetime) -> Report:
    """The decision as a Report (GAT findings for unmet and missing requirements, a gap for
    undecided ones), so that it is recorded and rendered like every other run."""
    from bastion import coverage
    from bastion.findings import Skip, TargetResult, ToolInfo
    from bastion.rules import taxonomy_version
    from bastion.version import __version__

    location = Location(path=decision.model)
    findings = tuple(
        RULE_OF[r.name].finding(
            location.model_copy(update={"pointer": r.name}),
            f"{r.name}: {r.status}: {r.detail}",
            evidence=f"{r.name}:{r.status}",
        )
        for r in decision.requirements
        if r.status in (UNMET, MISSING)
    )
    skips = tuple(
        Skip(
            location=location.model_copy(update={"pointer": r.name}),
            reason=f"{r.name}: {r.detail}",
            code=coverage.INCOMPLETE,
        )
        for r in decision.requirements
        if r.status == UNDECIDED
    )
    result = TargetResult(
        path=decision.model, format="release-candidate", findings=findings, skips=skips
    )
    return Report(
        tool=ToolInfo(version=__version__),
        command="gate",
        targets=(decision.model,),
        metadata={
            "started_at": started.isoformat(timespec="seconds"),
            "taxonomy_version": taxonomy_version(),
            "policy": settings.policy_name,
            "gate": decision.model_dump(mode="json"),
        },
        results=(result,),
    )
