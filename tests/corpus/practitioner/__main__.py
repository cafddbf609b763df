"""python -m corpus.practitioner FOLDER [--manifest FILE] [PREFIX ...]: build the corpus."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import build

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("folder", type=Path)
parser.add_argument("--manifest", type=Path, help="write what was built here (JSON)")
parser.add_argument("only", nargs="*", help="build only entries whose name starts so")
args = parser.parse_args()
built = build(args.folder, tuple(args.only))
if args.manifest:
    args.manifest.write_text(json.dumps(built.to_json(), indent=1))
print(
    f"{len(built.entries)} entries, {len(built.all_files())} files; not built: "
    f"{built.unavailable or 'none'}; writer raised: {built.failed or 'none'}"
)
