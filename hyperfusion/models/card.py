"""The model card: everything a model directory says about its network besides the weights, typed.

On disk a card is ``card.json`` (written by :func:`hyperfusion.inference.save_model`); in code it is a frozen
:class:`ModelCard`, made once by :meth:`ModelCard.from_dict`, which checks the shape of every field it knows.
Code reads attributes (``card.task``, ``card.geometry``, ``card.split``), never raw keys. Fields a card may
carry that this version does not type (``output``, ``notes``, ``code_version``, ...) are kept in ``extra`` and
written back unchanged, so every card written so far loads and round-trips.

It lives in the models layer because training writes and evaluates cards as well as inference loading them;
:mod:`hyperfusion.inference` exports it with ``load_model`` / ``save_model``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hyperfusion.errors import ModelFileError

__all__ = ["Architecture", "ModelCard"]


@dataclass(frozen=True)
class Architecture:
    """What :func:`~hyperfusion.models.build_model` needs to rebuild the network."""

    name: str
    task: str
    config: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "task": self.task, "config": copy.deepcopy(dict(self.config))}


# top-level card keys holding a JSON object (None / {} when absent: see ModelCard's defaults)
_MAPPINGS = (
    "geometry",
    "normalisation",
    "tabular",
    "training",
    "data",
    "split",
    "metrics",
    "ood",
    "collapse",
)


@dataclass(frozen=True)
class ModelCard:
    """A model card, validated (see the module doc). Nested parts (``training``, ``split``, ...) are plain dicts
    as written; ``None`` for a missing optional part and ``{}`` for a missing always-present one."""

    architecture: Architecture
    weights_sha256: str | None = None  # None only on a draft card, before save_model writes the weights
    format_version: int | None = None
    hyperfusion_version: str | None = None
    class_names: tuple[str, ...] | None = None
    geometry: dict[str, Any] | None = None
    normalisation: dict[str, Any] | None = None
    tabular: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] | None = None  # partition membership (hyperfusion.training.fold.split_membership)
    metrics: dict[str, Any] = field(default_factory=dict)
    ood: dict[str, Any] | None = None  # hyperfusion.training.ood reference
    collapse: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # every other key, kept as written

    # --- reading -------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "card.json", owned: bool = False) -> ModelCard:
        """Check and type a card's JSON object; :class:`~hyperfusion.errors.ModelFileError` names ``source``
        and the field that is wrong. The card gets a deep copy of ``raw``'s values unless ``owned`` (``raw``
        was just parsed and nothing else holds it: the copy was most of the time of finding models)."""
        if not isinstance(raw, Mapping):
            raise ModelFileError(f"{source}: a model card must be a JSON object")
        raw = dict(raw) if owned else copy.deepcopy(dict(raw))
        arch = raw.pop("architecture", None)
        if not isinstance(arch, Mapping) or not {"name", "task", "config"} <= arch.keys():
            raise ModelFileError(f"{source} has no architecture {{name, task, config}} to rebuild from")
        if not isinstance(arch["name"], str) or not isinstance(arch["task"], str):
            raise ModelFileError(f"{source}: architecture name and task must be strings")
        if not isinstance(arch["config"], Mapping):
            raise ModelFileError(f"{source}: architecture config must be a JSON object")
        values: dict[str, Any] = {
            "architecture": Architecture(arch["name"], arch["task"], dict(arch["config"]))
        }
        sha = raw.pop("weights_sha256", None)
        if sha is not None and not isinstance(sha, str):
            raise ModelFileError(f"{source}: weights_sha256 must be a hex string")
        values["weights_sha256"] = sha
        for key in ("format_version", "hyperfusion_version"):
            values[key] = raw.pop(key, None)
        names = raw.pop("class_names", None)
        if names is not None:
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ModelFileError(f"{source}: class_names must be a list of strings")
            names = tuple(names)
        values["class_names"] = names
        for key in _MAPPINGS:
            value = raw.pop(key, None)
            if value is not None and not isinstance(value, Mapping):
                raise ModelFileError(f"{source}: {key} must be a JSON object, not {type(value).__name__}")
            default = cls.__dataclass_fields__[key].default
            values[key] = dict(value) if value is not None else (None if default is None else {})
        return cls(**values, extra=raw)

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-able data, in the layout of ``card.json`` (absent or null parts left out)."""
        out: dict[str, Any] = copy.deepcopy(dict(self.extra))
        if self.class_names is not None:
            out["class_names"] = list(self.class_names)
        for key in _MAPPINGS:
            value = getattr(self, key)
            if value is not None and (value or self.__dataclass_fields__[key].default is None):
                out[key] = copy.deepcopy(value)
        out["architecture"] = self.architecture.to_dict()
        for key in ("weights_sha256", "format_version", "hyperfusion_version"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def replace(self, **changes: Any) -> ModelCard:
        """A copy with some fields changed (the card itself is frozen)."""
        return dataclasses.replace(self, **changes)

    # --- what code asks of a card ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The architecture's registry name (``hyperfusion``, ``image_only``, ...)."""
        return self.architecture.name

    @property
    def task(self) -> str:
        return self.architecture.task

    @property
    def fold(self) -> int | None:
        return self.training.get("fold")

    @property
    def split_seed(self) -> int | None:
        return self.training.get("split_seed")

    @property
    def synthetic(self) -> bool:
        """Trained on a synthetic cohort."""
        return bool(self.data.get("synthetic", False))

    @property
    def preprocessing(self) -> dict[str, Any] | None:
        """The fitted tabular preprocessing (``TabularPreprocessor.to_dict``); None for models without one."""
        return self.tabular.get("preprocessing")

    @property
    def age_bias(self) -> dict[str, float] | None:
        """Brain age: the linear age-bias correction fitted on validation subjects."""
        return self.metrics.get("age_bias")

    @property
    def label_column(self) -> str | None:
        """The diagnosis column the labels were read from."""
        return (self.split or {}).get("label_column") or self.data.get("label_column")
