"""Practitioner corpus: benign files written by the real libraries the way people save models
(issue #7). Every file is produced at build time by the library's own writer — pickle, joblib,
torch.save, save_pretrained, model.save, skops.io.dump, skl2onnx, torch.onnx — from tiny models
built from code or config objects; nothing is downloaded and nothing is committed as a binary.

    from corpus.practitioner import build_in_subprocess
    corpus = build_in_subprocess(folder)   # corpus.entries, .unavailable, .failed

`build_in_subprocess` (also `python -m corpus.practitioner FOLDER`) writes in a fresh
interpreter: the libraries' global state (dill patches the pure-Python pickler that joblib
uses, Keras/Lightning/transformers configure themselves on import) never reaches the process
that scans, and the files do not depend on what that process imported before.

An entry is one artefact as a practitioner would ship it: a file, or a folder written by a
`save_pretrained`-style call. A builder whose library is not installed is listed in
`unavailable` with the reason, and one whose writer raised in `failed`: never silently dropped."""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path

from .registry import REGISTRY, Built, Entry, Spec

__all__ = ["Built", "Entry", "Spec", "build", "build_in_subprocess", "specs"]

# the modules that register builders, one per family of libraries
FAMILIES = (
    "arrays",
    "sklearn_models",
    "boosters",
    "torch_checkpoints",
    "hf_models",
    "keras_models",
    "exports",
    "templates",
)


def specs() -> list[Spec]:
    """Every registered builder (cheap: the libraries load only when a builder runs)."""
    import importlib

    for family in FAMILIES:
        importlib.import_module(f"{__name__}.{family}")
    return list(REGISTRY)


def build(root: Path, only: tuple[str, ...] = ()) -> Built:
    """Write every entry under `root` (or those whose name starts with one of `only`)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    root.mkdir(parents=True, exist_ok=True)
    built = Built(root)
    for spec in specs():
        if only and not spec.name.startswith(only):
            continue
        started = time.perf_counter()
        missing = spec.missing()
        if missing:
            built.unavailable[spec.name] = f"not installed: {', '.join(missing)}"
            continue
        target = root / spec.name
        if target.is_dir():  # writers such as Lightning's version names instead of replacing
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with warnings.catch_warnings():  # convergence and deprecation chatter of tiny fits
                warnings.simplefilter("ignore")
                spec.write(target)
        except Exception as exc:  # a library whose API moved: that entry fails, not the build
            built.failed[spec.name] = f"{type(exc).__name__}: {exc}"
            continue
        built.entries.append(
            Entry(spec.name, spec.library, spec.what, round(time.perf_counter() - started, 3))
        )
    return built


def build_in_subprocess(root: Path, only: tuple[str, ...] = ()) -> Built:
    """`build` in a fresh interpreter (see the module docstring); returns what it built."""
    import json
    import subprocess
    import sys

    manifest = root.with_name(root.name + "-manifest.json")
    tests = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tests), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    subprocess.run(
        [sys.executable, "-m", __name__, str(root), *only, "--manifest", str(manifest)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return Built.from_json(json.loads(manifest.read_text()))
