"""Inference layer: model files and cards, finding models on disk, the entry check of scans, the Predictor
(image-feature cache, hemisphere averaging, ensembles).

Names are imported on first use (PEP 562): finding models and reading their cards does not import torch.
"""

from hyperfusion.lazy import lazy_exports

_EXPORTS = {
    "ModelInfo": "discovery",
    "find_models": "discovery",
    "member_dirs": "discovery",
    "models_for_task": "discovery",
    "paths_of": "discovery",
    "ModelCard": "model_files",
    "load_model": "model_files",
    "read_card": "model_files",
    "save_model": "model_files",
    "write_card": "model_files",
    "Prediction": "predictor",
    "Predictor": "predictor",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
