"""Import of checkpoints written by the authors' public code (github.com/daniel4725/HyperFusion).

Their Lightning checkpoints hold a ``state_dict`` whose keys carry the wrapper's ``model.`` prefix (names and
shapes: shared/reference_checkpoint_keys.json). We read them with ``torch.load(weights_only=True)`` only, so
nothing but tensors and plain containers is ever unpickled, rename their parameters to ours, infer the config
from the shapes, and load with every key and shape checked.

What their forward does, and what ours matches at batch size 1 (tests/models/test_reference.py re-implements
their forward from their published modules and compares):

- AD backbone: ``conv_bn_relu`` (Conv 3³ + BN + ReLU) and MaxPool 2 -> our ``stem``; pre-activation blocks with
  ``downsample`` = BN -> Conv 1³ -> our ``shortcut``; HyperFusion's block 4 wraps convs as ``conv1.layer`` and
  its shortcut is ``downsample.0`` (generated conv: ``hyper_net.embedding_model`` Linear -> BN1d -> PReLU,
  ``weights_gen`` / ``bias_gen`` heads, weight rows in (out, in, 1, 1, 1) order; our heads store their
  matrices transposed) then ``downsample.1`` (BN).
  Their generated-conv loop feeds sample k - 1's features to sample k's kernel for k ≥ 1; at batch size 1
  there is no k ≥ 1, so outputs agree, and ours is right at every batch size.
- FiLM / DAFT: ``blockX`` with ``aux.aux_base`` / ``aux.aux_out`` (no biases), γ = first half, β = second half,
  linear scale; DAFT's MLP reads [pooled block input ; record]. FiLM's stem is named ``conv1``.
- Concatenation: ``fc1`` reads [pooled 256 ; record 16].
- Tabular only: ``mlp`` 0-3 -> our ``embedding`` 0-2 and ``head``.
- Brain age: ``conv{i}_a``, ``conv{i}_b``, ``batchnorm{i}`` -> our ``stage{i}``; ``linear1-3`` and
  ``final_layer`` (generated: ``layer.hyper_net`` with a Linear(2 -> 1) embedding) -> ``linear1-3``,
  ``output``. They return ``out[:, 0]`` (B,); ours returns (B, 1).
"""

from __future__ import annotations

import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hyperfusion.errors import ModelFileError
from hyperfusion.models.network import FusionNetwork, state_dict_mismatches
from hyperfusion.models.registry import build_model

__all__ = [
    "AUTHORS_CODE",
    "REFERENCE_ARCHITECTURES",
    "ReferenceArchitecture",
    "convert_reference_state_dict",
    "read_reference_checkpoint",
    "reference_card",
]

AUTHORS_CODE = "https://github.com/daniel4725/HyperFusion"


@dataclass(frozen=True)
class ReferenceArchitecture:
    """One of the authors' model classes: our (task, name) and the renames from their keys to ours."""

    task: str
    name: str
    renames: tuple[tuple[str, str], ...]


_GENERATOR = (
    (r"\.layer\.hyper_net\.embedding_model\.", ".embedding."),
    (r"\.layer\.hyper_net\.weights_gen\.", ".weight_head."),
    (r"\.layer\.hyper_net\.bias_gen\.", ".bias_head."),
)
_AD_BACKBONE = (
    (r"^conv_bn_relu\.", "stem."),
    (r"^(block\d)\.downsample\.", r"\1.shortcut."),
)
_MODULATION = (
    (r"^blockX\.aux\.aux_base\.", "block4.modulation.mlp.0."),
    (r"^blockX\.aux\.aux_out\.", "block4.modulation.mlp.2."),
)
_BRAIN_AGE = (
    (r"^conv(\d)_([ab])\.", r"stage\1.conv_\2."),
    (r"^batchnorm(\d)\.", r"stage\1.bn."),
    (r"^final_layer\.", "output."),
)

# Each (pattern, replacement) is applied in order to every key
REFERENCE_ARCHITECTURES: dict[str, ReferenceArchitecture] = {
    "HyperFusion_AD": ReferenceArchitecture(
        "ad",
        "hyperfusion",
        (
            # the hyper block's shortcut is (generated conv, BN); its downsample.1 is the BN
            (r"^block4\.downsample\.0\.", "block4.shortcut.conv."),
            (r"^block4\.downsample\.1\.", "block4.shortcut.bn."),
            *_GENERATOR,
            (r"^(block4\.conv[12]|fc[12])\.layer\.", r"\1."),
            *_AD_BACKBONE,
        ),
    ),
    "PreactivResNet": ReferenceArchitecture("ad", "image_only", _AD_BACKBONE),
    "RES_Tab_concat1": ReferenceArchitecture("ad", "concat", ((r"^fc1\.", "fc1.linear."), *_AD_BACKBONE)),
    "DAFT_preactive": ReferenceArchitecture(
        "ad", "daft", (*_MODULATION, (r"^blockX\.", "block4."), *_AD_BACKBONE)
    ),
    "Film_preactive": ReferenceArchitecture(
        "ad", "film", ((r"^conv1\.", "stem."), *_MODULATION, (r"^blockX\.", "block4."), *_AD_BACKBONE)
    ),
    "MLP_8_bn_prl": ReferenceArchitecture(
        "ad", "tabular_only", ((r"^mlp\.([012])\.", r"embedding.\1."), (r"^mlp\.3\.", "head."))
    ),
    "HyperFusion_Brainage": ReferenceArchitecture("brain_age", "hyperfusion", (*_GENERATOR, *_BRAIN_AGE)),
    "Imaging_only_brainage": ReferenceArchitecture("brain_age", "image_only", _BRAIN_AGE),
    "Brainage_concat": ReferenceArchitecture(
        "brain_age", "concat", ((r"^linear2\.", "linear2.linear."), *_BRAIN_AGE)
    ),
}

# The authors' input sizes: one hemisphere of their fixed crop (AD), their brain-age arrays (docs/models.md)
AUTHORS_AD_INPUT = [64, 96, 64]
AUTHORS_BRAIN_AGE_INPUT = [90, 120, 99]


def read_reference_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(state dict without the ``model.`` prefix, facts about the file) of one of the authors' checkpoints.

    Only tensors and plain containers are unpickled (``torch.load(weights_only=True)``); a checkpoint that
    needs anything else (their Lightning wrapper stores the model object in ``hyper_parameters``) is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"checkpoint not found: {path}")
    extract = (
        'If you trust the file, extract its weights once, in a separate environment: python -c "import torch; '
        f"c = torch.load('{path.name}', weights_only=False); torch.save({{'state_dict': c['state_dict']}}, "
        "'weights_only.ckpt')\" and import weights_only.ckpt"
    )
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols would break the one-line error
            warnings.simplefilter("ignore", UserWarning)
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise ModelFileError(
                f"{path} needs unpickling of arbitrary Python objects ({found.group(1)}), which can run code, so "
                f"it is refused. {extract}"
            ) from None
        raise ModelFileError(
            f"cannot read {path} as a tensors-only PyTorch checkpoint, and it is refused rather than unpickled "
            f"(expected a torch.save / Lightning .ckpt file). {extract}"
        ) from None
    except Exception as exc:  # a truncated or foreign file: say so in one line
        raise ModelFileError(f"cannot read {path} as a PyTorch checkpoint: {exc}") from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise ModelFileError(
            f"{path} holds no state dict of tensors (expected a Lightning checkpoint with 'state_dict')"
        )
    # The network lives under the Lightning wrapper's ``model.``; anything else there is the wrapper's own state
    if any(k.startswith("model.") for k in state):
        weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    else:
        weights = dict(state)
    facts = {
        "file": path.name,
        **{
            k: checkpoint[k] for k in ("epoch", "global_step", "pytorch-lightning_version") if k in checkpoint
        },
    }
    return weights, facts


def convert_reference_state_dict(state_dict: dict[str, Tensor], arch: str) -> FusionNetwork:
    """Our network (eval mode) holding the weights of one of the authors' ``arch`` checkpoints."""
    reference = _architecture(arch)
    renamed = {}
    for key, value in state_dict.items():
        for pattern, replacement in reference.renames:
            key = re.sub(pattern, replacement, key)
        if key.endswith(("weight_head.weight", "bias_head.weight")):
            value = value.t().contiguous()  # their nn.Linear (P, d_k); our GeneratorHead stores (d_k, P)
        renamed[key] = value
    model = build_model(reference.name, reference.task, **_config_from_shapes(reference, renamed, arch))
    problems = state_dict_mismatches(model, renamed)
    if problems:
        raise ModelFileError(
            f"checkpoint does not match the authors' {arch} (after renaming to ours): {problems}. "
            f"Check --arch; known: {list(REFERENCE_ARCHITECTURES)}"
        )
    model.load_state_dict(renamed, strict=True)
    return model.eval()


def reference_card(arch: str, facts: dict[str, Any], geometry: dict[str, Any] | None) -> dict[str, Any]:
    """The model card fields of an imported checkpoint (``save_model`` adds architecture and sha256).

    ``geometry``: the authors' AD crop (``hyperfusion.data.geometry.authors_crop().to_dict()``), used for the
    AD image models; brain-age and tabular-only cards get none.
    """
    reference = _architecture(arch)
    uses_ad_image = reference.task == "ad" and reference.name != "tabular_only"
    card: dict[str, Any] = {
        "task": reference.task,
        "class_names": ["CN", "MCI", "AD"] if reference.task == "ad" else None,
        "output": "logits of CN, MCI, AD" if reference.task == "ad" else "brain age, years",
        "geometry": geometry if uses_ad_image else None,
        "intensity": (
            {
                "method": "zscore_nonzero",
                "note": "z-score over non-zero voxels (MONAI NormalizeIntensity(nonzero=True))",
            }
            if uses_ad_image
            else None
        ),
        "tabular_schema": (
            {"columns": ["sex_female", "sex_male"], "encoding": "sex one-hot [F, M]"}
            if reference.task == "brain_age"
            else None
        ),
        "preprocessing": None,
        "provenance": {
            "source": "authors_checkpoint",
            "code": AUTHORS_CODE,
            "authors_architecture": arch,
            "checkpoint": facts,
            "data": "real patient data (ADNI)"
            if reference.task == "ad"
            else "the authors' brain-age collection",
        },
        "notes": [
            "The authors' checkpoints carry no fitted tabular preprocessing (imputer, z-score statistics, column "
            "order); refit it on training rows and check the column order against their feature set before use. "
            "Their own pipeline fitted it on the whole table, test rows included.",
        ],
    }
    if uses_ad_image:
        card["notes"].append(
            "Input: one hemisphere, 64 x 96 x 64 voxels of the authors' fixed crop [25:89, 55:151, 21:149] of "
            "their 170 x 186 x 170 bounding-box-centred scans, split on the last axis, the other half mirrored; "
            "average the softmax of both halves."
        )
    if reference.task == "brain_age":
        card["notes"].append(
            "The authors' brain-age scan geometry is not published with their code: the input is their "
            "preprocessed 90 x 120 x 99 array; no geometry is recorded."
        )
    return card


def _architecture(arch: str) -> ReferenceArchitecture:
    for known, reference in REFERENCE_ARCHITECTURES.items():
        if known.lower() == arch.lower():
            return reference
    raise ModelFileError(
        f"unknown architecture {arch!r}; the authors' classes we import: {list(REFERENCE_ARCHITECTURES)}"
    )


def _config_from_shapes(
    reference: ReferenceArchitecture, state: dict[str, Tensor], arch: str
) -> dict[str, Any]:
    """Our config for their weights: widths and sizes read off the tensors, input size theirs."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise ModelFileError(
                f"checkpoint has no {key!r} (after renaming): is it really {arch}? Check --arch"
            )
        return tuple(state[key].shape)

    if reference.name == "tabular_only":
        hidden, n_tabular = shape("embedding.0.weight")
        return {"n_tabular": n_tabular, "embedding_dim": hidden, "n_classes": shape("head.weight")[0]}
    if reference.task == "ad":
        f = shape("stem.0.weight")[0]
        config: dict[str, Any] = {
            "init_features": f,
            "input_shape": AUTHORS_AD_INPUT,
            "n_classes": shape("fc2.weight")[0],
        }
        if reference.name == "hyperfusion":
            config["embedding_dim"], config["n_tabular"] = shape("block4.shortcut.conv.embedding.0.weight")
        elif reference.name == "concat":
            config["n_tabular"] = shape("fc1.linear.weight")[1] - 16 * f
        elif reference.name in ("film", "daft"):
            bottleneck, n_in = shape("block4.modulation.mlp.0.weight")
            config["modulation_bottleneck"] = bottleneck
            config["n_tabular"] = n_in - (8 * f if reference.name == "daft" else 0)
        return config
    channels = [shape(f"stage{i}.conv_a.weight")[0] for i in (1, 2, 3)]
    if reference.name == "hyperfusion":
        hidden = [shape(f"linear{i}.bias_head.weight")[1] for i in (1, 2, 3)]
        flat = shape("linear1.weight_head.weight")[1] // hidden[0]
        n_tabular = shape("linear1.embedding.weight")[1]
        config = {"embedding_dim": shape("linear1.embedding.weight")[0]}
    else:
        hidden = [shape("linear1.weight")[0], shape("linear3.weight")[1], shape("linear3.weight")[0]]
        flat = shape("linear1.weight")[1]
        n_tabular = shape("linear2.linear.weight")[1] - hidden[0] if reference.name == "concat" else 2
        config = {}
    sides = AUTHORS_BRAIN_AGE_INPUT
    for _ in range(3):
        sides = [(s - 4) // 2 for s in sides]
    if channels[2] * sides[0] * sides[1] * sides[2] != flat:
        raise ModelFileError(
            f"the checkpoint's first linear layer reads {flat} features, but a {AUTHORS_BRAIN_AGE_INPUT} input "
            f"gives {channels[2] * sides[0] * sides[1] * sides[2]}: it was trained on another input size"
        )
    return {
        **config,
        "input_shape": AUTHORS_BRAIN_AGE_INPUT,
        "n_tabular": n_tabular,
        "channels": channels,
        "hidden": hidden,
    }
