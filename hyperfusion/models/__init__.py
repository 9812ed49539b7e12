"""Hyper layers, blocks, task networks and the model registry.

Layers live apart from networks (MONAI style): :mod:`.hyper` (generated conv and linear layers, the principled
init), :mod:`.blocks` (pre-activation residual, FiLM, DAFT, concatenation), :mod:`.attention` (Jiang et al.'s
EHR attention and multi-head GMU); networks in :mod:`.ad` and :mod:`.brain_age`, created by name with
:func:`build_model`; :mod:`.reference` maps the authors' checkpoints onto them.
"""

from hyperfusion.models.hyper import HyperConv3d, HyperLinear, measure_input_variance
from hyperfusion.models.network import FusionNetwork, ImageFeatures, concat_features, select_features
from hyperfusion.models.registry import ModelConfigError, available_models, build_model

__all__ = [
    "FusionNetwork",
    "HyperConv3d",
    "HyperLinear",
    "ImageFeatures",
    "ModelConfigError",
    "available_models",
    "build_model",
    "concat_features",
    "measure_input_variance",
    "select_features",
]
