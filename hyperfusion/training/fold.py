"""One-fold training with the paper's protocol (REFERENCE.md §1 Training / Protocol, §2).

``train_fold`` splits the cohort with the split seed (partition 4 = test, fold k validates on partition k), fits
the tabular preprocessing on the fold's training rows only, builds the network from the registry, and trains it
with Lightning: a progress bar, CSV logs (TensorBoard too when installed), fixed seeds, selection of the best
validation epoch, and resumption from ``OUT/checkpoints/last.ckpt``. For HyperFusion the tabular embedding is
first pre-trained as the tabular-only model on the same training rows and the hypernetwork heads get the
principled init with the input variance measured on those rows.

It returns the trained network (best epoch, eval mode) and the card entries that describe it; writing the model
directory is the inference layer's job (:func:`hyperfusion.inference.model_files.save_model`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from hyperfusion import __version__
from hyperfusion.data.cohort import Cohort
from hyperfusion.data.datasets import CohortDataset
from hyperfusion.data.geometry import Geometry, ad_box
from hyperfusion.data.schema import CLASS_NAMES, schema_as_dicts
from hyperfusion.data.splits import fold_indices, make_partitions
from hyperfusion.data.tabular import TabularPreprocessor
from hyperfusion.data.volume_cache import VolumeCache
from hyperfusion.models import build_model, measure_input_variance
from hyperfusion.training.module import PAPER_CLASS_WEIGHTS, FusionModule


@dataclass
class TrainConfig:
    """Everything that defines one training run; stored in the model card."""

    task: str = "ad"
    model: str = "hyperfusion"
    fold: int = 0
    split_seed: int = 0
    seed: int = 0
    epochs: int = 200
    batch_size: int = 32
    lr: float | None = None
    weight_decay: float | None = None
    class_weights: str = "paper"  # "paper" or "balanced" (computed from the training rows)
    imputation: str = "median"
    geometry: dict = field(default_factory=lambda: ad_box(2.0).to_dict())
    model_overrides: dict = field(default_factory=dict)
    pretrain_epochs: int = 100  # tabular-only pre-training of HyperFusion's embedding
    num_workers: int = 0
    accelerator: str = "cpu"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    network: torch.nn.Module
    card: dict[str, Any]
    best_score: float


def _class_weights(config: TrainConfig, targets: np.ndarray) -> list[float] | None:
    if config.task != "ad":
        return None
    if config.class_weights == "paper":
        return list(PAPER_CLASS_WEIGHTS)
    if config.class_weights == "balanced":
        counts = np.bincount(targets, minlength=len(CLASS_NAMES)).astype(float)
        return (len(targets) / (len(CLASS_NAMES) * np.maximum(counts, 1))).tolist()
    raise ValueError(f"class_weights must be 'paper' or 'balanced', not {config.class_weights!r}")


def _trainer(config: TrainConfig, out_dir: Path, epochs: int, monitor: tuple[str, str] | None, quiet: bool):
    callbacks = []
    checkpoint = None
    if monitor is not None:
        checkpoint = L.pytorch.callbacks.ModelCheckpoint(
            dirpath=out_dir / "checkpoints", monitor=monitor[0], mode=monitor[1], save_top_k=1,
            filename="best", enable_version_counter=False,
        )  # fmt: skip
        # Lightning's save_last only writes when the monitored score improves; resuming needs every epoch.
        latest = L.pytorch.callbacks.ModelCheckpoint(
            dirpath=out_dir / "checkpoints", monitor=None, save_top_k=1, filename="last",
            enable_version_counter=False,
        )  # fmt: skip
        callbacks += [checkpoint, latest]
    loggers: list = [L.pytorch.loggers.CSVLogger(out_dir, name="logs")]
    try:  # TensorBoard when installed; CSV always
        import tensorboard  # noqa: F401

        loggers.append(L.pytorch.loggers.TensorBoardLogger(out_dir, name="tensorboard"))
    except ImportError:
        pass
    trainer = L.Trainer(
        max_epochs=epochs, accelerator=config.accelerator, devices=config.devices, strategy=config.strategy,
        num_nodes=config.num_nodes, precision=config.precision, callbacks=callbacks, logger=loggers,
        default_root_dir=out_dir, enable_progress_bar=not quiet, enable_model_summary=not quiet,
        deterministic="warn", log_every_n_steps=1, num_sanity_val_steps=0,
    )  # fmt: skip
    return trainer, checkpoint


def _pretrain_embedding(network, config, train_ds, val_ds, out_dir: Path, quiet: bool) -> dict | None:
    """Train the tabular-only model on the fold's rows and copy its embedding into ``network``."""
    if not hasattr(network, "load_tabular_embedding") or config.pretrain_epochs <= 0:
        return None
    tabular = build_model("tabular_only", "ad", n_tabular=network.config.get("n_tabular", 16))
    module = FusionModule(
        tabular, "ad", lr=config.lr, weight_decay=config.weight_decay,
        class_weights=_class_weights(config, train_ds.targets.numpy()),
    )  # fmt: skip
    trainer, ckpt = _trainer(config, out_dir / "pretrain", config.pretrain_epochs, module.monitor, quiet)
    trainer.fit(module, _loader(train_ds, config, shuffle=True), _loader(val_ds, config, shuffle=False))
    if ckpt is not None and ckpt.best_model_path:
        state = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    network.load_tabular_embedding(tabular)
    score = float(ckpt.best_model_score) if ckpt is not None and ckpt.best_model_score is not None else None
    return {"epochs": config.pretrain_epochs, "val_balanced_accuracy": score}


def _loader(ds, config: TrainConfig, shuffle: bool) -> DataLoader:
    return DataLoader(
        ds, batch_size=config.batch_size, shuffle=shuffle, num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
    )  # fmt: skip


def train_fold(
    cohort: Cohort,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    cache: VolumeCache | None = None,
    quiet: bool = False,
) -> TrainResult:
    """Train ``config.model`` on fold ``config.fold`` of ``cohort``; resumable in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(config.seed, workers=True, verbose=False)
    label_column = "DX" if config.task == "ad" else None
    partition = make_partitions(cohort.table, config.split_seed, label_column=label_column)
    train_idx, val_idx, test_idx = fold_indices(partition, config.fold)
    geometry = Geometry.from_dict(config.geometry)
    preprocessor = None
    if config.task == "ad":
        preprocessor = TabularPreprocessor(imputation=config.imputation).fit(cohort.table.iloc[train_idx])
    network = build_model(config.model, config.task, **_shape_overrides(config, geometry, preprocessor))
    tabular_only = not network.uses_image
    common = {"task": config.task, "preprocessor": preprocessor, "geometry": geometry, "cache": cache,
              "tabular_only": tabular_only}  # fmt: skip
    train_ds = CohortDataset(cohort, train_idx, views="random", **common)
    val_ds = CohortDataset(cohort, val_idx, views="all", **common)

    pretrain = None
    last = out_dir / "checkpoints" / "last.ckpt"
    pretrain_record = out_dir / "pretrain" / "result.json"
    if last.is_file() and pretrain_record.is_file():
        # resuming: the checkpoint restores the whole network, pre-trained embedding included
        pretrain = json.loads(pretrain_record.read_text())
    elif any(True for _ in network.hyper_layers()):
        pretrain = _pretrain_embedding(network, config, train_ds, val_ds, out_dir, quiet)
        if pretrain is not None:
            pretrain_record.write_text(json.dumps(pretrain))
        # v of the principled init: measured on the preprocessed training rows, as the authors' code does
        network.init_hyper_heads(measure_input_variance(train_ds.tabular))

    module = FusionModule(
        network, config.task, lr=config.lr, weight_decay=config.weight_decay,
        class_weights=_class_weights(config, train_ds.targets.numpy()),
    )  # fmt: skip
    trainer, ckpt = _trainer(config, out_dir, config.epochs, module.monitor, quiet)
    trainer.fit(
        module,
        _loader(train_ds, config, shuffle=True),
        _loader(val_ds, config, shuffle=False),
        ckpt_path=str(last) if last.is_file() else None,
    )
    if ckpt.best_model_path:
        state = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    network = module.network.eval()
    best = float(ckpt.best_model_score) if ckpt.best_model_score is not None else float("nan")
    card = {
        "task": config.task,
        "class_names": list(CLASS_NAMES) if config.task == "ad" else None,
        "output": "class probabilities (softmax)" if config.task == "ad" else "predicted age, years",
        "geometry": geometry.to_dict(),
        "normalisation": {"method": "zscore_nonzero", "scope": "whole box before the hemisphere split"},
        "tabular": {
            "schema": schema_as_dicts(),
            "preprocessing": preprocessor.to_dict() if preprocessor is not None else None,
            "condition": "sex one-hot [Female, Male]" if config.task == "brain_age" else None,
        },
        "training": {
            **config.to_dict(),
            "train_subjects": len(train_idx),
            "val_subjects": len(val_idx),
            "test_subjects": len(test_idx),
            "epochs_run": int(trainer.current_epoch),
            "pretrain": pretrain,
        },
        "data": {
            "source": cohort.source,
            "synthetic": cohort.is_synthetic,
            "path": str(cohort.path),
            "provenance": cohort.provenance,
            "label_column": cohort.label_column,
        },
        "metrics": {"validation": {module.monitor[0]: best}},
        "code_version": __version__,
    }
    # --- partition membership, for the evaluation protocol (hyperfusion.training.protocol) ---------------------
    from hyperfusion.training.protocol import membership_record

    card["split"] = membership_record(cohort, config.split_seed, config.fold, train_idx, val_idx, test_idx)
    # --- end of the partition membership block ---------------------------------------------------------------
    if config.task == "brain_age":
        from hyperfusion.training.evaluate import Member, predict_subjects
        from hyperfusion.training.metrics import fit_age_bias

        # the usual linear age-bias correction, fitted on this fold's validation subjects
        predicted = predict_subjects(Member(network, {**card, "architecture": network.architecture}), cohort,
                                     val_idx, cache=cache)  # fmt: skip
        slope, intercept = fit_age_bias(cohort.table["AGE"].to_numpy(float)[val_idx], predicted)
        card["metrics"]["age_bias"] = {"slope": slope, "intercept": intercept, "fitted_on": "validation"}
    json.dumps(card)  # fail here, not when saving, if something is not JSON-able
    return TrainResult(network=network, card=card, best_score=best)


def _shape_overrides(config: TrainConfig, geometry: Geometry, preprocessor) -> dict:
    overrides = dict(config.model_overrides)
    if config.model != "tabular_only":
        overrides.setdefault("input_shape", list(geometry.input_shape))
    if config.task == "ad" and preprocessor is not None:
        overrides.setdefault("n_tabular", preprocessor.n_outputs)
    return overrides
