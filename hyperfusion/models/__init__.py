"""Hyper layers, blocks, task networks, the model registry and the model card.

Layers live apart from networks (MONAI style): :mod:`.hyper` (generated conv and linear layers, the principled
init), :mod:`.blocks` (pre-activation residual, FiLM, DAFT, concatenation), :mod:`.attention` (Jiang et al.'s
EHR attention and multi-head GMU); networks in :mod:`.ad` and :mod:`.brain_age`, created by name with
:func:`build_model`; :mod:`.card` types a model's card; :mod:`.reference` maps the authors' checkpoints onto them.

Names are imported on first use (PEP 562), so reading a model card does not pay for importing torch.
"""

from hyperfusion.lazy import lazy_exports

_EXPORTS = {
    "Architecture": "card",
    "ModelCard": "card",
    "HyperConv3d": "hyper",
    "HyperLinear": "hyper",
    "measure_input_variance": "hyper",
    "FusionNetwork": "network",
    "ImageFeatures": "network",
    "concat_features": "network",
    "decode_records": "network",
    "subject_output": "network",
    "select_features": "network",
    "ModelConfigError": "registry",
    "available_models": "registry",
    "build_model": "registry",
    "model_class": "registry",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
