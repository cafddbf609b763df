"""`bastion bom`."""

from __future__ import annotations

import argparse
import json

from .options import existing, output_file
from .output import say, write_report


def configure_bom(parser: argparse.ArgumentParser) -> None:
    parser.description = f"""{parser.description}

Models become machine-learning-model components with SHA-256 hashes, format, framework and a
model card (task, architecture, datasets, inputs/outputs, metrics and considerations from
bastion-model.toml when present); datasets become data components; requirement and lock files
give the software dependencies; bastion's findings on the models are listed as
vulnerabilities. The BOM is validated against the CycloneDX 1.6 schema before it is written."""
    parser.add_argument(
        "path", type=existing("folder"), metavar="FOLDER", help="The model project folder."
    )
    parser.add_argument(
        "--output",
        "-o",
        type=output_file,
        metavar="FILE",
        help="Write the BOM to FILE instead of stdout.",
    )
    parser.add_argument(
        "--environment",
        action="store_true",
        help="Also list the packages installed in the running Python environment.",
    )
    parser.add_argument(
        "--no-scan",
        action="store_true",
        help="Do not scan the models (no bastion findings as vulnerabilities).",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="No summary on stderr.")


def run_bom(args: argparse.Namespace) -> int:
    import warnings

    import bastion
    from bastion.supplychain.bom import build_bom

    findings = [] if args.no_scan else bastion.scan([args.path]).findings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        document = build_bom(args.path, findings=findings, environment=args.environment)
    write_report(json.dumps(document, indent=2) + "\n", args.output)
    if not args.quiet:
        kinds: dict[str, int] = {}
        for component in document.get("components", []):
            kinds[component["type"]] = kinds.get(component["type"], 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        say(
            f"bastion: CycloneDX 1.6 BOM with {summary}; "
            f"{len(document.get('vulnerabilities', []))} vulnerabilities"
            + (f"; written to {args.output}" if args.output else "")
        )
    return 0
