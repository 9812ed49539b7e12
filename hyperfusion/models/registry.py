"""``build_model(name, task, **overrides)``: every network by name, from configs that are plain data.

A preset is a class and its keyword arguments (timm's ``create_model`` pattern). The built network carries
``name``, ``task`` and ``config`` (every keyword argument, JSON-able), and
``build_model(name, task, **model.config)`` rebuilds it: that is what a model card stores.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import Any

from hyperfusion.errors import HyperFusionError
from hyperfusion.models.ad import ADResNet, AttentionGMUNet, TabularMLP
from hyperfusion.models.brain_age import BRAIN_AGE_HYPER_LAYERS, BrainAgeNet
from hyperfusion.models.network import FusionNetwork

__all__ = ["ModelConfigError", "PRESETS", "Preset", "available_models", "build_model", "model_class"]


class ModelConfigError(HyperFusionError, ValueError):
    """An unknown model name or task, or overrides the model does not take."""


@dataclass(frozen=True)
class Preset:
    cls: type[FusionNetwork]
    defaults: dict[str, Any] = field(default_factory=dict)
    summary: str = ""


PRESETS: dict[str, dict[str, Preset]] = {
    "ad": {
        "hyperfusion": Preset(
            ADResNet,
            {"hyper_layers": ["block4.shortcut"]},
            "block 4's shortcut conv generated from the record (the paper's HyperFusion)",
        ),
        "image_only": Preset(ADResNet, {}, "the pre-activation ResNet alone"),
        "tabular_only": Preset(TabularMLP, {}, "MLP 16 -> 8 -> BN -> PReLU -> 3"),
        "concat": Preset(ADResNet, {"concat_tabular": True}, "record concatenated to the pooled features"),
        "film": Preset(ADResNet, {"block4_modulation": "film"}, "block 4 FiLM-modulated by the record"),
        "daft": Preset(ADResNet, {"block4_modulation": "daft"}, "block 4 DAFT-modulated by record + image"),
        "attention_gmu": Preset(AttentionGMUNet, {}, "Jiang et al.: EHR spatial attention + multi-head GMU"),
    },
    "brain_age": {
        "hyperfusion": Preset(
            BrainAgeNet,
            {"hyper_layers": list(BRAIN_AGE_HYPER_LAYERS)},
            "all four linear layers generated from sex",
        ),
        "image_only": Preset(BrainAgeNet, {}, "the CNN alone"),
        "concat": Preset(BrainAgeNet, {"concat_tabular": True}, "sex joins after the first linear layer"),
    },
}


def available_models(task: str | None = None) -> dict[str, list[str]]:
    """{task: [model names]} (one task if given)."""
    if task is not None:
        _check_task(task)
    tasks = [task] if task is not None else list(PRESETS)
    return {t: list(PRESETS[t]) for t in tasks}


def model_class(name: str, task: str = "ad") -> type[FusionNetwork]:
    """The class of model ``name``: its capabilities (``reads_scan``, ``reads_record``) without building it."""
    _check_task(task)
    if name not in PRESETS[task]:
        raise ModelConfigError(f"unknown model {name!r} for task {task!r}; available: {list(PRESETS[task])}")
    return PRESETS[task][name].cls


def build_model(name: str, task: str = "ad", **overrides: Any) -> FusionNetwork:
    """Create the network ``name`` of ``task`` ("ad" or "brain_age") with keyword overrides of its config.

    AD (``n_tabular`` 16, ``init_features`` 16, ``input_shape`` (64, 96, 64) per hemisphere, 3 classes):
    hyperfusion, image_only, tabular_only, concat, film, daft, attention_gmu. Brain age (``input_shape``
    (90, 120, 99), sex one-hot): hyperfusion, image_only, concat. The overrides a model takes are the keyword
    arguments of its class (:class:`~hyperfusion.models.ad.ADResNet`,
    :class:`~hyperfusion.models.ad.AttentionGMUNet`, :class:`~hyperfusion.models.ad.TabularMLP`,
    :class:`~hyperfusion.models.brain_age.BrainAgeNet`); e.g. ``hyper_layers`` chooses which layers are
    generated, for the paper's ablations.
    """
    model_class(name, task)
    preset = PRESETS[task][name]
    parameters = inspect.signature(preset.cls.__init__).parameters
    accepted = {k: p.default for k, p in parameters.items() if k != "self"}
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise ModelConfigError(
            f"model {name!r} ({task}) does not take {unknown}; it takes {sorted(accepted)}"
        )
    config = _jsonable({**accepted, **preset.defaults, **overrides})
    try:
        model = preset.cls(**config)
    except (TypeError, ValueError) as exc:
        raise ModelConfigError(f"cannot build model {name!r} ({task}) with {overrides}: {exc}") from exc
    model.name, model.task, model.config = name, task, config
    return model


def _check_task(task: str) -> None:
    if task not in PRESETS:
        raise ModelConfigError(f"unknown task {task!r}; tasks: {list(PRESETS)}")


def _jsonable(config: dict[str, Any]) -> dict[str, Any]:
    """Tuples become lists, so the config equals its JSON round trip; anything else non-JSON is refused."""
    try:
        return json.loads(json.dumps(config))
    except TypeError as exc:
        raise ModelConfigError(f"model config must be JSON-able (numbers, strings, lists): {exc}") from exc
