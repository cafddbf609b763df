"""PyTorch checkpoints the ways people write them: state dicts, whole modules, training
checkpoints with optimizer/scheduler/AMP/RNG state, fairseq-style checkpoints with an
argparse.Namespace, quantized and weight-normed models, TorchScript, Lightning checkpoints."""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

from .registry import writes

T = ("torch",)


def _net() -> Any:
    import torch

    from .user_models import TinyNet

    torch.manual_seed(0)
    return TinyNet()


def _trained() -> tuple[Any, Any, Any, Any]:
    """One AMP-style training step: model, AdamW, a scheduler and a GradScaler."""
    import torch

    model = _net()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=10)
    scaler = torch.amp.GradScaler("cpu")
    loss = model(torch.randn(3, 4)).sum()
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return model, optimizer, scheduler, scaler


@writes("torch/state_dict.pt", "torch", "torch.save(model.state_dict())")
def _state_dict(path: Path) -> None:
    import torch

    torch.save(_net().state_dict(), path)


@writes(
    "torch/state_dict-legacy.bin",
    "torch",
    "torch.save(..., _use_new_zipfile_serialization=False): the pre-1.6 format",
)
def _legacy(path: Path) -> None:
    import torch

    torch.save(_net().state_dict(), path, _use_new_zipfile_serialization=False)


@writes("torch/whole-model.pt", "torch", "torch.save(model) of the user's own nn.Module class")
def _whole(path: Path) -> None:
    import torch

    from .user_models import TinyConvNet

    torch.save(TinyConvNet(), path)


@writes(
    "torch/training-checkpoint.pt",
    "torch",
    "epoch checkpoint: model, AdamW, OneCycleLR, GradScaler (AMP), RNG states, metrics",
)
def _training(path: Path) -> None:
    import numpy as np
    import torch

    model, optimizer, scheduler, scaler = _trained()
    torch.save(
        {
            "epoch": 3,
            "global_step": 120,
            "model_state_dict": model.state_dict(),
            "optimizer_state_dict": optimizer.state_dict(),
            "scheduler_state_dict": scheduler.state_dict(),
            "scaler_state_dict": scaler.state_dict(),
            "best_metric": 0.91,
            "torch_rng_state": torch.get_rng_state(),
            "numpy_rng_state": np.random.get_state(),
            "python_rng_state": random.getstate(),
            "history": {"loss": [0.9, 0.5], "lr": [1e-3, 5e-4]},
        },
        path,
    )


@writes(
    "torch/optimizers.pt",
    "torch",
    "state dicts of SGD(momentum), Adam, RMSprop, Adagrad, LBFGS and their schedulers",
)
def _optimizers(path: Path) -> None:
    import torch

    model = _net()
    params = list(model.parameters())
    optimizers = {
        "sgd": torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True),
        "adam": torch.optim.Adam(params, amsgrad=True),
        "rmsprop": torch.optim.RMSprop(params),
        "adagrad": torch.optim.Adagrad(params),
        "lbfgs": torch.optim.LBFGS(params),
    }
    model(torch.randn(2, 4)).sum().backward()
    for name, opt in optimizers.items():
        if name != "lbfgs":
            opt.step()
    sched = {
        "step": torch.optim.lr_scheduler.StepLR(optimizers["sgd"], 2),
        "cosine": torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizers["adam"], 5),
        "plateau": torch.optim.lr_scheduler.ReduceLROnPlateau(optimizers["rmsprop"]),
    }
    torch.save(
        {
            "optimizers": {k: v.state_dict() for k, v in optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in sched.items()},
        },
        path,
    )


@writes(
    "torch/fairseq-style.pt",
    "torch",
    "fairseq-style checkpoint: args as argparse.Namespace, model, optimizer history",
)
def _fairseq(path: Path) -> None:
    import torch

    args = argparse.Namespace(
        arch="transformer_tiny",
        lr=[0.0005],
        max_tokens=4096,
        optimizer="adam",
        adam_betas="(0.9, 0.98)",
        seed=1,
        fp16=True,
        data="/data/wmt",
        task="translation",
    )
    torch.save(
        {
            "args": args,
            "cfg": None,
            "model": _net().state_dict(),
            "optimizer_history": [
                {
                    "criterion_name": "LabelSmoothedCrossEntropyCriterion",
                    "optimizer_name": "FairseqAdam",
                    "num_updates": 10,
                }
            ],
            "extra_state": {
                "epoch": 2,
                "val_loss": 3.2,
                "train_iterator": {"epoch": 2, "iterations_in_epoch": 5},
            },
            "last_optimizer_state": None,
        },
        path,
    )


@writes(
    "torch/dtypes.pt",
    "torch",
    "tensors of every dtype, sparse and strided views, pathlib paths and an OrderedDict",
)
def _dtypes(path: Path) -> None:
    import collections
    import pathlib

    import torch

    dtypes = [
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
        torch.int8,
        torch.uint8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.bool,
        torch.complex64,
        torch.float8_e4m3fn,
    ]
    tensors = {str(d): torch.zeros(3, dtype=d) for d in dtypes}
    base = torch.arange(12.0).reshape(3, 4)
    torch.save(
        {
            "tensors": tensors,
            "view": base[:, 1],
            "transposed": base.t(),
            "sparse_coo": base.to_sparse(),
            "sparse_csr": base.to_sparse_csr(),
            "layers": collections.OrderedDict(a=torch.ones(2)),
            "data_dir": pathlib.PurePosixPath("/data/train"),
            "out_dir": pathlib.Path("runs/exp1"),
            "device": torch.device("cpu"),
            "dtype": torch.float16,
            "size": torch.Size([3, 4]),
        },
        path,
    )


@writes("torch/quantized.pt", "torch", "torch.save of a dynamically quantized (qint8) model")
def _quantized(path: Path) -> None:
    import torch
    from torch import nn

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    torch.save(
        {
            "state_dict": quantized.state_dict(),
            "qtensor": torch.quantize_per_tensor(torch.randn(4), 0.1, 0, torch.qint8),
        },
        path,
    )


@writes(
    "torch/weight-norm.pt",
    "torch",
    "torch.save of whole modules with weight_norm / spectral_norm (old hook API) and "
    "parametrizations",
)
def _weight_norm(path: Path) -> None:
    import torch
    from torch import nn
    from torch.nn.utils import parametrizations

    old = nn.utils.weight_norm(nn.Linear(4, 4))
    spectral = nn.utils.spectral_norm(nn.Linear(4, 4))
    new = parametrizations.weight_norm(nn.Conv1d(2, 2, 3))
    torch.save(
        {"old_hook": old, "spectral": spectral, "parametrized_state": new.state_dict()}, path
    )


@writes(
    "torch/pruned-functional.pt",
    "torch",
    "torch.save of whole modules: pruned with torch.nn.utils.prune, and one holding "
    "torch.nn.functional activations as attributes",
)
def _pruned(path: Path) -> None:
    import torch
    from torch import nn
    from torch.nn.utils import prune

    from .user_models import FunctionalHead

    pruned = nn.Linear(4, 4)
    prune.l1_unstructured(pruned, "weight", amount=0.5)
    prune.random_unstructured(pruned, "bias", amount=0.25)
    torch.save({"pruned": pruned, "head": FunctionalHead()}, path)


@writes(
    "torch/optimizer-object.pt",
    "torch",
    "torch.save of the optimizer and scheduler objects themselves (not their state dicts)",
)
def _optimizer_object(path: Path) -> None:
    import torch

    _, optimizer, scheduler, _ = _trained()
    torch.save({"optimizer": optimizer, "scheduler": scheduler}, path)


@writes(
    "torch/metadata.pt",
    "torch",
    "checkpoint metadata of standard-library types: Counter vocabulary, defaultdict(list) "
    "metrics, deque, datetime, Decimal, UUID, Fraction, sets, bytes",
)
def _metadata(path: Path) -> None:
    import collections
    import datetime as dt
    import decimal
    import fractions
    import uuid

    import torch

    metrics: collections.defaultdict[str, list[float]] = collections.defaultdict(list)
    metrics["loss"] += [0.9, 0.7]
    torch.save(
        {
            "vocab": collections.Counter(["the", "cat", "sat", "on", "the", "mat"]),
            "metrics": metrics,
            "recent": collections.deque([1, 2, 3], maxlen=5),
            "saved_at": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc),
            "day": dt.date(2024, 5, 1),
            "budget": dt.timedelta(hours=3),
            "threshold": decimal.Decimal("0.125"),
            "run_id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "ratio": fractions.Fraction(3, 4),
            "tags": {"baseline", "cpu"},
            "frozen": frozenset({1, 2}),
            "blob": b"\x00\x01",
            "buffer": bytearray(b"ab"),
            "z": 1 + 2j,
            "span": range(0, 10, 2),
            "cut": slice(1, 5),
            "weights": torch.ones(2),
        },
        path,
    )


@writes("torch/scripted.pt", "torch", "torch.jit.script(model).save()")
def _scripted(path: Path) -> None:
    import torch

    torch.jit.script(_net()).save(str(path))


@writes(
    "torch/protocol4.pt", "torch", "torch.save(..., pickle_protocol=4) of a training checkpoint"
)
def _proto4(path: Path) -> None:
    import torch

    model, optimizer, _, _ = _trained()
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path, pickle_protocol=4
    )


@writes("torch/weights-only.pt", "torch", "torch.save of tensors only (torch.load weights_only)")
def _plain(path: Path) -> None:
    import torch

    torch.save([torch.randn(2, 2), {"bias": torch.zeros(2)}, (1, 2.0, "x", None, True)], path)


@writes("torch/exported.pt2", "torch", "torch.export.save(torch.export.export(model, args))")
def _exported(path: Path) -> None:
    import torch

    program = torch.export.export(_net().eval(), (torch.randn(2, 4),))
    torch.export.save(program, path)


@writes(
    "torch/model.safetensors",
    "safetensors",
    "safetensors.torch.save_file with metadata",
    ("torch", "safetensors"),
)
def _safetensors(path: Path) -> None:
    from safetensors.torch import save_file

    save_file(_net().state_dict(), str(path), metadata={"format": "pt", "epoch": "3"})


@writes(
    "numpy/weights.safetensors",
    "safetensors",
    "safetensors.numpy.save_file",
    ("numpy", "safetensors"),
)
def _safetensors_np(path: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"w": np.ones((2, 3), dtype=np.float32), "ids": np.arange(4)}, str(path))


# ---- PyTorch Lightning ------------------------------------------------------------------------


def _fit_lightning(folder: Path, package: str) -> Any:
    import importlib
    import logging

    import torch

    pl = importlib.import_module(package)
    from .user_models import lightning_module

    logging.getLogger(package).setLevel(logging.ERROR)
    module = lightning_module(pl)(hidden=8, lr=0.01, labels=["no", "yes"])
    data = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,)))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    callbacks = [
        pl.callbacks.ModelCheckpoint(dirpath=folder, save_last=True),
        pl.callbacks.EarlyStopping("train_loss", patience=3),
    ]
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        default_root_dir=folder,
        precision="bf16-mixed",
    )
    trainer.fit(module, loader)
    return trainer


@writes(
    "lightning/checkpoints",
    "lightning",
    "ModelCheckpoint(save_last=True) + EarlyStopping of a LightningModule with "
    "save_hyperparameters(), bf16-mixed precision",
    ("lightning", "torch"),
)
def _lightning(path: Path) -> None:
    _fit_lightning(path, "lightning.pytorch")


@writes(
    "lightning/manual-save.ckpt",
    "pytorch_lightning",
    "trainer.save_checkpoint() from the pytorch_lightning package",
    ("pytorch_lightning",),
)
def _pl_manual(path: Path) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        _fit_lightning(Path(tmp), "pytorch_lightning").save_checkpoint(path)
