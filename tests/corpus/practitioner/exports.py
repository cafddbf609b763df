"""ONNX exports: skl2onnx of scikit-learn pipelines, torch.onnx.export of a torch module,
onnx.helper graphs as converters write them."""

from __future__ import annotations

from pathlib import Path

from .registry import writes


@writes(
    "onnx/sklearn-pipeline.onnx",
    "skl2onnx",
    "skl2onnx.to_onnx of scaler + logistic regression",
    ("skl2onnx", "sklearn"),
)
def _skl_linear(path: Path) -> None:
    from skl2onnx import to_onnx

    from .sklearn_models import _linear, _xy

    x, _ = _xy()
    path.write_bytes(to_onnx(_linear(), x[:1].astype("float32")).SerializeToString())


@writes(
    "onnx/sklearn-forest.onnx",
    "skl2onnx",
    "skl2onnx.to_onnx of a random forest (ai.onnx.ml TreeEnsemble ops)",
    ("skl2onnx", "sklearn"),
)
def _skl_forest(path: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    from .sklearn_models import _xy

    x, y = _xy()
    model = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(x, y)
    path.write_bytes(
        to_onnx(model, x[:1].astype("float32"), options={"zipmap": False}).SerializeToString()
    )


@writes(
    "onnx/sklearn-text.onnx",
    "skl2onnx",
    "skl2onnx.to_onnx of a TF-IDF + naive Bayes text pipeline (string input)",
    ("skl2onnx", "sklearn"),
)
def _skl_text(path: Path) -> None:
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    docs = np.array(["spam offer now", "meeting at noon", "cheap offer", "lunch meeting"])
    # lowercase=False: skl2onnx's lower-casing op needs the en_US locale installed to load
    pipe = make_pipeline(TfidfVectorizer(lowercase=False), LogisticRegression()).fit(
        docs, [1, 0, 1, 0]
    )
    path.write_bytes(to_onnx(pipe, docs[:1].reshape(-1, 1)).SerializeToString())


@writes(
    "onnx/torch-export.onnx",
    "torch",
    "torch.onnx.export(dynamo=False) of a torch module",
    ("torch", "onnx"),
)
def _torch_export(path: Path) -> None:
    import torch

    from .user_models import TinyNet

    torch.onnx.export(
        TinyNet().eval(),
        (torch.randn(1, 4),),
        str(path),
        dynamo=False,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}},
    )


@writes(
    "onnx/torch-export-cnn.onnx",
    "torch",
    "torch.onnx.export(dynamo=False) of a CNN with batch norm and pooling",
    ("torch", "onnx"),
)
def _torch_export_cnn(path: Path) -> None:
    import torch
    from torch import nn

    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    ).eval()
    torch.onnx.export(model, (torch.randn(1, 1, 8, 8),), str(path), dynamo=False, opset_version=17)
