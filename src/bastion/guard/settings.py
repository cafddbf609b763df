"""guard.toml: the runtime guard's configuration, validated with bastion's record machinery
(`Checked` records: every key typed, unknown keys refused, errors naming the key path).

The defaults are the secure profile: loopback only, every route but /healthz behind a
credential, signatures required on served models, rate limits and budgets on, personal data and
out-of-contract rows blocked, a strict audit log (no answer without a durable event), scores
rounded and metrics visible on loopback only. Anything that weakens this is spelled
`unsafe_...` and recorded in the audit of every request it affects."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Literal

from bastion.errors import ConfigError
from bastion.records import Checked, RecordError, field

Action = Literal["record", "flag", "block"]
ScreenAction = Literal["record", "flag", "block", "redact"]
_PUBLIC_CHOICES = ("/healthz", "/readyz")
MAX_CONFIG_BYTES = 1024 * 1024
SCOPES = ("predict", "score", "admin", "audit:read")


def _positive(record: Any, *names: str) -> None:
    for name in names:
        value = getattr(record, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise RecordError(name, f"must be a positive number, not {value!r}")


class ServerSettings(Checked):
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1024 * 1024  # counted while the body streams in
    max_rows: int = 256  # rows in one predict/score request
    max_json_depth: int = 16  # nesting of a free-form JSON body (chat, proxy)
    max_json_items: int = 10_000  # values in one JSON body
    max_string_chars: int = 20_000  # characters of one string in a body
    request_timeout_s: float = 10.0  # a request's whole pipeline, the model call included
    # a team's app behind the middleware that outlives its timeout (it swallows the
    # cancellation) gets this long to end, then is abandoned: its request answered 504
    cancel_grace_s: float = 1.0
    # abandoned tasks of a team's app still running at once; past it the worker is not ready
    # and requests for that app are refused 503 (memory stays bounded)
    max_abandoned: int = 16
    # Linux: the served model's event loop asks for the shortest CPU slice and the model's
    # call yields once while its admission commits (guard/scheduling.py); off for a sandbox
    # whose system call filter kills a process on sched_setattr
    cpu_slice_hints: bool = True
    trusted_proxies: tuple[str, ...] = ()  # peers whose X-Forwarded-For names the client
    worker: str = "guard"  # this worker's name in the audit chain (one chain per worker)

    def _validate(self) -> None:
        _positive(
            self,
            "max_body_bytes",
            "max_rows",
            "max_json_depth",
            "max_json_items",
            "max_string_chars",
            "request_timeout_s",
            "cancel_grace_s",
            "max_abandoned",
        )
        # past these an app that ignores its cancellation holds places as it did before
        if self.cancel_grace_s > 60:
            raise RecordError("cancel_grace_s", "must be at most 60 seconds")
        if self.max_abandoned > 1024:
            raise RecordError("max_abandoned", "must be at most 1024")
        if not 0 <= self.port <= 65535:
            raise RecordError("port", "must be between 0 and 65535")


class JwtSettings(Checked):
    """OIDC/JWT bearer tokens: accepted only from the pinned issuer, for the pinned audience,
    signed with a pinned algorithm by a key of the configured JWKS file (no key discovery over
    the network: the JWKS is fetched by whoever deploys the guard)."""

    enabled: bool = False
    issuer: str = ""
    audience: str = ""
    algorithms: tuple[str, ...] = ("RS256",)
    jwks_file: str = ""
    scope_claim: str = "scope"  # space-separated string or list of scopes
    tenant_claim: str = "tenant"
    leeway_s: float = 30.0
    max_token_bytes: int = 8192

    def _validate(self) -> None:
        if not self.enabled:
            return
        for name in ("issuer", "audience", "jwks_file"):
            if not getattr(self, name):
                raise RecordError(name, "required when JWT authentication is enabled")
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"}
        if not self.algorithms or not set(self.algorithms) <= allowed:
            raise RecordError(
                "algorithms",
                f"asymmetric algorithms only ({', '.join(sorted(allowed))}); 'none' and shared "
                "secrets (HS*) are refused",
            )


class AuthSettings(Checked):
    keys_db: str = "guard-keys.sqlite3"
    public_paths: tuple[str, ...] = ("/healthz",)
    jwt: JwtSettings = field(default_factory=JwtSettings)

    def _validate(self) -> None:
        for path in self.public_paths:
            if path not in _PUBLIC_CHOICES:
                raise RecordError(
                    "public_paths",
                    f"{path!r} cannot be public: only {', '.join(_PUBLIC_CHOICES)} may be",
                )


class LimitSettings(Checked):
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "bastion:guard:"
    redis_timeout_s: float = 0.25  # a limiter that cannot answer refuses (503), never allows
    ip_rate: float = 50.0  # requests per second per client address, before authentication
    ip_burst: int = 100
    key_rate: float = 20.0  # requests per second per key
    key_burst: int = 40
    daily_rows: int = 100_000  # rows a key may send per UTC day (predict and score)
    max_in_flight: int = 64  # requests inside this worker at once; more get 503

    def _validate(self) -> None:
        _positive(
            self,
            "redis_timeout_s",
            "ip_rate",
            "ip_burst",
            "key_rate",
            "key_burst",
            "daily_rows",
            "max_in_flight",
        )


class ContractSettings(Checked):
    action: Action = "block"


class SensitiveSettings(Checked):
    action: ScreenAction = "block"
    max_chars: int = 10_000  # characters of one value examined; more is refused (block)

    def _validate(self) -> None:
        _positive(self, "max_chars")


class InjectionSettings(Checked):
    action: Action = "flag"
    classifier: bool = False  # run the ML classifier handed to create_app (off by default)
    classifier_budget_ms: float = 50.0  # its own latency budget; past it the verdict is "timeout"
    classifier_threshold: float = 0.5

    def _validate(self) -> None:
        _positive(self, "classifier_budget_ms")
        if not 0 < self.classifier_threshold < 1:
            raise RecordError("classifier_threshold", "must be between 0 and 1")


class OodSettings(Checked):
    action: Action = "flag"
    method: Literal["mahalanobis", "isolation-forest"] = "mahalanobis"
    profile: str = ""  # a saved OOD profile (bastion guard profile); else fitted at start
    quantile: float = 0.999  # threshold: this quantile of the training rows' scores
    threshold: float | None = None  # or a fixed score

    def _validate(self) -> None:
        if not 0.5 <= self.quantile < 1:
            raise RecordError("quantile", "must be in [0.5, 1)")
        if self.threshold is not None and not (
            math.isfinite(self.threshold) and self.threshold > 0
        ):
            raise RecordError("threshold", "must be a positive number")


class MonitorSettings(Checked):
    action: Action = "flag"
    block_seconds: float = 3600.0  # a key blocked by the monitor stays blocked this long
    options: dict[str, Any] = field(default_factory=dict)  # handed to guard.monitor's settings

    def _validate(self) -> None:
        _positive(self, "block_seconds")


class ScopeOutput(Checked):
    """What one scope's answers may carry."""

    scores: bool = False  # class probabilities at all
    digits: int = 2  # rounding of each probability
    top_k: int = 0  # the k most probable classes only; 0: every class

    def _validate(self) -> None:
        if not 0 <= self.digits <= 6:
            raise RecordError("digits", "must be between 0 and 6")
        if self.top_k < 0:
            raise RecordError("top_k", "must be 0 (all) or more")


def _default_outputs() -> dict[str, ScopeOutput]:
    return {"predict": ScopeOutput(scores=False), "score": ScopeOutput(scores=True, digits=2)}


class OutputSettings(Checked):
    scopes: dict[str, ScopeOutput] = field(default_factory=_default_outputs)
    max_response_bytes: int = 4 * 1024 * 1024
    screen_text: ScreenAction = "redact"  # personal data in chat answers (proxy, chat routes)

    def _validate(self) -> None:
        _positive(self, "max_response_bytes")
        for scope in self.scopes:
            if scope not in ("predict", "score"):
                raise RecordError("scopes", f"{scope!r}: outputs are set for predict and score")


class AuditSettings(Checked):
    path: str = "guard-audit"  # a folder: each worker writes audit-<worker>.sqlite3 in it
    strict: bool = True
    # how far an event is written before the answer (guard.audit; docs/guard.md): "fsync"
    # survives a power cut, "process" a killed guard only
    durability: Literal["fsync", "process"] = "fsync"
    signing_key: str = ""  # Ed25519 private key (PEM) for the checkpoints; "" = unsigned
    digest_key_file: str = ""  # a secret: input digests become HMACs (see audit.input_digest)


class MetricsSettings(Checked):
    access: Literal["loopback", "admin"] = "loopback"


class ProxySettings(Checked):
    upstream: str = ""
    flavour: Literal["rows", "mlflow", "chat", "json"] = "rows"
    timeout_s: float = 5.0  # the whole upstream exchange
    max_response_bytes: int = 4 * 1024 * 1024
    model_digest: str = ""  # what audit events name as the model; default: the upstream's URL
    chat_path: str = "/v1/chat/completions"
    predict_path: str = ""  # upstream path of predict/score; default: the same path

    def _validate(self) -> None:
        _positive(self, "timeout_s", "max_response_bytes")
        if self.upstream and not self.upstream.startswith(("http://", "https://")):
            raise RecordError("upstream", "must be an http:// or https:// URL")


class ModelSettings(Checked):
    target: str = ""  # the contract's label column, not a request field
    public_keys: tuple[str, ...] = ()  # EC public keys (PEM) a model signature must verify with
    unsafe_unsigned: bool = False  # serve a model without a verified signature


class GuardSettings(Checked):
    server: ServerSettings = field(default_factory=ServerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    contract: ContractSettings = field(default_factory=ContractSettings)
    sensitive: SensitiveSettings = field(default_factory=SensitiveSettings)
    injection: InjectionSettings = field(default_factory=InjectionSettings)
    ood: OodSettings = field(default_factory=OodSettings)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    proxy: ProxySettings = field(default_factory=ProxySettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    source: str | None = None  # the file these settings came from

    def resolve(self, relative: str) -> Path:
        """A path from guard.toml, relative to the file's folder."""
        path = Path(relative)
        if path.is_absolute() or not self.source:
            return path
        return Path(self.source).parent / path

    def unsafe(self) -> list[str]:
        """The protections these settings turn off (recorded with every event)."""
        found = []
        if self.model.unsafe_unsigned:
            found.append("unsafe_unsigned")
        if not self.audit.strict:
            found.append("audit_not_strict")
        if self.audit.durability != "fsync":
            found.append("audit_not_fsync")
        if self.server.host not in ("127.0.0.1", "::1", "localhost"):
            found.append("non_loopback")
        return found


def load_guard_settings(
    path: Path | None = None, overrides: dict[str, dict[str, Any]] | None = None
) -> GuardSettings:
    """guard.toml (or the defaults) with command-line overrides on top, validated; a mistake
    is a ConfigError naming the key."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path} is over {MAX_CONFIG_BYTES} bytes: not a guard.toml")
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        data["source"] = str(path)
    for table, values in (overrides or {}).items():
        merged = dict(data.get(table, {}))
        merged.update({k: v for k, v in values.items() if v is not None})
        data[table] = merged
    try:
        return GuardSettings.model_validate(data)
    except RecordError as exc:
        where = f" in {path}" if path else ""
        raise ConfigError(
            f"invalid guard settings{where}: {exc}", hint="see docs/guard.md for every key"
        ) from exc
