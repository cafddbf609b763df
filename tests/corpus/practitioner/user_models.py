"""Classes of "the user's own package": what a practitioner defines in their project and then
saves whole (torch.save(model), a Lightning module, a Keras custom layer)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(4, hidden),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.LayerNorm(hidden),
            nn.Linear(hidden, 2),
        )

    def forward(self, x: torch.Tensor) -> Any:
        return self.body(x)


class TinyConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.GELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.head = nn.Linear(4, 3)
        self.rnn = nn.LSTM(3, 3, batch_first=True)
        self.emb = nn.Embedding(10, 3)

    def forward(self, x: torch.Tensor) -> Any:
        return self.head(self.conv(x))


class FunctionalHead(nn.Module):
    """Activations kept as functions, the way many research repositories write them."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.act = nn.functional.silu
        self.norm = nn.functional.normalize

    def forward(self, x: torch.Tensor) -> Any:
        return self.norm(self.act(self.proj(x)))


def lightning_module(pl: Any) -> Any:
    """A LightningModule class of the user's project, built on `lightning.pytorch` or
    `pytorch_lightning` (both are used in the wild)."""

    class ClassifierModule(pl.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self, hidden: int, lr: float, labels: list[str]) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = TinyNet(hidden)

        def training_step(self, batch: Any, _index: int) -> Any:
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
            return {
                "optimizer": optimizer,
                "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1),
            }

    ClassifierModule.__qualname__ = ClassifierModule.__name__ = f"ClassifierModule_{pl.__name__}"
    return ClassifierModule
