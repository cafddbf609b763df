"""`bastion deps`."""

from __future__ import annotations

from pathlib import Path

import click

from .options import judging_options
from .scan import finish, judge, settings_for


@click.command("deps")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--advisory-db", type=click.Path(exists=True, path_type=Path),
              help="Offline OSV database: a folder or zip of OSV JSON records (osv.dev's PyPI "
                   "export).")
@click.option("--online", is_flag=True, help="Also ask pip-audit's vulnerability services "
              "(needs network and pip-audit).")
@judging_options
def deps_command(files: tuple[Path, ...], advisory_db: Path | None, online: bool, fmt: str,
                 output: Path | None, policy: Path | None, fail_on: str | None,
                 strict: bool | None, baseline: Path | None, store: Path | None,
                 no_store: bool, quiet: bool) -> None:
    """Audit dependencies for known vulnerabilities.

    FILES are requirement files (pins, ranges, -r includes) or lock files (pylock.toml,
    poetry.lock, uv.lock); with none, the running Python environment is audited. Versions are
    matched with PEP 440 semantics. bastion's bundled advisories for ML frameworks whose safe
    loading was bypassed (torch weights_only, Keras safe_mode) are always checked.
    """
    from bastion.supplychain.dependencies import run_deps

    settings = settings_for(files or (Path("."),), policy, {"fail_on": fail_on,
                                                             "strict": strict})
    report = run_deps(list(files), settings, advisory_db, online)
    verdict = judge(report, settings, baseline)
    raise SystemExit(finish(report, verdict, fmt, output, store, no_store, quiet))
