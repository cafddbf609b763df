"""`bastion bom`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .output import say, write_report


@click.command("bom")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the BOM to FILE instead of stdout.")
@click.option("--environment", is_flag=True,
              help="Also list the packages installed in the running Python environment.")
@click.option("--no-scan", is_flag=True,
              help="Do not scan the models (no bastion findings as vulnerabilities).")
@click.option("--quiet", "-q", is_flag=True, help="No summary on stderr.")
def bom_command(path: Path, output: Path | None, environment: bool, no_scan: bool,
                quiet: bool) -> None:
    """Write a CycloneDX 1.6 ML-BOM (JSON) for a model project.

    Models become machine-learning-model components with SHA-256 hashes, format, framework
    and a model card (task, architecture, datasets, inputs/outputs, metrics and
    considerations from bastion-model.toml when present); datasets become data components;
    requirement and lock files give the software dependencies; bastion's findings on the
    models are listed as vulnerabilities. The BOM is validated against the CycloneDX 1.6
    schema before it is written.
    """
    import warnings

    import bastion
    from bastion.supplychain.bom import build_bom

    findings = [] if no_scan else bastion.scan([path]).findings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        document = build_bom(path, findings=findings, environment=environment)
    write_report(json.dumps(document, indent=2) + "\n", output)
    if not quiet:
        kinds: dict[str, int] = {}
        for component in document.get("components", []):
            kinds[component["type"]] = kinds.get(component["type"], 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        say(f"bastion: CycloneDX 1.6 BOM with {summary}; "
            f"{len(document.get('vulnerabilities', []))} vulnerabilities"
            + (f"; written to {output}" if output else ""))
