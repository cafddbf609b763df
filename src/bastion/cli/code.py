"""`bastion code`."""

from __future__ import annotations

import argparse

from .options import add_judging_options, existing
from .scan import finish, gate_overrides, settings_for, with_progress


def configure_code(parser: argparse.ArgumentParser) -> None:
    parser.description = f"""{parser.description}

Flags torch.load without weights_only=True, pickle/joblib/dill/cloudpickle loads,
np.load(allow_pickle=True), Keras safe_mode=False, trust_remote_code=True, unsafe yaml.load,
eval/exec, downloads over plain http or without TLS verification, secrets in sources, cells and
outputs, and personal data in notebook outputs — with file, cell, line and column. Nothing is
imported or executed."""
    parser.add_argument(
        "paths",
        nargs="+",
        type=existing(),
        metavar="PATH",
        help="Python files, notebooks or folders holding them.",
    )
    add_judging_options(parser)


def run_code(args: argparse.Namespace) -> int:
    from bastion.supplychain.code import run_code_scan

    settings = settings_for(args.paths, args.policy, gate_overrides(args))
    report = with_progress(lambda update: run_code_scan(args.paths, settings, update), args.quiet)
    return finish(report, settings, args)
