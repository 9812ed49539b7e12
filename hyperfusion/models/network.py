"""What every task network shares: the image / record split, the hyper-head init, parameter counts.

docs/architecture.md (Models): every network answers

    forward(image, tabular) -> logits        # image (B, 1, D, H, W), tabular (B, F), both float32
    encode_image(image) -> features          # tuple of (B, ...) tensors; depends on the image only
    decode(features, tabular) -> logits      # forward == decode(encode_image(image), tabular)

A :class:`StagedNetwork` is a named sequence of stages. ``encode_image`` runs every stage up to the first one
that reads the record, and that stage's own ``encode`` (so HyperFusion-AD's block-4 main branch is cached with
the image); ``decode`` runs the rest. ``forward`` *is* ``decode(encode_image(image), tabular)``, so the two can
never disagree. Features are a tuple of batch-first tensors: concatenate cached ones along dim 0 with
:func:`concat_features`.

A split stage's ``encode`` / ``decode`` are methods, so forward hooks fire on the modules they call (convs,
BatchNorms, activations, each block's ``add``), not on the split stage itself: hook ``gradcam_layer`` for
LayerGradCam. A network states what it can do as class capabilities: ``task``, ``reads_scan``,
``reads_record`` and ``generated_layers`` (the layers whose weights a hypernetwork makes from the record);
code asks these, never the model's name. Attribute only the inputs a network reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from hyperfusion.errors import DataError
from hyperfusion.models.hyper import HyperLayer

__all__ = [
    "FusionNetwork",
    "ImageFeatures",
    "StagedNetwork",
    "concat_features",
    "select_features",
    "state_dict_mismatches",
]

ImageFeatures = tuple[Tensor, ...]


def concat_features(parts: Sequence[ImageFeatures]) -> ImageFeatures:
    """Join cached feature tuples of several images along the batch dimension."""
    if not parts:
        raise ValueError("no features to join")
    return tuple(torch.cat(tensors, dim=0) for tensors in zip(*parts))


def select_features(features: ImageFeatures, index: Tensor | slice | int) -> ImageFeatures:
    """The features of some samples of a batch (``index`` as for tensor indexing along dim 0)."""
    if isinstance(index, int):
        index = slice(index, index + 1)
    return tuple(t[index] for t in features)


def subject_output(rows: Tensor, views: int, *, probabilities: bool = False, softmax=None) -> Tensor:
    """Each subject's output from its views' rows: the one rule for the two hemisphere views.

    ``rows`` (N * V, C) or (N * V,) subject-major (subject n, view v at row n * V + v) -> (N, C), or (N, 1)
    for one output. With ``probabilities`` each view's logits become class probabilities first (``softmax``: a
    module to use, e.g. one DeepLift can hook; default ``Tensor.softmax``): probabilities are averaged, never
    logits, as in the paper's evaluation.
    """
    if probabilities:
        rows = softmax(rows) if softmax is not None else rows.softmax(dim=-1)
    return rows.reshape(-1, views, rows.shape[-1] if rows.dim() > 1 else 1).mean(dim=1)


def decode_records(network: FusionNetwork, features: ImageFeatures, tabular: Tensor) -> tuple[Tensor, int]:
    """Decode R records against the cached image features of one scan's V views.

    Returns (rows (R * V, ...) record-major, V); a network that reads no scan decodes the records alone (V = 1).
    Pass the rows to :func:`subject_output`.
    """
    if not network.reads_scan:
        return network.decode((), tabular), 1
    views = features[0].shape[0]
    index = torch.arange(views, device=features[0].device).repeat(
        tabular.shape[0]
    )  # record r, view v -> r * V + v
    return network.decode(select_features(features, index), tabular.repeat_interleave(views, 0)), views


def state_dict_mismatches(model: nn.Module, tensors: Mapping[str, Tensor], limit: int = 8) -> str:
    """How ``tensors`` fail to fit ``model.state_dict()`` (missing, unexpected, wrong shape); "" if they fit."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    problems = [f"missing {k}" for k in sorted(expected.keys() - found.keys())]
    problems += [f"unexpected {k}" for k in sorted(found.keys() - expected.keys())]
    problems += [
        f"{k} has shape {found[k]}, the network {expected[k]}"
        for k in sorted(expected.keys() & found.keys())
        if found[k] != expected[k]
    ]
    more = f"; and {len(problems) - limit} more" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more


class FusionNetwork(nn.Module):
    """Base of every task network (see the module doc). :func:`~hyperfusion.models.build_model` sets
    ``name``, ``task`` and ``config`` (the JSON-able keyword arguments that rebuild it).

    Capabilities: ``task`` ("ad" or "brain_age"), ``reads_scan`` and ``reads_record`` (whether the output
    depends on the scan / the record at all), :attr:`generated_layers`."""

    name: str | None = None
    task: str | None = None
    config: dict[str, Any] | None = None
    reads_scan = True
    reads_record = True

    def encode_image(self, image: Tensor | None) -> ImageFeatures:
        raise NotImplementedError

    def decode(self, features: ImageFeatures, tabular: Tensor | None) -> Tensor:
        raise NotImplementedError

    def forward(self, image: Tensor | None, tabular: Tensor | None) -> Tensor:
        return self.decode(self.encode_image(image), tabular)

    @property
    def gradcam_layer(self) -> nn.Module | None:
        """The module whose output is the last image feature map (LayerGradCam's layer); None if no image."""
        return None

    @property
    def architecture(self) -> dict[str, Any]:
        """{"name", "task", "config"}: what a model card needs to rebuild this network."""
        if self.config is None:
            raise ValueError(
                f"{type(self).__name__} was not made by build_model, so it has no config to rebuild it from: "
                "create it with hyperfusion.models.build_model(name, task, **overrides)"
            )
        return {"name": self.name, "task": self.task, "config": dict(self.config)}

    @property
    def generated_layers(self) -> tuple[str, ...]:
        """Names of the layers whose weights are generated from the record (empty: no hypernetwork)."""
        return tuple(name for name, _ in self.hyper_layers())

    def hyper_layers(self) -> Iterator[tuple[str, HyperLayer]]:
        """(name, layer) of every layer whose weights are generated from the record."""
        for name, module in self.named_modules():
            if isinstance(module, HyperLayer):
                yield name, module

    def init_hyper_heads(self, input_variance: float) -> None:
        """Re-initialise every hyper layer's heads with the principled init for input variance v.

        Measure v on the training rows with :func:`~hyperfusion.models.measure_input_variance`. The value is
        recorded in ``config["hyper_input_variance"]`` so a rebuilt network starts from the same init.
        """
        for _, layer in self.hyper_layers():
            layer.init_heads(input_variance)
        if self.config is not None and "hyper_input_variance" in self.config:
            self.config["hyper_input_variance"] = float(input_variance)

    def parameter_counts(self) -> dict[str, int]:
        """{"total": trainable parameters, "generators": those in the hyper layers' weight and bias heads}."""
        generators = sum(
            p.numel()
            for _, layer in self.hyper_layers()
            for head in (layer.weight_head, layer.bias_head)
            for p in head.parameters()
        )
        return {"total": sum(p.numel() for p in self.parameters()), "generators": generators}


class StagedNetwork(FusionNetwork):
    """A network made of named stages run in order; see the module doc for the split.

    Subclasses set ``stage_names``, ``input_shape`` and ``n_tabular`` and register the stages as attributes. A stage that
    reads the record has ``reads_condition = True`` and ``encode(x) -> tuple`` / ``decode(parts, t)``;
    the others are called as ``stage(x)``.
    """

    stage_names: tuple[str, ...] = ()
    input_shape: tuple[int, int, int] | None = None
    n_tabular: int | None = None

    def _split(self) -> int:
        for i, name in enumerate(self.stage_names):
            if getattr(getattr(self, name), "reads_condition", False):
                return i
        return len(self.stage_names)

    def _check_image(self, image: Tensor) -> None:
        if not isinstance(image, Tensor) or image.ndim != 5 or image.shape[1] != 1:
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise DataError(f"expected an image batch of shape (B, 1, D, H, W), got {shape}")
        if self.input_shape is not None and tuple(image.shape[2:]) != tuple(self.input_shape):
            raise DataError(
                f"image of spatial shape {tuple(image.shape[2:])}, but this model takes "
                f"{tuple(self.input_shape)} (its input_shape): resample the scan with the model's geometry"
            )

    def _check_tabular(self, tabular: Tensor, batch: int) -> None:
        n = getattr(self, "n_tabular", None)
        if not isinstance(tabular, Tensor) or tabular.ndim != 2 or tabular.shape[0] != batch:
            shape = tuple(tabular.shape) if isinstance(tabular, Tensor) else type(tabular).__name__
            raise DataError(f"expected a tabular batch of shape ({batch}, F), got {shape}")
        if n is not None and tabular.shape[1] != n:
            raise DataError(
                f"record of {tabular.shape[1]} values, but this model takes {n}: apply the model's "
                "tabular preprocessing"
            )

    def encode_image(self, image: Tensor) -> ImageFeatures:
        self._check_image(image)
        split = self._split()
        x = image
        for name in self.stage_names[:split]:
            x = getattr(self, name)(x)
        if split == len(self.stage_names):
            return (x,)
        return tuple(getattr(self, self.stage_names[split]).encode(x))

    def decode(self, features: ImageFeatures, tabular: Tensor | None) -> Tensor:
        split = self._split()
        if split == len(self.stage_names):  # nothing reads the record: the features are the output
            return features[0]
        self._check_tabular(tabular, features[0].shape[0])
        x = getattr(self, self.stage_names[split]).decode(features, tabular)
        for name in self.stage_names[split + 1 :]:
            stage = getattr(self, name)
            x = stage(x, tabular) if getattr(stage, "reads_condition", False) else stage(x)
        return x
