"""`bastion ui`: serve the dashboard over the history store."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bastion.errors import MissingExtra, UsageError

from .options import existing


def configure_ui(parser: argparse.ArgumentParser) -> None:
    parser.description = f"""{parser.description}

A read-only dashboard over the history store: posture per model, inventory, runs and findings,
trends, lineage, the guard's decisions and the compliance matrix. Log in with an API key from
the guard's key store holding the audit:read (or admin) scope:

  bastion guard keys create --scope audit:read --note "dashboard: alice"
  bastion ui --store history.sqlite3 --keys-db guard-keys.sqlite3 --audit guard-audit

It listens on 127.0.0.1 unless told otherwise; on any other address put TLS in front (or pass
--tls-cert/--tls-key): session cookies are then marked Secure."""
    parser.add_argument("--host", default="127.0.0.1", help="Address to bind [127.0.0.1].")
    parser.add_argument("--port", type=int, default=8081, help="Port [8081].")
    parser.add_argument(
        "--store",
        type=existing("file"),
        metavar="FILE",
        default=os.environ.get("BASTION_STORE") or None,
        help="History database [env BASTION_STORE; default: user data dir].",
    )
    parser.add_argument(
        "--keys-db",
        type=Path,
        metavar="FILE",
        help="The guard's key store [the guard config's [auth] keys_db, else guard-keys.sqlite3].",
    )
    parser.add_argument(
        "--audit",
        type=existing(),
        metavar="PATH",
        help="The guard's audit log folder or file, for the guard page [the guard config's "
        "[audit] path, when it exists].",
    )
    parser.add_argument("--config", type=existing("file"), metavar="FILE", help="guard.toml.")
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="A Host header name to accept besides loopback's (the name users browse to).",
    )
    parser.add_argument("--tls-cert", type=existing("file"), metavar="FILE")
    parser.add_argument("--tls-key", type=existing("file"), metavar="FILE")
    parser.add_argument("--log-level", default="warning", help="uvicorn's log level.")


def run_ui(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port} is not a port")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    try:
        import uvicorn

        from bastion.guard.settings import load_guard_settings
        from bastion.ui.app import LOOPBACK_HOSTS, create_app
        from bastion.ui.sessions import GuardKeys
    except ImportError as exc:
        raise MissingExtra(exc.name or "starlette", "guard") from exc
    from bastion.store import default_path

    settings = load_guard_settings(args.config) if args.config else None
    keys = args.keys_db or (
        settings.resolve(settings.auth.keys_db) if settings else Path("guard-keys.sqlite3")
    )
    audit = args.audit
    if audit is None and settings is not None:
        candidate = settings.resolve(settings.audit.path)
        audit = candidate if candidate.exists() else None
    store = args.store or default_path()
    loopback = args.host in LOOPBACK_HOSTS
    app = create_app(
        Path(store),
        GuardKeys(Path(keys)),
        audit=audit,
        host=args.host,
        secure_cookies=not loopback or bool(args.tls_cert),
        allowed_hosts=tuple(args.allow_host),
    )
    if args.host in ("0.0.0.0", "::") and not args.allow_host:
        print(
            f"bastion: warning: listening on {args.host}: only requests for the loopback names "
            "are accepted until --allow-host names the host people browse to",
            file=sys.stderr,
        )
    if not loopback and not args.tls_cert:
        print(
            f"bastion: warning: listening on {args.host}, not loopback, without TLS: put TLS in "
            "front (session cookies are Secure and will not travel over plain HTTP)",
            file=sys.stderr,
        )
    scheme = "https" if args.tls_cert else "http"
    print(
        f"bastion ui on {scheme}://{args.host}:{args.port} (store: {store}; keys: {keys})",
        file=sys.stderr,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        server_header=False,
        date_header=False,
        ssl_certfile=str(args.tls_cert) if args.tls_cert else None,
        ssl_keyfile=str(args.tls_key) if args.tls_key else None,
    )
    return 0
