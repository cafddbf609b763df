"""The rules behind the request pipeline's decisions (GRD001-GRD049).

Every detector of the pipeline records a decision per request in the audit event
(`decisions`: detector -> action); `bastion guard report` turns the period's refusals and flags
into findings of these rules, so the policy gate, the store and every report format work on
runtime evidence. `rule_for(detector, action)` says which rule a decision is evidence of (None
for an allow). The query monitor's alerts (extraction, probing, drift) and the audit trail's own
integrity are GRD1xx and GRD2xx, declared beside them (guard/monitor.py, guard/audit.py).

Decision vocabulary (docs/guard.md): `allow`, `record` (seen, policy says record only), `flag`,
`block`, `redact`; the auth step records why a credential failed (`missing`, `malformed`,
`unknown`, `secret`, `expired`, `revoked`, `scope`); a limiter that could not answer records
`unavailable`; the model/upstream step `error` or `timeout`."""

from __future__ import annotations

from bastion.findings import Confidence, Severity, Stage
from bastion.rules import Rule

AUTH = Rule(
    id="GRD001",
    title="Requests refused for missing, invalid or insufficient credentials",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.DEPLOYMENT,
    profile="runtime-access",
    description="Requests reached a guarded model without a valid credential (none, malformed, "
    "unknown, wrong secret, expired or revoked) or with one that lacks the route's scope. The "
    "guard refused them (401/403); the finding says how many, from which key ids, for which "
    "reasons. Revoked and expired keys still in use, or many wrong secrets for one id, point "
    "at leaked or guessed credentials (OWASP API2) and at attempts to reach the inference API "
    "(ATLAS AML.T0040).",
    remediation="Find who holds the keys named (`bastion guard keys list`); rotate keys that "
    "were in use after revocation or expiry; a burst of wrong secrets from one address calls "
    "for a lower per-address rate limit.",
)
ABUSE = Rule(
    id="GRD002",
    title="Requests refused by rate limits, budgets or the in-flight bound",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.DEPLOYMENT,
    profile="runtime-abuse",
    description="Clients went past their rate (per address before authentication, per key "
    "after), their daily row budget, or the worker's bound on requests in flight, and were "
    "answered 429 or 503. Sustained pressure is how a model is denied to its users (ATLAS "
    "AML.T0029, OWASP API4) and how large query sets for extraction are gathered (AML.T0024, "
    "API6).",
    remediation="Check the keys and addresses named: a legitimate batch client needs its own "
    "key with a budget that fits; anything else is abuse to block upstream of the guard.",
)
CONTRACT = Rule(
    id="GRD003",
    title="Requests outside the model's input contract",
    severity=Severity.LOW,
    confidence=Confidence.HIGH,
    stage=Stage.DEPLOYMENT,
    profile="runtime-input",
    description="Request rows broke the data contract the model was trained under (missing or "
    "unknown columns, wrong types, values out of range or outside the known categories, "
    "NaN/Infinity) or the body's bounds (size, depth, row count). Out-of-contract input gives "
    "undefined model behaviour and is a common form of input manipulation (OWASP ML01).",
    remediation="If a client's data changed legitimately, profile the new data and review the "
    "contract; otherwise the key named is probing the model.",
)
PERSONAL_DATA = Rule(
    id="GRD004",
    title="Personal data or secrets in requests",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.DEPLOYMENT,
    profile="runtime-personal-data",
    description="Request fields or chat prompts carried personal data (e-mail addresses, phone "
    "numbers, card numbers, IBANs, national ids, ...) or credentials, found by the same "
    "detectors as the data stage. Depending on the policy the guard blocked, redacted or "
    "recorded them; the values themselves are never logged. Users handing personal data to an "
    "AI system create a disclosure and retention risk (OWASP LLM02, GDPR).",
    remediation="Tell the clients named to stop sending the data (or redact it before it "
    'leaves them); keep `[sensitive] action = "block"` or `"redact"` where the model does '
    "not need it.",
)
INJECTION = Rule(
    id="GRD005",
    title="Prompt-injection markers in chat requests",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.DEPLOYMENT,
    profile="runtime-injection",
    description="Chat prompts carried prompt-injection markers: instructions to drop earlier "
    "instructions, requests for the system prompt, jailbreak personas, forged chat-template "
    "delimiters, invisible Unicode (tag characters, bidirectional overrides) or markdown "
    "exfiltration links (ATLAS AML.T0051, OWASP LLM01); or the optional classifier said so. "
    "Heuristics miss paraphrases: a clean result is not proof of safety.",
    remediation="Review the keys named; keep tools and data the model can reach behind their "
    "own authorisation (an injected model acts with its own rights).",
)
OOD = Rule(
    id="GRD006",
    title="Out-of-distribution requests",
    severity=Severity.LOW,
    confidence=Confidence.MEDIUM,
    stage=Stage.DEPLOYMENT,
    profile="runtime-input",
    description="Request rows lay far from the training data (Mahalanobis distance on the "
    "encoded features, or an isolation forest, above the configured quantile of held-out "
    "training rows). Each value may be valid while the combination is one the model never "
    "saw: its answer there is unreliable, and adversarial and probing inputs live there "
    "(ATLAS AML.T0043, OWASP ML01, EU AI Act Art. 15(5)).",
    remediation="Look at the keys named: a few rows are edge cases, a stream of them is an "
    "attack or a population the model does not cover (retrain or route to a human).",
)
UPSTREAM = Rule(
    id="GRD007",
    title="The model or upstream server failed",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.MONITORING,
    profile="runtime-upstream",
    description="The served model raised, or the upstream model server (proxy mode) was down, "
    "too slow, answered an error, an oversized or a malformed answer; the guard answered "
    "502/504 without passing on what the upstream said (OWASP API10). Repeated failures are an "
    "outage, and an upstream that changes its answers' shape may have been replaced.",
    remediation="Check the model server's health and version; tighten [proxy] timeout_s and "
    "max_response_bytes if it is slow or verbose.",
)
OUTPUT = Rule(
    id="GRD008",
    title="Personal data in model answers",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.DEPLOYMENT,
    profile="runtime-personal-data",
    description="Answers of a chat model carried personal data or secrets, which the guard "
    "redacted, withheld or recorded per [output] screen_text. A model that repeats personal "
    "data memorised it or was handed it in its context (OWASP LLM02, ATLAS AML.T0057).",
    remediation="Find where the data comes from (training data, retrieval sources, the system "
    "prompt) and remove it there; keep the answer screen on redact or block.",
)

FAILURE = Rule(
    id="GRD009",
    title="The guard failed to process or to record requests",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.MONITORING,
    profile="runtime-failure",
    description="A step of the guard's own pipeline raised unexpectedly (`pipeline: error`), or "
    "a request's audit event could not be made and the request was recorded only in part "
    "(`audit: error`: a field the record's checks refuse left out); the client got a 500 with "
    "no detail. Each one is a request the guard did not check or record as designed: a bug, a "
    "detector or a record that hostile input breaks, or a custom authenticator or monitor "
    "handing the guard values it cannot record (EU AI Act Art. 12 record-keeping, Art. 15 "
    "robustness). A stream of them is an outage, and a request that can fail the guard on "
    "purpose is a way to deny its service (ATLAS AML.T0029).",
    remediation="Read the guard's log at the times named (it holds the exception); fix the "
    "failing step or the value it could not record, and report a guard bug with the log lines.",
)

RULES = (AUTH, ABUSE, CONTRACT, PERSONAL_DATA, INJECTION, OOD, UPSTREAM, OUTPUT, FAILURE)

_BY_DETECTOR = {
    "auth": AUTH,
    "ip_limit": ABUSE,
    "key_limit": ABUSE,
    "budget": ABUSE,
    "in_flight": ABUSE,
    "input": CONTRACT,
    "contract": CONTRACT,
    "sensitive": PERSONAL_DATA,
    "injection": INJECTION,
    "classifier": INJECTION,
    "ood": OOD,
    "model": UPSTREAM,
    "upstream": UPSTREAM,
    "output": OUTPUT,
    "pipeline": FAILURE,
    "audit": FAILURE,
}
_QUIET = frozenset({"allow", "record"})


def rule_for(detector: str, action: str) -> Rule | None:
    """The rule a pipeline decision is evidence of; None for allows and record-only decisions
    (and for detectors other modules own, such as the monitor)."""
    if action in _QUIET:
        return None
    if detector == "output" and action == "error":
        return UPSTREAM
    return _BY_DETECTOR.get(detector)
