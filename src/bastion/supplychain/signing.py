"""`bastion sign` / `bastion verify`: OpenSSF model-signing signatures over a model or dataset
folder (or a single file), made and checked with the `model-signing` library. Verification
failures are explained: which files changed, went missing or appeared, or whether the key,
certificate or bundle is at fault."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.errors import BastionError, InputError, MissingExtra, UsageError
from bastion.findings import Confidence, Finding, Location, Severity, Stage
from bastion.records import Record
from bastion.rules import Rule

if TYPE_CHECKING:
    from bastion.config import Settings
    from bastion.findings import Report, TargetResult

SIGNATURE_NAME = "model.sig"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
SHARD_SIZE = 256 * 1024**2  # --shards: pieces of one file hashed in parallel
MAX_BUNDLE_BYTES = 64 * 1024 * 1024


def _library() -> Any:
    try:
        import model_signing
    except ImportError as exc:
        raise MissingExtra("model-signing", "signing") from exc
    return model_signing


def default_signature(model: Path) -> Path:
    return model / SIGNATURE_NAME if model.is_dir() else model.with_name(model.name + ".sig")


class _MappedFileHasher:
    """model-signing's file hasher, computed by `file_sha256` (memory-mapped, one thread per
    core at the machine's hashing limit). Produces exactly the digest model-signing's own file
    hasher produces."""

    def __init__(self, path: Path, digest_name: str) -> None:
        self._path = path
        self.digest_name = digest_name

    def compute(self) -> Any:
        from model_signing._hashing.hashing import Digest

        from bastion.supplychain.digests import file_sha256

        return Digest(self.digest_name, file_sha256(self._path))


def _hashing(
    model: Path,
    signature: Path,
    shards: bool = False,
    shard_size: int = SHARD_SIZE,
    ignored: Sequence[Path] = (),
) -> Any:
    """File-by-file hashing (what the model_signing CLI verifies by default) with memory-mapped
    files hashed one per core, or sharded hashing that splits single large files."""
    ms = _library()
    workers = os.cpu_count() or 1
    config = ms.hashing.Config()
    if shards:
        config = config.use_shard_serialization(shard_size=shard_size, max_workers=workers)
    else:
        config = config.use_file_serialization(max_workers=workers)
        serializer = getattr(config, "_serializer", None)
        factory = getattr(serializer, "_hasher_factory", None)
        if factory is not None:  # model-signing internals; fall back silently if they move
            name = factory(model).digest_name

            def mapped(path: Path) -> _MappedFileHasher:
                return _MappedFileHasher(path, name)

            serializer._hasher_factory = mapped  # type: ignore[union-attr]
    config.add_ignored_paths(model_path=model, paths=_relative(model, [signature, *ignored]))
    return config


def _hashing_as_signed(model: Path, signature: Path, statement: dict[str, Any]) -> Any:
    """The hashing a signature's statement says was used: file or shard serialization, shard
    size, and the paths it left out."""
    serialization = (statement.get("predicate") or {}).get("serialization") or {}
    shards = serialization.get("method") == "shards"
    return _hashing(
        model,
        signature,
        shards,
        int(serialization.get("shard_size", SHARD_SIZE)) if shards else SHARD_SIZE,
        [model / p for p in serialization.get("ignore_paths", []) or []],
    )


def _relative(model: Path, paths: Sequence[Path]) -> list[Path]:
    """model-signing wants ignored paths relative to the model folder."""
    if not model.is_dir():
        return []
    root = model.resolve()
    out = []
    for path in paths:
        try:
            out.append(path.resolve().relative_to(root))
        except ValueError:
            continue
    return out


class Credentials(Record):
    """What to sign or verify with: exactly one of key, certificate (+chain), sigstore."""

    key: Path | None = None
    certificate: Path | None = None
    chain: tuple[Path, ...] = ()
    sigstore: bool = False
    identity: str | None = None
    issuer: str | None = None

    def check(self, signing: bool) -> None:
        chosen = [
            self.key is not None,
            self.certificate is not None or (not signing and bool(self.chain)),
            self.sigstore,
        ]
        if sum(chosen) != 1:
            raise UsageError("give exactly one of --key, --certificate/--chain, --sigstore")
        if signing and self.certificate is not None and self.key is None:
            raise UsageError("certificate signing needs --key (the certificate's private key)")


def sign(
    model: Path, credentials: Credentials, signature: Path | None = None, shards: bool = False
) -> Path:
    if not model.exists():
        raise InputError(f"{model}: no such file or directory")
    certificate = credentials.certificate
    if credentials.sigstore and (credentials.key or certificate):
        raise UsageError("give exactly one of --key, --certificate (with --key), --sigstore")
    signature = signature or default_signature(model)
    if certificate is not None and credentials.key is None:
        raise UsageError("certificate signing needs --key (the certificate's private key)")
    if not (credentials.sigstore or credentials.key is not None):
        raise UsageError("give --key, --certificate with --key, or --sigstore")
    ms = _library()
    try:
        config = ms.signing.Config()
        if credentials.sigstore:
            config = config.use_sigstore_signer()
        elif certificate is not None:
            config = config.use_certificate_signer(
                private_key=credentials.key,
                signing_certificate=certificate,
                certificate_chain=list(credentials.chain),
            )
        else:
            config = config.use_elliptic_key_signer(private_key=credentials.key)
        config.set_hashing_config(_hashing(model, signature, shards)).sign(model, signature)
    except (ValueError, TypeError, OSError) as exc:
        raise InputError(
            f"signing failed: {exc}",
            hint="--key must be an EC private key in PEM format; a certificate "
            "needs its chain (--chain)",
        ) from exc
    return signature


class Outcome(Record):
    ok: bool
    kind: str  # verified | tampered | missing | extra | wrong-key | malformed | foreign
    detail: str
    files: tuple[str, ...] = ()


def _statement(signature: Path) -> dict[str, Any]:
    """The in-toto statement inside a model-signing bundle; raises ValueError if malformed."""
    size = signature.stat().st_size
    if size > MAX_BUNDLE_BYTES:
        raise ValueError(f"signature file is {size} bytes")
    bundle = json.loads(signature.read_bytes())
    if not isinstance(bundle, dict) or not isinstance(bundle.get("dsseEnvelope"), dict):
        raise LookupError("not a Sigstore bundle with a DSSE envelope")
    envelope = bundle["dsseEnvelope"]
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise LookupError(f"payload type {envelope.get('payloadType')!r}")
    statement = json.loads(base64.b64decode(envelope.get("payload", ""), validate=True))
    if not isinstance(statement, dict) or statement.get("predicateType") != PREDICATE_TYPE:
        raise LookupError(f"predicate type {statement.get('predicateType')!r}")
    return statement


def _resources(statement: dict[str, Any]) -> dict[str, str]:
    predicate = statement.get("predicate") or {}
    return {
        str(r.get("name")): str(r.get("digest"))
        for r in predicate.get("resources", [])
        if isinstance(r, dict)
    }


def _files_of(resources: dict[str, str]) -> dict[str, set[str]]:
    """file -> digests of its shards ('name:start:end') or of the file itself."""
    out: dict[str, set[str]] = {}
    for name, digest in resources.items():
        parts = name.rsplit(":", 2)
        path = parts[0] if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit() else name
        out.setdefault(path, set()).add(f"{name}={digest}")
    return out


class VerificationUnavailable(BastionError):
    """A signature could not be checked for a reason outside the signature and the files it
    covers: the network or Sigstore's TUF trust root, or a model file that cannot be read.
    Neither a wrong key nor tampering: the verdict is undecided (bastion.coverage)."""


# sigstore's errors about reaching or trusting its infrastructure, not about the signature
_SIGSTORE_UNAVAILABLE = {"NetworkError", "TUFError", "RootError", "MetadataError"}


def _unavailable(exc: BaseException, io: bool) -> bool:
    """Whether `exc` (or what caused it) is a network/TUF failure, or with `io` any OS-level
    error such as an unreadable file."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        module = type(current).__module__.split(".")[0]
        if module in ("tuf", "requests", "urllib3", "socket"):
            return True
        if module == "sigstore" and type(current).__name__ in _SIGSTORE_UNAVAILABLE:
            return True
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        if io and isinstance(current, OSError):
            return True
        current = current.__cause__ or current.__context__
    return False


def _diagnose(model: Path, signature: Path, statement: dict[str, Any]) -> Outcome:
    config = _hashing_as_signed(model, signature, statement)
    try:
        manifest = config.hash(model)
        actual = {str(d.identifier): d.digest.digest_hex for d in manifest.resource_descriptors()}
    except Exception as exc:  # symlinks, unreadable files...
        if _unavailable(exc, io=True):
            raise VerificationUnavailable(
                f"the model cannot be read to check its signature: {exc}"[:500]
            ) from exc
        return Outcome(
            ok=False, kind="tampered", detail=f"the model cannot be hashed as signed: {exc}"
        )
    expected = _files_of(_resources(statement))
    now = _files_of(actual)
    missing = sorted(set(expected) - set(now))
    extra = sorted(set(now) - set(expected))
    changed = sorted(f for f in set(expected) & set(now) if expected[f] != now[f])
    if changed:
        return Outcome(
            ok=False,
            kind="tampered",
            detail=f"content changed: {', '.join(changed[:10])}",
            files=tuple(changed),
        )
    if missing:
        return Outcome(
            ok=False,
            kind="missing",
            detail=f"signed files missing: {', '.join(missing[:10])}",
            files=tuple(missing),
        )
    if extra:
        return Outcome(
            ok=False,
            kind="extra",
            detail=f"files not covered by the signature: {', '.join(extra[:10])}",
            files=tuple(extra),
        )
    return Outcome(
        ok=False,
        kind="wrong-key",
        detail="the files match the signed manifest, but the signature "
        "does not verify with the given key, certificate or identity (or the "
        "envelope was altered)",
    )


def verify(model: Path, credentials: Credentials, signature: Path | None = None) -> Outcome:
    credentials.check(False)
    signature = signature or default_signature(model)
    if not model.exists():
        raise InputError(f"{model}: no such file or directory")
    if not signature.is_file():
        return Outcome(ok=False, kind="missing-signature", detail=f"no signature at {signature}")
    try:
        statement = _statement(signature)
    except LookupError as exc:
        return Outcome(ok=False, kind="foreign", detail=f"not a model-signing signature: {exc}")
    except (ValueError, OSError) as exc:
        return Outcome(ok=False, kind="malformed", detail=f"unreadable signature bundle: {exc}")
    ms = _library()
    if credentials.sigstore and not (credentials.identity and credentials.issuer):
        raise UsageError("--sigstore verification needs --identity and --issuer")
    try:
        config = ms.verifying.Config()
        if credentials.sigstore:
            config = config.use_sigstore_verifier(
                identity=credentials.identity, oidc_issuer=credentials.issuer
            )
        elif credentials.key is not None:
            config = config.use_elliptic_key_verifier(public_key=credentials.key)
        else:
            config = config.use_certificate_verifier(certificate_chain=list(credentials.chain))
    except Exception as exc:
        if _unavailable(exc, io=False):  # sigstore fetches its trust root here
            raise VerificationUnavailable(
                f"Sigstore's trust root cannot be fetched or trusted: {exc}"[:500],
                hint="retry when the network is reachable; the verdict is undecided until then",
            ) from exc
        if not isinstance(exc, (ValueError, TypeError, OSError)):
            raise
        raise InputError(
            f"cannot use the verification key or certificates: {exc}",
            hint="--key must be an EC public key in PEM format",
        ) from exc
    try:
        config.set_hashing_config(_hashing_as_signed(model, signature, statement)).verify(
            model, signature
        )
    except Exception as exc:  # model-signing raises ValueError and library-specific errors
        # changed, missing or extra files are tampering whatever else failed; files that match
        # with a signature that does not verify are a wrong key, unless verification itself
        # could not run (network, TUF, an unreadable file)
        outcome = _diagnose(model, signature, statement)
        if outcome.kind == "wrong-key":
            if _unavailable(exc, io=True):
                raise VerificationUnavailable(
                    f"the signature could not be checked: {exc}"[:500],
                    hint="retry when the network (Sigstore) is reachable and the files are "
                    "readable; the verdict is undecided until then",
                ) from exc
            return Outcome(ok=False, kind="wrong-key", detail=f"{outcome.detail}: {exc}"[:500])
        return outcome
    return Outcome(ok=True, kind="verified", detail="signature verified; every file matches")


# --- verification as a report ------------------------------------------------------------------

SIGNATURE_FAILED = Rule(
    id="SIG001",
    title="Signature verification failed",
    severity=Severity.CRITICAL,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-integrity",
    description="The model or dataset does not match its OpenSSF model-signing signature: a "
    "file changed, disappeared or appeared, or the signature was not made by a "
    "trusted key or identity. What gets deployed is not what was signed.",
    remediation="Do not deploy it. Restore the signed files, or re-sign after review with a "
    "trusted key.",
)

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (SIGNATURE_FAILED,)


def failure_finding(outcome: Outcome, path: str) -> Finding:
    """SIG001 for a failed verification, pointing at what failed (tampered, wrong-key ...)."""
    return SIGNATURE_FAILED.finding(
        Location(path=path, pointer=outcome.kind),
        f"{outcome.kind}: {outcome.detail}",
        evidence=",".join(outcome.files[:20]) or outcome.kind,
    )


def verification_report(
    model: Path, credentials: Credentials, signature: Path | None, settings: Settings
) -> Report:
    import time

    from bastion.findings import TargetResult
    from bastion.runs import build_report, start

    started = start()
    outcome = verify(model, credentials, signature)
    findings = () if outcome.ok else (failure_finding(outcome, str(model)),)
    result = TargetResult(
        path=str(model),
        format="signed-artifact",
        findings=findings,
        duration_ms=round((time.monotonic() - started.clock) * 1000, 1),
    )
    return build_report(
        [result],
        [str(model)],
        settings,
        started,
        "verify",
        {
            "signature": str(signature or default_signature(model)),
            "verification": {"ok": outcome.ok, "kind": outcome.kind},
            # who was trusted to have signed (lineage records the key's digest)
            "signer": {
                "key": str(credentials.key) if credentials.key is not None else None,
                "chain": [str(c) for c in credentials.chain],
                "identity": credentials.identity,
                "issuer": credentials.issuer,
            },
        },
    )


def signature_result(
    model: Path, signature: Path, display: str, settings: Settings
) -> TargetResult:
    """A signature found in a project, verified against the policy's trusted signers: clean
    when one verifies; SIG001 when the content changed or no trusted signer made it; a gap
    (bastion.coverage) when it could not be checked — no trusted signer in the policy
    (unsupported), model-signing not installed (missing-extra), network/TUF or unreadable
    files (verification-unavailable); a CheckError when the policy's own keys are unusable."""
    from bastion import coverage
    from bastion.findings import CheckError, Skip, TargetResult

    location = Location(path=display)

    def gap(code: str, reason: str, extra: str | None = None) -> TargetResult:
        return TargetResult(
            path=display,
            format="signature",
            skips=(Skip(location=location, code=code, reason=reason, extra=extra),),
            incomplete=code == coverage.VERIFICATION_UNAVAILABLE,  # the signature is unjudged
        )

    trusted = [Credentials(key=settings.resolve(k)) for k in settings.signing.public_keys]
    trusted += [
        Credentials(chain=(settings.resolve(c),)) for c in settings.signing.certificate_chains
    ]
    trusted += [
        Credentials(sigstore=True, identity=i.identity, issuer=i.issuer)
        for i in settings.signing.identities
    ]
    if not trusted:
        return gap(
            coverage.UNSUPPORTED,
            "signature present but no trusted key in the policy ([signing] public_keys); "
            "not verified",
        )
    outcomes = []
    for credentials in trusted:
        try:
            outcome = verify(model, credentials, signature)
        except MissingExtra as exc:
            return gap(
                coverage.MISSING_EXTRA,
                f"signature not verified: {exc.package} is not installed",
                exc.extra,
            )
        except VerificationUnavailable as exc:
            return gap(coverage.VERIFICATION_UNAVAILABLE, exc.message)
        except Exception as exc:  # a broken key file in the policy is an error, not a pass
            return TargetResult(
                path=display,
                format="signature",
                incomplete=True,
                errors=(
                    CheckError(
                        location=location, check="signature", message=f"cannot verify: {exc}"
                    ),
                ),
            )
        if outcome.ok:
            return TargetResult(path=display, format="signature")
        outcomes.append(outcome)
    worst = next((o for o in outcomes if o.kind != "wrong-key"), outcomes[0])
    return TargetResult(
        path=display, format="signature", findings=(failure_finding(worst, display),)
    )
