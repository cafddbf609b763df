"""`bastion code`."""

from __future__ import annotations

from pathlib import Path

import click

from .options import judging_options
from .scan import finish, judge, settings_for, with_progress


@click.command("code")
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@judging_options
def code_command(paths: tuple[Path, ...], fmt: str, output: Path | None, policy: Path | None,
                 fail_on: str | None, strict: bool | None, baseline: Path | None,
                 store: Path | None, no_store: bool, quiet: bool) -> None:
    """Check Python files and Jupyter notebooks for unsafe ML code.

    Flags torch.load without weights_only=True, pickle/joblib/dill/cloudpickle loads,
    np.load(allow_pickle=True), Keras safe_mode=False, trust_remote_code=True, unsafe
    yaml.load, eval/exec, downloads over plain http or without TLS verification, secrets in
    sources, cells and outputs, and personal data in notebook outputs — with file, cell, line
    and column. Nothing is imported or executed.
    """
    from bastion.supplychain.code import run_code_scan

    settings = settings_for(paths, policy, {"fail_on": fail_on, "strict": strict})
    report = with_progress(lambda update: run_code_scan(list(paths), settings, update), quiet)
    verdict = judge(report, settings, baseline)
    raise SystemExit(finish(report, verdict, fmt, output, store, no_store, quiet))
