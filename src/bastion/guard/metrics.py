"""Prometheus metrics of one guard worker (prometheus-client, a registry of its own).

Every label takes its values from a fixed set, so a client cannot grow the series count:
routes are the guard's own route names (anything else is `other`), detectors and actions are
the pipeline's vocabulary (anything else is `other`), status codes are grouped by class."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bastion.guard.monitor import KINDS as ALERT_KINDS

DETECTORS = (
    "in_flight",
    "ip_limit",
    "auth",
    "key_limit",
    "budget",
    "input",
    "contract",
    "sensitive",
    "injection",
    "classifier",
    "ood",
    "monitor",
    "model",
    "upstream",
    "output",
    "audit",
    "pipeline",  # the guard's own failure (a bug, a detector raising): answered 500
)
ACTIONS = (
    "allow",
    "record",
    "flag",
    "block",
    "redact",
    "error",
    "timeout",
    "missing",
    "malformed",
    "unknown",
    "secret",
    "expired",
    "revoked",
    "scope",
    "unavailable",
)
LIMITS = ("ip", "key", "budget", "in_flight", "unavailable")
_DETECTORS = frozenset(DETECTORS)
_ACTIONS = frozenset(ACTIONS)
_STATUS_CLASS = {n: f"{n}xx" for n in range(1, 6)}
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, routes: Iterable[str]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.routes = frozenset(routes)
        self.requests = Counter(
            "bastion_guard_requests",
            "Requests answered, by route and status class.",
            ("route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "bastion_guard_request_seconds",
            "Time from the first byte of a request to its answer (audit included).",
            ("route",),
            buckets=BUCKETS,
            registry=self.registry,
        )
        # a request makes a dozen decisions: counted in a plain dict (one thread, the event
        # loop's, counts) and read by the registry at scrape time, not a locked Counter child
        # per decision
        self.decisions: dict[tuple[str, str], int] = {}
        self.registry.register(_DecisionCollector(self.decisions))
        self.limited = Counter(
            "bastion_guard_rate_limited",
            "Requests refused by an abuse limit.",
            ("limit",),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "bastion_guard_in_flight", "Requests inside this worker.", registry=self.registry
        )
        # a team's app behind the middleware that did not end when cancelled at the request
        # timeout (nor within the grace after it): its task is left running, its request
        # answered 504 (GuardMiddleware._let_go)
        self.abandoned = Counter(
            "bastion_guard_inner_abandoned",
            "Tasks of the app behind the guard abandoned after ignoring their cancellation.",
            registry=self.registry,
        )
        self.abandoned_running = Gauge(
            "bastion_guard_inner_abandoned_running",
            "Abandoned tasks of the app behind the guard still running in this worker.",
            registry=self.registry,
        )
        self.audit_failures = Counter(
            "bastion_guard_audit_failures",
            "Events that could not be made durable (each answered 503 in strict mode).",
            registry=self.registry,
        )
        self.alerts = Counter(
            "bastion_guard_monitor_alerts",
            "Query monitor alerts, by kind, when they are raised.",
            ("kind",),
            registry=self.registry,
        )
        self.reloads = Counter(
            "bastion_guard_reloads",
            "Configuration reloads (SIGHUP).",
            ("result",),
            registry=self.registry,
        )
        # labelled children looked up once: `labels()` costs microseconds a request repeats
        self._children: dict[tuple[Any, ...], Any] = {}

    def route(self, name: str) -> str:
        return name if name in self.routes else "other"

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, route: str, status: int, seconds: float, decisions: dict[str, str]) -> None:
        label = self.route(route)
        self._child(self.requests, label, _STATUS_CLASS.get(status // 100, "other")).inc()
        self._child(self.latency, label).observe(seconds)
        counts = self.decisions
        for pair in decisions.items():
            if pair[0] not in _DETECTORS or pair[1] not in _ACTIONS:
                pair = (
                    pair[0] if pair[0] in _DETECTORS else "other",
                    pair[1] if pair[1] in _ACTIONS else "other",
                )
            counts[pair] = counts.get(pair, 0) + 1

    def alert(self, kind: str) -> None:
        self._child(self.alerts, kind if kind in ALERT_KINDS else "other").inc()

    def limit(self, which: str) -> None:
        self._child(self.limited, which if which in LIMITS else "other").inc()

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _DecisionCollector:
    """`bastion_guard_decisions_total{detector, action}` from the pipeline's counts."""

    def __init__(self, counts: dict[tuple[str, str], int]) -> None:
        self.counts = counts

    def describe(self) -> list[Any]:
        from prometheus_client.core import CounterMetricFamily

        return [CounterMetricFamily("bastion_guard_decisions", "Detector decisions.")]

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(
            "bastion_guard_decisions", "Detector decisions.", labels=("detector", "action")
        )
        for (detector, action), value in sorted(list(self.counts.items())):
            family.add_metric((detector, action), value)
        yield family
