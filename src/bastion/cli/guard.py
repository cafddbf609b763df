"""`bastion guard`: serve a model or protect an endpoint behind the runtime guard; manage its
API keys; profile training data for its detectors."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from importlib import import_module
from pathlib import Path
from typing import Any

from bastion.errors import BastionError, MissingExtra, UnsafeArtifactError, UsageError

from .options import existing

SUBCOMMANDS = ("serve", "proxy", "keys", "profile", "report")
_REPORT_MODULE = "bastion.cli.guard_report"  # `bastion guard report` (the evidence side)


def configure_guard(parser: argparse.ArgumentParser) -> None:
    parser.description = f"""{parser.description}

  bastion guard serve MODEL --contract C --key PUB   serve a signed model behind the guard
  bastion guard proxy --upstream URL                  put the guard in front of a model server
  bastion guard keys create --scope predict           a new API key (the secret is shown once)
  bastion guard keys list | revoke ID | rotate ID     manage keys
  bastion guard profile DATA --contract C -o FILE     save the OOD profile of training data
  bastion guard report --since 24h                    runtime evidence as a bastion report

Configuration: guard.toml (docs/guard.md); the defaults are the secure profile (loopback,
every route but /healthz authenticated, signatures required, strict audit)."""
    commands = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    formatter = parser.formatter_class

    serve = commands.add_parser(
        "serve",
        help="Serve a model behind the guard.",
        description="Loads MODEL only through bastion's safe loader (one read; those bytes "
        "verified against the signature MODEL.sig with --key, scanned and judged by the policy, "
        "then loaded with the restricted loaders) and serves POST /v1/predict (scope predict) "
        "and POST /v1/score (scope score).",
        formatter_class=formatter,
    )
    serve.add_argument("model", type=existing("file"), metavar="MODEL", help="The model file.")
    serve.add_argument(
        "--contract",
        type=existing("file"),
        required=True,
        metavar="CONTRACT",
        help="The data contract (bastion data profile) every request row must meet.",
    )
    serve.add_argument("--target", metavar="COL", help="The contract's label column.")
    serve.add_argument(
        "--key",
        type=existing("file"),
        action="append",
        default=[],
        metavar="PUB",
        help="Public key the model's signature must verify with (repeatable).",
    )
    serve.add_argument(
        "--signature", type=existing("file"), metavar="SIG", help="Default: MODEL.sig."
    )
    serve.add_argument(
        "--training-data",
        type=existing("file"),
        metavar="DATA",
        help="Training data: fits the OOD detector and the query monitor at start.",
    )
    serve.add_argument(
        "--unsafe-unsigned",
        action="store_true",
        help="Serve a model without a verified signature (recorded in every audit event).",
    )
    serve.add_argument("--policy", type=existing("file"), metavar="FILE", help="Policy TOML.")
    _server_options(serve)

    proxy = commands.add_parser(
        "proxy",
        help="Protect an existing model server.",
        description="The same pipeline in front of an HTTP model server (MLflow, TorchServe, a "
        "FastAPI app, an OpenAI-style chat endpoint), treated as untrusted.",
        formatter_class=formatter,
    )
    proxy.add_argument("--upstream", required=True, metavar="URL", help="The model server.")
    proxy.add_argument(
        "--flavour",
        choices=("rows", "mlflow", "chat", "json"),
        help="How the upstream is spoken to (default: [proxy] flavour, rows).",
    )
    proxy.add_argument(
        "--contract", type=existing("file"), metavar="CONTRACT", help="Data contract of rows."
    )
    proxy.add_argument("--target", metavar="COL", help="The contract's label column.")
    proxy.add_argument(
        "--training-data", type=existing("file"), metavar="DATA", help="Fits the OOD detector."
    )
    _server_options(proxy)

    keys = commands.add_parser(
        "keys",
        help="Manage API keys.",
        description="API keys bst_<id>_<secret>.",
        formatter_class=formatter,
    )
    keys_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = keys_commands.add_parser("create", help="Create a key; the secret is shown once.")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=("predict", "score", "admin", "audit:read"),
        help="A scope the key grants (repeatable).",
    )
    create.add_argument("--tenant", help="The tenant the key belongs to.")
    create.add_argument("--expires", metavar="DATE", help="YYYY-MM-DD (00:00 UTC) or ISO time.")
    create.add_argument("--note", help="A note shown by `keys list`.")
    listing = keys_commands.add_parser("list", help="List keys (never their secrets).")
    listing.add_argument("--json", action="store_true", help="JSON Lines on stdout.")
    revoke = keys_commands.add_parser("revoke", help="Revoke a key.")
    revoke.add_argument("id", metavar="ID")
    rotate = keys_commands.add_parser(
        "rotate", help="A new key with the same scopes; the old one expires after --grace."
    )
    rotate.add_argument("id", metavar="ID")
    rotate.add_argument(
        "--grace", type=float, default=24.0, metavar="HOURS", help="Default: 24 hours."
    )
    for sub in (create, listing, revoke, rotate):
        _store_options(sub)

    profile = commands.add_parser(
        "profile",
        help="Save the OOD profile of training data.",
        description="Fits the Mahalanobis OOD detector on the training data and writes its "
        "profile ([ood] profile in guard.toml), so the guard needs no training data at start.",
        formatter_class=formatter,
    )
    profile.add_argument("data", type=existing("file"), metavar="DATA")
    profile.add_argument("--contract", type=existing("file"), required=True, metavar="CONTRACT")
    profile.add_argument("--target", metavar="COL")
    profile.add_argument("--output", "-o", type=Path, required=True, metavar="FILE")

    report = commands.add_parser(
        "report",
        help="Summarise runtime evidence as a bastion report.",
        add_help=False,
        prefix_chars="\0",
    )
    report.add_argument("rest", nargs=argparse.REMAINDER)


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=existing("file"), metavar="FILE", help="guard.toml.")
    parser.add_argument("--host", help="Address to bind (default 127.0.0.1).")
    parser.add_argument("--port", type=int, help="Port (default 8080).")
    parser.add_argument("--worker", help="This worker's name in the audit chain.")
    parser.add_argument("--log-level", default="warning", help="uvicorn's log level.")


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=existing("file"), metavar="FILE", help="guard.toml.")
    parser.add_argument("--keys-db", type=Path, metavar="FILE", help="Default: [auth] keys_db.")


def _settings(args: argparse.Namespace, **tables: dict[str, Any]) -> Any:
    from bastion.guard.settings import load_guard_settings

    overrides: dict[str, dict[str, Any]] = {
        "server": {
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
            "worker": getattr(args, "worker", None),
        }
    }
    for table, values in tables.items():
        overrides.setdefault(table, {}).update(values)
    if getattr(args, "keys_db", None) is not None:
        overrides["auth"] = {"keys_db": str(args.keys_db.resolve())}
    return load_guard_settings(args.config, overrides)


def run_guard(args: argparse.Namespace) -> int:
    try:
        if args.subcommand == "keys":
            return _keys(args)
        if args.subcommand == "profile":
            return _profile(args)
        if args.subcommand == "report":
            try:
                module = import_module(_REPORT_MODULE)
            except ImportError:
                raise UsageError("`bastion guard report` is not available in this build") from None
            return int(module.main(args.rest))
        if args.subcommand == "serve":
            return _serve(args)
        return _proxy(args)
    except ImportError as exc:
        raise MissingExtra(exc.name or "starlette", "guard") from exc


def _keys(args: argparse.Namespace) -> int:
    from bastion.guard.auth import KeyStore, parse_expiry

    settings = _settings(args)
    store = KeyStore(settings.resolve(settings.auth.keys_db))
    try:
        if args.keys_command == "create":
            expires = parse_expiry(args.expires) if args.expires else None
            full, info = store.create(args.scope, args.tenant, expires, args.note)
            print(full)
            print(
                f"created key {info.id} (scopes {', '.join(info.scopes)}"
                f"{', tenant ' + info.tenant if info.tenant else ''}"
                f"{', expires ' + info.expires_at if info.expires_at else ''}); "
                "the secret above is shown only now",
                file=sys.stderr,
            )
        elif args.keys_command == "list":
            for info in store.list():
                if args.json:
                    print(info.model_dump_json())
                else:
                    print(
                        f"{info.id}  {info.state():8}  {','.join(info.scopes):24}  "
                        f"{info.tenant or '-':16}  created {info.created_at}  "
                        f"expires {info.expires_at or 'never'}"
                    )
        elif args.keys_command == "revoke":
            info = store.revoke(args.id)
            print(f"revoked key {info.id} at {info.revoked_at}", file=sys.stderr)
        else:
            if not 0 <= args.grace <= 24 * 90:
                raise UsageError("--grace is between 0 and 2160 hours")
            full, info = store.rotate(args.id, dt.timedelta(hours=args.grace))
            print(full)
            print(
                f"key {info.id} replaces {args.id}, which expires in {args.grace:g} hours; "
                "the secret above is shown only now",
                file=sys.stderr,
            )
    finally:
        store.close()
    return 0


def _profile(args: argparse.Namespace) -> int:
    from bastion.datacheck.contract import load_contract
    from bastion.guard.ood import fit_profile, profile_summary, training_rows

    contract = load_contract(args.contract)
    rows = training_rows(args.data, contract, args.target or "")
    profile = fit_profile(contract, rows, args.target or "")
    profile.save(args.output)
    print(
        f"OOD profile of {len(rows)} rows written to {args.output}: {profile_summary(profile)}",
        file=sys.stderr,
    )
    return 0


def _training(args: argparse.Namespace, contract: Any, target: str) -> Any:
    if not getattr(args, "training_data", None):
        return None
    from bastion.guard.ood import training_rows

    return training_rows(args.training_data, contract, target)


def _serve(args: argparse.Namespace) -> int:
    from bastion.config import load_settings
    from bastion.datacheck.contract import load_contract
    from bastion.guard.app import create_app
    from bastion.guard.features import feature_columns
    from bastion.guard.model import load_served_model

    model_table: dict[str, Any] = {}
    if args.target:
        model_table["target"] = args.target
    if args.unsafe_unsigned:
        model_table["unsafe_unsigned"] = True
    settings = _settings(args, model=model_table)
    contract = load_contract(args.contract)
    target = settings.model.target
    if target and target not in contract.columns:
        raise UsageError(f"--target {target!r} is not a column of the contract")
    keys = [Path(k) for k in args.key] + [settings.resolve(k) for k in settings.model.public_keys]
    policy = load_settings(args.policy) if args.policy else None
    try:
        model = load_served_model(
            args.model,
            feature_columns(contract, target),
            public_keys=keys,
            signature=args.signature,
            unsafe_unsigned=settings.model.unsafe_unsigned,
            settings=policy,
        )
    except UnsafeArtifactError as exc:
        print(f"bastion: refusing to serve {args.model}", file=sys.stderr)
        for finding in exc.report.findings[:20]:
            print(
                f"  {finding.rule_id} {finding.severity.value}: {finding.message}"[:300],
                file=sys.stderr,
            )
        print(f"bastion: error: {exc.message}", file=sys.stderr)
        return 1
    app = create_app(
        settings, model=model, contract=contract, training=_training(args, contract, target)
    )
    return _run_server(app, settings, args.log_level)


def _proxy(args: argparse.Namespace) -> int:
    from bastion.datacheck.contract import load_contract
    from bastion.guard.app import create_app

    proxy_table: dict[str, Any] = {"upstream": args.upstream}
    if args.flavour:
        proxy_table["flavour"] = args.flavour
    model_table = {"target": args.target} if args.target else {}
    settings = _settings(args, proxy=proxy_table, model=model_table)
    contract = load_contract(args.contract) if args.contract else None
    if settings.proxy.flavour in ("rows", "mlflow") and contract is None:
        raise UsageError(
            "a tabular upstream needs --contract: rows are checked against it",
            hint="for a chat or free-form JSON upstream use --flavour chat or json",
        )
    training = _training(args, contract, settings.model.target) if contract else None
    app = create_app(settings, contract=contract, training=training)
    return _run_server(app, settings, args.log_level)


def _run_server(app: Any, settings: Any, log_level: str) -> int:
    import uvicorn

    server = settings.server
    if "non_loopback" in settings.unsafe():
        print(
            f"bastion: warning: listening on {server.host}, not loopback: put TLS in front",
            file=sys.stderr,
        )
    print(
        f"bastion guard listening on http://{server.host}:{server.port} "
        f"(audit: {settings.resolve(settings.audit.path)})",
        file=sys.stderr,
    )
    try:
        uvicorn.run(
            app,
            host=server.host,
            port=server.port,
            log_level=log_level,
            lifespan="on",
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=10,
            limit_concurrency=None,
        )
    except BastionError:
        raise
    return 0
