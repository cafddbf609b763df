"""Format names that more than one capability family uses: which identified formats are model
artifacts (the scanner identifies them; signing, the ML-BOM and the shipped-code checks act on
them)."""

from __future__ import annotations

# Formats that make a folder a model folder (where bytecode and native code have no business).
MODEL_FORMATS = frozenset(
    {
        "pickle",
        "zip",
        "tar",
        "npy",
        "safetensors",
        "onnx",
        "hdf5",
        "savedmodel",
        "gguf",
        "xgboost_json",
        "xgboost_ubj",
        "lightgbm_text",
        "gzip",
        "bz2",
        "xz",
        "zlib",
        "7z",
    }
)

# Files the code analysis reads (Python sources and Jupyter notebooks).
CODE_SUFFIXES = (".py", ".ipynb")
