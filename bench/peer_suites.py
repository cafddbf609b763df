"""The peers' own test suites as a benchmark (issue #7): the samples of picklescan, ModelAudit,
model-transparency, fickling and modelscan, each labelled the way the peer's own test asserts
it (malicious / benign), scanned by bastion and by every peer tool.

    python bench/peer_suites.py --peers-dir PEERS      # writes bench/out/peer_suites.json

PEERS holds plain checkouts (see docs/benchmarks.md for the commits used):
    PEERS/picklescan            github.com/mmaitre314/picklescan
    PEERS/modelaudit            github.com/promptfoo/modelaudit
    PEERS/model-transparency    github.com/sigstore/model-transparency
    PEERS/fickling              github.com/trailofbits/fickling
    PEERS/modelscan             github.com/protectai/modelscan
Nothing is downloaded at run time. Published sample files are copied; samples that fickling's
and modelscan's tests build in code are rebuilt by bench/peer_harvest.py, which runs their
sample-building code (never a sample) in a separate process. A tool "catches" a sample when
its exit code is 1; other exits (errors, "could not decide") are counted apart, never as a
catch.

Labels are the peers' assertions, encoded per source below with the test that makes them.
Samples whose test asserts neither (only an error, or nothing) are listed as unlabelled and
left out of the figures."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from common import HERE, OUT, PEER_BIN, TOOLS, ensure_peers, timed

MALICIOUS, BENIGN = "malicious", "benign"


class Sample(NamedTuple):
    source: str
    path: Path  # in the checkout (a file, or a folder scanned as one target)
    label: str


# -- picklescan: tests/test_scanner.py asserts infected_files per file (compare_scan_results /
# assert_scan); every data2/ file goes through assert_scan (infected_files=1 unless given) or
# the npz/npy tests (object/int arrays: 0 infected); data/ files by name as the test lists them.
_PICKLESCAN_BENIGN = re.compile(
    r"^(benign0_v\d\.pkl|pytorch_model\.bin|new_pytorch_model\.bin|bad_pytorch\.pt|"
    r"not_a_pickle\.bin|int_arrays?(_compressed)?\.np[yz]|object_arrays?(_compressed)?\.np[yz])$"
)
_PICKLESCAN_MALICIOUS = re.compile(
    r"^(malicious.*|GHSA-.*|.*exploit.*|.*sploit.*|pytorch_magic_bypass\.pt|io_FileIO\.pkl|"
    r"logging_FileHandler\.pkl|types_CodeType\.pkl|urllib_request_urlopen\.pkl|"
    r"cloudpickle_codeinjection\.pkl|dns_exfiltration\.npy)$"
)


def picklescan(root: Path) -> Iterator[Sample | Path]:
    for folder in ("tests/data", "tests/data2"):
        for path in sorted((root / folder).iterdir()):
            if path.is_dir() or path.suffix == ".py":
                continue
            if _PICKLESCAN_BENIGN.match(path.name):
                yield Sample("picklescan", path, BENIGN)
            elif _PICKLESCAN_MALICIOUS.match(path.name):
                yield Sample("picklescan", path, MALICIOUS)
            else:  # broken_model.pkl (asserted only as a scan error), the password-protected zip
                yield path


# -- ModelAudit: tests/assets, whose names say what the tests assert (test_pickle_scanner,
# test_jinja2_*, test_safetensors_scanner, test_keras_h5_scanner, test_tf_savedmodel_scanner,
# test_zip_scanner ...): "safe"/"benign" assets must give no issue, exploit/attack/malicious ones
# at least one. The jinja2 assets are used by no test: they carry the label their generator
# (tests/assets/generators/generate_jinja2_test_assets.py) files them under. Edge cases,
# license scenarios, the "suspicious" assets and jinja2/tokenizer_config.json (a template
# reaching __subclasses__ that nothing labels) are unlabelled.
# The safetensors assets other than safe_model only carry suspicious metadata strings and no
# test asserts them: unlabelled.
_MA_MALICIOUS = re.compile(
    r"(^|/)(exploits?|malicious[^/]*|obfuscated)/|(^|/)(malicious|exploit|"
    r"evil|decode_exec|dill_func|nested_pickle_(base64|hex|multistage|raw)|"
    r"path_traversal|.*_attack)[^/]*$"
)
_MA_BENIGN = re.compile(
    r"(^|/)(benign|safe_[^/]*)/|(^|/)(safe|benign)[^/]*$|"
    r"/jinja2/yaml/model_config\.yaml$"
)


def modelaudit(root: Path) -> Iterator[Sample | Path]:
    assets = root / "tests" / "assets"
    for path in sorted(assets.rglob("*")):
        rel = path.relative_to(assets).as_posix()
        if path.is_dir() or path.suffix in (".py", ".md") or rel.startswith("generators/"):
            continue
        if rel.startswith("scenarios/") or "/edge_cases/" in rel:  # license/edge-case tests
            yield path
            continue
        if rel.startswith("samples/safetensors/") and "/safe_" not in rel:
            yield path
        elif _MA_MALICIOUS.search(rel):
            yield Sample("modelaudit", path, MALICIOUS)
        elif _MA_BENIGN.search(rel):
            yield Sample("modelaudit", path, BENIGN)
        else:
            yield path


# -- model-transparency: scripts/tests/test-verify-*.sh verify each v*/ folder (a model of
# plain files and its model.sig) and expect success: benign models, one target per folder.
def model_transparency(root: Path) -> Iterator[Sample | Path]:
    for folder in sorted((root / "scripts" / "tests").glob("v*")):
        if folder.is_dir():
            yield Sample("model-transparency", folder, BENIGN)


def harvested(source: str, python: Path) -> Callable[[Path], Iterator[Sample | Path]]:
    """Samples the peer's tests build in code: bench/peer_harvest.py rebuilds them (in a
    separate process, with `python`) and labels them by the tests' assertions."""

    def labeller(root: Path) -> Iterator[Sample | Path]:
        out = OUT / "peer-harvest" / source
        if out.exists():
            shutil.rmtree(out)
        subprocess.run(
            [str(python), str(HERE / "peer_harvest.py"), source, str(root), str(out)], check=True
        )
        labels = json.loads((out / "labels.json").read_text())
        for name, label in sorted(labels.items()):
            yield Sample(source, out / name, label) if label else out / name

    return labeller


SOURCES: dict[str, Callable[[Path], Iterator[Sample | Path]]] = {
    "picklescan": picklescan,
    "modelaudit": modelaudit,
    "model-transparency": model_transparency,
    "fickling": harvested("fickling", PEER_BIN / "python"),  # needs fickling itself
    "modelscan": harvested("modelscan", Path(sys.executable)),  # needs torch and dill
}
NOT_REBUILT = {
    "modelscan": "the Keras and TensorFlow fixtures (they need TensorFlow)",
    "fickling": "test files other than test/test_bypasses.py",
    "safetensors": "its tests build valid files with the library's writer and assert "
    "round trips and parse errors, not malicious/benign verdicts",
}


def relative(sample: Sample, peers: Path) -> str:
    for base in (peers / sample.source, OUT / "peer-harvest" / sample.source):
        if sample.path.is_relative_to(base):
            return sample.path.relative_to(base).as_posix()
    return sample.path.name


def collect(peers: Path, sources: list[str]) -> tuple[list[Sample], list[str]]:
    samples, unlabelled = [], []
    for name in sources:
        labeller = SOURCES[name]
        root = peers / name
        if not root.is_dir():
            sys.exit(f"missing checkout {root} (see docs/benchmarks.md, section 6)")
        for item in labeller(root):
            if isinstance(item, Sample):
                samples.append(item)
            else:
                unlabelled.append(f"{name}: {relative(Sample(name, item, ''), peers)}")
    return samples, unlabelled


def stage(samples: list[Sample], peers: Path, folder: Path) -> list[Path]:
    """Copies under bench/out, so no tool writes next to the checkouts."""
    if folder.exists():
        shutil.rmtree(folder)
    staged = []
    for sample in samples:
        target = folder / sample.source / relative(sample, peers)
        target.parent.mkdir(parents=True, exist_ok=True)
        if sample.path.is_dir():
            shutil.copytree(sample.path, target)
        else:
            shutil.copy2(sample.path, target)
        staged.append(target)
    return staged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers-dir", type=Path, required=True)
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--sources", default=",".join(SOURCES))
    parser.add_argument("--output", type=Path, default=OUT / "peer_suites.json")
    args = parser.parse_args(argv)
    tools = args.tools.split(",")
    if tools != ["bastion"]:
        ensure_peers()  # also precompiles bastion, as pip did for the peers
    peers = args.peers_dir.resolve()
    sources = args.sources.split(",")
    samples, unlabelled = collect(peers, sources)
    staged = stage(samples, peers, OUT / f"peer-samples-{'-'.join(tools)}")
    jobs = [(tool, i) for i in range(len(samples)) for tool in tools]

    def run(job: tuple[str, int]) -> dict[str, object]:
        tool, i = job
        result = timed([*TOOLS[tool], str(staged[i])], timeout=180)
        sample = samples[i]
        return {
            "tool": tool,
            "source": sample.source,
            "label": sample.label,
            "sample": relative(sample, peers),
            "exit_code": result.exit_code,
            "timed_out": result.timed_out,
        }

    with ThreadPoolExecutor(max_workers=2) as pool:
        rows = list(pool.map(run, jobs))
    if args.output.exists():  # keep an earlier run's rows for other tools or sources
        earlier = json.loads(args.output.read_text())
        rows = [
            r for r in earlier["rows"] if r["tool"] not in tools or r["source"] not in sources
        ] + rows
        unlabelled = [
            u for u in earlier["unlabelled"] if u.split(":")[0] not in sources
        ] + unlabelled
    tools = [t for t in TOOLS if any(r["tool"] == t for r in rows)]
    summary = summarise(rows, tools)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "rows": rows,
                "summary": summary,
                "unlabelled": unlabelled,
                "not_rebuilt": NOT_REBUILT,
            },
            indent=1,
        )
    )
    print_table(summary, tools)
    for tool in ("bastion",):
        missed = [
            f"{r['source']}: {r['sample']} (exit {r['exit_code']})"
            for r in rows
            if r["tool"] == tool and r["label"] == MALICIOUS and r["exit_code"] != 1
        ]
        flagged = [
            f"{r['source']}: {r['sample']}"
            for r in rows
            if r["tool"] == tool and r["label"] == BENIGN and r["exit_code"] == 1
        ]
        print(f"\n{tool} misses ({len(missed)}):", *missed, sep="\n  ")
        print(f"{tool} flags benign ({len(flagged)}):", *flagged, sep="\n  ")
    print(f"\nunlabelled, left out ({len(unlabelled)}):", *unlabelled, sep="\n  ")
    return 0


def summarise(rows: list[dict[str, object]], tools: list[str]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for source in sorted({str(r["source"]) for r in rows}):
        per: dict[str, object] = {}
        for tool in tools:
            mine = [r for r in rows if r["source"] == source and r["tool"] == tool]
            bad = [r for r in mine if r["label"] == MALICIOUS]
            good = [r for r in mine if r["label"] == BENIGN]
            per[tool] = {
                "caught": sum(r["exit_code"] == 1 for r in bad),
                "malicious": len(bad),
                "flagged": sum(r["exit_code"] == 1 for r in good),
                "benign": len(good),
                "other_exits": sum(r["exit_code"] not in (0, 1) for r in mine),
            }
        out[source] = per
    return out


def print_table(summary: dict[str, dict[str, object]], tools: list[str]) -> None:
    print("| source | " + " | ".join(tools) + " |")
    print("|---|" + "---|" * len(tools))
    for source, per in summary.items():
        cells = []
        for tool in tools:
            s = per[tool]
            assert isinstance(s, dict)
            cells.append(
                f"{s['caught']}/{s['malicious']} caught, {s['flagged']}/{s['benign']} "
                f"flagged, {s['other_exits']} other"
            )
        print(f"| {source} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
