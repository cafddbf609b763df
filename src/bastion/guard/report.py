"""`bastion guard report`: a period of runtime evidence as a normal bastion Report.

The audit chains at a path (one log, or a folder of workers' logs) are verified first; a chain
that does not verify is a GRD201 finding naming its first broken link, and one verified without
signatures a GRD202. Then every record of the period is read (in time order across workers):

- each request's decisions are mapped to the pipeline's rules (`guard.rules.rule_for`): one
  finding per rule and detector, with how many requests, which actions, which key ids (the
  five most frequent), the first and last time. A request the model answered has two records,
  its admission and its outcome (which repeats the admission's verdicts): it is counted once,
  from the outcome; an admission with no outcome (the guard stopped while the model computed,
  or the request is still in flight) is counted from its own verdicts and in the metadata's
  `admitted_without_outcome`;
- each monitor alert (an AlertEvent in the chain) is a finding of its kind's rule
  (`monitor.rule_for_alert`), one per (kind, key), with the highest score against its
  threshold and how many times it fired.

Results are grouped by chain (one TargetResult per audit file), so SARIF, HTML, the store and
the policy gate treat runtime evidence like any other scan. The metadata block summarises the
period: requests, statuses, routes, latency percentiles, keys, workers. Nothing read from the
log is trusted beyond its type checks: key ids and detector names are identifiers (AuditEvent
refuses anything else), and reports escape what they print."""

from __future__ import annotations

import collections
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.findings import Finding, Location, TargetResult
from bastion.guard.audit import AdmissionEvent, AlertEvent, AuditEvent
from bastion.guard.audit_export import merged, parse_since
from bastion.guard.audit_verify import CHAIN_BROKEN, UNAUTHENTICATED, ChainCheck, verify_path
from bastion.guard.monitor import rule_for_alert
from bastion.guard.rules import rule_for

if TYPE_CHECKING:
    from bastion.config import Settings
    from bastion.findings import Report
    from bastion.rules import Rule

TOP_KEYS = 5
MAX_LATENCIES = 200_000  # latency percentiles from at most this many requests (a reservoir)
# admissions waiting for their outcome while the chains are read (about 1.6 KB each); the
# oldest is counted as without outcome past it: an outcome follows its admission within
# its request, so only more orphans than this made during one request miscount it
MAX_ADMITTED = 100_000


class _Tally:
    """What the findings of one rule/detector (or alert kind/key) accumulate."""

    def __init__(self) -> None:
        self.count = 0
        self.actions: collections.Counter[str] = collections.Counter()
        self.keys: collections.Counter[str] = collections.Counter()
        self.first = ""
        self.last = ""
        self.score: float | None = None
        self.threshold: float | None = None
        self.message = ""
        self.feature: str | None = None
        self.first_seq: int | None = None

    def add(self, at: str, seq: int) -> None:
        self.count += 1
        self.first = min(self.first, at) if self.first else at
        self.last = max(self.last, at)
        if self.first_seq is None:
            self.first_seq = seq


def guard_report(
    path: Path,
    settings: Settings,
    *,
    since: str | None = "24h",
    public_key: Path | None = None,
    started: Any = None,
) -> Report:
    """The report of the period from `since` (a duration like 24h or a date; None for all)."""
    from bastion.runs import build_report, start

    started = started or start()
    until = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    cutoff = parse_since(since) if since else None
    checks = verify_path(path, public_key=public_key)
    files = {check.path: _display(Path(check.path), path) for check in checks}
    findings: dict[str, list[Finding]] = {display: [] for display in files.values()}
    for check in checks:
        findings[files[check.path]] += _integrity(check, files[check.path], public_key)

    requests: dict[tuple[str, str, str], tuple[Rule, _Tally]] = {}
    alerts: dict[tuple[str, str, str], _Tally] = {}
    summary = _Summary()
    admitted: dict[tuple[str, int], tuple[str, AdmissionEvent, int]] = {}

    def count(display: str, event: AuditEvent | AdmissionEvent, seq: int) -> None:
        for detector, action in event.decisions.items():
            rule = rule_for(detector, action)
            if rule is None:
                continue
            _, tally = requests.setdefault((display, rule.id, detector), (rule, _Tally()))
            tally.add(event.at, seq)
            tally.actions[action] += 1
            if event.key_id:
                tally.keys[event.key_id] += 1

    for record in merged(path, since=cutoff, verify=False):
        display = files.get(_chain_path(checks, record.worker), record.worker)
        event = record.event
        if isinstance(event, AlertEvent):
            tally = alerts.setdefault((display, event.alert, event.key_id), _Tally())
            tally.add(event.at, record.seq)
            if tally.score is None or _worse(event, tally):
                tally.score, tally.threshold = event.score, event.threshold
                tally.message, tally.feature = event.message, event.feature
            continue
        if isinstance(event, AdmissionEvent):  # counted with its outcome, or alone without one
            admitted[(record.chain, record.seq)] = (display, event, record.seq)
            if len(admitted) > MAX_ADMITTED:  # the oldest: outcomes follow within a request
                summary.unanswered += 1
                count(*admitted.pop(next(iter(admitted))))
            continue
        if event.admission is not None:
            admitted.pop((record.chain, event.admission), None)
        summary.add(record.worker, event)
        count(display, event, record.seq)
    for display, event, seq in admitted.values():  # the guard stopped before their outcome
        summary.unanswered += 1
        count(display, event, seq)

    for (display, _id, detector), (rule, tally) in requests.items():
        findings.setdefault(display, []).append(_request_finding(display, rule, detector, tally))
    for (display, kind, key), tally in alerts.items():
        finding = _alert_finding(display, kind, key, tally)
        if finding is not None:
            findings.setdefault(display, []).append(finding)

    results = [
        TargetResult(path=display, format="bastion-audit", findings=tuple(found))
        for display, found in findings.items()
    ]
    metadata = {
        "period": {"since": cutoff, "until": until},
        "audit": {
            "chains": [
                {
                    "path": files[c.path],
                    "worker": c.worker,
                    "records": c.records,
                    "verified": c.ok,
                    "signed_checkpoints": c.signed_checkpoints,
                }
                for c in checks
            ]
        },
        "traffic": summary.as_dict(),
    }
    return build_report(results, [str(path)], settings, started, "guard", metadata)


def _display(file: Path, root: Path) -> str:
    if root.is_dir():
        try:
            return file.relative_to(root).as_posix()
        except ValueError:
            return file.name
    return file.name


def _chain_path(checks: list[ChainCheck], worker: str) -> str:
    for check in checks:
        if check.worker == worker:
            return check.path
    return worker


def _worse(event: AlertEvent, tally: _Tally) -> bool:
    """Whether this alert crossed its threshold by more than the one kept (W falls below its
    threshold for PRADA, the other statistics rise above theirs)."""
    assert tally.score is not None and tally.threshold is not None
    if event.alert == "extraction":
        return event.score - event.threshold < tally.score - tally.threshold
    return event.score - event.threshold > tally.score - tally.threshold


def _integrity(check: ChainCheck, display: str, public_key: Path | None) -> list[Finding]:
    first = check.first_break
    if first is not None:
        others = len(check.problems) - 1
        return [
            CHAIN_BROKEN.finding(
                message=f"the audit chain of worker {check.worker or '?'} does not verify: "
                f"{first.message}" + (f" ({others} more problems)" if others else ""),
                location=Location(
                    path=display, pointer=f"record {first.seq}" if first.seq is not None else None
                ),
                evidence=f"{first.kind}: {first.message}"[:300],
            )
        ]
    if check.signed_checkpoints == 0:
        reason = (
            "no public key was given to check them"
            if public_key is None
            else "its checkpoints carry no signature"
        )
        return [
            UNAUTHENTICATED.finding(
                message=f"the audit chain of worker {check.worker or '?'} verified, but {reason}",
                location=Location(path=display),
                evidence=f"{check.checkpoints} checkpoints, 0 signatures checked",
            )
        ]
    return []


def _request_finding(display: str, rule: Rule, detector: str, tally: _Tally) -> Finding:
    actions = ", ".join(f"{a} {n}" for a, n in sorted(tally.actions.items()))
    keys = ", ".join(f"{k} ({n})" for k, n in tally.keys.most_common(TOP_KEYS))
    more = len(tally.keys) - TOP_KEYS
    who = f"; keys: {keys}" + (f" and {more} more" if more > 0 else "") if keys else ""
    return rule.finding(
        message=f"{tally.count} request(s) with the {detector} detector's decision ({actions}) "
        f"between {tally.first} and {tally.last}{who}",
        location=Location(path=display, pointer=f"detector {detector}"),
        evidence=f"{detector}: {actions}"[:300],
    )


def _alert_finding(display: str, kind: str, key: str, tally: _Tally) -> Finding | None:
    rule = rule_for_alert(kind)
    if rule is None:
        return None
    whose = "all traffic" if key == "*" else f"key {key}"
    fired = f"{tally.count} time(s)" if tally.count > 1 else "once"
    return rule.finding(
        message=f"{whose}: {tally.message} (fired {fired}, first at {tally.first})",
        location=Location(path=display, pointer=f"key {key}"),
        evidence=f"{kind}: score {tally.score:.4g}, threshold {tally.threshold:.4g}"
        + (f", feature {tally.feature}" if tally.feature else ""),
    )


class _Summary:
    """Counts for the metadata block, bounded whatever the period holds."""

    def __init__(self) -> None:
        self.requests = 0
        self.unanswered = 0  # admitted to the model, no outcome recorded (a crash, or in flight)
        self.statuses: collections.Counter[str] = collections.Counter()
        self.routes: collections.Counter[str] = collections.Counter()
        self.workers: collections.Counter[str] = collections.Counter()
        self.keys: set[str] = set()
        self.latencies: list[float] = []

    def add(self, worker: str, event: AuditEvent) -> None:
        import random

        self.requests += 1
        self.statuses[f"{event.status // 100}xx"] += 1
        if len(self.routes) < 100 or event.route in self.routes:
            self.routes[event.route] += 1
        self.workers[worker] += 1
        if event.key_id and len(self.keys) < 100_000:
            self.keys.add(event.key_id)
        if len(self.latencies) < MAX_LATENCIES:
            self.latencies.append(event.latency_ms)
        else:  # reservoir sampling keeps a uniform sample of the period
            slot = random.randrange(self.requests)
            if slot < MAX_LATENCIES:
                self.latencies[slot] = event.latency_ms

    def as_dict(self) -> dict[str, Any]:
        latency: dict[str, float] = {}
        if self.latencies:
            ordered = sorted(self.latencies)
            for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
                latency[name] = round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)
        return {
            "requests": self.requests,
            "admitted_without_outcome": self.unanswered,
            "statuses": dict(sorted(self.statuses.items())),
            "routes": dict(self.routes.most_common(20)),
            "workers": dict(sorted(self.workers.items())),
            "keys": len(self.keys),
            "latency_ms": latency,
        }
