"""The Lightning module: loss, optimiser and validation metrics around a plain network.

The network stays a plain ``nn.Module`` (``forward(image, tabular)``); this module holds only the training
logic (Lightning's own split). Defaults follow docs/models.md: task ``ad`` — Adam lr 1e-4, weight decay 1e-5,
weighted cross-entropy with the class weights [CN 1.1, MCI 0.6962, AD 1.4], selection on validation balanced
accuracy; task ``brain_age`` — Adam lr 1.5e-4, weight decay 0.05, MSE, selection on validation MAE.

Validation batches may hold several views per subject (B, V, 1, D, H, W): the softmax outputs (or predicted
ages) of the views are averaged, as the paper averages both hemispheres at evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hyperfusion.models.network import subject_output
from hyperfusion.training.metrics import classification_metrics, regression_metrics

PAPER_CLASS_WEIGHTS: tuple[float, float, float] = (1.1, 0.6962, 1.4)
DEFAULTS = {
    "ad": {"lr": 1e-4, "weight_decay": 1e-5, "monitor": "val_balanced_accuracy", "mode": "max"},
    "brain_age": {"lr": 1.5e-4, "weight_decay": 0.05, "monitor": "val_mae", "mode": "min"},
}


def _image_or_none(image: torch.Tensor | None) -> torch.Tensor | None:
    return None if image is None or image.numel() == 0 else image


def predict_views(
    network: nn.Module, image: torch.Tensor | None, tabular: torch.Tensor, task: str
) -> torch.Tensor:
    """Class probabilities (B, C) for ``ad`` or predicted ages (B,) for ``brain_age``, views averaged.

    ``image`` is (B, 1, D, H, W), (B, V, 1, D, H, W) or empty / None (tabular-only networks).
    """
    image = _image_or_none(image)
    views = 1
    if image is not None and image.dim() == 6:
        b, views = image.shape[:2]
        image = image.reshape(b * views, *image.shape[2:])
        tabular = tabular.repeat_interleave(views, dim=0)
    out = subject_output(network(image, tabular), views, probabilities=task == "ad")
    return out if task == "ad" else out.reshape(-1)


class FusionModule(L.LightningModule):
    """Training logic for any network of the registry.

    Args:
        network: a plain module with ``forward(image, tabular)``.
        task: "ad" (logits over CN / MCI / AD) or "brain_age" (one output, years).
        lr, weight_decay: Adam settings; default per task (module docstring).
        class_weights: cross-entropy weights for task "ad"; default the paper's.
        schedule: "constant" (the paper) or "cosine": the learning rate decays from ``lr`` to
            ``min_lr_ratio · lr`` along a half cosine over the run's steps.
        warmup_epochs: the learning rate first rises linearly from ~0 to ``lr`` over this many epochs (either
            schedule); a fresh network's BatchNorm statistics and the generated weights settle before full steps.
    """

    def __init__(
        self,
        network: nn.Module,
        task: str = "ad",
        lr: float | None = None,
        weight_decay: float | None = None,
        class_weights: Sequence[float] | None = PAPER_CLASS_WEIGHTS,
        schedule: str = "constant",
        warmup_epochs: float = 0.0,
        min_lr_ratio: float = 0.01,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', not {schedule!r}")
        self.schedule = schedule
        self.warmup_epochs = float(warmup_epochs)
        self.min_lr_ratio = float(min_lr_ratio)
        self.augment = augment
        if task not in DEFAULTS:
            raise ValueError(f"task must be one of {sorted(DEFAULTS)}, not {task!r}")
        self.network = network
        self.task = task
        self.lr = DEFAULTS[task]["lr"] if lr is None else lr
        self.weight_decay = DEFAULTS[task]["weight_decay"] if weight_decay is None else weight_decay
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("class_weights", weights, persistent=False)
        self.save_hyperparameters(ignore=["network", "augment"])
        self._val_out: list[torch.Tensor] = []
        self._val_target: list[torch.Tensor] = []

    @property
    def monitor(self) -> tuple[str, str]:
        """(metric name, "max" or "min") used for model selection."""
        return DEFAULTS[self.task]["monitor"], DEFAULTS[self.task]["mode"]

    def forward(self, image: torch.Tensor | None, tabular: torch.Tensor) -> torch.Tensor:
        return self.network(_image_or_none(image), tabular)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.task == "ad":
            return F.cross_entropy(output, target, weight=self.class_weights)
        return F.mse_loss(output.reshape(-1), target.float())

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        image, tabular, target = batch
        image = _image_or_none(image)
        if self.augment is not None and image is not None:
            image = self.augment(image)
        loss = self.loss(self(image, tabular), target)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(target))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        image, tabular, target = batch
        self._val_out.append(predict_views(self.network, image, tabular, self.task).detach())
        self._val_target.append(target.detach())

    def on_validation_epoch_end(self) -> None:
        if not self._val_out:
            return
        out = self.all_gather(torch.cat(self._val_out))
        target = self.all_gather(torch.cat(self._val_target))
        self._val_out.clear()
        self._val_target.clear()
        out = out.reshape(-1, *out.shape[-1:]) if self.task == "ad" else out.reshape(-1)
        target = target.reshape(-1)
        out_np = out.float().cpu().numpy()
        target_np = target.cpu().numpy()
        if self.task == "ad":
            res = classification_metrics(target_np, out_np)
            for key in ("balanced_accuracy", "auc", "f1"):
                self.log(f"val_{key}", float(res[key]) if np.isfinite(res[key]) else 0.0, prog_bar=True)
        else:
            res = regression_metrics(target_np, out_np)
            self.log("val_mae", res["mae"], prog_bar=True)

    def lr_factor(self, step: int, total_steps: int, steps_per_epoch: int) -> float:
        """The learning rate at optimiser step ``step`` as a fraction of ``lr``."""
        warmup = max(0, round(self.warmup_epochs * steps_per_epoch))
        if step < warmup:
            return (step + 1) / warmup
        if self.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def configure_optimizers(self):
        optimiser = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if self.schedule == "constant" and self.warmup_epochs <= 0:
            return optimiser
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = max(1, total // max(1, int(self.trainer.max_epochs or 1)))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda step: self.lr_factor(step, total, per_epoch)
        )
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
