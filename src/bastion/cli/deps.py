"""`bastion deps`."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_judging_options, existing
from .scan import finish, gate_overrides, settings_for


def configure_deps(parser: argparse.ArgumentParser) -> None:
    parser.description = f"""{parser.description}

FILES are requirement files (pins, ranges, -r includes) or lock files (pylock.toml,
poetry.lock, uv.lock); with none, the running Python environment is audited. Versions are
matched with PEP 440 semantics. bastion's bundled advisories for ML frameworks whose safe
loading was bypassed (torch weights_only, Keras safe_mode) are always checked."""
    parser.add_argument(
        "files",
        nargs="*",
        type=existing("file"),
        metavar="FILE",
        help="Requirement or lock files [default: the running environment].",
    )
    parser.add_argument(
        "--advisory-db",
        type=existing(),
        metavar="PATH",
        help="Offline OSV database: a folder or zip of OSV JSON records (osv.dev's PyPI export).",
    )
    parser.add_argument(
        "--online",
        action="store_true",
        help="Also ask pip-audit's vulnerability services (needs network and pip-audit).",
    )
    add_judging_options(parser)


def run_deps(args: argparse.Namespace) -> int:
    from bastion.supplychain.dependencies import run_deps as audit

    files: list[Path] = args.files
    settings = settings_for(files, args.policy, gate_overrides(args))
    report = audit(files, settings, args.advisory_db, args.online)
    return finish(report, settings, args)
