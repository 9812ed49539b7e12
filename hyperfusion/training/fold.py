"""One-fold training with the paper's protocol (docs/models.md §1 Training / Protocol, §2).

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
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from hyperfusion import __version__
from hyperfusion.data.augment import AnatomyAugment, AugmentConfig
from hyperfusion.data.cohort import Cohort
from hyperfusion.data.datasets import CohortDataset
from hyperfusion.data.geometry import Geometry, ad_box
from hyperfusion.data.schema import CLASS_NAMES, schema_as_dicts
from hyperfusion.data.splits import fold_indices, make_partitions
from hyperfusion.data.tabular import TabularPreprocessor
from hyperfusion.data.volume_cache import VolumeCache
from hyperfusion.errors import DataError
from hyperfusion.models import ModelCard, build_model, measure_input_variance, model_class
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
    # the recipe (see RECIPES): learning-rate schedule, early stopping, augmentation, image-branch initialisation
    preset: str = "paper"
    schedule: str = "constant"  # "constant" (the paper) or "cosine" decay
    warmup_epochs: float = 0.0
    patience: int | None = None  # stop after this many epochs without a better validation score
    augment: dict | None = None  # AugmentConfig fields, or None for no augmentation
    init_image_from: str | None = (
        None  # a trained image_only model directory of the same fold (recorded only)
    )
    num_workers: int = 0
    accelerator: str = "cpu"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: Named recipes. "paper": the paper's settings, for paper-size runs (1 mm, init_features 16, 200+ epochs).
#: "cpu": what the CPU demo models (init_features 4, 2 mm) need to train their image branch at all, as measured
#: (README, "Training recipe"): the paper's head dropout 0.6 / 0.5 leaves a 64-wide pooled vector of a network of
#: init_features 4 almost nothing to pass on, and at a constant rate the image-only loss sat at ln 3 for ~27 of 30
#: epochs. Every field here is a TrainConfig field; explicit arguments override the preset's.
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {
        "epochs": 200,
        "lr": None,
        "weight_decay": None,
        "class_weights": "paper",
        "schedule": "constant",
        "warmup_epochs": 0.0,
        "patience": None,
        "augment": None,
        "model_overrides": {},
    },
    "cpu": {
        "epochs": 80,
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "class_weights": "balanced",
        "schedule": "cosine",
        "warmup_epochs": 3.0,
        "patience": 20,
        "augment": {},
        "model_overrides": {
            "init_features": 4,
            "block_dropout": [0.0, 0.05, 0.05, 0.1],
            "head_dropout": [0.2, 0.1],
            "shortcut_pool": True,
        },
    },
}


def recipe_config(preset: str, **explicit: Any) -> TrainConfig:
    """A TrainConfig from a named recipe, with ``explicit`` fields (not None) overriding the preset's.

    ``model_overrides`` merge: the preset's keys first, explicit keys win. Tabular-only models take none of the
    image network's overrides.
    """
    if preset not in RECIPES:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(RECIPES)}")
    fields = dict(RECIPES[preset])
    asked = dict(explicit.pop("model_overrides", None) or {})
    recipe = dict(fields.pop("model_overrides"))
    fields.update({k: v for k, v in explicit.items() if v is not None})
    task = fields.get("task", "ad")
    if task == "brain_age" or not model_class(fields.get("model", "hyperfusion"), task).reads_scan:
        recipe = {}  # the recipe's overrides are the AD ResNet's; the tabular MLP and brain-age CNN take none
    return TrainConfig(preset=preset, model_overrides={**recipe, **asked}, **fields)


class CollapseWarning(UserWarning):
    """A trained model's validation predictions are (nearly) one class or one value."""


#: A model has collapsed when one class takes more than this share of the validation predictions ...
COLLAPSE_MAJORITY = 0.9
#: ... or when its outputs barely vary across subjects: the mean over classes of the probabilities' standard
#: deviation (AD), or the predicted ages' standard deviation relative to the true ages' (brain age), below this.
COLLAPSE_SPREAD = 0.02
COLLAPSE_AGE_SPREAD = 0.1


def collapse_report(task: str, predicted: np.ndarray, target: np.ndarray | None = None) -> dict:
    """Whether predictions on held-out subjects collapsed, and why: {"collapsed", "reasons", figures}.

    ``predicted``: (N, C) probabilities for "ad", (N,) ages for "brain_age"; ``target`` (ages) sets the
    brain-age spread's scale (default: the predictions' own mean absolute value, i.e. a relative spread).
    """
    predicted = np.asarray(predicted, dtype=float)
    reasons = []
    if task == "ad":
        counts = np.bincount(predicted.argmax(axis=1), minlength=predicted.shape[1])
        majority = float(counts.max() / max(1, counts.sum()))
        spread = float(predicted.std(axis=0).mean())
        if majority > COLLAPSE_MAJORITY:
            reasons.append(f"{majority:.0%} of subjects predicted {CLASS_NAMES[int(counts.argmax())]}")
        if spread < COLLAPSE_SPREAD:
            reasons.append(f"probabilities nearly constant across subjects (mean s.d. {spread:.3f})")
        figures = {"majority_share": majority, "predicted_counts": counts.tolist(), "probability_sd": spread}
    else:
        scale = float(np.std(target)) if target is not None else float(np.mean(np.abs(predicted)))
        spread = float(np.std(predicted)) / max(scale, 1e-9)
        if spread < COLLAPSE_AGE_SPREAD:
            reasons.append(f"predicted ages nearly constant (s.d. {np.std(predicted):.2f} years)")
        figures = {"relative_sd": spread}
    return {"collapsed": bool(reasons), "reasons": reasons, **figures}


@dataclass
class TrainResult:
    network: torch.nn.Module
    card: ModelCard  # a draft: save_model adds the weights' sha256
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


def _trainer(
    config: TrainConfig,
    out_dir: Path,
    epochs: int,
    monitor: tuple[str, str] | None,
    quiet: bool,
    patience: int | None = None,
):
    callbacks: list = []
    checkpoint = None
    if monitor is not None:
        checkpoint = L.pytorch.callbacks.ModelCheckpoint(
            dirpath=out_dir / "checkpoints",
            monitor=monitor[0],
            mode=monitor[1],
            save_top_k=1,
            filename="best",
            enable_version_counter=False,
        )
        # Lightning's save_last only writes when the monitored score improves; resuming needs every epoch.
        latest = L.pytorch.callbacks.ModelCheckpoint(
            dirpath=out_dir / "checkpoints",
            monitor=None,
            save_top_k=1,
            filename="last",
            enable_version_counter=False,
        )
        callbacks += [checkpoint, latest]
        if patience:
            callbacks.append(
                L.pytorch.callbacks.EarlyStopping(monitor=monitor[0], mode=monitor[1], patience=patience)
            )
    loggers: list = [L.pytorch.loggers.CSVLogger(out_dir, name="logs")]
    try:  # TensorBoard when installed; CSV always
        import tensorboard  # noqa: F401

        loggers.append(L.pytorch.loggers.TensorBoardLogger(out_dir, name="tensorboard"))
    except ImportError:
        pass
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
        num_nodes=config.num_nodes,
        precision=config.precision,
        callbacks=callbacks,
        logger=loggers,
        default_root_dir=out_dir,
        enable_progress_bar=not quiet,
        enable_model_summary=not quiet,
        deterministic="warn",
        log_every_n_steps=1,
        num_sanity_val_steps=0,
    )
    return trainer, checkpoint


def _pretrain_embedding(network, config, train_ds, val_ds, out_dir: Path, quiet: bool) -> dict | None:
    """Train the tabular-only model on the fold's rows and copy its embedding into ``network``."""
    if not hasattr(network, "load_tabular_embedding") or config.pretrain_epochs <= 0:
        return None
    tabular = build_model("tabular_only", "ad", n_tabular=network.config.get("n_tabular", 16))
    module = FusionModule(
        tabular,
        "ad",
        lr=config.lr,
        weight_decay=config.weight_decay,
        class_weights=_class_weights(config, train_ds.targets.numpy()),
    )
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
        ds,
        batch_size=config.batch_size,
        shuffle=shuffle,
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
    )


def train_fold(
    cohort: Cohort,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    cache: VolumeCache | None = None,
    quiet: bool = False,
    init_image: Mapping[str, torch.Tensor] | None = None,
) -> TrainResult:
    """Train ``config.model`` on fold ``config.fold`` of ``cohort``; resumable in ``out_dir``.

    ``init_image``: the state dict of a trained image-only model of the same fold (``config.init_image_from``
    names it); the network's image branch (stem, blocks 1-4) starts from its tensors of the same name and shape.
    A run resumes from ``out_dir`` only with the configuration it started with (``out_dir/config.json``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_resume(config, out_dir)
    L.seed_everything(config.seed, workers=True, verbose=False)
    label_column = "DX" if config.task == "ad" else None
    partition = make_partitions(cohort.table, config.split_seed, label_column=label_column)
    train_idx, val_idx, test_idx = fold_indices(partition, config.fold)
    geometry = Geometry.from_dict(config.geometry)
    preprocessor = None
    if config.task == "ad":
        preprocessor = TabularPreprocessor(imputation=config.imputation).fit(cohort.table.iloc[train_idx])
    network = build_model(config.model, config.task, **_shape_overrides(config, geometry, preprocessor))
    tabular_only = not network.reads_scan
    common = {
        "task": config.task,
        "preprocessor": preprocessor,
        "geometry": geometry,
        "cache": cache,
        "tabular_only": tabular_only,
        "keep_in_memory": True,
    }
    train_ds = CohortDataset(cohort, train_idx, views="random", **common)
    augment = None
    if config.augment is not None and not tabular_only:
        augment = AnatomyAugment(AugmentConfig(**config.augment), seed=config.seed)
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

    init_record = None
    if init_image is not None:
        init_record = _init_image_branch(network, init_image, config)
    module = FusionModule(
        network,
        config.task,
        lr=config.lr,
        weight_decay=config.weight_decay,
        class_weights=_class_weights(config, train_ds.targets.numpy()),
        schedule=config.schedule,
        warmup_epochs=config.warmup_epochs,
        augment=augment,
    )
    trainer, ckpt = _trainer(config, out_dir, config.epochs, module.monitor, quiet, config.patience)
    trainer.fit(
        module,
        _loader(train_ds, config, shuffle=True),
        _loader(val_ds, config, shuffle=False),
        ckpt_path=str(last) if last.is_file() else None,
    )
    best_epoch = None
    if ckpt.best_model_path:
        saved = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True)
        module.load_state_dict(saved["state_dict"])
        best_epoch = int(saved.get("epoch", -1))
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
            "best_epoch": best_epoch,
            "stopped_early": bool(config.patience) and int(trainer.current_epoch) < config.epochs,
            "pretrain": pretrain,
            "init_image": init_record,
        },
        "data": {
            "source": cohort.source,
            "synthetic": cohort.is_synthetic,
            "path": str(cohort.path),
            "provenance": cohort.provenance,
            "label_column": cohort.label_column,
            "scan_check": cohort.scan_check,
            "warnings": cohort.scan_warnings(),
        },
        "split": split_membership(cohort, config, train_idx, val_idx, test_idx),
        "metrics": {"validation": {module.monitor[0]: best}},
        "code_version": __version__,
    }
    from hyperfusion.training.evaluate import Member, predict_subjects

    # the selected network's validation predictions: the collapse check, and brain age's bias correction
    predicted = predict_subjects(
        Member(network, {**card, "architecture": network.architecture}), cohort, val_idx, cache=cache
    )
    ages = cohort.table["AGE"].to_numpy(float)[val_idx] if config.task == "brain_age" else None
    card["collapse"] = collapse_report(config.task, predicted, ages)
    if card["collapse"]["collapsed"]:
        warnings.warn(
            f"{config.model} fold {config.fold}: validation predictions collapsed "
            f"({'; '.join(card['collapse']['reasons'])}); the model has not learned to tell subjects apart",
            CollapseWarning,
            stacklevel=2,
        )
    if config.task == "brain_age":
        from hyperfusion.training.metrics import fit_age_bias

        # the usual linear age-bias correction, fitted on this fold's validation subjects
        slope, intercept = fit_age_bias(cohort.table["AGE"].to_numpy(float)[val_idx], predicted)
        card["metrics"]["age_bias"] = {"slope": slope, "intercept": intercept, "fitted_on": "validation"}
    # --- out-of-distribution reference (issue 14; hyperfusion/training/ood.py) --------------------------------
    from hyperfusion.training.ood import ood_reference

    card["ood"] = ood_reference(network, train_ds, cohort.table.iloc[train_idx])
    # --- end of the out-of-distribution block ---------------------------------------------------------------
    json.dumps(card)  # fail here, not when saving, if something is not JSON-able
    draft = ModelCard.from_dict(
        {**card, "architecture": network.architecture}, source="the trained model's card"
    )
    return TrainResult(network=network, card=draft, best_score=best)


def _shape_overrides(config: TrainConfig, geometry: Geometry, preprocessor) -> dict:
    overrides = dict(config.model_overrides)
    if model_class(config.model, config.task).reads_scan:
        overrides.setdefault("input_shape", list(geometry.input_shape))
    if config.task == "ad" and preprocessor is not None:
        overrides.setdefault("n_tabular", preprocessor.n_outputs)
    return overrides


#: the AD ResNet's parts that read only the scan, copied by ``init_image`` (heads and fusion layers start fresh);
#: a network says its own with an ``image_branch`` attribute
IMAGE_BRANCH = ("stem.", "block1.", "block2.", "block3.", "block4.")


def _init_image_branch(
    network: torch.nn.Module, source: Mapping[str, torch.Tensor], config: TrainConfig
) -> dict:
    """Copy the image branch's tensors of matching name and shape from ``source``; what was copied, recorded."""
    if not network.reads_scan:
        raise DataError(f"{config.model} reads no scan: there is no image branch to initialise")
    own = network.state_dict()
    branch = tuple(f"{stage}." for stage in getattr(network, "image_branch", ())) or IMAGE_BRANCH
    copied = {
        k: v for k, v in source.items() if k.startswith(branch) and k in own and own[k].shape == v.shape
    }
    if not copied:
        raise DataError(
            f"--init-image-from {config.init_image_from}: no tensor of its image branch fits {config.model} "
            "(train it with the same architecture settings, e.g. init_features)"
        )
    network.load_state_dict(copied, strict=False)
    skipped = sorted(
        {
            k.split(".")[0] + "." + k.split(".")[1]
            for k in own
            if k.startswith(branch) and k not in copied and not k.endswith("num_batches_tracked")
        }
    )
    return {"from": config.init_image_from, "tensors": len(copied), "not_copied": skipped}


def _check_resume(config: TrainConfig, out_dir: Path) -> None:
    """Refuse to resume a run under another configuration; record the configuration of a new run."""
    record = out_dir / "config.json"
    current = json.loads(json.dumps(config.to_dict()))
    # where the run executes may change between sittings; what it learns may not
    volatile = {"num_workers", "accelerator", "devices", "strategy", "num_nodes"}
    if config.schedule == "constant" and config.warmup_epochs <= 0:
        volatile.add(
            "epochs"
        )  # at a constant rate, more epochs continue the same run; a schedule would change
    if (out_dir / "checkpoints" / "last.ckpt").is_file() and record.is_file():
        before = json.loads(record.read_text())
        changed = sorted(
            k
            for k in set(before) | set(current) - volatile
            if k not in volatile and before.get(k) != current.get(k)
        )
        if changed:
            raise DataError(
                f"{out_dir} holds a run with another configuration ({', '.join(changed)} differ); resuming would "
                "mix two runs. Use a new output folder, or delete that one to start again"
            )
    record.write_text(json.dumps(current, indent=1))


def cohort_id(cohort: Cohort) -> str:
    """Who the cohort's subjects are: :func:`hyperfusion.data.cohort.cohort_identity` (evaluation matches a
    model's stored partition to a cohort by it)."""
    from hyperfusion.data.cohort import cohort_identity

    return cohort_identity(cohort)


def split_membership(cohort: Cohort, config: TrainConfig, train_idx, val_idx, test_idx) -> dict:
    """The PTIDs of the fold's training, validation and test rows, stored in the model file so evaluation uses
    the partition the model was trained with (never one recomputed from a table that may have changed)."""
    import hashlib

    ptids = cohort.table["PTID"].astype(str).to_numpy()
    parts = {
        name: sorted(ptids[np.asarray(idx)].tolist())
        for name, idx in (("train", train_idx), ("validation", val_idx), ("test", test_idx))
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return {
        "seed": config.split_seed,
        "fold": config.fold,
        "label_column": cohort.label_column,
        "cohort_id": cohort_id(cohort),
        **parts,
        "sha256": digest,
    }
